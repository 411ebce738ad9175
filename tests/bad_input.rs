//! Hostile and malformed requests: each gets a JSON error with a stable code and the request
//! id, and none changes any state.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{Value, json};
use support::{Client, Daemon, Reply};

/// A daemon with a small body limit, a project and a canvas to attack.
struct Target {
    daemon: Daemon,
    client: Client,
    project: String,
    canvas: String,
}

fn target() -> Target {
    let daemon = Daemon::start_with(&[
        ("NEXUS_LIMITS__JSON_BODY_BYTES", "4096"),
        ("NEXUS_STORE__BUSY_TIMEOUT_MS", "300"),
    ]);
    let client = daemon.client(&daemon.create_key("fuzzer", "write"));
    let project = client
        .post("/api/v1/projects", &json!({ "name": "p" }))
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let canvas = client
        .post(
            &format!("/api/v1/projects/{project}/canvases"),
            &json!({ "title": "t", "document": { "a": 1 } }),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    Target {
        daemon,
        client,
        project,
        canvas,
    }
}

impl Target {
    /// Everything a client can observe of the state, to compare before and after.
    fn snapshot(&self) -> Value {
        let canvases = format!("/api/v1/projects/{}/canvases", self.project);
        json!({
            "projects": self.client.get("/api/v1/projects").json(),
            "canvases": self.client.get(&canvases).json(),
            "canvas": self.client.get(&format!("/api/v1/canvases/{}", self.canvas)).json(),
        })
    }

    fn create_canvas_raw(&self, body: &[u8], content_type: &str) -> Reply {
        self.client.send(
            "POST",
            &format!("/api/v1/projects/{}/canvases", self.project),
            &[("Content-Type", content_type)],
            Some(body),
        )
    }
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(
        body["error"]["request_id"],
        reply.header("X-Request-Id").unwrap()
    );
}

#[test]
fn malformed_bodies_are_refused_without_side_effects() {
    let target = target();
    let before = target.snapshot();
    let json = "application/json";

    assert_error(
        &target.create_canvas_raw(b"{\"title\": \"x\", ", json),
        400,
        "malformed_json",
    );
    assert_error(&target.create_canvas_raw(b"", json), 400, "malformed_json");
    assert_error(
        &target.create_canvas_raw(b"[1, 2, 3]", json),
        422,
        "invalid_body",
    );
    assert_error(
        &target.create_canvas_raw(br#"{"title": 5, "document": {}}"#, json),
        422,
        "invalid_body",
    );
    assert_error(
        &target.create_canvas_raw(br#"{"title": "t", "document": [1]}"#, json),
        422,
        "invalid_body",
    );
    assert_error(
        &target.create_canvas_raw(br#"{"title": "t", "document": {}, "extra": 1}"#, json),
        422,
        "invalid_body",
    );
    assert_error(
        &target.create_canvas_raw(br#"{"title": "   ", "document": {}}"#, json),
        422,
        "invalid_field",
    );
    assert_error(
        &target.create_canvas_raw(b"{\"title\": \"\xff\xfe\", \"document\": {}}", json),
        400,
        "invalid_utf8",
    );
    assert_error(
        &target.create_canvas_raw(b"title=x", "text/plain"),
        415,
        "unsupported_media_type",
    );

    let huge = json!({ "title": "big", "document": { "blob": "x".repeat(8192) } }).to_string();
    assert_error(
        &target.create_canvas_raw(huge.as_bytes(), json),
        413,
        "payload_too_large",
    );

    // The same against an update, which also must not bump the version.
    let update = |body: &[u8]| {
        target.client.send(
            "PUT",
            &format!("/api/v1/canvases/{}", target.canvas),
            &[("If-Match", "\"1\"")],
            Some(body),
        )
    };
    assert_error(&update(b"{nope"), 400, "malformed_json");
    assert_error(&update(huge.as_bytes()), 413, "payload_too_large");
    assert_error(&update(br#"{"title": "t"}"#), 422, "invalid_body");

    assert_eq!(target.snapshot(), before, "a refused request changed state");
}

#[test]
fn routes_methods_and_ids() {
    let target = target();
    let before = target.snapshot();
    let client = &target.client;

    assert_error(&client.get("/no/such/route"), 404, "not_found");
    assert_error(&client.get("/api/v1/canvases/not-an-id"), 400, "invalid_id");
    assert_error(
        &client.get("/api/v1/canvases/1%20OR%201=1"),
        400,
        "invalid_id",
    );
    assert_error(
        &client.get("/api/v1/projects/..%2F..%2Fetc%2Fpasswd"),
        400,
        "invalid_id",
    );
    assert_error(
        &client.get(&format!(
            "/api/v1/canvases/{}/revisions/zero",
            target.canvas
        )),
        400,
        "invalid_version",
    );
    assert_error(
        &client.get("/api/v1/projects?limit=0"),
        400,
        "invalid_limit",
    );
    assert_error(
        &client.get("/api/v1/projects?limit=abc"),
        400,
        "invalid_limit",
    );
    assert_error(
        &client.get("/api/v1/projects?cursor=forged"),
        400,
        "invalid_cursor",
    );
    // A repeated parameter is refused, not read as absent (which restarted a listing).
    assert_error(
        &client.get("/api/v1/projects?limit=0&limit=0"),
        400,
        "repeated_parameter",
    );
    assert_error(
        &client.get(&format!(
            "/api/v1/canvases/{}/revisions?cursor=a&cursor=b",
            target.canvas
        )),
        400,
        "repeated_parameter",
    );
    // A valid id that does not exist is a plain 404.
    assert_error(
        &client.get("/api/v1/canvases/00000000-0000-4000-8000-000000000000"),
        404,
        "not_found",
    );

    let wrong_method = client.send(
        "PATCH",
        &format!("/api/v1/canvases/{}", target.canvas),
        &[],
        None,
    );
    assert_error(&wrong_method, 405, "method_not_allowed");
    assert_eq!(wrong_method.header("Allow"), Some("DELETE, GET, HEAD, PUT"));
    assert_error(
        &client.send("POST", "/health", &[], Some(b"{}")),
        405,
        "method_not_allowed",
    );

    let bad_if_match = client.send(
        "DELETE",
        &format!("/api/v1/canvases/{}", target.canvas),
        &[("If-Match", "W/\"1\"")],
        None,
    );
    assert_error(&bad_if_match, 400, "invalid_if_match");

    assert_eq!(target.snapshot(), before);
}

#[test]
fn hostile_request_ids_are_replaced() {
    let target = target();
    let client = Client::anonymous(&target.daemon.url);

    let huge = "a".repeat(10_000);
    for hostile in [huge.as_str(), "<script>alert(1)</script>", "id with spaces"] {
        let reply = client.send(
            "GET",
            "/api/v1/projects",
            &[("X-Request-Id", hostile)],
            None,
        );
        assert_error(&reply, 401, "missing_api_key");
        let id = reply.header("X-Request-Id").unwrap();
        assert_ne!(id, hostile);
        assert!(
            id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{id}"
        );
    }

    // A header with a raw newline cannot be sent through a well-behaved client; write it.
    let mut stream = TcpStream::connect(("127.0.0.1", target.daemon.port)).unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\rINJECTED: 1\r\n\
                    Connection: close\r\n\r\n";
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap_or_default();
    assert!(!answer.contains("injected"), "{answer}");
    assert!(
        !target.daemon.logs().contains("INJECTED"),
        "the header reached the log"
    );
}

#[test]
fn a_store_fault_answers_without_leaking_details() {
    let target = target();
    let database = target.daemon.database();
    let connection = rusqlite::Connection::open(&database).unwrap();
    // Hold the write lock so the daemon's writer times out with SQLITE_BUSY. Taking it waits
    // out a write the daemon may still be making in the background (the key's last use).
    connection
        .execute_batch("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE;")
        .unwrap();

    let reply = target
        .client
        .post("/api/v1/projects", &json!({ "name": "blocked" }));
    connection.execute_batch("ROLLBACK;").unwrap();

    assert_error(&reply, 503, "store_busy");
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert!(!reply.body.contains("sqlite"), "{}", reply.body);
    // Once the lock is gone, the same request succeeds.
    assert_eq!(
        target
            .client
            .post("/api/v1/projects", &json!({ "name": "ok" }))
            .status,
        201
    );
}
