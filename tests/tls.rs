//! The listener front end to end: real TLS handshakes (`curl` against certificates made with
//! the `openssl` CLI), `https_only` redirects and refusals, HSTS, certificates swapped while
//! serving, the real client address behind the front, and the connection limits and deadlines
//! that protect it from slow and greedy clients.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::Daemon;

/// A certificate authority and the server certificates it issued, in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Nexus test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        std::fs::write(
            pki.path("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// Issues `<name>.pem` (subject CN=<name>) and `<name>.key`, signed by the CA.
    fn issue(&self, name: &str) {
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        let serial = format!("{}", std::process::id() as u64 * 1000 + name.len() as u64);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            &cert,
        ]);
    }

    /// Makes `cert.pem` and `key.pem`, the files the daemon serves, copies of these.
    fn install(&self, cert: &str, key: &str) {
        // The key first: a watcher that looks in between sees a mismatch and waits for the
        // certificate, never a new certificate with the old key.
        std::fs::copy(self.path(key), self.path("key.pem")).unwrap();
        std::fs::copy(self.path(cert), self.path("cert.pem")).unwrap();
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A daemon with TLS on, serving `cert.pem`/`key.pem` of `pki` (CN=first to begin with).
struct TlsDaemon {
    daemon: Daemon,
    tls_port: u16,
    pki: Pki,
}

impl TlsDaemon {
    fn start(env: &[(&str, &str)]) -> TlsDaemon {
        let pki = Pki::new();
        pki.issue("first");
        pki.install("first.pem", "first.key");
        let tls_port = support::free_port();

        let (cert, key, port) = (
            pki.path("cert.pem"),
            pki.path("key.pem"),
            tls_port.to_string(),
        );
        let mut all = vec![
            ("NEXUS_TLS__ENABLED", "true"),
            ("NEXUS_TLS__PORT", port.as_str()),
            ("NEXUS_TLS__CERT_PATH", cert.to_str().unwrap()),
            ("NEXUS_TLS__KEY_PATH", key.to_str().unwrap()),
            ("NEXUS_TLS__RELOAD_CHECK_SECS", "1"),
        ];
        all.extend_from_slice(env);
        TlsDaemon {
            daemon: Daemon::start_with(&all),
            tls_port,
            pki,
        }
    }

    fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.tls_port)
    }

    fn http_url(&self, path: &str) -> String {
        format!("{}{path}", self.daemon.url)
    }

    /// `curl` over HTTPS, trusting the test CA, `localhost` resolved to loopback.
    fn https(&self, path: &str, args: &[&str]) -> Curl {
        let resolve = format!("localhost:{}:127.0.0.1", self.tls_port);
        let ca = self.pki.ca();
        let mut all = vec!["--cacert", ca.to_str().unwrap(), "--resolve", &resolve];
        all.extend_from_slice(args);
        curl(&self.https_url(path), &all)
    }

    fn http(&self, path: &str, args: &[&str]) -> Curl {
        curl(&self.http_url(path), args)
    }

    /// One series of `/metrics`, read with an admin key over HTTPS.
    fn metric(&self, key: &str, series: &str) -> f64 {
        let reply = self.https("/metrics", &["-H", &format!("Authorization: Bearer {key}")]);
        assert_eq!(reply.status, Some(200), "{}", reply.stderr);
        reply
            .body
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{}", reply.body))
            .parse()
            .unwrap()
    }

    /// Waits until `series` reaches `at_least`.
    fn wait_for_metric(&self, key: &str, series: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.metric(key, series) < at_least {
            assert!(
                Instant::now() < deadline,
                "{series} stayed below {at_least}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The subject of the certificate the HTTPS listener presents.
    fn subject(&self) -> String {
        let reply = self.https("/health", &[]);
        assert_eq!(reply.status, Some(200), "{}", reply.stderr);
        reply
            .stderr
            .lines()
            .find_map(|line| line.split_once("subject: ").map(|(_, subject)| subject))
            .unwrap_or_else(|| panic!("no subject in\n{}", reply.stderr))
            .trim()
            .to_string()
    }
}

/// What `curl -i -v` reported.
#[derive(Debug)]
struct Curl {
    /// None when no HTTP answer came (a failed handshake, a closed connection).
    status: Option<u16>,
    headers: Vec<(String, String)>,
    body: String,
    stderr: String,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

fn curl(url: &str, args: &[&str]) -> Curl {
    let output: Output = Command::new("curl")
        .args(["-s", "-S", "-i", "-v", "--max-time", "15"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let (head, body) = stdout.split_once("\r\n\r\n").unwrap_or((&stdout, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Curl {
        status,
        headers,
        body: body.to_string(),
        stderr,
    }
}

#[test]
fn https_serves_the_api_with_a_verified_certificate() {
    let tls = TlsDaemon::start(&[]);
    let key = tls.daemon.create_key("app", "admin");
    let auth = format!("Authorization: Bearer {key}");

    let health = tls.https("/health", &[]);
    assert_eq!(health.status, Some(200), "{}", health.stderr);
    assert!(
        health.stderr.contains("ALPN: server accepted http/1.1"),
        "{}",
        health.stderr
    );
    assert_eq!(tls.subject(), "CN=first");

    let created = tls.https(
        "/api/v1/projects",
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"name":"over tls"}"#,
        ],
    );
    assert_eq!(created.status, Some(201), "{}", created.body);
    // Both listeners serve the same API; without https_only, plain HTTP works too.
    let listed = tls.http("/api/v1/projects", &["-H", &auth]);
    assert_eq!(listed.status, Some(200));
    assert_eq!(listed.json()["items"][0]["name"], "over tls");
    // No HSTS unless https_only is on: a plain listener that still serves must not be pinned.
    assert_eq!(created.header("strict-transport-security"), None);

    let logs = tls.daemon.logs();
    let listening = format!("\"https\":\"127.0.0.1:{}\"", tls.tls_port);
    assert!(logs.contains(&listening), "{logs}");
    assert!(logs.contains("\"tls\":true"), "{logs}");
}

#[test]
fn only_tls_1_2_and_1_3_are_spoken() {
    let tls = TlsDaemon::start(&[]);
    let key = tls.daemon.create_key("ops", "admin");

    let v13 = tls.https("/health", &["--tlsv1.3"]);
    assert_eq!(v13.status, Some(200), "{}", v13.stderr);
    assert!(v13.stderr.contains("TLSv1.3"), "{}", v13.stderr);
    let v12 = tls.https("/health", &["--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(v12.status, Some(200), "{}", v12.stderr);
    assert!(v12.stderr.contains("TLSv1.2"), "{}", v12.stderr);

    // OpenSSL's security level 0 lets the client offer TLS 1.1 at all, so that the refusal
    // seen is the server's.
    let v11 = tls.https(
        "/health",
        &[
            "--tlsv1.1",
            "--tls-max",
            "1.1",
            "--ciphers",
            "DEFAULT@SECLEVEL=0",
        ],
    );
    assert_eq!(v11.status, None, "TLS 1.1 was served: {}", v11.stderr);
    let refused = "nexus_tls_handshake_failures_total{reason=\"refused\"}";
    tls.wait_for_metric(&key, refused, 1.0);
}

#[test]
fn https_only_redirects_pages_and_refuses_the_api_on_plain_http() {
    let tls = TlsDaemon::start(&[
        ("NEXUS_TLS__HTTPS_ONLY", "true"),
        ("NEXUS_TLS__HSTS_MAX_AGE_SECS", "600"),
    ]);
    let key = tls.daemon.create_key("app", "admin");
    let auth = format!("Authorization: Bearer {key}");
    let json = "Content-Type: application/json";

    // The API: 426 in the one error shape, and the handler never runs.
    let refused = tls.http(
        "/api/v1/projects",
        &["-H", &auth, "-H", json, "-d", r#"{"name":"in clear"}"#],
    );
    assert_eq!(refused.status, Some(426), "{}", refused.body);
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "https_required");
    assert_eq!(
        error["request_id"].as_str(),
        refused.header("x-request-id"),
        "{}",
        refused.body
    );
    let url = format!("https://127.0.0.1:{}/api/v1/projects", tls.tls_port);
    assert!(error["message"].as_str().unwrap().contains(&url), "{error}");
    assert!(refused.header("upgrade").unwrap().contains("TLS/1.2"));
    assert!(refused.header("content-security-policy").is_some());
    let listed = tls.https("/api/v1/projects", &["-H", &auth]);
    assert_eq!(listed.json()["items"], serde_json::json!([]));
    let embeddings = tls.http("/v1/embeddings", &["-H", &auth, "-H", json, "-d", "{}"]);
    assert_eq!(embeddings.status, Some(426));

    // Pages: a permanent redirect that keeps the method, path and query.
    let page = tls.http("/metrics?x=1", &[]);
    assert_eq!(page.status, Some(308));
    let location = format!("https://127.0.0.1:{}/metrics?x=1", tls.tls_port);
    assert_eq!(page.header("location"), Some(location.as_str()));
    let named = tls.http("/", &["-H", "Host: canvas.example.com:8000"]);
    let location = format!("https://canvas.example.com:{}/", tls.tls_port);
    assert_eq!(named.header("location"), Some(location.as_str()));

    // Probes stay plain, and plain answers never carry HSTS.
    for probe in ["/health", "/ready"] {
        let reply = tls.http(probe, &[]);
        assert_eq!(reply.status, Some(200), "{probe}");
        assert_eq!(reply.header("strict-transport-security"), None, "{probe}");
    }
    assert_eq!(page.header("strict-transport-security"), None);
}

#[test]
fn every_answer_over_tls_carries_hsts_when_https_only() {
    let tls = TlsDaemon::start(&[
        ("NEXUS_TLS__HTTPS_ONLY", "true"),
        ("NEXUS_TLS__HSTS_MAX_AGE_SECS", "600"),
    ]);
    let key = tls.daemon.create_key("app", "write");
    let auth = format!("Authorization: Bearer {key}");

    for (what, reply, status) in [
        ("health", tls.https("/health", &[]), 200),
        ("a read", tls.https("/api/v1/projects", &["-H", &auth]), 200),
        ("a 401", tls.https("/api/v1/projects", &[]), 401),
        ("a 404", tls.https("/no/such/route", &[]), 404),
        (
            "a 405",
            tls.https("/api/v1/projects", &["-X", "PATCH", "-H", &auth]),
            405,
        ),
        (
            "a 400",
            tls.https(
                "/api/v1/projects",
                &[
                    "-H",
                    &auth,
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    "{",
                ],
            ),
            400,
        ),
    ] {
        assert_eq!(reply.status, Some(status), "{what}: {}", reply.body);
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=600; includeSubDomains"),
            "{what}"
        );
    }
}

#[test]
fn a_new_certificate_is_served_without_a_restart_and_a_bad_one_is_refused() {
    let tls = TlsDaemon::start(&[]);
    let key = tls.daemon.create_key("ops", "admin");
    tls.pki.issue("second");
    tls.pki.issue("third");
    assert_eq!(tls.subject(), "CN=first");

    tls.pki.install("second.pem", "second.key");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tls.subject() != "CN=second" {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A certificate whose key is another's: refused, the working pair stays.
    tls.pki.install("third.pem", "first.key");
    let refused = "nexus_tls_certificate_reloads_total{result=\"refused\"}";
    tls.wait_for_metric(&key, refused, 1.0);
    assert_eq!(tls.subject(), "CN=second");

    // Not PEM at all: refused too.
    std::fs::write(tls.pki.path("cert.pem"), "not a certificate\n").unwrap();
    tls.wait_for_metric(&key, refused, 2.0);
    assert_eq!(tls.subject(), "CN=second");
    let logs = tls.daemon.logs();
    assert!(logs.contains("does not fit the certificate"), "{logs}");
    assert!(logs.contains("holds no certificate"), "{logs}");

    // An operator's reload with the pair fixed applies it at once.
    tls.pki.install("third.pem", "third.key");
    let reload = tls.https(
        "/api/v1/admin/config/reload",
        &["-X", "POST", "-H", &format!("Authorization: Bearer {key}")],
    );
    assert_eq!(reload.status, Some(200), "{}", reload.body);
    assert_eq!(tls.subject(), "CN=third");
}

#[test]
fn the_real_client_address_is_seen_through_the_front() {
    // 127.0.0.1 is a trusted proxy: before the front mapped connections, every request came
    // from it, and a client's own X-Forwarded-For would have been believed.
    let tls = TlsDaemon::start(&[
        ("NEXUS_RATE_LIMITS__ENABLED", "true"),
        ("NEXUS_RATE_LIMITS__ADDRESS__PER_SECOND", "0.001"),
        ("NEXUS_RATE_LIMITS__ADDRESS__BURST", "2"),
        ("NEXUS_RATE_LIMITS__TRUSTED_PROXIES", r#"["127.0.0.1"]"#),
    ]);
    let wrong_key = "Authorization: Bearer nc_wrong_key";
    let from = |interface: &str, forwarded: &str, tls_listener: bool| {
        let args = [
            "--interface",
            interface,
            "-H",
            wrong_key,
            "-H",
            &format!("X-Forwarded-For: {forwarded}"),
        ];
        let reply = if tls_listener {
            tls.https("/api/v1/projects", &args)
        } else {
            tls.http("/api/v1/projects", &args)
        };
        reply
            .status
            .unwrap_or_else(|| panic!("no answer: {}", reply.stderr))
    };

    // 127.0.0.2 is not trusted: its X-Forwarded-For is ignored, over either listener, and
    // its two requests use up its bucket.
    assert_eq!(from("127.0.0.2", "192.0.2.1", false), 401);
    assert_eq!(from("127.0.0.2", "192.0.2.2", true), 401);
    assert_eq!(from("127.0.0.2", "192.0.2.3", false), 429);
    // The trusted proxy names its clients, each with a bucket of its own.
    assert_eq!(from("127.0.0.1", "192.0.2.4", true), 401);
    assert_eq!(from("127.0.0.1", "192.0.2.4", false), 401);
    assert_eq!(from("127.0.0.1", "192.0.2.5", false), 401);

    let logs = tls.daemon.logs();
    assert!(logs.contains("\"client\":\"127.0.0.2\""), "{logs}");
    assert!(logs.contains("\"client\":\"192.0.2.5\""), "{logs}");
}

/// Sends `request` one byte a second until the daemon closes the connection; returns how
/// long that took and what came back.
fn trickle(port: u16, request: &[u8]) -> (Duration, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    for byte in request.iter().cycle() {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        let mut buffer = [0; 1024];
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never closed");
    }
    (started.elapsed(), received)
}

#[test]
fn a_slowloris_client_is_cut_at_the_header_deadline_while_others_are_served() {
    let tls = TlsDaemon::start(&[
        ("NEXUS_CONNECTIONS__HEADER_TIMEOUT_SECS", "3"),
        ("NEXUS_CONNECTIONS__HANDSHAKE_TIMEOUT_SECS", "2"),
        ("NEXUS_CONNECTIONS__IDLE_TIMEOUT_SECS", "4"),
    ]);
    let key = tls.daemon.create_key("ops", "admin");
    let port = tls.daemon.port;

    let (slow, served) = std::thread::scope(|scope| {
        let slow = scope.spawn(|| {
            trickle(
                port,
                b"GET /health HTTP/1.1\r\nHost: slow.example\r\nX-Padding: abcdefghijklmnop",
            )
        });
        let mut served = 0;
        while !slow.is_finished() {
            if tls.http("/health", &[]).status == Some(200) {
                served += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (slow.join().unwrap(), served)
    });
    let (took, received) = slow;
    assert!(
        (Duration::from_secs(3)..Duration::from_secs(8)).contains(&took),
        "cut after {took:?}"
    );
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    // Under a loaded test machine a curl may take a second; one answer proves the point.
    assert!(served >= 1, "others were served {served} times meanwhile");
    tls.wait_for_metric(
        &key,
        "nexus_connections_timed_out_total{deadline=\"header\"}",
        1.0,
    );

    // A TLS client that never says hello is cut at the handshake deadline.
    let mut silent = TcpStream::connect(("127.0.0.1", tls.tls_port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    assert_eq!(silent.read(&mut [0; 16]).unwrap_or(0), 0);
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(6)).contains(&took),
        "{took:?}"
    );
    tls.wait_for_metric(
        &key,
        "nexus_tls_handshake_failures_total{reason=\"timeout\"}",
        1.0,
    );

    // A kept-alive connection with nothing more to say is closed once idle.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: idle.example\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let started = Instant::now();
    let _ = idle.read_to_end(&mut answer);
    let took = started.elapsed();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(8)).contains(&took),
        "{took:?}"
    );
}

/// Sends `request` whole and returns the status line of the answer, if any came.
fn exchange(port: u16, request: Vec<u8>) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // The daemon may answer and close before reading it all; writing must not block that.
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = sending.join();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().map(str::to_string)
}

#[test]
fn an_oversized_header_is_refused() {
    let tls = TlsDaemon::start(&[]);
    let port = tls.daemon.port;

    // More header fields than hyper allows (100): 431, from hyper itself.
    let mut many = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    for n in 0..120 {
        many.extend_from_slice(format!("X-Field-{n}: {n}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let status = exchange(port, many).expect("an answer");
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");

    // A header block larger than hyper's buffer (about 400 KiB): refused, never served.
    let mut large = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Large: ".to_vec();
    large.extend(std::iter::repeat_n(b'a', 512 * 1024));
    large.extend_from_slice(b"\r\n\r\n");
    let status = exchange(port, large);
    assert!(
        status
            .as_deref()
            .is_none_or(|line| line.starts_with("HTTP/1.1 431")),
        "{status:?}"
    );

    // The same over TLS, through curl.
    let fields: String = (0..120).map(|n| format!("X-Field-{n}: {n}\n")).collect();
    let file = tls.pki.path("fields.txt");
    std::fs::write(&file, fields).unwrap();
    let header_file = format!("@{}", file.display());
    let reply = tls.https("/health", &["-H", &header_file]);
    assert_eq!(reply.status, Some(431), "{}", reply.stderr);
    // And the daemon still serves.
    assert_eq!(tls.https("/health", &[]).status, Some(200));
}

/// Opens a connection that the daemon admitted and holds it (no request yet).
fn hold(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    stream
}

/// Whether the daemon closes `stream` within a few seconds without a word.
fn closed_at_once(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    match stream.read(&mut [0; 16]) {
        Ok(read) => read == 0,
        Err(error) => error.kind() == ErrorKind::ConnectionReset,
    }
}

#[test]
fn each_client_address_gets_at_most_its_share_of_connections() {
    let tls = TlsDaemon::start(&[
        ("NEXUS_CONNECTIONS__MAX_PER_ADDRESS", "3"),
        ("NEXUS_CONNECTIONS__HEADER_TIMEOUT_SECS", "60"),
    ]);
    let key = tls.daemon.create_key("ops", "admin");
    let port = tls.daemon.port;
    let elsewhere = ["--interface", "127.0.0.2"];

    // The harness's own connections, closed when it started the daemon, must be gone first.
    std::thread::sleep(Duration::from_millis(500));
    let held: Vec<TcpStream> = (0..3).map(|_| hold(port)).collect();
    // Admission happens at accept; give the front a moment to count all three.
    std::thread::sleep(Duration::from_millis(300));
    let mut fourth = hold(port);
    assert!(closed_at_once(&mut fourth), "a fourth connection was kept");
    let mut over_tls = hold(tls.tls_port);
    assert!(
        closed_at_once(&mut over_tls),
        "the cap spans both listeners"
    );

    // Another address is not affected.
    assert_eq!(tls.http("/health", &elsewhere).status, Some(200));
    assert_eq!(tls.https("/health", &elsewhere).status, Some(200));

    // Once one closes, the address may connect again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tls.http("/health", &[]).status != Some(200) {
        assert!(Instant::now() < deadline, "the address stayed refused");
        std::thread::sleep(Duration::from_millis(100));
    }

    let metrics = curl(
        &tls.http_url("/metrics"),
        &[
            "--interface",
            "127.0.0.2",
            "-H",
            &format!("Authorization: Bearer {key}"),
        ],
    );
    let refused = metrics
        .body
        .lines()
        .find_map(|line| {
            line.strip_prefix("nexus_connections_refused_total{reason=\"max_per_address\"} ")
        })
        .unwrap_or_else(|| panic!("{}", metrics.body));
    assert!(refused.parse::<f64>().unwrap() >= 2.0, "{refused}");
}

#[test]
fn tls_settings_are_checked_with_the_configuration() {
    let daemon = Daemon::prepare(&[("NEXUS_TLS__HTTPS_ONLY", "true")]);
    let output = daemon.cli(&["config", "check"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tls.https_only"), "{stderr}");

    let daemon = Daemon::prepare(&[("NEXUS_TLS__ENABLED", "true")]);
    let stderr = String::from_utf8_lossy(&daemon.cli(&["config", "check"]).stderr).into_owned();
    assert!(stderr.contains("tls.cert_path"), "{stderr}");
}

#[test]
fn an_unreadable_certificate_stops_the_daemon_at_start() {
    let pki = Pki::new();
    let missing = pki.path("missing.pem");
    let daemon = Daemon::prepare(&[
        ("NEXUS_TLS__ENABLED", "true"),
        ("NEXUS_TLS__PORT", &support::free_port().to_string()),
        ("NEXUS_TLS__CERT_PATH", missing.to_str().unwrap()),
        ("NEXUS_TLS__KEY_PATH", missing.to_str().unwrap()),
    ]);
    let output = daemon.cli(&["serve"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing.pem"), "{stderr}");
}
