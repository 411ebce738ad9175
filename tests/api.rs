//! The canvas API over HTTP against the real binary: lifecycle, concurrency control, auth,
//! pagination under concurrent inserts, request ids, and the probes.

mod support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::{Client, Daemon};

fn new_project(client: &Client) -> String {
    let reply = client.post("/api/v1/projects", &json!({ "name": "Spring campaign" }));
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn canvas_lifecycle_with_revisions_and_optimistic_concurrency() {
    let daemon = Daemon::start();
    let client = daemon.client(&daemon.create_key("designer", "write"));
    let project = new_project(&client);

    // Create.
    let document = json!({ "layers": [{ "type": "text", "text": "Hello" }] });
    let created = client.post(
        &format!("/api/v1/projects/{project}/canvases"),
        &json!({ "title": "Hero banner", "document": document }),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("ETag"), Some("\"1\""));
    let canvas = created.json();
    let id = canvas["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.header("Location").unwrap(),
        format!("/api/v1/canvases/{id}")
    );
    assert_eq!(canvas["version"], 1);
    assert_eq!(canvas["document"], document);
    assert_eq!(canvas["project_id"], project.as_str());

    // Read it back.
    let fetched = client.get(&format!("/api/v1/canvases/{id}"));
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.header("ETag"), Some("\"1\""));
    assert_eq!(fetched.json()["document"], document);

    // Update with the ETag we read.
    let changed = json!({ "layers": [], "background": "#0b1f3a" });
    let updated = client.put(
        &format!("/api/v1/canvases/{id}"),
        "\"1\"",
        &json!({ "title": "Hero banner v2", "document": changed }),
    );
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.header("ETag"), Some("\"2\""));
    assert_eq!(updated.json()["version"], 2);
    assert_eq!(updated.json()["title"], "Hero banner v2");
    assert!(updated.json()["updated_at"].as_str() >= canvas["updated_at"].as_str());

    // A writer holding the old ETag is refused, and nothing changes.
    let stale = client.put(
        &format!("/api/v1/canvases/{id}"),
        "\"1\"",
        &json!({ "title": "lost update", "document": {} }),
    );
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert_eq!(stale.error_code(), "version_mismatch");
    let missing = client.send(
        "PUT",
        &format!("/api/v1/canvases/{id}"),
        &[],
        Some(br#"{"title": "no if-match", "document": {}}"#),
    );
    assert_eq!(missing.status, 428);
    assert_eq!(missing.error_code(), "precondition_required");
    assert_eq!(
        client.get(&format!("/api/v1/canvases/{id}")).json()["title"],
        "Hero banner v2"
    );

    // Every version is a revision.
    let revisions = client
        .get(&format!("/api/v1/canvases/{id}/revisions"))
        .json();
    let versions: Vec<i64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2]);
    assert_eq!(revisions["items"][0]["author"], "designer");
    let first = client.get(&format!("/api/v1/canvases/{id}/revisions/1"));
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["document"], document);
    assert_eq!(first.json()["title"], "Hero banner");
    assert_eq!(
        client
            .get(&format!("/api/v1/canvases/{id}/revisions/3"))
            .status,
        404
    );

    // The project lists it; it cannot be deleted while it holds canvases.
    let listed = client
        .get(&format!("/api/v1/projects/{project}/canvases"))
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(
        listed["items"][0].get("document").is_none(),
        "lists carry summaries only"
    );
    let busy = client.delete(&format!("/api/v1/projects/{project}"), "\"1\"");
    assert_eq!(busy.status, 409);

    // Delete needs the current version too.
    assert_eq!(
        client
            .delete(&format!("/api/v1/canvases/{id}"), "\"1\"")
            .status,
        412
    );
    assert_eq!(
        client
            .delete(&format!("/api/v1/canvases/{id}"), "\"2\"")
            .status,
        204
    );
    let gone = client.get(&format!("/api/v1/canvases/{id}"));
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code(), "not_found");
    assert_eq!(
        client
            .get(&format!("/api/v1/canvases/{id}/revisions/1"))
            .status,
        404
    );

    // Then the empty project can go.
    assert_eq!(
        client
            .delete(&format!("/api/v1/projects/{project}"), "\"1\"")
            .status,
        204
    );
    assert_eq!(
        client.get(&format!("/api/v1/projects/{project}")).status,
        404
    );
}

#[test]
fn projects_update_with_if_match() {
    let daemon = Daemon::start();
    let client = daemon.client(&daemon.create_key("pm", "write"));
    let project = new_project(&client);

    let renamed = client.put(
        &format!("/api/v1/projects/{project}"),
        "\"1\"",
        &json!({ "name": "Autumn", "description": "rebrand" }),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.json()["version"], 2);
    assert_eq!(renamed.json()["description"], "rebrand");
    let stale = client.put(
        &format!("/api/v1/projects/{project}"),
        "\"1\"",
        &json!({ "name": "x" }),
    );
    assert_eq!(stale.status, 412);
    assert_eq!(
        client.get(&format!("/api/v1/projects/{project}")).json()["name"],
        "Autumn"
    );
}

#[test]
fn keys_are_required_and_scopes_enforced() {
    let daemon = Daemon::start();
    let writer = daemon.client(&daemon.create_key("writer", "write"));
    let reader = daemon.client(&daemon.create_key("reader", "read"));
    let anonymous = Client::anonymous(&daemon.url);
    let project = new_project(&writer);

    // Probes need no key.
    assert_eq!(anonymous.get("/health").json(), json!({ "status": "ok" }));
    assert_eq!(anonymous.get("/ready").status, 200);

    let missing = anonymous.get("/api/v1/projects");
    assert_eq!(missing.status, 401);
    assert_eq!(missing.error_code(), "missing_api_key");
    assert_eq!(missing.header("WWW-Authenticate"), Some("Bearer"));

    let forged = daemon.client("nxc_not-a-real-key").get("/api/v1/projects");
    assert_eq!(forged.status, 401);
    assert_eq!(forged.error_code(), "invalid_api_key");
    let basic = anonymous.send(
        "GET",
        "/api/v1/projects",
        &[("Authorization", "Basic YTpi")],
        None,
    );
    assert_eq!(basic.status, 401);

    // A read key reads but does not write.
    assert_eq!(
        reader.get(&format!("/api/v1/projects/{project}")).status,
        200
    );
    let refused = reader.post("/api/v1/projects", &json!({ "name": "nope" }));
    assert_eq!(refused.status, 403);
    assert_eq!(refused.error_code(), "forbidden");
    assert_eq!(
        writer.get("/api/v1/projects").json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Admin routes need an admin key.
    assert_eq!(writer.get("/api/v1/admin/store/integrity").status, 403);
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let integrity = admin.get("/api/v1/admin/store/integrity");
    assert_eq!(integrity.status, 200, "{}", integrity.body);
    assert_eq!(integrity.json()["ok"], true);

    // A revoked key stops working at once.
    let revoked = daemon.cli(&["keys", "revoke", "reader"]);
    assert!(revoked.status.success());
    let after = reader.get("/api/v1/projects");
    assert_eq!(after.status, 401);
    assert!(
        after.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );

    // The access log names the key, never its secret.
    let logs = daemon.logs();
    assert!(
        logs.contains("\"key\":\"writer\""),
        "access log lacks key names"
    );
    assert!(!logs.contains("nxc_"), "a secret reached the log");
}

#[test]
fn expired_keys_are_refused() {
    let daemon = Daemon::start();
    let output = daemon.cli(&[
        "keys",
        "create",
        "--name",
        "old",
        "--scope",
        "read",
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    assert!(output.status.success());
    let key = String::from_utf8(output.stdout).unwrap();

    let reply = daemon.client(key.trim()).get("/api/v1/projects");
    assert_eq!(reply.status, 401);
    assert!(reply.body.contains("expired"), "{}", reply.body);
}

#[test]
fn pagination_has_no_gaps_or_duplicates_during_concurrent_inserts() {
    let daemon = Daemon::start();
    let client = daemon.client(&daemon.create_key("pager", "write"));
    let project = new_project(&client);
    let canvases = format!("/api/v1/projects/{project}/canvases");

    let create = |client: &Client, n: usize| {
        let reply = client.post(
            &canvases,
            &json!({ "title": format!("c{n}"), "document": {} }),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()["id"].as_str().unwrap().to_string()
    };
    let before: Vec<String> = (0..45).map(|n| create(&client, n)).collect();

    // Insert more while another client pages through with a small page size.
    let inserted = std::thread::scope(|scope| {
        let inserter = scope.spawn(|| {
            (45..90)
                .map(|n| create(&client.clone(), n))
                .collect::<Vec<_>>()
        });

        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(cursor) => format!("{canvases}?limit=7&cursor={cursor}"),
                None => format!("{canvases}?limit=7"),
            };
            let page = client.get(&path);
            assert_eq!(page.status, 200, "{}", page.body);
            let page = page.json();
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 7);
            seen.extend(
                items
                    .iter()
                    .map(|item| item["id"].as_str().unwrap().to_string()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        (inserter.join().unwrap(), seen)
    });
    let (inserted, seen) = inserted;

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row appeared twice");
    assert_eq!(
        &seen[..before.len()],
        &before[..],
        "rows that existed must come first, in order"
    );
    // Rows inserted during paging may or may not be seen, but only in insertion order.
    let late: Vec<&String> = seen[before.len()..].iter().collect();
    let expected: Vec<&String> = inserted.iter().take(late.len()).collect();
    assert_eq!(late, expected);

    // Paging again after the inserts sees everything exactly once.
    let mut all = Vec::new();
    let mut path = format!("{canvases}?limit=200");
    loop {
        let page = client.get(&path).json();
        all.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("{canvases}?limit=200&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(all, before.into_iter().chain(inserted).collect::<Vec<_>>());
}

#[test]
fn request_ids_are_echoed_and_sane() {
    let daemon = Daemon::start();
    let client = Client::anonymous(&daemon.url);

    let kept = client.send("GET", "/health", &[("X-Request-Id", "trace-42.a:b")], None);
    assert_eq!(kept.header("X-Request-Id"), Some("trace-42.a:b"));

    let made = client.get("/health");
    let id = made.header("X-Request-Id").unwrap();
    assert!(id.len() >= 16, "{id}");

    let error = client.get("/api/v1/projects");
    assert_eq!(
        error.json()["error"]["request_id"],
        error.header("X-Request-Id").unwrap()
    );

    // The error's request id ties it to its access log line.
    let logs = daemon.logs();
    let line = logs
        .lines()
        .find(|line| line.contains(error.header("X-Request-Id").unwrap()))
        .expect("access log line with the request id");
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["status"], 401);
    assert_eq!(line["method"], "GET");
}

#[test]
fn info_reports_build_and_schema() {
    let daemon = Daemon::start();
    let client = daemon.client(&daemon.create_key("viewer", "read"));

    let info = client.get("/api/v1/info");
    assert_eq!(info.status, 200, "{}", info.body);
    let info = info.json();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        info["schema_version"],
        nexus_canvasd::store::migrations::latest_version()
    );
    assert!(info["uptime_seconds"].is_u64());
    assert!(!info["git_revision"].as_str().unwrap().is_empty());
}

#[test]
fn healthcheck_command_follows_the_daemon() {
    let mut daemon = Daemon::start();
    assert!(daemon.cli(&["healthcheck"]).status.success());

    let status = daemon.terminate();
    assert!(
        status.success(),
        "SIGTERM should end the daemon cleanly: {status}"
    );
    let probe = daemon.cli(&["healthcheck", "--timeout-secs", "1"]);
    assert_eq!(probe.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&probe.stderr).contains("unhealthy"));

    // A clean stop checkpoints the WAL into the database file.
    let wal = daemon.database().with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() == 0)
            .unwrap_or(true),
        "WAL left behind"
    );
    assert!(daemon.logs().contains("stopped"));
}

/// A one-pixel GIF whose single colour is `grey`, so that two calls give different bytes.
fn gif(grey: u8) -> Vec<u8> {
    let mut bytes = b"GIF89a\x01\x00\x01\x00\x80\x00\x00".to_vec();
    bytes.extend([grey, grey, grey, 0xff, 0xff, 0xff]);
    bytes.extend(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b");
    bytes
}

#[test]
fn a_key_limited_to_projects_sees_nothing_of_the_others() {
    let daemon = Daemon::start();
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let (mine, theirs) = (new_project(&admin), new_project(&admin));
    let mut canvases = Vec::new();
    let mut assets = Vec::new();
    for (project, grey) in [(&mine, 0x10), (&theirs, 0x20)] {
        let canvas = admin.post(
            &format!("/api/v1/projects/{project}/canvases"),
            &json!({ "title": "Hero", "document": {} }),
        );
        assert_eq!(canvas.status, 201, "{}", canvas.body);
        canvases.push(canvas.json()["id"].as_str().unwrap().to_string());

        let asset = admin.send(
            "POST",
            &format!("/api/v1/projects/{project}/assets?filename=dot.gif"),
            &[("Content-Type", "image/gif")],
            Some(&gif(grey)),
        );
        assert_eq!(asset.status, 201, "{}", asset.body);
        assets.push(asset.json());
    }

    // Keys are limited when created, to projects that exist, and never admin keys.
    let unknown = daemon.cli(&["keys", "create", "--name", "x", "--project", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--project nope: no such project"));
    let admin_limited = daemon.cli(&[
        "keys",
        "create",
        "--name",
        "y",
        "--scope",
        "admin",
        "--project",
        &mine,
    ]);
    assert!(!admin_limited.status.success());
    let created = daemon.cli(&[
        "keys",
        "create",
        "--name",
        "agency",
        "--scope",
        "write",
        "--project",
        &mine,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let limited = daemon.client(String::from_utf8(created.stdout).unwrap().trim());
    let listed = String::from_utf8(daemon.cli(&["keys", "list"]).stdout).unwrap();
    let agency = listed
        .lines()
        .find(|line| line.starts_with("agency"))
        .unwrap();
    assert!(agency.ends_with(mine.as_str()), "{agency}");

    // Its own project works as for any key.
    let projects = limited.get("/api/v1/projects").json();
    let ids: Vec<&str> = projects["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|project| project["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    assert_eq!(
        limited
            .get(&format!("/api/v1/canvases/{}", canvases[0]))
            .status,
        200
    );
    let edited = limited.put(
        &format!("/api/v1/canvases/{}", canvases[0]),
        "*",
        &json!({ "title": "Mine", "document": {} }),
    );
    assert_eq!(edited.status, 200, "{}", edited.body);
    let blob = format!("/api/v1/blobs/{}", assets[0]["sha256"].as_str().unwrap());
    assert_eq!(limited.get(&blob).status, 200);

    // Everything of the other project answers as if it did not exist, and stays unchanged.
    let (canvas, asset) = (&canvases[1], assets[1]["id"].as_str().unwrap());
    let blob = format!("/api/v1/blobs/{}", assets[1]["sha256"].as_str().unwrap());
    let changed = json!({ "title": "Theirs", "document": {} });
    let refused = [
        limited.get(&format!("/api/v1/projects/{theirs}")),
        limited.put(
            &format!("/api/v1/projects/{theirs}"),
            "*",
            &json!({ "name": "x" }),
        ),
        limited.delete(&format!("/api/v1/projects/{theirs}"), "*"),
        limited.get(&format!("/api/v1/projects/{theirs}/canvases")),
        limited.post(&format!("/api/v1/projects/{theirs}/canvases"), &changed),
        limited.get(&format!("/api/v1/canvases/{canvas}")),
        limited.put(&format!("/api/v1/canvases/{canvas}"), "*", &changed),
        limited.delete(&format!("/api/v1/canvases/{canvas}"), "*"),
        limited.get(&format!("/api/v1/canvases/{canvas}/revisions")),
        limited.get(&format!("/api/v1/canvases/{canvas}/revisions/1")),
        limited.get(&format!("/api/v1/projects/{theirs}/assets")),
        limited.send(
            "POST",
            &format!("/api/v1/projects/{theirs}/assets?filename=dot.gif"),
            &[("Content-Type", "image/gif")],
            Some(&gif(0x30)),
        ),
        limited.get(&format!("/api/v1/assets/{asset}")),
        limited.get(&format!("/api/v1/assets/{asset}/content")),
        limited.get(&format!("/api/v1/assets/{asset}/thumbnails/256")),
        limited.delete(&format!("/api/v1/assets/{asset}"), "*"),
        limited.get(&blob),
    ];
    for reply in refused {
        assert_eq!(reply.status, 404, "{}", reply.body);
        assert_eq!(reply.error_code(), "not_found", "{}", reply.body);
    }
    assert_eq!(
        admin.get(&format!("/api/v1/canvases/{canvas}")).json()["title"],
        "Hero"
    );
    assert_eq!(admin.get(&format!("/api/v1/assets/{asset}")).status, 200);
    assert_eq!(admin.get(&blob).status, 200);

    // It cannot make a project that would fall outside its list.
    let create = limited.post("/api/v1/projects", &json!({ "name": "new" }));
    assert_eq!(create.status, 403);
    assert_eq!(create.error_code(), "key_limited_to_projects");

    // A rotated key keeps its limits.
    let rotated = daemon.cli(&["keys", "rotate", "agency"]);
    assert!(rotated.status.success());
    let successor = daemon.client(String::from_utf8(rotated.stdout).unwrap().trim());
    assert_eq!(
        successor.get(&format!("/api/v1/canvases/{canvas}")).status,
        404
    );
    assert_eq!(
        successor
            .get(&format!("/api/v1/canvases/{}", canvases[0]))
            .status,
        200
    );
}
