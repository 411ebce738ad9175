//! Real inference through the daemon: `/v1/embeddings` on the real weights against the
//! PyTorch reference, the official OpenAI SDK as a client, admission limits, and the model
//! files' verification and pull.
//!
//! These tests need the model files (`models/fetch.sh`, which scripts/test runs) and fail,
//! saying so, without them.

mod support;

use std::path::Path;
use std::process::{Child, Command};

use base64::Engine;
use serde_json::{Value, json};
use support::{Client, Daemon, cosine, models_dir, reference_fixture};

const MODEL: &str = "all-MiniLM-L6-v2";

fn inference_daemon(extra: &[(&str, &str)]) -> Daemon {
    let model_dir = models_dir().join(MODEL);
    assert!(
        model_dir.join("model.safetensors").is_file(),
        "no model in {}: run models/fetch.sh first",
        model_dir.display()
    );
    let mut env = vec![
        ("NEXUS_INFERENCE__ENABLED", "true"),
        ("NEXUS_INFERENCE__DEVICE", "cpu"),
    ];
    env.extend_from_slice(extra);
    Daemon::start_with(&env)
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array of floats")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn embeddings_match_the_pytorch_reference() {
    let daemon = inference_daemon(&[]);
    let client = daemon.client(&daemon.create_key("app", "read"));
    let cases = reference_fixture()["cases"].as_array().unwrap().clone();
    let texts: Vec<&str> = cases
        .iter()
        .map(|case| case["text"].as_str().unwrap())
        .collect();

    let reply = client.post("/v1/embeddings", &json!({ "model": MODEL, "input": texts }));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], MODEL);
    let expected_tokens: usize = cases
        .iter()
        .map(|c| c["token_ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(body["usage"]["prompt_tokens"], expected_tokens);
    assert_eq!(body["usage"]["total_tokens"], expected_tokens);

    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), cases.len());
    for (index, (item, case)) in data.iter().zip(&cases).enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], index);
        let ours = floats(&item["embedding"]);
        assert_eq!(ours.len(), 384);
        let similarity = cosine(&ours, &floats(&case["embedding"]));
        assert!(
            similarity >= 0.9999,
            "{:?}: cosine {similarity}",
            case["text"]
        );
    }

    // base64 is the same little-endian f32 vector.
    let reply = client.post(
        "/v1/embeddings",
        &json!({ "model": MODEL, "input": texts[0], "encoding_format": "base64" }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let encoded = reply.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|chunk| f64::from(f32::from_le_bytes(chunk.try_into().unwrap())))
        .collect();
    assert!((cosine(&decoded, &floats(&data[0]["embedding"])) - 1.0).abs() < 1e-6);

    // Token ids in give the same vector as the text they came from.
    let ids = &cases[0]["token_ids"];
    let by_ids = client.post("/v1/embeddings", &json!({ "model": MODEL, "input": [ids] }));
    assert_eq!(by_ids.status, 200, "{}", by_ids.body);
    let by_ids = floats(&by_ids.json()["data"][0]["embedding"]);
    assert!(cosine(&by_ids, &floats(&data[0]["embedding"])) > 0.999999);

    // The model and device are reported.
    let info = client.get("/api/v1/info").json();
    assert_eq!(info["model"]["name"], MODEL);
    assert_eq!(info["model"]["backend"], "cpu");
    assert_eq!(info["model"]["dimensions"], 384);
}

#[test]
fn the_official_openai_sdk_gets_reference_embeddings() {
    let daemon = inference_daemon(&[]);
    let key = daemon.create_key("sdk", "read");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/minilm-reference.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/openai_client.py");

    let output = Command::new("python3")
        .arg(&script)
        .arg(format!("{}/v1", daemon.url))
        .arg(&key)
        .arg(&fixture)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "openai client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bad_embedding_requests_get_clear_errors() {
    let daemon = inference_daemon(&[
        ("NEXUS_INFERENCE__MAX_INPUTS_PER_REQUEST", "4"),
        ("NEXUS_INFERENCE__MAX_INPUT_CHARS", "100"),
    ]);
    let client = daemon.client(&daemon.create_key("app", "read"));
    let post = |body: Value| client.post("/v1/embeddings", &body);

    let cases = [
        (
            json!({ "model": MODEL, "input": "x", "dimensions": 64 }),
            400,
            "unsupported_dimensions",
        ),
        (
            json!({ "model": "text-embedding-3-small", "input": "x" }),
            404,
            "model_not_found",
        ),
        (json!({ "model": MODEL, "input": [] }), 400, "empty_input"),
        (
            json!({ "model": MODEL, "input": ["a", "b", "c", "d", "e"] }),
            413,
            "too_many_inputs",
        ),
        (
            json!({ "model": MODEL, "input": "y".repeat(101) }),
            413,
            "input_too_long",
        ),
        (
            json!({ "model": MODEL, "input": [[]] }),
            400,
            "invalid_input",
        ),
        (
            json!({ "model": MODEL, "input": [[101, 99999999, 102]] }),
            400,
            "invalid_input",
        ),
        (json!({ "model": MODEL, "input": 5 }), 422, "invalid_body"),
        (json!({ "input": "x" }), 422, "invalid_body"),
        (
            json!({ "model": MODEL, "input": "x", "encoding_format": "int8" }),
            422,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let reply = post(body.clone());
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert_eq!(reply.error_code(), code, "{body}");
    }

    // dimensions equal to the model's own is fine.
    assert_eq!(
        post(json!({ "model": MODEL, "input": "x", "dimensions": 384 })).status,
        200
    );
    // Without a key there is no inference.
    assert_eq!(
        Client::anonymous(&daemon.url)
            .post("/v1/embeddings", &json!({}))
            .status,
        401
    );
}

#[test]
fn a_full_queue_answers_429_at_once() {
    let daemon = inference_daemon(&[
        ("NEXUS_INFERENCE__QUEUE_CAPACITY", "8"),
        ("NEXUS_INFERENCE__MAX_INPUTS_PER_REQUEST", "8"),
        ("NEXUS_INFERENCE__CACHE_BYTES", "0"),
    ]);
    let client = daemon.client(&daemon.create_key("app", "read"));

    // Eight long inputs take every permit for as long as the model works on them, so of two
    // such requests in flight together one is refused at once. Two requests sent together may
    // still not overlap (the first can finish before the second arrives): a few tries.
    let long: Vec<String> = (0..8)
        .map(|n| format!("{n} ") + &"brand guidelines for a spring campaign hero image ".repeat(40))
        .collect();
    let request = json!({ "model": MODEL, "input": long });
    let mut overflow = None;
    for _ in 0..20 {
        let replies: Vec<_> = std::thread::scope(|scope| {
            let senders: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| client.post("/v1/embeddings", &request)))
                .collect();
            senders
                .into_iter()
                .map(|sender| sender.join().unwrap())
                .collect()
        });
        for reply in &replies {
            assert!(
                matches!(reply.status, 200 | 429),
                "{} {}",
                reply.status,
                reply.body
            );
        }
        assert!(
            replies.iter().any(|reply| reply.status == 200),
            "both requests refused"
        );
        overflow = replies.into_iter().find(|reply| reply.status == 429);
        if overflow.is_some() {
            break;
        }
    }
    let overflow = overflow.expect("no request was refused while the queue was full");
    assert_eq!(overflow.error_code(), "queue_full");
    assert_eq!(overflow.header("Retry-After"), Some("1"));

    // Once the queue drains, the same request goes through.
    let reply = client.post(
        "/v1/embeddings",
        &json!({ "model": MODEL, "input": "one more" }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// A copy of the real model directory, to damage or to serve as a mirror.
fn copy_model(into: &Path) -> std::path::PathBuf {
    let source = models_dir().join(MODEL);
    let target = into.join(MODEL);
    let status = Command::new("cp")
        .arg("-r")
        .arg(&source)
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "copy {}", source.display());
    target
}

#[test]
fn a_corrupt_model_file_is_named_and_the_daemon_is_not_ready() {
    let scratch = tempfile::tempdir().unwrap();
    let model = copy_model(scratch.path());
    let mut config = std::fs::read(model.join("config.json")).unwrap();
    config[10] ^= 0x20;
    std::fs::write(model.join("config.json"), config).unwrap();

    let models = scratch.path().to_str().unwrap();
    let mut daemon = Daemon::prepare(&[
        ("NEXUS_INFERENCE__ENABLED", "true"),
        ("NEXUS_INFERENCE__DEVICE", "cpu"),
        ("NEXUS_INFERENCE__MODELS_DIR", models),
    ]);
    let verify = daemon.cli(&["models", "verify"]);
    assert!(!verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stderr).contains("config.json"));

    daemon.spawn_unready();
    let anonymous = Client::anonymous(&daemon.url);
    let ready = (0..200)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            anonymous.get("/ready")
        })
        .find(|reply| reply.json()["checks"]["model"]["status"] == "failing")
        .expect("the model check never failed");
    assert_eq!(ready.status, 503);
    let detail = ready.json()["checks"]["model"]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("config.json"), "{detail}");

    // The rest of the API still works; inference says why it cannot.
    let client = daemon.client(&daemon.create_key("app", "write"));
    assert_eq!(
        client
            .post("/api/v1/projects", &json!({ "name": "p" }))
            .status,
        201
    );
    let reply = client.post("/v1/embeddings", &json!({ "model": MODEL, "input": "x" }));
    assert_eq!(reply.status, 503);
    assert_eq!(reply.error_code(), "model_not_ready");
}

struct HttpServer(Child);

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn models_pull_from_a_folder_or_http_mirror_verifies_every_file() {
    let mirror = tempfile::tempdir().unwrap();
    let mirrored = copy_model(mirror.path());

    // From a local folder.
    let target = tempfile::tempdir().unwrap();
    let daemon = Daemon::prepare(&[(
        "NEXUS_INFERENCE__MODELS_DIR",
        target.path().to_str().unwrap(),
    )]);
    let listed = String::from_utf8(daemon.cli(&["models", "list"]).stdout).unwrap();
    assert!(
        listed.contains("model.safetensors") && listed.contains("missing"),
        "{listed}"
    );
    let pulled = daemon.cli(&["models", "pull", "--from", mirror.path().to_str().unwrap()]);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert!(daemon.cli(&["models", "verify"]).status.success());
    let again = daemon.cli(&["models", "pull", "--from", mirror.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 file(s) fetched"));

    // Over HTTP, from a mirror whose copy of one file is corrupt: that file is named and
    // never appears under its final name.
    let mut vocab = std::fs::read(mirrored.join("vocab.txt")).unwrap();
    vocab[0] ^= 1;
    std::fs::write(mirrored.join("vocab.txt"), vocab).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = HttpServer(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(mirror.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let fresh = tempfile::tempdir().unwrap();
    let daemon = Daemon::prepare(&[
        (
            "NEXUS_INFERENCE__MODELS_DIR",
            fresh.path().to_str().unwrap(),
        ),
        ("NEXUS_INFERENCE__MIRROR", &url),
    ]);
    let mut pulled = daemon.cli(&["models", "pull"]);
    for _ in 0..50 {
        // The server may need a moment to listen.
        if !String::from_utf8_lossy(&pulled.stderr).contains("onnect") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        pulled = daemon.cli(&["models", "pull"]);
    }
    assert!(!pulled.status.success());
    let message = String::from_utf8_lossy(&pulled.stderr);
    assert!(
        message.contains("vocab.txt") && message.contains("sha256"),
        "{message}"
    );
    assert!(!fresh.path().join(MODEL).join("vocab.txt").exists());
}
