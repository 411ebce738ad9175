//! Semantic search end to end, on the real model (CPU backend): canvases and assets are
//! embedded in the background after each write, ranked by meaning, filtered by kind, project
//! and score; changed items are found by their new words, deleted ones are gone at once; a
//! reindex (route or CLI) recomputes everything; stored vectors survive a restart without
//! being recomputed, and vectors of another model revision are recomputed.
//!
//! These tests need the model files (`models/fetch.sh`, which scripts/test runs) and fail,
//! saying so, without them.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, Daemon, Reply, models_dir};

const MODEL: &str = "all-MiniLM-L6-v2";

fn search_daemon() -> Daemon {
    let model_dir = models_dir().join(MODEL);
    assert!(
        model_dir.join("model.safetensors").is_file(),
        "no model in {}: run models/fetch.sh first",
        model_dir.display()
    );
    Daemon::start_with(&[
        ("NEXUS_INFERENCE__ENABLED", "true"),
        ("NEXUS_INFERENCE__DEVICE", "cpu"),
    ])
}

fn search(client: &Client, body: Value) -> Reply {
    client.post("/api/v1/search", &body)
}

/// The hits of a search that must succeed.
fn hits(client: &Client, body: Value) -> Vec<Value> {
    let reply = search(client, body.clone());
    assert_eq!(reply.status, 200, "{body}: {}", reply.body);
    reply.json()["hits"].as_array().unwrap().clone()
}

fn ids(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|hit| hit["id"].as_str().unwrap()).collect()
}

/// The admin status's `search` section once the index is ready and nothing is pending.
fn wait_indexed(admin: &Client) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = admin.get("/api/v1/admin/status");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let search = reply.json()["search"].clone();
        if search["state"] == "ready" && search["pending"] == 0 {
            return search;
        }
        assert!(
            Instant::now() < deadline,
            "the index did not catch up within 120 s: {search}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create_canvas(client: &Client, project: &str, title: &str, words: &[&str]) -> String {
    let layers: Vec<Value> = words
        .iter()
        .enumerate()
        .map(|(n, text)| json!({ "id": format!("l{n}"), "type": "text", "text": text, "x": n }))
        .collect();
    let reply = client.post(
        &format!("/api/v1/projects/{project}/canvases"),
        &json!({ "title": title, "document": { "layers": layers, "background": "#ffffff" } }),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_string()
}

/// An SVG (any file the appliance accepts will do: only its description is searched).
fn upload_asset(client: &Client, project: &str, name: &str, tags: &str, about: &str) -> String {
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" height=\"8\">\
         <title>{name}</title><rect width=\"8\" height=\"8\"/></svg>"
    );
    let query = format!(
        "?filename={name}&tags={tags}&description={}",
        about.replace(' ', "%20")
    );
    let reply = client.send(
        "POST",
        &format!("/api/v1/projects/{project}/assets{query}"),
        &[("Content-Type", "application/octet-stream")],
        Some(svg.as_bytes()),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_string()
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.error_code(), code, "{}", reply.body);
}

#[test]
fn search_ranks_by_meaning_filters_and_follows_every_write() {
    let daemon = search_daemon();
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let editor = daemon.client(&daemon.create_key("editor", "write"));
    let reader = daemon.client(&daemon.create_key("app", "read"));

    let brand = editor.create_project("Brand");
    let travel = editor.create_project("Travel");
    let coffee = create_canvas(
        &editor,
        &brand,
        "Coffee shop menu",
        &[
            "Espresso, cappuccino and flat white",
            "Fresh croissants every morning",
        ],
    );
    let report = create_canvas(
        &editor,
        &brand,
        "Quarterly revenue report",
        &["Charts of sales growth and profit margins for investors"],
    );
    let ski = create_canvas(
        &editor,
        &travel,
        "Ski holiday poster",
        &["Snowy mountain slopes, chairlifts and winter sports in the Alps"],
    );
    let logo = upload_asset(
        &editor,
        &brand,
        "logo-dark.svg",
        "logo,brand",
        "The company logo in white on a dark navy background",
    );
    let beach = upload_asset(
        &editor,
        &travel,
        "beach.svg",
        "summer,beach",
        "Tropical beach with palm trees and a turquoise sea",
    );

    let status = wait_indexed(&admin);
    assert_eq!(status["indexed"], 5, "{status}");
    assert_eq!(status["in_memory"], 5, "{status}");
    assert_eq!(status["model"], MODEL);

    // Each query finds its item first, whatever its kind or project.
    let mut coffee_score = 0.0;
    for (query, expected) in [
        ("a cup of coffee and pastries", &coffee),
        ("financial results for shareholders", &report),
        ("skiing trip in the snow", &ski),
        ("holiday by the ocean under palm trees", &beach),
        ("our brand mark on a dark backdrop", &logo),
    ] {
        let found = hits(&reader, json!({ "query": query }));
        assert_eq!(found.len(), 5, "{query}: every item, k = 10 by default");
        assert_eq!(found[0]["id"], *expected, "{query}: {found:?}");
        if expected == &coffee {
            coffee_score = found[0]["score"].as_f64().unwrap();
        }
        let scores: Vec<f64> = found
            .iter()
            .map(|hit| hit["score"].as_f64().unwrap())
            .collect();
        assert!(
            scores.windows(2).all(|pair| pair[0] >= pair[1]),
            "{scores:?}"
        );
        assert!(
            scores.iter().all(|score| (-1.0..=1.0001).contains(score)),
            "{scores:?}"
        );
    }

    // The answer's shape: hit fields, the model used, nothing pending.
    let reply = search(&reader, json!({ "query": "cappuccino", "k": 1 }));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(
        (&body["model"], &body["pending"]),
        (&json!(MODEL), &json!(0))
    );
    assert!(!body["revision"].as_str().unwrap().is_empty());
    let hit = &body["hits"][0];
    assert_eq!(body["hits"].as_array().unwrap().len(), 1);
    assert_eq!(
        (&hit["kind"], &hit["id"], &hit["project_id"]),
        (&json!("canvas"), &json!(coffee), &json!(brand))
    );
    assert_eq!(
        hit["snippet"],
        "Coffee shop menu · Espresso, cappuccino and flat white · Fresh croissants every morning"
    );
    let logo_hit = &hits(&reader, json!({ "query": "navy logo", "kinds": ["asset"] }))[0];
    assert_eq!(logo_hit["kind"], "asset");
    assert_eq!(
        logo_hit["snippet"],
        "logo-dark.svg · logo, brand · The company logo in white on a dark navy background"
    );

    // Filters by kind and project are exact.
    let assets = hits(&reader, json!({ "query": "coffee", "kinds": ["asset"] }));
    let mut found = ids(&assets);
    found.sort();
    let mut expected = vec![logo.as_str(), beach.as_str()];
    expected.sort();
    assert_eq!(found, expected);
    assert!(assets.iter().all(|hit| hit["kind"] == "asset"));
    let in_travel = hits(&reader, json!({ "query": "coffee", "project": travel }));
    assert_eq!(in_travel.len(), 2);
    assert!(in_travel.iter().all(|hit| hit["project_id"] == *travel));
    let canvases_in_brand = hits(
        &reader,
        json!({ "query": "coffee", "project": brand, "kinds": ["canvas"] }),
    );
    assert_eq!(ids(&canvases_in_brand), [coffee.as_str(), report.as_str()]);

    // A key limited to a project searches only that one; any other is "not found" to it.
    let output = daemon.cli(&[
        "keys",
        "create",
        "--name",
        "travel-only",
        "--scope",
        "read",
        "--project",
        &travel,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let limited = daemon.client(String::from_utf8(output.stdout).unwrap().trim());
    let seen = hits(&limited, json!({ "query": "coffee" }));
    let mut found = ids(&seen);
    found.sort();
    let mut expected = vec![ski.as_str(), beach.as_str()];
    expected.sort();
    assert_eq!(found, expected);
    assert_error(
        &search(&limited, json!({ "query": "coffee", "project": brand })),
        404,
        "not_found",
    );

    // `k` and `min_score`: a floor between the first and second scores keeps only the first.
    let ranked = hits(
        &reader,
        json!({ "query": "skiing trip in the snow", "k": 2 }),
    );
    assert_eq!(ranked.len(), 2);
    let (first, second) = (
        ranked[0]["score"].as_f64().unwrap(),
        ranked[1]["score"].as_f64().unwrap(),
    );
    let floor = (first + second) / 2.0;
    let above = hits(
        &reader,
        json!({ "query": "skiing trip in the snow", "min_score": floor }),
    );
    assert_eq!(ids(&above), [ski.as_str()]);
    assert!(hits(&reader, json!({ "query": "skiing", "min_score": 1.0 })).is_empty());

    // Bad requests, each with its code, before the model is asked anything.
    for (body, status, code) in [
        (json!({ "query": "x", "k": 0 }), 400, "invalid_k"),
        (json!({ "query": "x", "k": 101 }), 400, "invalid_k"),
        (json!({ "query": "x", "k": 1.5 }), 400, "invalid_k"),
        (json!({ "query": "  \n " }), 400, "empty_query"),
        (json!({ "query": "" }), 400, "empty_query"),
        (json!({ "query": "w".repeat(1001) }), 400, "query_too_long"),
        (json!({ "query": "x", "kinds": [] }), 400, "invalid_kinds"),
        (
            json!({ "query": "x", "min_score": -2 }),
            400,
            "invalid_min_score",
        ),
        (
            json!({ "query": "x", "project": "brand" }),
            400,
            "invalid_id",
        ),
        (
            json!({ "query": "x", "kinds": ["video"] }),
            422,
            "invalid_body",
        ),
        (json!({ "query": "x", "limit": 3 }), 422, "invalid_body"),
        (json!({ "k": 3 }), 422, "invalid_body"),
    ] {
        assert_error(&search(&reader, body.clone()), status, code);
    }
    let unknown = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    assert_error(
        &search(&reader, json!({ "query": "x", "project": unknown })),
        404,
        "not_found",
    );
    assert_error(
        &Client::anonymous(&daemon.url).post("/api/v1/search", &json!({ "query": "x" })),
        401,
        "missing_api_key",
    );

    // A changed canvas is found by its new words, not its old ones.
    let layer = json!({ "type": "text", "text": "Hiking and a campfire by the lake" });
    let reply = editor.put(
        &format!("/api/v1/canvases/{coffee}"),
        "\"1\"",
        &json!({ "title": "Team offsite agenda", "document": { "layers": [layer] } }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_indexed(&admin);
    let by_new_words = hits(&reader, json!({ "query": "camping trip with the team" }));
    assert_eq!(by_new_words[0]["id"], *coffee, "{by_new_words:?}");
    assert!(
        by_new_words[0]["snippet"]
            .as_str()
            .unwrap()
            .starts_with("Team offsite agenda · Hiking")
    );
    // No item is about coffee any more, so the canvas may still rank first, but far lower.
    let by_old_words = hits(&reader, json!({ "query": "a cup of coffee and pastries" }));
    let score_now = by_old_words
        .iter()
        .find(|hit| hit["id"] == *coffee)
        .and_then(|hit| hit["score"].as_f64())
        .unwrap();
    assert!(
        score_now < coffee_score / 2.0,
        "{score_now} then {coffee_score}"
    );

    // A deleted item is gone from the very next search.
    let reply = editor.delete(&format!("/api/v1/canvases/{report}"), "\"1\"");
    assert_eq!(reply.status, 204, "{}", reply.body);
    let after = hits(
        &reader,
        json!({ "query": "financial results for shareholders" }),
    );
    assert!(!ids(&after).contains(&report.as_str()), "{after:?}");
    assert_eq!(after.len(), 4);
    let reply = editor.delete(&format!("/api/v1/assets/{beach}"), "\"1\"");
    assert_eq!(reply.status, 204, "{}", reply.body);
    let status = wait_indexed(&admin);
    assert_eq!(
        (&status["indexed"], &status["in_memory"]),
        (&json!(3), &json!(3))
    );
    // Five embeddings at first, one more after the change; the deletions need none.
    assert_eq!(status["embedded_since_start"], 6, "{status}");
}

#[test]
fn reindex_recomputes_and_stored_vectors_survive_a_restart() {
    let mut daemon = search_daemon();
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let reader = daemon.client(&daemon.create_key("app", "read"));
    let project = admin.create_project("Brand");
    let lighthouse = create_canvas(
        &admin,
        &project,
        "Lighthouse at night",
        &["A beam of light over a stormy sea"],
    );
    create_canvas(
        &admin,
        &project,
        "Bakery flyer",
        &["Sourdough bread and cinnamon buns"],
    );
    upload_asset(&admin, &project, "mark.svg", "logo", "A round emblem");

    let status = wait_indexed(&admin);
    assert_eq!(
        (&status["indexed"], &status["embedded_since_start"]),
        (&json!(3), &json!(3))
    );

    // The admin route queues everything and answers at once; the indexer recomputes it all.
    let reply = admin.post("/api/v1/admin/search/reindex", &json!({}));
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({ "queued": 3, "canvases": 2, "assets": 1 })
    );
    let status = wait_indexed(&admin);
    assert_eq!(status["embedded_since_start"], 6, "{status}");
    assert_error(
        &reader.post("/api/v1/admin/search/reindex", &json!({})),
        403,
        "forbidden",
    );

    // The CLI, beside the running daemon: status, and a reindex the daemon picks up.
    let output = daemon.cli(&["search", "status"]);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("model     {MODEL} (revision ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("indexed   3\n") && stdout.contains("pending   0\n"),
        "{stdout}"
    );
    let output = daemon.cli(&["search", "reindex"]);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("queued 3 item(s)"), "{stdout}");
    let status = wait_indexed(&admin);
    assert_eq!(status["embedded_since_start"], 9, "{status}");

    let metrics = admin.get("/metrics").body;
    for line in ["nexus_search_vectors 3", "nexus_search_embedded_total 9"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    // A restart loads the stored vectors and recomputes nothing.
    assert!(daemon.terminate().success());
    daemon.spawn();
    let status = wait_indexed(&admin);
    assert_eq!(
        (
            &status["indexed"],
            &status["in_memory"],
            &status["embedded_since_start"]
        ),
        (&json!(3), &json!(3), &json!(0)),
        "{status}"
    );
    let found = hits(
        &reader,
        json!({ "query": "a lighthouse in a storm", "k": 1 }),
    );
    assert_eq!(found[0]["id"], *lighthouse);

    // A vector of another model revision counts as missing and is recomputed at start.
    assert!(daemon.terminate().success());
    let database = rusqlite::Connection::open(daemon.database()).unwrap();
    let changed = database
        .execute(
            "UPDATE search_vectors SET revision = 'an-older-revision' WHERE item_id = ?1",
            [&lighthouse],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(database);
    let output = daemon.cli(&["search", "status"]);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        stdout.contains("pending   1\n") && stdout.contains("stale     1\n"),
        "{stdout}"
    );

    daemon.spawn();
    let status = wait_indexed(&admin);
    assert_eq!(
        (
            &status["indexed"],
            &status["stale"],
            &status["embedded_since_start"]
        ),
        (&json!(3), &json!(0), &json!(1)),
        "{status}"
    );
    let found = hits(
        &reader,
        json!({ "query": "a lighthouse in a storm", "k": 1 }),
    );
    assert_eq!(found[0]["id"], *lighthouse);
}

#[test]
fn without_a_model_search_answers_404_or_503_and_bad_requests_still_400() {
    // Inference disabled (the harness's default).
    let daemon = Daemon::start();
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let reader = daemon.client(&daemon.create_key("app", "read"));
    let project = admin.create_project("Brand");
    create_canvas(&admin, &project, "Hero", &["Hello"]);

    // As `/v1/embeddings`: the feature does not exist on this server.
    assert_error(
        &search(&reader, json!({ "query": "hello" })),
        404,
        "inference_disabled",
    );
    assert_error(
        &search(&reader, json!({ "query": "x", "k": 0 })),
        400,
        "invalid_k",
    );
    let status = admin.get("/api/v1/admin/status").json()["search"].clone();
    assert_eq!(
        (&status["state"], &status["pending"]),
        (&json!("disabled"), &json!(1))
    );
    // A reindex is only bookkeeping: it is accepted, and waits for a model.
    let reply = admin.post("/api/v1/admin/search/reindex", &json!({}));
    assert_eq!(reply.status, 202, "{}", reply.body);

    // Inference on, but the model's files are missing: not ready, with a retry hint.
    let missing = daemon.dir.path().join("no-models");
    let mut broken = Daemon::prepare(&[
        ("NEXUS_INFERENCE__ENABLED", "true"),
        ("NEXUS_INFERENCE__DEVICE", "cpu"),
        ("NEXUS_INFERENCE__MODELS_DIR", missing.to_str().unwrap()),
    ]);
    broken.spawn_unready();
    let reader = broken.client(&broken.create_key("app", "read"));
    let reply = search(&reader, json!({ "query": "hello" }));
    assert_error(&reply, 503, "model_not_ready");
    assert_eq!(reply.header("Retry-After"), Some("5"));

    // The route is documented, with its error answers.
    let document = Client::anonymous(&daemon.url)
        .get("/api/v1/openapi.json")
        .json();
    let responses = &document["paths"]["/api/v1/search"]["post"]["responses"];
    for status in ["200", "400", "404", "422", "429", "503"] {
        assert!(responses[status].is_object(), "no {status} in {responses}");
    }
    let reindex = &document["paths"]["/api/v1/admin/search/reindex"]["post"]["responses"];
    assert!(reindex["202"].is_object(), "{reindex}");
}
