//! The PostgreSQL replica against the real server on 127.0.0.1:5432 (trust authentication,
//! database `test`; `NEXUS_TEST_POSTGRES` names another `host:port`): the daemon replicating
//! through API and CLI writes, an outage, a `kill -9`, a replayed batch and a restored store.
//! Each test works in a schema of its own and drops it at the end.
//!
//! Contents are compared independently of the daemon's own encoding: the test reads the
//! SQLite file with rusqlite and the replica with tokio-postgres, as typed values.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_canvasd::config::{PostgresReplicaConfig, Secret};
use nexus_canvasd::replicate::postgres::{self, Replica};
use nexus_canvasd::store::{Store, StoreOptions, changes};
use serde_json::{Value, json};
use support::{Client, Daemon};

fn postgres_address() -> String {
    std::env::var("NEXUS_TEST_POSTGRES").unwrap_or_else(|_| "127.0.0.1:5432".into())
}

fn postgres_url(address: &str) -> String {
    format!("postgres://postgres@{address}/test")
}

/// A schema of the test's own on the shared server, and a client to look into it.
struct Schema {
    name: String,
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Schema {
    fn new() -> Schema {
        let name = format!("nexus_test_{}", uuid::Uuid::new_v4().simple());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = postgres_url(&postgres_address());
        let (client, connection) = runtime
            .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
            .unwrap_or_else(|error| panic!("PostgreSQL at {url}: {error}"));
        runtime.spawn(connection);
        Schema {
            name,
            runtime,
            client,
        }
    }

    fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.runtime
            .block_on(self.client.query(sql, &[]))
            .unwrap_or_else(|error| panic!("{sql}: {error:?}"))
    }

    /// The last change the replica applied, from its bookkeeping; `None` before any.
    fn applied_seq(&self) -> Option<i64> {
        let exists: Option<String> = self.query(&format!(
            "SELECT to_regclass('{}._nexus_replication')::text",
            self.name
        ))[0]
            .get(0);
        exists?;
        self.query(&format!(
            "SELECT applied_seq FROM {}._nexus_replication",
            self.name
        ))
        .first()
        .map(|row| row.get(0))
    }

    /// The environment that points a daemon's replica at this schema through `address`.
    fn daemon_env(&self, address: &str) -> Vec<(String, String)> {
        [
            ("NEXUS_REPLICATION__POSTGRES__ENABLED", "true".to_string()),
            ("NEXUS_REPLICATION__POSTGRES__URL", postgres_url(address)),
            ("NEXUS_REPLICATION__POSTGRES__SCHEMA", self.name.clone()),
            (
                "NEXUS_REPLICATION__POSTGRES__APPLY_INTERVAL_MS",
                "100".into(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    fn config(&self) -> PostgresReplicaConfig {
        PostgresReplicaConfig {
            enabled: true,
            url: Secret::new(postgres_url(&postgres_address())),
            schema: self.name.clone(),
            apply_interval_ms: 100,
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = self.runtime.block_on(self.client.batch_execute(&drop));
    }
}

fn start_daemon(env: &[(String, String)]) -> Daemon {
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    Daemon::start_with(&env)
}

/// One stored value, typed.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Every replicated table: primary key (as text) to the row's cells in column order.
type Tables = BTreeMap<String, BTreeMap<String, Vec<Cell>>>;

/// A table's columns (name, declared type) and primary-key columns, from the store.
type Shapes = BTreeMap<String, (Vec<(String, String)>, Vec<String>)>;

fn open_read_only(database: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
}

fn store_head(database: &Path) -> i64 {
    open_read_only(database)
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'change_log'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

fn store_shapes(connection: &rusqlite::Connection) -> Shapes {
    let mut statement = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
        .unwrap();
    let names: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();

    let mut shapes = Shapes::new();
    for name in names
        .into_iter()
        .filter(|name| !changes::NOT_CAPTURED.contains(&name.as_str()))
    {
        let mut info = connection
            .prepare("SELECT name, type, pk FROM pragma_table_info(?1)")
            .unwrap();
        let columns: Vec<(String, String, i64)> = info
            .query_map([&name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut key: Vec<(i64, String)> = columns
            .iter()
            .filter(|(_, _, pk)| *pk > 0)
            .map(|(column, _, pk)| (*pk, column.clone()))
            .collect();
        key.sort();
        shapes.insert(
            name,
            (
                columns
                    .into_iter()
                    .map(|(column, kind, _)| (column, kind))
                    .collect(),
                key.into_iter().map(|(_, column)| column).collect(),
            ),
        );
    }
    shapes
}

fn key_of(shape: &(Vec<(String, String)>, Vec<String>), cells: &[Cell]) -> String {
    let (columns, key) = shape;
    let parts: Vec<String> = key
        .iter()
        .map(|name| {
            let index = columns
                .iter()
                .position(|(column, _)| column == name)
                .unwrap();
            format!("{:?}", cells[index])
        })
        .collect();
    parts.join("|")
}

fn store_tables(database: &Path) -> (Shapes, Tables) {
    let connection = open_read_only(database);
    let shapes = store_shapes(&connection);
    let mut tables = Tables::new();
    for (name, shape) in &shapes {
        let mut statement = connection
            .prepare(&format!("SELECT * FROM \"{name}\""))
            .unwrap();
        let width = shape.0.len();
        let rows: Vec<Vec<Cell>> = statement
            .query_map([], |row| {
                (0..width)
                    .map(|index| {
                        use rusqlite::types::Value as Sql;
                        Ok(match row.get::<_, Sql>(index)? {
                            Sql::Null => Cell::Null,
                            Sql::Integer(value) => Cell::Integer(value),
                            Sql::Real(value) => Cell::Real(value),
                            Sql::Text(value) => Cell::Text(value),
                            Sql::Blob(value) => Cell::Blob(value),
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let table = tables.entry(name.clone()).or_default();
        for cells in rows {
            assert!(table.insert(key_of(shape, &cells), cells).is_none());
        }
    }
    (shapes, tables)
}

/// The replica's rows of the store's tables, read as the types the replica promises.
fn replica_tables(schema: &Schema, shapes: &Shapes) -> Tables {
    let mut tables = Tables::new();
    for (name, shape) in shapes {
        let columns: Vec<String> = shape
            .0
            .iter()
            .map(|(column, _)| format!("\"{column}\""))
            .collect();
        let rows = schema.query(&format!(
            "SELECT {}, _nexus_seq FROM {}.\"{name}\"",
            columns.join(", "),
            schema.name
        ));
        let table = tables.entry(name.clone()).or_default();
        for row in rows {
            let cells: Vec<Cell> = shape
                .0
                .iter()
                .enumerate()
                .map(|(index, (_, kind))| {
                    let cell = match kind.as_str() {
                        "INTEGER" => row.get::<_, Option<i64>>(index).map(Cell::Integer),
                        "REAL" => row.get::<_, Option<f64>>(index).map(Cell::Real),
                        "BLOB" => row.get::<_, Option<Vec<u8>>>(index).map(Cell::Blob),
                        _ => row.get::<_, Option<String>>(index).map(Cell::Text),
                    };
                    cell.unwrap_or(Cell::Null)
                })
                .collect();
            let seq: i64 = row.get(shape.0.len());
            assert!(seq > 0, "{name}: _nexus_seq is set");
            assert!(table.insert(key_of(shape, &cells), cells).is_none());
        }
    }
    tables
}

/// Waits until the replica has applied the store's head, then compares every table row by row
/// (again if a write slipped in meanwhile). Returns how long the wait took.
fn assert_replica_matches(database: &Path, schema: &Schema) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let head = store_head(database);
        if schema.applied_seq() == Some(head) {
            let waited = started.elapsed();
            let (shapes, store) = store_tables(database);
            let replica = replica_tables(schema, &shapes);
            if store_head(database) == head && schema.applied_seq() == Some(head) {
                assert!(shapes.len() >= 4, "{shapes:?}");
                assert_eq!(
                    store, replica,
                    "the replica differs from the store at {head}"
                );
                return waited;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the replica stayed at {:?}, the store is at {head}",
            schema.applied_seq()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn replica_check(daemon: &Daemon) -> String {
    let output = daemon.cli(&["replica", "check"]);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "replica check failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn postgres_replica(admin: &Client) -> Value {
    let status = admin.get("/api/v1/admin/status");
    assert_eq!(status.status, 200, "{}", status.body);
    let replicas = status.json()["replication"]["replicas"].clone();
    replicas
        .as_array()
        .unwrap()
        .iter()
        .find(|replica| replica["name"] == "postgres")
        .unwrap_or_else(|| panic!("no postgres replica in {replicas}"))
        .clone()
}

/// Creates a canvas in `project` and returns its id.
fn create_canvas(client: &Client, project: &str, title: &str) -> String {
    let reply = client.post(
        &format!("/api/v1/projects/{project}/canvases"),
        &json!({ "title": title, "document": { "layers": [{ "text": title }] } }),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_string()
}

/// Saves `count` new versions of a canvas now at `version`; returns the last version.
fn revise(client: &Client, canvas: &str, version: i64, count: i64) -> i64 {
    for next in version + 1..=version + count {
        let reply = client.put(
            &format!("/api/v1/canvases/{canvas}"),
            &format!("\"{}\"", next - 1),
            &json!({ "title": format!("v{next}"), "document": { "version": next } }),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    version + count
}

fn log_lines(daemon: &Daemon, start: u32, needle: &str) -> usize {
    std::fs::read_to_string(daemon.log_path(start))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

const FULL_COPY: &str = "rebuilt with a full copy";
const FOLLOWING: &str = "PostgreSQL replica: following the log";

/// Waits until the daemon's `start`th run has logged how its replica session started: with a
/// full copy or by following the log. Returns whether it copied.
fn session_started(daemon: &Daemon, start: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let copied = log_lines(daemon, start, FULL_COPY);
        if copied + log_lines(daemon, start, FOLLOWING) > 0 {
            return copied > 0;
        }
        assert!(
            Instant::now() < deadline,
            "no replica session:\n{}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
const UNAVAILABLE: &str = "the PostgreSQL replica is unavailable";

#[test]
fn api_and_cli_writes_reach_the_replica_row_for_row() {
    let schema = Schema::new();
    let daemon = start_daemon(&schema.daemon_env(&postgres_address()));
    let writer = daemon.client(&daemon.create_key("designer", "write"));
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    assert!(
        session_started(&daemon, 1),
        "a new replica starts with a full copy"
    );

    let brand = writer.create_project("Brand");
    let spare = writer.create_project("Spare");
    let hero = create_canvas(&writer, &brand, "Hero");
    let footer = create_canvas(&writer, &brand, "Footer");
    revise(&writer, &hero, 1, 4);
    revise(&writer, &footer, 1, 2);
    let renamed = writer.put(
        &format!("/api/v1/projects/{brand}"),
        "\"1\"",
        &json!({ "name": "Brand 2026", "description": "renamed" }),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    // Deleting a canvas deletes its revisions (a cascade, captured row by row).
    assert_eq!(
        writer
            .delete(&format!("/api/v1/canvases/{footer}"), "\"3\"")
            .status,
        204
    );
    assert_eq!(
        writer
            .delete(&format!("/api/v1/projects/{spare}"), "\"1\"")
            .status,
        204
    );
    daemon.create_key("temporary", "read");
    let revoked = daemon.cli(&["keys", "revoke", "temporary"]);
    assert!(revoked.status.success());

    assert_replica_matches(&daemon.database(), &schema);
    let revisions = schema.query(&format!(
        "SELECT count(*) FROM {}.canvas_revisions",
        schema.name
    ));
    assert_eq!(
        revisions[0].get::<_, i64>(0),
        5,
        "hero's five versions only"
    );

    // How long a single write takes to show in PostgreSQL when the store is otherwise idle.
    let mut latencies = Vec::new();
    for index in 0..20 {
        let written = Instant::now();
        let id = writer.create_project(&format!("latency {index}"));
        let query = format!("SELECT 1 FROM {}.projects WHERE id = '{id}'", schema.name);
        while schema.query(&query).is_empty() {
            assert!(written.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(written.elapsed());
        std::thread::sleep(Duration::from_millis(150));
    }
    latencies.sort();
    eprintln!(
        "commit to PostgreSQL, idle store: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );

    assert_replica_matches(&daemon.database(), &schema);
    let report = replica_check(&daemon);
    assert!(report.contains("canvas_revisions"), "{report}");
    assert!(!report.contains("MISMATCH"), "{report}");
    let replica = postgres_replica(&admin);
    assert_eq!(replica["consecutive_failures"], 0, "{replica}");
    assert_eq!(log_lines(&daemon, 1, FULL_COPY), 1, "{}", daemon.logs());
}

/// A TCP forwarder to PostgreSQL that can be cut (every connection dropped, new ones closed at
/// once) and restored: an outage of the one shared server, for this daemon only.
struct Proxy {
    address: String,
    open: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicBool::new(true));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();

        let (accepting, tracked) = (Arc::clone(&open), Arc::clone(&streams));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut tracked = tracked.lock().unwrap();
                tracked.push(client.try_clone().unwrap());
                tracked.push(server.try_clone().unwrap());
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
        });
        Proxy {
            address,
            open,
            streams,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read) = from.read(&mut buffer) {
            if read == 0 || to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[test]
fn an_outage_grows_the_lag_and_the_replica_catches_up() {
    let schema = Schema::new();
    let proxy = Proxy::start(postgres_address());
    let daemon = start_daemon(&schema.daemon_env(&proxy.address));
    let writer = daemon.client(&daemon.create_key("designer", "write"));
    let admin = daemon.client(&daemon.create_key("ops", "admin"));
    let project = writer.create_project("Brand");
    let canvas = create_canvas(&writer, &project, "Hero");
    assert_replica_matches(&daemon.database(), &schema);

    proxy.cut();
    // Writes keep succeeding; each version is two changes (the canvas and its revision).
    let version = revise(&writer, &canvas, 1, 150);
    let others: Vec<String> = (0..50)
        .map(|index| writer.create_project(&format!("during the outage {index}")))
        .collect();
    let first = postgres_replica(&admin);
    std::thread::sleep(Duration::from_millis(1500));
    let second = postgres_replica(&admin);
    assert!(first["lag_changes"].as_i64().unwrap() >= 350, "{first}");
    assert!(
        second["consecutive_failures"].as_u64().unwrap() >= 1,
        "{second}"
    );
    assert!(second["last_error"].is_string(), "{second}");
    assert!(
        second["lag_seconds"].as_f64().unwrap() > first["lag_seconds"].as_f64().unwrap() + 1.0,
        "the lag grows while PostgreSQL is away: {first} then {second}"
    );
    assert!(schema.applied_seq().unwrap() < store_head(&daemon.database()));

    let restored = Instant::now();
    let behind = store_head(&daemon.database()) - schema.applied_seq().unwrap();
    proxy.restore();
    let caught_up = assert_replica_matches(&daemon.database(), &schema);
    eprintln!(
        "caught up {behind} changes {caught_up:?} after PostgreSQL came back (the retry \
         backoff included; {:?} until checked)",
        restored.elapsed()
    );
    assert_eq!(
        log_lines(&daemon, 1, UNAVAILABLE),
        1,
        "one warning per outage"
    );
    assert_eq!(log_lines(&daemon, 1, "reachable again"), 1);

    // Still following afterwards.
    revise(&writer, &canvas, version, 3);
    assert_eq!(
        writer
            .delete(&format!("/api/v1/projects/{}", others[0]), "\"1\"")
            .status,
        204
    );
    assert_replica_matches(&daemon.database(), &schema);
    let replica = postgres_replica(&admin);
    assert_eq!(replica["consecutive_failures"], 0, "{replica}");
    assert_eq!(replica["lag_changes"], 0, "{replica}");
    replica_check(&daemon);
}

#[test]
fn a_killed_daemon_resumes_without_duplicates_or_losses() {
    let schema = Schema::new();
    let mut daemon = start_daemon(&schema.daemon_env(&postgres_address()));
    let writer = daemon.client(&daemon.create_key("designer", "write"));
    let project = writer.create_project("Brand");
    let canvas = create_canvas(&writer, &project, "Hero");
    let version = revise(&writer, &canvas, 1, 100);
    daemon.kill();

    daemon.spawn();
    assert!(!session_started(&daemon, 2), "{}", daemon.logs());
    assert_replica_matches(&daemon.database(), &schema);

    // The window between PostgreSQL's commit and the local position: with the daemon
    // stopped, the CLI writes and another applier takes those changes into PostgreSQL
    // without recording a position. The daemon must carry on from PostgreSQL's own record.
    revise(&writer, &canvas, version, 5);
    daemon.terminate();
    daemon.create_key("offline", "read");
    let applied = applied_without_recording(&daemon.database(), &schema);
    assert_eq!(applied, store_head(&daemon.database()));

    daemon.spawn();
    assert!(!session_started(&daemon, 3), "{}", daemon.logs());
    assert_replica_matches(&daemon.database(), &schema);
    revise(&writer, &canvas, version + 5, 2);
    assert_replica_matches(&daemon.database(), &schema);
    replica_check(&daemon);
}

/// Applies what the replica lacks (twice) as a crashed daemon would have, leaving the local
/// position where it was; returns the replica's last applied change.
fn applied_without_recording(database: &Path, schema: &Schema) -> i64 {
    let options = StoreOptions {
        path: database.to_path_buf(),
        readers: 1,
        busy_timeout: Duration::from_secs(5),
    };
    let store = Store::open(&options).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut replica = connect_when_unlocked(schema).await;
        let started = replica.start(&store).await.unwrap();
        assert_eq!(started.resynchronised, None);
        let after = started.position.seq;
        let batch = store
            .read(move |connection| changes::read_after(connection, after, 10_000))
            .await
            .unwrap();
        assert!(!batch.is_empty());
        let applied = replica.apply(&batch).await.unwrap();
        assert_eq!(replica.apply(&batch).await.unwrap(), applied);
        applied
    })
}

#[test]
fn a_replayed_batch_changes_nothing() {
    let schema = Schema::new();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("store.db");
    let options = StoreOptions {
        path: database.clone(),
        readers: 2,
        busy_timeout: Duration::from_secs(5),
    };
    let store = Store::open(&options).unwrap();
    let write = |sql: &str| {
        let sql = sql.to_owned();
        store
            .write_blocking(move |transaction| Ok(transaction.execute_batch(&sql)?))
            .unwrap();
    };
    write(
        "INSERT INTO projects (id, name, version, created_at, updated_at)
             VALUES ('p1', 'Brand', 1, 't0', 't0'), ('p2', 'Spare', 1, 't0', 't0');
         INSERT INTO api_keys (name, scope, secret_hash, prefix, created_at)
             VALUES ('ci', 'read', x'00ff10', 'nc_', 't0');",
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut replica = runtime
        .block_on(Replica::connect(&schema.config()))
        .unwrap();
    let started = runtime.block_on(replica.start(&store)).unwrap();
    assert!(started.resynchronised.is_some());
    assert_eq!(started.copied_rows, 3);

    // One batch with every kind of change: updates, a key change, a cascade, a row deleted and
    // inserted again under the same key, and rows deleted for good.
    write(
        "INSERT INTO canvases (id, project_id, title, document, version, created_at, updated_at)
             VALUES ('c1', 'p1', 'Hero', '{}', 1, 't1', 't1'),
                    ('c2', 'p1', 'Gone', '{}', 1, 't1', 't1');
         INSERT INTO canvas_revisions VALUES ('c1', 1, 'Hero', '{}', 't1', 'ci'),
                                             ('c2', 1, 'Gone', '{}', 't1', 'ci');
         UPDATE projects SET name = 'Brand 2', version = 2 WHERE id = 'p1';
         UPDATE api_keys SET seq = 42, secret_hash = x'abcdef' WHERE name = 'ci';
         DELETE FROM canvases WHERE id = 'c2';
         DELETE FROM projects WHERE id = 'p2';
         DELETE FROM canvas_revisions WHERE canvas_id = 'c1';
         INSERT INTO canvas_revisions VALUES ('c1', 1, 'Hero again', '{}', 't2', 'ci');
         UPDATE canvases SET title = 'Hero 2', version = 2 WHERE id = 'c1';",
    );
    let after = started.position.seq;
    let batch = runtime
        .block_on(store.read(move |connection| changes::read_after(connection, after, 1000)))
        .unwrap();
    let head = batch.last().unwrap().seq;
    let half = batch.len() / 2;
    let middle = batch[half - 1].seq;

    let mut apply = |changes: &[changes::Change]| runtime.block_on(replica.apply(changes)).unwrap();
    assert_eq!(apply(&batch[..half]), middle);
    assert_eq!(apply(&batch[..half]), middle);
    assert_eq!(apply(&batch), head);
    assert_eq!(apply(&batch), head);
    // An older batch after a newer one: skipped whole.
    assert_eq!(apply(&batch[..half]), head);
    assert_replica_matches(&database, &schema);

    // Even applied again over rows the replica holds, the `_nexus_seq` guards keep every row
    // at its latest change.
    schema.query(&format!(
        "UPDATE {}._nexus_replication SET applied_seq = {after}",
        schema.name
    ));
    assert_eq!(apply(&batch), head);
    assert_replica_matches(&database, &schema);

    let check = runtime
        .block_on(postgres::check(&schema.config(), &database))
        .unwrap();
    assert!(check.matches(), "{check:?}");
    assert_eq!(check.seq, head);
    let (_, tables) = store_tables(&database);
    assert!(tables["api_keys"].contains_key("Integer(42)"));
    assert_eq!(tables["canvas_revisions"].len(), 1);
    assert_eq!(tables["projects"].len(), 1);
}

#[test]
fn applying_changes_in_bulk_is_fast() {
    let schema = Schema::new();
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        path: dir.path().join("store.db"),
        readers: 2,
        busy_timeout: Duration::from_secs(5),
    };
    let store = Store::open(&options).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut replica = runtime.block_on(async {
        let mut replica = Replica::connect(&schema.config()).await.unwrap();
        replica.start(&store).await.unwrap();
        replica
    });

    // 20 000 inserts, 20 000 updates and 10 000 deletes.
    store
        .write_blocking(|transaction| {
            transaction.execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
                 INSERT INTO projects (id, name, version, created_at, updated_at)
                 SELECT 'p' || i, 'Project ' || i, 1, 't0', 't0' FROM n;
                 UPDATE projects SET name = name || ' renamed', version = 2;
                 DELETE FROM projects WHERE seq % 2 = 0;",
            )?;
            Ok(())
        })
        .unwrap();

    let started = Instant::now();
    let mut position = 0;
    let mut applied = 0;
    runtime.block_on(async {
        loop {
            let after = position;
            let batch = store
                .read(move |connection| changes::read_after(connection, after, 5000))
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            applied += batch.len();
            position = replica.apply(&batch).await.unwrap();
        }
    });
    let elapsed = started.elapsed();
    eprintln!(
        "applied {applied} changes in {elapsed:?}: {:.0} changes/s (batches of 5000)",
        applied as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(applied, 50_000);
    let (shapes, tables) = store_tables(&options.path);
    assert_eq!(tables["projects"].len(), 10_000);
    assert_eq!(tables, replica_tables(&schema, &shapes));
}

#[test]
fn a_restored_store_rebuilds_the_replica() {
    let schema = Schema::new();
    let mut daemon = start_daemon(&schema.daemon_env(&postgres_address()));
    let writer = daemon.client(&daemon.create_key("designer", "write"));
    let project = writer.create_project("Brand");
    let canvas = create_canvas(&writer, &project, "Hero");
    revise(&writer, &canvas, 1, 3);
    assert_replica_matches(&daemon.database(), &schema);

    // An older copy of the store, then more writes the copy does not have.
    let copy = daemon.dir.path().join("older.db");
    let backup = daemon.cli(&["store", "backup", "--to", copy.to_str().unwrap()]);
    assert!(backup.status.success(), "{backup:?}");
    let later = writer.create_project("Later");
    revise(&writer, &canvas, 4, 2);
    assert_replica_matches(&daemon.database(), &schema);
    daemon.terminate();

    // Put the copy in place: the replica is ahead of the store and must be rebuilt.
    let database = daemon.database();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    std::fs::copy(&copy, &database).unwrap();
    daemon.spawn();
    assert!(session_started(&daemon, 2), "{}", daemon.logs());
    assert_replica_matches(&database, &schema);
    let gone = format!(
        "SELECT 1 FROM {}.projects WHERE id = '{later}'",
        schema.name
    );
    assert!(schema.query(&gone).is_empty());

    // A store without a position for the replica (as a restore from S3 leaves it).
    writer.create_project("After the restore");
    assert_replica_matches(&database, &schema);
    daemon.terminate();
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute(
            "DELETE FROM replica_positions WHERE replica = 'postgres'",
            [],
        )
        .unwrap();
    daemon.spawn();
    assert!(session_started(&daemon, 3), "{}", daemon.logs());
    assert_replica_matches(&database, &schema);
    replica_check(&daemon);
}

#[test]
fn a_migration_reshapes_the_replica() {
    let schema = Schema::new();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("store.db");
    let options = StoreOptions {
        path: database.clone(),
        readers: 2,
        busy_timeout: Duration::from_secs(5),
    };
    let store = Store::open(&options).unwrap();
    store
        .write_blocking(|transaction| {
            transaction.execute_batch(
                "INSERT INTO projects (id, name, version, created_at, updated_at)
                 VALUES ('p1', 'Brand', 1, 't0', 't0')",
            )?;
            Ok(())
        })
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut replica = runtime
        .block_on(Replica::connect(&schema.config()))
        .unwrap();
    let started = runtime.block_on(replica.start(&store)).unwrap();
    let position = started.position.clone();
    store
        .write_blocking(move |transaction| {
            changes::set_position(transaction, "postgres", &position)
        })
        .unwrap();
    drop(replica);

    // What a later release's migration does: a new column, and a new schema version.
    let connection = rusqlite::Connection::open(&database).unwrap();
    connection
        .execute_batch(
            "ALTER TABLE projects ADD COLUMN colour TEXT;
             UPDATE projects SET colour = 'blue';
             INSERT INTO schema_migrations (version, name, applied_at)
                 VALUES (99, 'colour', 't1');",
        )
        .unwrap();

    let mut replica = runtime.block_on(connect_when_unlocked(&schema));
    let started = runtime.block_on(replica.start(&store)).unwrap();
    assert_eq!(started.resynchronised, Some("the store's schema changed"));
    let colour = format!("SELECT colour FROM {}.projects", schema.name);
    assert_eq!(schema.query(&colour)[0].get::<_, String>(0), "blue");
    assert_replica_matches(&database, &schema);
}

/// Connects, waiting while a session just dropped still holds the schema's lock (the server
/// releases it once it sees the connection close).
async fn connect_when_unlocked(schema: &Schema) -> Replica {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Replica::connect(&schema.config()).await {
            Ok(replica) => return replica,
            Err(postgres::PostgresError::Locked(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
}
