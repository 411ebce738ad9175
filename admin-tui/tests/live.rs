//! The console's data client and fetcher against the real daemon: the live status document
//! parses, the reload answers, and each way of failing (wrong key, key without the admin
//! scope, nothing listening) becomes the error the console shows.

mod support;

use std::fs;
use std::sync::mpsc;
use std::time::Duration;

use nexus_canvas_console::app::Event;
use nexus_canvas_console::client::{Client, ClientError};
use nexus_canvas_console::fetcher::{self, Command};
use support::{Daemon, free_port};

#[test]
fn fetches_and_parses_the_live_status() {
    let daemon = Daemon::start();
    let client = Client::new(&daemon.url, &daemon.admin_key);

    let first = client.status().unwrap();
    let version = daemon.cli(&["--version"]);
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(&first.version),
        "{} is not the daemon's version",
        first.version
    );
    assert!(!first.started_at.is_empty());
    assert_eq!(first.health.status, "ready");
    assert_eq!(first.health.checks["store"].status, "ok");
    assert_eq!(first.health.checks["model"].status, "disabled");
    assert_eq!(first.model.state, "disabled");
    assert_eq!(first.queue.queued, 0);
    assert!(first.queue.capacity > 0);
    // Whatever the host: NVML's facts, or the reason there are none.
    assert!(!first.gpu.gpus.is_empty() || first.gpu.unavailable.is_some());
    assert_eq!(first.traffic.short.window_seconds, 300);
    assert_eq!(first.traffic.long.window_seconds, 3600);
    for class in ["read", "write", "inference", "admin"] {
        assert!(first.traffic.short.classes.contains_key(class), "{class}");
    }
    for (alert, unit) in [
        ("error_rate", 0.001),
        ("read_latency", 0.2),
        ("host_cpu", 70.0),
    ] {
        assert_eq!(first.alert(alert).map(|alert| alert.threshold), Some(unit));
    }
    assert_eq!(first.alerts.alerts.len(), 8);
    assert_eq!(first.alerts.firing, 0);
    assert!(
        first.store.path.ends_with("nexus-canvas.db"),
        "{}",
        first.store.path
    );
    assert!(first.store.schema_version >= 1);
    assert!(first.replication.replicas.is_empty());

    // The console's own polling stays out of the daemon's traffic figures.
    let second = client.status().unwrap();
    assert_eq!(second.traffic.short.classes["admin"].requests, 0);
    assert!(second.uptime_seconds >= first.uptime_seconds);
}

#[test]
fn a_wrong_or_unprivileged_key_is_refused() {
    let daemon = Daemon::start();
    let wrong = Client::new(&daemon.url, "nxs_not_a_key")
        .status()
        .unwrap_err();
    assert!(
        matches!(wrong, ClientError::Unauthorized { status: 401, .. }),
        "{wrong:?}"
    );

    let read_key = daemon.create_key("reader", "read");
    let unprivileged = Client::new(&daemon.url, &read_key).status().unwrap_err();
    assert!(
        matches!(unprivileged, ClientError::Unauthorized { status: 403, .. }),
        "{unprivileged:?}"
    );
    assert!(
        unprivileged
            .to_string()
            .contains("refused the admin key (403)")
    );
}

#[test]
fn nothing_listening_is_unreachable() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let error = Client::new(&url, "key").status().unwrap_err();
    assert!(
        matches!(error, ClientError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot reach {url}")),
        "{error}"
    );
}

#[test]
fn reload_reports_what_applied_and_refuses_a_bad_file() {
    let daemon = Daemon::start();
    let client = Client::new(&daemon.url, &daemon.admin_key);
    let report = client.reload_config().unwrap();
    assert!(
        report.applied.iter().any(|name| name == "alerts"),
        "{report:?}"
    );

    let mut config = fs::read_to_string(&daemon.config).unwrap();
    config.push_str("\n[alerts]\nerror_rat = 0.5\n");
    fs::write(&daemon.config, config).unwrap();
    match client.reload_config().unwrap_err() {
        ClientError::Status {
            status,
            code,
            message,
            request_id,
        } => {
            assert_eq!((status, code.as_str()), (422, "invalid_config"));
            assert!(message.contains("error_rat"), "{message}");
            assert!(request_id.is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_fetcher_sends_snapshots_and_obeys_pause_and_refresh() {
    let daemon = Daemon::start();
    let (events, inbox) = mpsc::channel();
    let (commands, command_inbox) = mpsc::channel();
    let client = Client::new(&daemon.url, &daemon.admin_key);
    fetcher::spawn(client, Duration::from_millis(100), command_inbox, events).unwrap();

    let status = |event| match event {
        Event::Status { report, .. } => report,
        other => panic!("expected a status, got {other:?}"),
    };
    let wait = Duration::from_secs(10);
    status(inbox.recv_timeout(wait).unwrap());
    status(inbox.recv_timeout(wait).unwrap());

    commands.send(Command::Pause(true)).unwrap();
    // What was under way when the pause arrived may still come; then nothing.
    while inbox.recv_timeout(Duration::from_millis(400)).is_ok() {}
    assert!(inbox.recv_timeout(Duration::from_millis(500)).is_err());

    commands.send(Command::Refresh).unwrap();
    status(inbox.recv_timeout(wait).unwrap());
    assert!(inbox.recv_timeout(Duration::from_millis(400)).is_err());

    commands.send(Command::Reload).unwrap();
    match inbox.recv_timeout(wait).unwrap() {
        Event::Reloaded(Ok(report)) => assert!(report.applied.contains(&"alerts".into())),
        other => panic!("expected the reload's answer, got {other:?}"),
    }
    // A reload is followed by a fetch, since thresholds may have changed.
    status(inbox.recv_timeout(wait).unwrap());

    commands.send(Command::Pause(false)).unwrap();
    status(inbox.recv_timeout(wait).unwrap());
    status(inbox.recv_timeout(wait).unwrap());
}
