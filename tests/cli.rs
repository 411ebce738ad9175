//! The operator commands: `config check`, `migrate`, `keys`, and configuration errors that
//! stop `serve` with the offending key named.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{BIN, cli};

/// Writes `body` as the configuration file, with the data directory inside `dir` unless the
/// body has a `[store]` section of its own.
fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let data_dir = dir.join("data");
    let store = if body.contains("[store]") {
        String::new()
    } else {
        format!("\n[store]\ndata_dir = {data_dir:?}\n")
    };
    std::fs::write(&path, format!("{body}{store}")).unwrap();
    path
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn config_check_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[server]\nport = 9123\n");

    let output = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .env("NEXUS_LOG__LEVEL", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: toml::Value = toml::from_str(&stdout(&output)).expect("prints TOML");
    assert_eq!(
        printed["server"]["port"].as_integer(),
        Some(9123),
        "the file wins over defaults"
    );
    assert_eq!(
        printed["log"]["level"].as_str(),
        Some("warn"),
        "the environment wins over the file"
    );
    assert_eq!(
        printed["server"]["address"].as_str(),
        Some("127.0.0.1"),
        "defaults fill the rest"
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_stop_serve() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[server]\nprot = 8000\n", "server.prot"),
        ("[server]\nport = \"eighty\"\n", "server.port"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[store]\nreaders = 0\n", "store.readers"),
        ("[telemetry]\nenabled = true\n", "telemetry"),
    ];

    for (body, key) in cases {
        let config = write_config(dir.path(), body);

        for command in [&["config", "check"][..], &["serve"][..]] {
            let output = cli(&config, command);
            assert!(!output.status.success(), "{command:?} accepted {body:?}");
            let message = stderr(&output);
            assert!(
                message.contains(key),
                "{command:?} with {body:?}: {message}"
            );
            assert!(
                command == ["config", "check"] || message.contains("config.toml"),
                "serve should name the file: {message}"
            );
        }
    }

    // Environment overrides are checked just as strictly.
    let config = write_config(dir.path(), "");
    let output = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .env("NEXUS_SERVER__PROT", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("server.prot"),
        "{}",
        stderr(&output)
    );

    let missing = cli(&dir.path().join("absent.toml"), &["config", "check"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("absent.toml"));
}

#[test]
fn migrate_dry_run_lists_then_migrate_applies() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let database = dir.path().join("data").join("nexus-canvas.db");

    let dry = cli(&config, &["migrate", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("pending 0001 initial"),
        "{}",
        stdout(&dry)
    );
    assert!(!database.exists(), "a dry run must not create the database");

    let applied = cli(&config, &["migrate"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let latest = nexus_canvasd::store::migrations::latest_version();
    assert!(
        stdout(&applied).contains(&format!("schema version {latest}")),
        "{}",
        stdout(&applied)
    );

    let again = cli(&config, &["migrate", "--dry-run"]);
    assert!(stdout(&again).contains("0 pending"), "{}", stdout(&again));

    // A database from a newer release is refused, not modified.
    let connection = rusqlite::Connection::open(&database).unwrap();
    connection
        .execute(
            "INSERT INTO schema_migrations VALUES (99, 'future', '2030-01-01')",
            [],
        )
        .unwrap();
    let refused = cli(&config, &["serve"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("newer than this binary"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");

    let created = cli(
        &config,
        &["keys", "create", "--name", "ci", "--scope", "write"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let secret = stdout(&created).trim().to_string();
    assert!(secret.starts_with("nxc_") && secret.len() > 40, "{secret}");

    let duplicate = cli(&config, &["keys", "create", "--name", "ci"]);
    assert!(!duplicate.status.success());
    assert!(stderr(&duplicate).contains("already exists"));

    let bad_scope = cli(
        &config,
        &["keys", "create", "--name", "x", "--scope", "root"],
    );
    assert!(!bad_scope.status.success());

    let listed = stdout(&cli(&config, &["keys", "list"]));
    assert!(
        listed.contains("ci") && listed.contains("write"),
        "{listed}"
    );
    assert!(
        listed.contains(&secret[..12]),
        "the prefix tells keys apart"
    );
    assert!(!listed.contains(&secret), "a secret is never listed");

    assert!(cli(&config, &["keys", "revoke", "ci"]).status.success());
    let listed = stdout(&cli(&config, &["keys", "list"]));
    let row = listed.lines().find(|line| line.starts_with("ci ")).unwrap();
    assert!(
        !row.trim_end().ends_with('-'),
        "revocation time shown: {row}"
    );

    let unknown = cli(&config, &["keys", "revoke", "nobody"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("not found"));
}

#[test]
fn store_backup_copies_the_live_database_and_never_overwrites() {
    let daemon = support::Daemon::start();
    let app = daemon.client(&daemon.create_key("app", "write"));
    let created = app.post(
        "/api/v1/projects",
        &serde_json::json!({ "name": "backed up" }),
    );
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_string();

    // Taken while the daemon runs and holds the database open.
    let target = daemon.dir.path().join("backup.db");
    let output = daemon.cli(&["store", "backup", "--to", target.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), target.to_str().unwrap());

    let copy = rusqlite::Connection::open(&target).unwrap();
    let name: String = copy
        .query_row("SELECT name FROM projects WHERE id = ?1", [&id], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(name, "backed up");
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");

    let again = daemon.cli(&["store", "backup", "--to", target.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn keys_rotate_keeps_the_old_secret_working_for_the_overlap_only() {
    let daemon = support::Daemon::start();
    let old = daemon.create_key("app", "write");
    let rotate = |overlap: &str| {
        let output = daemon.cli(&["keys", "rotate", "app", "--overlap", overlap]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("API key rotated"),
            "{}",
            stderr(&output)
        );
        stdout(&output).trim().to_string()
    };

    let new = rotate("1h");
    assert_ne!(new, old);
    for secret in [&old, &new] {
        let reply = daemon
            .client(secret)
            .post("/api/v1/projects", &serde_json::json!({ "name": "p" }));
        assert_eq!(reply.status, 201, "the scope carries over: {}", reply.body);
    }
    let list = stdout(&daemon.cli(&["keys", "list"]));
    let retiring = list
        .lines()
        .find(|line| line.starts_with("app~"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(retiring.contains("write"), "{retiring}");

    // A rotation with no overlap ends the previous secret at once.
    let newest = rotate("0s");
    let refused = daemon.client(&new).get("/api/v1/projects");
    assert_eq!(refused.status, 401);
    assert_eq!(daemon.client(&newest).get("/api/v1/projects").status, 200);

    let bad = daemon.cli(&["keys", "rotate", "app", "--overlap", "soon"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--overlap"), "{}", stderr(&bad));
}
