//! Telemetry end to end: Prometheus metrics (checked by `promtool`), alerts that fire and
//! resolve and reach a webhook, the admin status document, a configuration reload, and error
//! reports to a Sentry endpoint.
//!
//! Server errors are caused for real: inference is enabled with an empty models folder, so
//! the model fails to load and every embedding request is answered 503.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::listener::{Listener, Received};
use support::{Client, Daemon};

/// The value of one series in Prometheus text, e.g. `name{label="x"}`; 0 when absent.
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

fn scrape(client: &Client) -> String {
    let reply = client.get("/metrics");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.headers
    );
    reply.body
}

/// A daemon whose model cannot load (its folder is empty), with `env` on top.
fn failing_model_daemon(models: &tempfile::TempDir, env: &[(&str, &str)]) -> Daemon {
    let mut all = vec![
        ("NEXUS_INFERENCE__ENABLED", "true"),
        ("NEXUS_INFERENCE__DEVICE", "cpu"),
        (
            "NEXUS_INFERENCE__MODELS_DIR",
            models.path().to_str().unwrap(),
        ),
    ];
    all.extend_from_slice(env);
    let mut daemon = Daemon::prepare(&all);
    daemon.spawn_unready();
    daemon
}

/// Makes one embedding request, which the failed model answers 503; returns its request id.
fn server_error(client: &Client) -> String {
    let reply = client.post("/v1/embeddings", &json!({ "model": "m", "input": "x" }));
    assert_eq!(reply.status, 503, "{}", reply.body);
    reply.header("x-request-id").unwrap().to_string()
}

#[test]
fn metrics_count_requests_exactly_and_pass_promtool() {
    let daemon = Daemon::start();
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let app = daemon.client(&daemon.create_key("app", "write"));

    let created =
        r#"nexus_http_requests_total{route="/api/v1/projects",method="POST",status="201"}"#;
    let missing =
        r#"nexus_http_requests_total{route="/api/v1/projects/<id>",method="GET",status="404"}"#;
    let before = scrape(&admin);

    for name in ["a", "b", "c"] {
        assert_eq!(
            app.post("/api/v1/projects", &json!({ "name": name }))
                .status,
            201
        );
    }
    let unknown = "/api/v1/projects/00000000-0000-4000-8000-000000000000";
    for _ in 0..2 {
        assert_eq!(app.get(unknown).status, 404);
    }

    let after = scrape(&admin);
    assert_eq!(series(&after, created) - series(&before, created), 3.0);
    assert_eq!(series(&after, missing) - series(&before, missing), 2.0);
    let duration_count =
        r#"nexus_http_request_duration_seconds_count{route="/api/v1/projects",method="POST"}"#;
    assert_eq!(series(&after, duration_count), 3.0);
    assert!(series(&after, "nexus_store_size_bytes") > 0.0);
    assert!(series(&after, "process_resident_memory_bytes") > 1e6);
    assert_eq!(
        series(&after, r#"nexus_alert_firing{alert="error_rate"}"#),
        0.0
    );
    assert!(after.contains("nexus_build_info{version="), "{after}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed by scripts/test");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(after.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}\n{after}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Admin keys only, by default.
    assert_eq!(Client::anonymous(&daemon.url).get("/metrics").status, 401);
    assert_eq!(app.get("/metrics").status, 403);
}

#[test]
fn metrics_access_follows_the_configuration() {
    let public = Daemon::start_with(&[("NEXUS_METRICS__ACCESS", "public")]);
    assert_eq!(Client::anonymous(&public.url).get("/metrics").status, 200);

    let off = Daemon::start_with(&[("NEXUS_METRICS__ACCESS", "off")]);
    let admin = off.client(&off.create_key("ops", "admin"));
    let reply = admin.get("/metrics");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_code(), "not_found");
}

#[test]
fn an_error_rate_alert_fires_and_resolves_through_the_webhook() {
    // The webhook fails once, so the firing message must be retried.
    let webhook = Listener::start(&[500]);
    let models = tempfile::tempdir().unwrap();
    let hook = format!("{}/hooks/alerts", webhook.url);
    let daemon = failing_model_daemon(
        &models,
        &[
            ("NEXUS_ALERTS__EVALUATE_INTERVAL_MS", "100"),
            ("NEXUS_ALERTS__MIN_REQUESTS", "1"),
            ("NEXUS_ALERTS__ERROR_RATE", "0.2"),
            // Only the error rate is under test; a loaded CI host must not add alerts.
            ("NEXUS_ALERTS__CPU_PERCENT", "100"),
            ("NEXUS_ALERTS__API_P99_MS", "60000"),
            ("NEXUS_ALERTS__WEBHOOK_URL", &hook),
            ("NEXUS_ALERTS__WEBHOOK_MIN_INTERVAL_SECS", "0"),
            ("NEXUS_ALERTS__WEBHOOK_ATTEMPTS", "3"),
        ],
    );
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let app = daemon.client(&daemon.create_key("app", "read"));

    for _ in 0..5 {
        server_error(&app);
    }
    let firing = |r: &Received| r.body.contains("error_rate is firing");
    let messages = webhook.wait_for(2, Duration::from_secs(20), firing);
    assert_eq!(
        messages.len(),
        2,
        "the 500 was not retried: {:?}",
        webhook.received()
    );
    assert_eq!(messages[0].body, messages[1].body);
    assert_eq!(messages[0].path, "/hooks/alerts");
    let payload: Value = serde_json::from_str(&messages[0].body).unwrap();
    assert_eq!(payload["attachments"][0]["color"], "danger");
    assert_eq!(payload["attachments"][0]["fields"][1]["value"], "0.2");

    let status = admin.get("/api/v1/admin/status").json();
    assert_eq!(status["alerts"]["firing"], 1);
    let alert = |status: &Value| {
        status["alerts"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|alert| alert["name"] == "error_rate")
            .cloned()
            .unwrap()
    };
    assert_eq!(alert(&status)["state"], "firing");
    assert_eq!(alert(&status)["value"], 1.0);
    assert!(alert(&status)["fired_at"].is_string());
    assert_eq!(
        series(&scrape(&admin), r#"nexus_alert_firing{alert="error_rate"}"#),
        1.0
    );

    // Enough good requests bring the rate to 5 in 55, under 0.2: resolved.
    for _ in 0..50 {
        assert_eq!(app.get("/api/v1/info").status, 200);
    }
    let resolved = |r: &Received| r.body.contains("error_rate resolved");
    assert_eq!(
        webhook.wait_for(1, Duration::from_secs(20), resolved).len(),
        1
    );
    let status = admin.get("/api/v1/admin/status").json();
    assert_eq!(status["alerts"]["firing"], 0);
    assert_eq!(alert(&status)["state"], "resolved");
    assert_eq!(status["alerts"]["recent"][0]["state"], "resolved");
    assert_eq!(status["alerts"]["recent"][1]["state"], "firing");
}

#[test]
fn the_admin_status_tells_the_whole_story() {
    let daemon = Daemon::start();
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let app = daemon.client(&daemon.create_key("app", "write"));
    assert_eq!(
        app.post("/api/v1/projects", &json!({ "name": "p" })).status,
        201
    );
    assert_eq!(app.get("/api/v1/projects").status, 200);

    let reply = admin.get("/api/v1/admin/status");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let status = reply.json();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["health"]["status"], "ready");
    assert_eq!(status["model"]["state"], "disabled");
    assert!(status["uptime_seconds"].is_u64());
    assert!(status["started_at"].as_str().unwrap().ends_with('Z'));

    // No NVIDIA driver here: the GPU facts say so instead of failing.
    assert_eq!(status["gpu"]["source"], "none");
    let reason = status["gpu"]["unavailable"].as_str().unwrap();
    assert!(reason.contains("NVML"), "{reason}");

    let traffic = &status["traffic"]["short"];
    assert_eq!(traffic["window_seconds"], 300);
    assert_eq!(traffic["classes"]["write"]["requests"], 1);
    assert_eq!(traffic["classes"]["read"]["requests"], 1);
    assert_eq!(traffic["errors"], 0);
    assert_eq!(status["traffic"]["long"]["window_seconds"], 3600);

    assert_eq!(status["queue"]["capacity"], 1024);
    assert!(status["store"]["size_bytes"].as_u64().unwrap() > 0);
    assert!(status["store"]["schema_version"].as_i64().unwrap() >= 1);
    assert!(
        status["host"]["process"]["resident_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(status["alerts"]["alerts"].as_array().unwrap().len(), 8);
    assert_eq!(status["alerts"]["firing"], 0);
    assert_eq!(status["replication"]["replicas"], json!([]));
    assert_eq!(
        status["health"]["checks"]["replication"]["status"],
        "disabled"
    );

    assert_eq!(app.get("/api/v1/admin/status").status, 403);
}

#[test]
fn a_reload_applies_live_settings_refuses_a_bad_file_and_follows_the_file() {
    let daemon = Daemon::start();
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let original = std::fs::read_to_string(&daemon.config).unwrap();
    let threshold = |admin: &Client| {
        let status = admin.get("/api/v1/admin/status").json();
        status["alerts"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|alert| alert["name"] == "read_latency")
            .unwrap()["threshold"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(threshold(&admin), 0.2);

    // The harness's file sets the log level to debug in [log]; change it, the latency
    // objective, and the port (which needs a restart).
    let changed = original
        .replace("level = \"debug\"", "level = \"warn\"")
        .replace(&format!("port = {}", daemon.port), "port = 1")
        + "\n[alerts]\napi_p99_ms = 350\n";
    std::fs::write(&daemon.config, changed).unwrap();
    let reply = admin.post("/api/v1/admin/config/reload", &json!({}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let report = reply.json();
    assert_eq!(
        report["applied"],
        json!(["alerts", "rate_limits", "cors", "log.level"])
    );
    assert_eq!(report["needs_restart"], json!(["server"]));
    assert_eq!(threshold(&admin), 0.35);

    // At warn, the access log's info lines stop.
    let marker = "/api/v1/projects?limit=7";
    assert_eq!(admin.get(marker).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!daemon.logs().contains(marker));

    std::fs::write(
        &daemon.config,
        original.clone() + "\n[alerts]\nerror_rate = 7\n",
    )
    .unwrap();
    let reply = admin.post("/api/v1/admin/config/reload", &json!({}));
    assert_eq!(reply.status, 422);
    assert_eq!(reply.error_code(), "invalid_config");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alerts.error_rate")
    );
    assert_eq!(threshold(&admin), 0.35);

    // No API call: the daemon watches its file and applies a valid change by itself.
    std::fs::write(&daemon.config, original + "\n[alerts]\napi_p99_ms = 450\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while threshold(&admin) != 0.45 {
        assert!(
            std::time::Instant::now() < deadline,
            "the file change was not applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn server_errors_are_logged_with_their_route_and_sent_to_sentry() {
    let sentry = Listener::start(&[]);
    let dsn = sentry.url.replace("http://", "http://public@") + "/42";
    let models = tempfile::tempdir().unwrap();
    let daemon = failing_model_daemon(&models, &[("SENTRY_DSN", &dsn)]);
    let app = daemon.client(&daemon.create_key("app", "read"));

    let request_id = server_error(&app);
    let reports = sentry.wait_for(1, Duration::from_secs(20), |r| r.body.contains(&request_id));
    assert_eq!(reports.len(), 1, "{:?}", sentry.received());
    assert_eq!(reports[0].path, "/api/42/envelope/");
    assert!(reports[0].body.contains("model_not_ready"));

    let logged = daemon
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "request failed" && line["request_id"] == request_id)
        .expect("the 503 is logged");
    assert_eq!(logged["route"], "/v1/embeddings");
    assert_eq!(logged["status"], 503);
    assert_eq!(logged["level"], "ERROR");
}
