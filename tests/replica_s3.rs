//! The S3 replica against a real S3-compatible server: changes shipped continuously,
//! restores to the latest state and to a point in time, `backup verify`, an outage that the
//! daemon rides out, `kill -9` with no acknowledged change lost, and a gap that stops a
//! restore.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use nexus_canvasd::replicate::restore::{self, TableDigest};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use support::s3::S3Server;
use support::{Client, Daemon};

const BUCKET: &str = "replica";
const DURABLE: (&str, &str) = ("Prefer", "durability=replicated");

fn daemon_with_replica(server: &S3Server, prefix: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut env = server.replica_env(BUCKET, prefix);
    env.push((
        "NEXUS_REPLICATION__S3__SHIP_INTERVAL_MS".into(),
        "200".into(),
    ));
    env.extend(
        extra
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Daemon::start_with(&env)
}

/// Posts a canvas, asking for the answer only once the change is in S3.
fn durable_canvas(client: &Client, project: &str, title: &str) -> Value {
    let body = json!({ "title": title, "document": { "layers": [title] } });
    let reply = client.send(
        "POST",
        &format!("/api/v1/projects/{project}/canvases"),
        &[DURABLE],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        reply.header("preference-applied"),
        Some("durability=replicated")
    );
    reply.json()
}

/// A small real PNG.
fn png_bytes() -> Vec<u8> {
    let image = image::RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 16, y as u8, 99]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn restore(daemon: &Daemon, into: &Path, to_time: Option<&str>) -> std::process::Output {
    let mut args = vec!["restore", "--into", into.to_str().unwrap()];
    if let Some(at) = to_time {
        args.extend(["--to-time", at]);
    }
    daemon.cli(&args)
}

fn titles(database: &Path) -> Vec<String> {
    let connection = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the restored database");
    let mut statement = connection
        .prepare("SELECT title FROM canvases ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Every replicated table's row count and checksum, as `backup verify` computes them.
fn digests(database: &Path) -> Vec<TableDigest> {
    let connection = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database");
    restore::digests(&connection).expect("digests")
}

fn replication(admin: &Client) -> Value {
    let status = admin.get("/api/v1/admin/status");
    assert_eq!(status.status, 200, "{}", status.body);
    status.json()["replication"].clone()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn restores_the_latest_state_and_any_moment_before_it() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let mut daemon = daemon_with_replica(&server, "appliance-a", &[]);
    let client = daemon.client(&daemon.create_key("writer", "write"));

    let project = client.create_project("Spring campaign");
    durable_canvas(&client, &project, "hero");
    let hero_only = now_rfc3339();
    std::thread::sleep(Duration::from_millis(50));
    durable_canvas(&client, &project, "banner");
    let footer = durable_canvas(&client, &project, "footer");
    let id = footer["id"].as_str().unwrap();
    let reply = client.send(
        "DELETE",
        &format!("/api/v1/canvases/{id}"),
        &[("If-Match", "\"1\""), DURABLE],
        None,
    );
    assert_eq!(reply.status, 204, "{}", reply.body);

    // The latest state.
    let latest = daemon.dir.path().join("latest.db");
    let output = restore(&daemon, &latest, None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(titles(&latest), ["hero", "banner"]);

    // The state when only the hero canvas existed.
    let earlier = daemon.dir.path().join("earlier.db");
    let output = restore(&daemon, &earlier, Some(&hero_only));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(titles(&earlier), ["hero"]);

    // Before the first snapshot there is nothing to restore; an existing file is never
    // overwritten.
    let output = restore(
        &daemon,
        &daemon.dir.path().join("x.db"),
        Some("2020-01-01T00:00:00Z"),
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no snapshot"));
    let output = restore(&daemon, &latest, None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));

    // `backup verify` restores into a scratch file and compares every table.
    let output = daemon.cli(&["backup", "verify"]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for table in ["api_keys", "canvas_revisions", "canvases", "projects"] {
        assert!(
            printed
                .lines()
                .any(|line| line.starts_with(table) && line.ends_with("ok")),
            "{printed}"
        );
    }

    // The bucket holds one generation: a snapshot and segments, named as documented.
    let keys = server.keys(BUCKET, "appliance-a/generations/");
    assert!(
        keys.iter()
            .any(|key| key.contains("/snapshots/") && key.ends_with(".sqlite.zst"))
    );
    assert!(
        keys.iter()
            .any(|key| key.contains("/segments/") && key.ends_with(".jsonl.zst"))
    );

    // The restored database serves: a daemon started on it starts a new generation.
    daemon.kill();
    let mut successor = daemon_with_replica(&server, "appliance-a", &[]);
    successor.kill();
    // As an operator would: the killed daemon's write-ahead log belongs to the old file.
    for suffix in ["-wal", "-shm"] {
        let mut path = successor.database().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    std::fs::copy(&latest, successor.database()).unwrap();
    successor.spawn();
    let client = successor.client(&successor.create_key("writer-2", "write"));
    durable_canvas(&client, &project, "after restore");
    let generations: std::collections::BTreeSet<String> = server
        .keys(BUCKET, "appliance-a/generations/")
        .iter()
        .map(|key| key.split('/').nth(2).unwrap().to_string())
        .collect();
    assert!(generations.len() >= 2, "{generations:?}");
    // The newest generation carries on from the restored state.
    let again = successor.dir.path().join("again.db");
    let output = restore(&successor, &again, None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(titles(&again), ["hero", "banner", "after restore"]);
}

#[test]
fn an_s3_outage_is_ridden_out_and_caught_up() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let daemon = daemon_with_replica(
        &server,
        "outage",
        &[
            ("NEXUS_REPLICATION__S3__WAIT_TIMEOUT_MS", "1000"),
            ("NEXUS_ALERTS__REPLICATION_LAG_SECS", "1"),
            ("NEXUS_ALERTS__EVALUATE_INTERVAL_MS", "200"),
        ],
    );
    let client = daemon.client(&daemon.create_key("writer", "write"));
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let project = client.create_project("Outage");
    wait_until("the first shipment", Duration::from_secs(20), || {
        replication(&admin)["replicas"][0]["lag_changes"] == 0
    });

    // S3 hangs for 30 s while writes keep coming.
    server.freeze();
    let frozen = Instant::now();
    let mut written = 0;
    while frozen.elapsed() < Duration::from_secs(30) {
        let reply = client.post(
            &format!("/api/v1/projects/{project}/canvases"),
            &json!({ "title": format!("written during the outage {written}"), "document": {} }),
        );
        assert_eq!(
            reply.status, 201,
            "writes go on while S3 is down: {}",
            reply.body
        );
        written += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // A client that asks to wait for S3 learns that its change is only local so far.
    let reply = client.send(
        "POST",
        "/api/v1/projects",
        &[DURABLE],
        Some(json!({ "name": "durable" }).to_string().as_bytes()),
    );
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.error_code(), "replication_timeout");

    wait_until("the lag alert", Duration::from_secs(30), || {
        let status = admin.get("/api/v1/admin/status").json();
        let lagging = status["replication"]["replicas"][0]["lag_changes"].as_i64() >= Some(written);
        let firing = status["alerts"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|alert| alert["name"] == "replication_lag" && alert["state"] == "firing");
        lagging && firing
    });
    let ready = Client::anonymous(&daemon.url).get("/ready").json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["replication"]["status"], "behind");

    server.thaw();
    wait_until("the catch-up", Duration::from_secs(60), || {
        replication(&admin)["replicas"][0]["lag_changes"] == 0
    });
    let output = daemon.cli(&["backup", "verify"]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let metrics = admin.get("/metrics").body;
    assert!(
        metrics.contains("nexus_replica_lag_changes{replica=\"s3\"} 0"),
        "{metrics}"
    );

    // An operator can ask for a snapshot on top of the schedule.
    let snapshots = || {
        let keys = server.keys(BUCKET, "outage/generations/");
        keys.iter()
            .filter(|key| key.contains("/snapshots/"))
            .count()
    };
    assert_eq!(snapshots(), 1);
    let reply = admin.post("/api/v1/admin/replication/snapshot", &json!({}));
    assert_eq!(reply.status, 202, "{}", reply.body);
    wait_until("the requested snapshot", Duration::from_secs(20), || {
        snapshots() == 2
    });
}

#[test]
fn kill_9_loses_no_change_acknowledged_as_replicated() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let mut daemon = daemon_with_replica(&server, "crash", &[]);
    let client = daemon.client(&daemon.create_key("writer", "write"));
    let project = client.create_project("Crash");
    let acknowledged: Vec<String> = (0..10)
        .map(|index| {
            let title = format!("acknowledged {index}");
            durable_canvas(&client, &project, &title);
            title
        })
        .collect();
    let logo = png_bytes();
    let reply = client.send(
        "POST",
        &format!("/api/v1/projects/{project}/assets?filename=logo.png"),
        &[("Content-Type", "application/octet-stream"), DURABLE],
        Some(&logo),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        reply.header("preference-applied"),
        Some("durability=replicated")
    );
    let sha256 = reply.json()["sha256"].as_str().unwrap().to_string();
    daemon.kill();

    // The host is gone: everything acknowledged is in S3.
    let restored = daemon.dir.path().join("restored.db");
    let output = restore(&daemon, &restored, None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(titles(&restored), acknowledged);
    // The asset file came back beside the database, byte for byte.
    let file = daemon
        .dir
        .path()
        .join("assets/sha256")
        .join(&sha256[..2])
        .join(&sha256[2..4])
        .join(&sha256);
    assert_eq!(std::fs::read(file).unwrap(), logo);

    // The same host coming back continues its generation rather than starting another.
    daemon.spawn();
    durable_canvas(&client, &project, "after the crash");
    assert!(daemon.logs().contains("continuing the generation"));
}

#[test]
fn a_missing_segment_stops_the_restore_and_names_the_gap() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let daemon = daemon_with_replica(&server, "gap", &[]);
    let client = daemon.client(&daemon.create_key("writer", "write"));
    let project = client.create_project("Gap");
    for index in 0..4 {
        durable_canvas(&client, &project, &format!("canvas {index}"));
    }
    let segments: Vec<String> = server
        .keys(BUCKET, "gap/generations/")
        .into_iter()
        .filter(|key| key.contains("/segments/"))
        .collect();
    // Every durable write is its own upload; the first may share the snapshot.
    assert!(segments.len() >= 3, "{segments:?}");
    server.delete(BUCKET, &segments[segments.len() - 2]);

    let output = restore(&daemon, &daemon.dir.path().join("gap.db"), None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("missing changes"), "{stderr}");
    assert!(!daemon.dir.path().join("gap.db").exists());
}

#[test]
fn every_recorded_moment_restores_exactly() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let daemon = daemon_with_replica(&server, "moments", &[]);
    let client = daemon.client(&daemon.create_key("writer", "write"));
    let project = client.create_project("Moments");

    // Creates, updates, deletes; after each step the moment and the exact state.
    let mut moments = Vec::new();
    let mut canvases = Vec::new();
    for step in 0..5 {
        match step {
            0 | 1 => canvases.push(durable_canvas(&client, &project, &format!("step {step}"))),
            2 => {
                let id = canvases[0]["id"].as_str().unwrap();
                let body = json!({ "title": "renamed", "document": { "changed": true } });
                let reply = client.send(
                    "PUT",
                    &format!("/api/v1/canvases/{id}"),
                    &[("If-Match", "\"1\""), DURABLE],
                    Some(body.to_string().as_bytes()),
                );
                assert_eq!(reply.status, 200, "{}", reply.body);
            }
            3 => {
                let id = canvases[1]["id"].as_str().unwrap();
                let reply = client.send(
                    "DELETE",
                    &format!("/api/v1/canvases/{id}"),
                    &[("If-Match", "\"1\""), DURABLE],
                    None,
                );
                assert_eq!(reply.status, 204, "{}", reply.body);
            }
            _ => canvases.push(durable_canvas(&client, &project, "step 4")),
        }
        moments.push((now_rfc3339(), digests(&daemon.database())));
        std::thread::sleep(Duration::from_millis(30));
    }

    for (index, (moment, expected)) in moments.iter().enumerate() {
        let into = daemon.dir.path().join(format!("moment-{index}.db"));
        let output = restore(&daemon, &into, Some(moment));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(&digests(&into), expected, "the state at {moment}");
    }
}

#[test]
fn a_damaged_segment_stops_the_restore_and_names_it() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let daemon = daemon_with_replica(&server, "damaged", &[]);
    let client = daemon.client(&daemon.create_key("writer", "write"));
    let project = client.create_project("Damaged");
    for index in 0..3 {
        durable_canvas(&client, &project, &format!("canvas {index}"));
    }
    let segment = server
        .keys(BUCKET, "damaged/generations/")
        .into_iter()
        .rfind(|key| key.contains("/segments/"))
        .unwrap();
    server.put(BUCKET, &segment, b"not a segment at all");

    let into = daemon.dir.path().join("damaged.db");
    let output = restore(&daemon, &into, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let name = segment.rsplit('/').next().unwrap();
    assert!(stderr.contains(name), "{stderr}");
    assert!(!into.exists());
}

#[test]
fn after_kill_9_under_load_every_write_older_than_the_ship_interval_is_in_s3() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    // Small segments already make a new snapshot: the restore starts from a snapshot taken
    // under load, not from the empty first one.
    let mut daemon = daemon_with_replica(
        &server,
        "load",
        &[("NEXUS_REPLICATION__S3__SNAPSHOT_AFTER_BYTES", "16384")],
    );
    let client = daemon.client(&daemon.create_key("writer", "write"));
    let project = client.create_project("Load");

    // Four writers for three seconds, each noting when each write was acknowledged.
    let acknowledged: Vec<(Instant, String)> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let (client, project) = (&client, &project);
                scope.spawn(move || {
                    let started = Instant::now();
                    let mut done = Vec::new();
                    while started.elapsed() < Duration::from_secs(3) {
                        let title = format!("writer {writer} canvas {}", done.len());
                        let reply = client.post(
                            &format!("/api/v1/projects/{project}/canvases"),
                            &json!({ "title": title, "document": {} }),
                        );
                        assert_eq!(reply.status, 201, "{}", reply.body);
                        done.push((Instant::now(), title));
                    }
                    done
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|writer| writer.join().unwrap())
            .collect()
    });
    let killed = Instant::now();
    daemon.kill();
    let snapshots = server
        .keys(BUCKET, "load/generations/")
        .into_iter()
        .filter(|key| key.contains("/snapshots/"))
        .count();
    assert!(snapshots >= 2, "{snapshots} snapshots");

    let restored = daemon.dir.path().join("restored.db");
    let output = restore(&daemon, &restored, None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let present: std::collections::HashSet<String> = titles(&restored).into_iter().collect();
    // The ship interval here is 200 ms; a second leaves room for the upload itself.
    let old_enough: Vec<&String> = acknowledged
        .iter()
        .filter(|(at, _)| killed.duration_since(*at) > Duration::from_secs(1))
        .map(|(_, title)| title)
        .collect();
    assert!(old_enough.len() > 20, "{} writes", old_enough.len());
    let lost: Vec<&&String> = old_enough
        .iter()
        .filter(|title| !present.contains(**title))
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} of {}: {lost:?}",
        lost.len(),
        old_enough.len()
    );
}
