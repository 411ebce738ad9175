//! The edge of the API end to end: security headers on every kind of answer, rate limits per
//! key and per client address (with and without a trusted proxy), and CORS.

mod support;

use serde_json::json;
use support::{Client, Daemon, Reply};

const ORIGIN: &str = "https://app.example.com";

fn assert_security_headers(reply: &Reply, what: &str) {
    for (name, value) in [
        ("content-security-policy", "default-src 'none'"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("permissions-policy", "camera=()"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        let found = reply
            .header(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"));
        assert!(found.contains(value), "{what}: {name} is {found}");
    }
}

#[test]
fn every_kind_of_answer_carries_the_security_headers() {
    let daemon = Daemon::start();
    let app = daemon.client(&daemon.create_key("app", "write"));
    let anonymous = Client::anonymous(&daemon.url);

    assert_security_headers(&anonymous.get("/health"), "health");
    assert_security_headers(&anonymous.get("/api/v1/openapi.json"), "openapi");
    assert_security_headers(&app.get("/api/v1/projects"), "a read");
    assert_security_headers(
        &app.post("/api/v1/projects", &json!({ "name": "p" })),
        "a write",
    );
    assert_security_headers(&anonymous.get("/api/v1/projects"), "a 401");
    assert_security_headers(&app.get("/no/such/route"), "a 404");
    assert_security_headers(&app.send("PATCH", "/api/v1/projects", &[], None), "a 405");
    let embeddings = app.post("/v1/embeddings", &json!({ "model": "m", "input": "x" }));
    assert_security_headers(&embeddings, "inference");
}

#[test]
fn a_key_gets_its_burst_then_429_with_retry_after() {
    let daemon = Daemon::start_with(&[
        ("NEXUS_RATE_LIMITS__ENABLED", "true"),
        // One token every 1000 s: nothing refills during the test.
        ("NEXUS_RATE_LIMITS__READ__PER_SECOND", "0.001"),
        ("NEXUS_RATE_LIMITS__READ__BURST", "3"),
    ]);
    let app = daemon.client(&daemon.create_key("app", "write"));
    let other = daemon.client(&daemon.create_key("other", "read"));

    for remaining in ["2", "1", "0"] {
        let reply = app.get("/api/v1/projects");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("ratelimit-remaining"), Some(remaining));
    }
    let refused = app.get("/api/v1/projects");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.error_code(), "rate_limited");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((990..=1000).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert_eq!(
        refused.header("ratelimit-reset"),
        Some(retry_after.to_string().as_str())
    );
    assert_security_headers(&refused, "a 429");

    // Writes have their own bucket, and so does every other key.
    assert_eq!(
        app.post("/api/v1/projects", &json!({ "name": "p" })).status,
        201
    );
    assert_eq!(other.get("/api/v1/projects").status, 200);
}

#[test]
fn an_address_is_limited_before_its_keys_are_checked_and_cannot_spoof_its_way_out() {
    let daemon = Daemon::start_with(&[
        ("NEXUS_RATE_LIMITS__ENABLED", "true"),
        ("NEXUS_RATE_LIMITS__ADDRESS__PER_SECOND", "0.001"),
        ("NEXUS_RATE_LIMITS__ADDRESS__BURST", "2"),
    ]);
    let stranger = daemon.client("nc_wrong_key");

    assert_eq!(stranger.get("/api/v1/projects").status, 401);
    let spoofed = [("X-Forwarded-For", "203.0.113.7")];
    assert_eq!(
        stranger
            .send("GET", "/api/v1/projects", &spoofed, None)
            .status,
        401
    );
    // The third request from this address is refused, whatever it claims to come from.
    let reply = stranger.send(
        "GET",
        "/api/v1/projects",
        &[("X-Forwarded-For", "203.0.113.8")],
        None,
    );
    assert_eq!(reply.status, 429);
    assert_eq!(reply.error_code(), "rate_limited");
    // Probes are never limited.
    assert_eq!(stranger.get("/health").status, 200);
}

#[test]
fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let daemon = Daemon::start_with(&[
        ("NEXUS_RATE_LIMITS__ENABLED", "true"),
        ("NEXUS_RATE_LIMITS__ADDRESS__PER_SECOND", "0.001"),
        ("NEXUS_RATE_LIMITS__ADDRESS__BURST", "1"),
        ("NEXUS_RATE_LIMITS__TRUSTED_PROXIES", r#"["127.0.0.1"]"#),
    ]);
    let app = daemon.client(&daemon.create_key("app", "read"));
    let from = |client: &str| {
        // What a client wrote itself comes first; the proxy appends the address it saw.
        let forwarded = format!("198.51.100.99, {client}");
        app.send(
            "GET",
            "/api/v1/projects",
            &[("X-Forwarded-For", &forwarded)],
            None,
        )
        .status
    };
    assert_eq!(from("192.0.2.1"), 200);
    assert_eq!(from("192.0.2.2"), 200);
    assert_eq!(from("192.0.2.1"), 429);
}

#[test]
fn cors_answers_allowed_origins_only() {
    let origins = format!(r#"["{ORIGIN}"]"#);
    let daemon = Daemon::start_with(&[("NEXUS_CORS__ALLOWED_ORIGINS", &origins)]);
    let app = daemon.client(&daemon.create_key("app", "write"));
    let anonymous = Client::anonymous(&daemon.url);
    let preflight = |origin: &str| {
        anonymous.send(
            "OPTIONS",
            "/api/v1/projects",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            None,
        )
    };

    let allowed = preflight(ORIGIN);
    assert_eq!(allowed.status, 204);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(
        allowed
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let headers = allowed.header("access-control-allow-headers").unwrap();
    assert!(
        headers.contains("Authorization") && headers.contains("If-Match"),
        "{headers}"
    );
    assert_eq!(allowed.header("access-control-max-age"), Some("600"));
    assert!(allowed.header("vary").unwrap().contains("Origin"));
    assert_eq!(allowed.header("access-control-allow-credentials"), None);

    let refused = preflight("https://evil.example.net");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.error_code(), "cors_origin_refused");
    assert_eq!(refused.header("access-control-allow-origin"), None);

    let actual = app.send("GET", "/api/v1/projects", &[("Origin", ORIGIN)], None);
    assert_eq!(actual.status, 200);
    assert_eq!(actual.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(
        actual
            .header("access-control-expose-headers")
            .unwrap()
            .contains("ETag")
    );
    assert!(actual.header("vary").unwrap().contains("Origin"));
    let foreign = app.send(
        "GET",
        "/api/v1/projects",
        &[("Origin", "https://evil.example.net")],
        None,
    );
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    assert!(foreign.header("vary").unwrap().contains("Origin"));
}
