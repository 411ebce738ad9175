//! Faults that must not lose acknowledged data or corrupt the store:
//! - `kill -9` while a client writes, several times over: every write that got a 2xx is there
//!   and SQLite's integrity check passes;
//! - SIGTERM under load from several clients: no 5xx, a clean exit, nothing acknowledged lost;
//! - a full disk (a small tmpfs; root only): 507 `storage_full`, reads still served, writes
//!   succeed again once space returns, integrity intact.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use support::{Client, Daemon};

const KILLS: usize = 4;

/// Creates canvas number `n`; `None` once the daemon no longer answers.
fn try_create_canvas(client: &Client, project: &str, n: u64) -> Option<support::Reply> {
    let body = json!({ "title": format!("c{n}"), "document": { "n": n } });
    client.try_send(
        "POST",
        &format!("/api/v1/projects/{project}/canvases"),
        &[],
        Some(body.to_string().as_bytes()),
    )
}

/// Writes until the daemon stops answering, returning each canvas id with the highest
/// version the daemon acknowledged for it.
fn write_until_killed(client: &Client, project: &str, stop: &AtomicBool) -> HashMap<String, i64> {
    let mut acknowledged: HashMap<String, i64> = HashMap::new();
    let mut n = 0u64;

    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let Some(reply) = try_create_canvas(client, project, n) else {
            break;
        };
        if reply.status != 201 {
            continue;
        }
        let id = reply.json()["id"].as_str().unwrap().to_string();
        acknowledged.insert(id.clone(), 1);

        // And a few updates of it, each acknowledged version recorded.
        for version in 1..=2 {
            let body = json!({ "title": format!("c{n}v{}", version + 1), "document": { "n": n } });
            let Some(reply) = client.try_send(
                "PUT",
                &format!("/api/v1/canvases/{id}"),
                &[("If-Match", &format!("\"{version}\""))],
                Some(body.to_string().as_bytes()),
            ) else {
                return acknowledged;
            };
            if reply.status == 200 {
                acknowledged.insert(id.clone(), version + 1);
            }
        }
    }
    acknowledged
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut daemon = Daemon::start();
    let client = daemon.client(&daemon.create_key("writer", "write"));
    let project = client.create_project("crash");

    let mut acknowledged: HashMap<String, i64> = HashMap::new();
    for round in 0..KILLS {
        let stop = AtomicBool::new(false);
        let written = std::thread::scope(|scope| {
            let writer = scope.spawn(|| write_until_killed(&client, &project, &stop));
            // Kill at a different moment each round, mid-stream.
            std::thread::sleep(Duration::from_millis(400 + 150 * round as u64));
            daemon.kill();
            stop.store(true, Ordering::Relaxed);
            writer.join().unwrap()
        });
        assert!(
            !written.is_empty(),
            "round {round}: no write was acknowledged"
        );
        acknowledged.extend(written);
        daemon.spawn();
    }

    // Every acknowledged write is there, at least at the acknowledged version (a write whose
    // answer was lost in the kill may have committed too).
    for (id, version) in &acknowledged {
        let reply = client.get(&format!("/api/v1/canvases/{id}"));
        assert_eq!(reply.status, 200, "acknowledged canvas {id} is gone");
        let stored = reply.json()["version"].as_i64().unwrap();
        assert!(
            stored >= *version,
            "canvas {id}: version {stored} < acknowledged {version}"
        );

        let revisions = client
            .get(&format!("/api/v1/canvases/{id}/revisions?limit=10"))
            .json();
        assert_eq!(revisions["items"].as_array().unwrap().len() as i64, stored);
    }

    // Stop uncleanly once more, then check the file itself.
    daemon.kill();
    let connection = rusqlite::Connection::open(daemon.database()).unwrap();
    let integrity: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let foreign_keys: i64 = connection
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(foreign_keys, 0);
}

/// Writes from several clients at once until the daemon stops answering; returns the ids it
/// acknowledged and every status it answered.
fn write_until_stopped(client: &Client, project: &str) -> (Vec<String>, Vec<u16>) {
    let (mut acknowledged, mut statuses) = (Vec::new(), Vec::new());
    for n in 0u64.. {
        let Some(reply) = try_create_canvas(client, project, n) else {
            break;
        };
        statuses.push(reply.status);
        if reply.status == 201 {
            acknowledged.push(reply.json()["id"].as_str().unwrap().to_string());
        }
    }
    (acknowledged, statuses)
}

#[test]
fn sigterm_under_load_drains_without_errors_and_loses_nothing() {
    let mut daemon = Daemon::start();
    let client = daemon.client(&daemon.create_key("writer", "write"));
    let project = client.create_project("drain");

    let (results, exit) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| write_until_stopped(&client, &project)))
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        let exit = daemon.terminate();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        (results, exit)
    });
    assert!(
        exit.success(),
        "SIGTERM must end the daemon cleanly: {exit}"
    );

    // Every request the daemon answered was answered well: a request accepted before the
    // signal is served, one after it is refused at the socket, never half-served.
    let statuses: Vec<u16> = results
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    assert!(
        statuses.len() > 20,
        "too little load: {} requests",
        statuses.len()
    );
    assert!(statuses.iter().all(|&s| s == 201), "statuses: {statuses:?}");

    daemon.spawn();
    for id in results.iter().flat_map(|(ids, _)| ids) {
        let reply = client.get(&format!("/api/v1/canvases/{id}"));
        assert_eq!(
            reply.status, 200,
            "acknowledged canvas {id} is gone after SIGTERM"
        );
    }
}

/// A small tmpfs mounted over a folder for as long as it lives (needs root, as in CI).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (scripts/test runs this as root)"
        );
        SmallDisk(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_writes_clearly_and_recovers_when_space_returns() {
    let mut daemon = Daemon::prepare(&[]);
    let data = daemon.dir.path().join("data");
    let _disk = SmallDisk::mount(&data, "3m");
    // Space the test gives back later.
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024]).unwrap();
    daemon.spawn();

    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let project = admin.create_project("full");
    let document = json!({ "blob": "x".repeat(60_000) });
    let create = |n: u32| {
        admin.post(
            &format!("/api/v1/projects/{project}/canvases"),
            &json!({ "title": format!("c{n}"), "document": document }),
        )
    };

    let mut acknowledged = Vec::new();
    let refused = (0..200)
        .map(|n| (n, create(n)))
        .find_map(|(n, reply)| match reply.status {
            201 => {
                acknowledged.push(reply.json()["id"].as_str().unwrap().to_string());
                None
            }
            _ => Some((n, reply)),
        })
        .expect("the disk never filled");
    let (n, refused) = refused;
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert_eq!(refused.error_code(), "storage_full");
    assert!(!acknowledged.is_empty());

    // Full, the daemon still reads and answers its probes.
    assert_eq!(
        admin
            .get(&format!("/api/v1/canvases/{}", acknowledged[0]))
            .status,
        200
    );
    assert_eq!(admin.get("/health").status, 200);

    // Space comes back: writes succeed again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let again = create(n);
    assert_eq!(again.status, 201, "{}", again.body);
    acknowledged.push(again.json()["id"].as_str().unwrap().to_string());

    for id in &acknowledged {
        assert_eq!(
            admin.get(&format!("/api/v1/canvases/{id}")).status,
            200,
            "{id} is gone"
        );
    }
    let integrity = admin.get("/api/v1/admin/store/integrity").json();
    assert_eq!(integrity["ok"], true, "{integrity}");
}
