//! The `nexus-canvasd` command line: `serve` (the default) and the operator commands.
//!
//! Every command loads the same configuration as `serve`, so `keys` and `migrate` act on the
//! very database the daemon uses. Failures print one clear line and exit non-zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::{self, ProjectAccess, Scope};
use crate::config::{Config, LogFormat};
use crate::store::{self, Store, StoreError, StoreOptions, keys, migrations};
use crate::{models, replicate, search, serve, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "nexus-canvasd",
    version,
    about = "The Nexus Canvas appliance daemon"
)]
pub struct Cli {
    /// Configuration file layered over the embedded defaults
    /// (packaged: /etc/nexus-canvas/config.toml).
    #[arg(long, global = true, env = "NEXUS_CONFIG")]
    config: Option<PathBuf>,

    /// Log format; overrides `log.format` from the configuration.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending schema migrations and exit.
    Migrate {
        /// List the pending migrations without applying them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Exit 0 when the running daemon answers /health, 1 otherwise.
    Healthcheck(HealthcheckArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect, verify and fetch the embedding model's files.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Operate on the store's database file.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Restore the database from the S3 replica into a new file: its latest state, or the
    /// state as of a moment within retention.
    Restore(RestoreArgs),
    /// Check the S3 replica.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Check the PostgreSQL replica.
    #[command(subcommand)]
    Replica(ReplicaCommand),
    /// The semantic search index over canvases and assets.
    #[command(subcommand)]
    Search(SearchCommand),
}

#[derive(Debug, Subcommand)]
enum SearchCommand {
    /// How many items are indexed and pending, for which model revision.
    Status,
    /// Have every embedding recomputed (e.g. after a model change): queues every canvas and
    /// asset; the daemon, running or next started, works through them.
    Reindex,
}

#[derive(Debug, Subcommand)]
enum ReplicaCommand {
    /// Once the replica has caught up with the store, compare every table's row count and
    /// checksum between them; exit non-zero on a difference, or if it stays behind.
    Check,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// The replica, `s3://bucket/prefix` or `file:///folder`; defaults to
    /// `replication.s3.url`. The endpoint and credentials come from `[replication.s3]`.
    #[arg(long)]
    from: Option<String>,
    /// Restore the state as of this moment (RFC 3339, e.g. 2026-12-04T10:15:00Z); default:
    /// the latest state in the replica.
    #[arg(long)]
    to_time: Option<String>,
    /// The database file to create. An existing file is never overwritten; to replace the
    /// live database, stop the daemon, restore to a new file and move it into place.
    #[arg(long)]
    into: PathBuf,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Restore the replica's latest state into a scratch file, run an integrity check, and
    /// compare every table's row count and checksum with the live store.
    Verify,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Write a consistent copy of the database to a new file, safe while the daemon runs
    /// (what the package takes before an upgrade, to roll back to).
    Backup {
        /// The file to create; an existing file is never overwritten.
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// List the model's files and whether each is present.
    List,
    /// Check every file's size and sha256; exit non-zero naming the first bad one.
    Verify,
    /// Fetch missing or corrupt files from a mirror, verifying each.
    Pull {
        /// A folder or http(s) URL laid out as `<mirror>/<model>/<file>`; defaults to
        /// `inference.mirror`.
        #[arg(long)]
        from: Option<String>,
    },
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    /// URL to probe; defaults to /health on the configured address and port.
    #[arg(long)]
    url: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3)]
    timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration; exit non-zero, naming the key, if it is invalid.
    Check,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret (shown this once only) on standard output.
    Create {
        /// A unique name, e.g. the client or person the key is for.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value_t = Scope::Read)]
        scope: Scope,
        /// Expiry as an RFC 3339 time, e.g. 2027-01-31T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
        /// Limit the key to this project (repeat for several); without it, the key sees every
        /// project. Other projects answer 404 to it, as if they did not exist.
        #[arg(long = "project", value_name = "PROJECT_ID")]
        projects: Vec<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by name; it stops working at once.
    Revoke { name: String },
    /// Replace a key: print a successor's secret under the same name and scope; the old
    /// secret keeps working (renamed `<name>~<created>`) until the overlap ends.
    Rotate {
        name: String,
        /// How long the old secret keeps working, e.g. `24h`, `30m`, `7d`; `0s` ends it now.
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    crate::install_crypto_provider();
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("nexus-canvasd: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<ExitCode, String> {
    let command = cli.command.unwrap_or(Command::Serve);
    let config = Config::load(cli.config.as_deref()).map_err(|error| error.to_string())?;
    let log_format = cli.log_format.unwrap_or(config.log.format);

    match command {
        Command::Serve => {
            let logging = telemetry::init(log_format, config.log.level, &config.errors);
            serve::run(config, cli.config.clone(), logging.level.clone())
                .map_err(|error| error.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => {
            print!("{}", config.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck(args) => Ok(healthcheck(&config, &args)),
        Command::Migrate { dry_run } => {
            let _logging = telemetry::init(log_format, config.log.level, &config.errors);
            migrate(&config, dry_run)
        }
        Command::Keys(command) => {
            // Rotations are logged; nothing else in these commands logs.
            let _logging = telemetry::init(log_format, config.log.level, &config.errors);
            keys_command(&config, command)
        }
        Command::Store(StoreCommand::Backup { to }) => backup(&config, &to),
        Command::Restore(args) => restore(&config, args),
        Command::Backup(BackupCommand::Verify) => verify_backup(&config),
        Command::Replica(ReplicaCommand::Check) => check_replica(&config),
        Command::Search(command) => search_command(&config, command),
        Command::Models(command) => {
            let _logging = telemetry::init(log_format, config.log.level, &config.errors);
            models_command(&config, command)
        }
    }
}

fn restore(config: &Config, args: RestoreArgs) -> Result<ExitCode, String> {
    let mut replica = config.replication.s3.clone();
    if let Some(from) = args.from {
        replica.url = from;
    }
    let to_ms = args
        .to_time
        .map(|text| {
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|error| format!("--to-time {text:?} is not an RFC 3339 time: {error}"))
        })
        .transpose()?;
    let bucket = replicate::s3::Bucket::open(&replica).map_err(|error| error.to_string())?;

    let restored = block_on(replicate::restore::restore(&bucket, &args.into, to_ms))?
        .map_err(|error| error.to_string())?;
    println!(
        "restored {} as of change {} ({}): generation {}, snapshot at change {}, {} changes \
         from {} segments",
        args.into.display(),
        restored.seq,
        replicate::segment::compact_time(restored.at_ms),
        restored.generation,
        restored.snapshot_seq,
        restored.changes,
        restored.segments
    );
    println!("{} asset file(s) fetched", restored.files);
    if !restored.missing_files.is_empty() {
        eprintln!(
            "warning: {} asset file(s) named by the restored rows are not in the replica \
             (deleted on the host before they were shipped): {}",
            restored.missing_files.len(),
            restored.missing_files.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_backup(config: &Config) -> Result<ExitCode, String> {
    let bucket =
        replicate::s3::Bucket::open(&config.replication.s3).map_err(|error| error.to_string())?;
    let verification = block_on(replicate::restore::verify(&bucket, &config.database_path()))?
        .map_err(|error| error.to_string())?;

    println!(
        "restored change {} of generation {}; integrity check passed",
        verification.restored.seq, verification.restored.generation
    );
    println!("{:<20} {:>10} {:>10}  result", "table", "live", "replica");
    for table in &verification.tables {
        let result = if table.live == table.replica {
            "ok"
        } else {
            "MISMATCH"
        };
        println!(
            "{:<20} {:>10} {:>10}  {result}",
            table.table, table.live.rows, table.replica.rows
        );
    }
    let missing = &verification.restored.missing_files;
    if !missing.is_empty() {
        println!(
            "asset files missing from the replica: {}",
            missing.join(", ")
        );
    }
    if verification.matches() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err("the replica does not match the live store".into())
    }
}

fn check_replica(config: &Config) -> Result<ExitCode, String> {
    let replica = &config.replication.postgres;
    if replica.url.is_empty() {
        return Err("replication.postgres.url is not set: there is no replica to check".into());
    }
    let check = block_on(replicate::postgres::check(replica, &config.database_path()))?
        .map_err(|error| error.to_string())?;

    println!(
        "schema {} and the store compared at change {}",
        check.schema, check.seq
    );
    println!(
        "{:<20} {:>10} {:>10}  {:<16} result",
        "table", "store", "replica", "sha256"
    );
    for table in &check.tables {
        let result = if table.live == table.replica {
            "ok"
        } else {
            "MISMATCH"
        };
        println!(
            "{:<20} {:>10} {:>10}  {:<16} {result}",
            table.table,
            table.live.rows,
            table.replica.rows,
            table.live.sha256.get(..16).unwrap_or_default()
        );
    }
    if check.matches() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err("the PostgreSQL replica does not match the store".into())
    }
}

/// Runs a future on a runtime of its own, for the commands that talk to a replica.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    Ok(runtime.block_on(future))
}

fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        path: config.database_path(),
        // The CLI only uses the writer connection; one reader is the pool's minimum.
        readers: 1,
        busy_timeout: Duration::from_millis(config.store.busy_timeout_ms),
    }
}

fn healthcheck(config: &Config, args: &HealthcheckArgs) -> ExitCode {
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("{}/health", config.local_url()));
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(args.timeout_secs)))
        .build()
        .new_agent();

    match agent.get(&url).call() {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("unhealthy: {url} answered {}", response.status());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("unhealthy: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(config: &Config, dry_run: bool) -> Result<ExitCode, String> {
    let path = config.database_path();

    if dry_run {
        // Read-only: a dry run must not even create the database.
        let pending = if path.exists() {
            let connection = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
            migrations::pending(&connection).map_err(|error| error.to_string())?
        } else {
            migrations::MIGRATIONS.iter().collect()
        };
        for migration in &pending {
            println!("pending {:04} {}", migration.version, migration.name);
        }
        println!(
            "{} pending migration(s) for {}",
            pending.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }

    // Opening the store applies what is pending.
    let store = Store::open(&store_options(config)).map_err(|error| error.to_string())?;
    let version = store
        .read_blocking(migrations::current_version)
        .map_err(|error| error.to_string())?;
    store.close().map_err(|error| error.to_string())?;
    println!("{} is at schema version {version}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Copies the live database with SQLite's `VACUUM INTO`: one read transaction, so the copy
/// is a consistent state even while the daemon writes, and compacted on the way.
fn backup(config: &Config, to: &std::path::Path) -> Result<ExitCode, String> {
    let path = config.database_path();
    if !path.exists() {
        return Err(format!("there is no database at {}", path.display()));
    }
    if to.exists() {
        return Err(format!(
            "{} exists; a backup never overwrites a file",
            to.display()
        ));
    }
    let target = to
        .to_str()
        .ok_or_else(|| format!("{} is not a UTF-8 path", to.display()))?;

    let connection =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    connection
        .busy_timeout(Duration::from_millis(config.store.busy_timeout_ms))
        .and_then(|()| connection.execute("VACUUM INTO ?1", [target]).map(|_| ()))
        .map_err(|error| format!("backup to {} failed: {error}", to.display()))?;
    println!("{}", to.display());
    Ok(ExitCode::SUCCESS)
}

fn keys_command(config: &Config, command: KeysCommand) -> Result<ExitCode, String> {
    let store = Store::open(&store_options(config)).map_err(|error| error.to_string())?;

    match command {
        KeysCommand::Create {
            name,
            scope,
            expires_at,
            projects,
        } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.len() > 100 {
                return Err("--name must be 1 to 100 characters".to_string());
            }
            let expires_at = expires_at.as_deref().map(parse_expiry).transpose()?;
            let projects = project_access(&store, scope, projects)?;
            let secret = auth::generate_secret()
                .map_err(|error| format!("no randomness for a key: {error}"))?;

            let record = store
                .write_blocking(|tx| {
                    keys::insert(
                        tx,
                        &keys::NewKey {
                            name: &name,
                            scope,
                            secret_hash: &secret.hash,
                            prefix: &secret.prefix,
                            expires_at: expires_at.as_deref(),
                            projects: &projects,
                        },
                    )
                })
                .map_err(|error| error.to_string())?;

            eprintln!(
                "created key `{}` with scope {}; store the secret now, it is not shown again:",
                record.name, record.scope
            );
            println!("{}", secret.secret);
        }
        KeysCommand::List => {
            let records = store
                .read_blocking(keys::list)
                .map_err(|error| error.to_string())?;
            println!(
                "{:<24} {:<6} {:<13} {:<25} {:<25} {:<25} {:<25} PROJECTS",
                "NAME", "SCOPE", "PREFIX", "CREATED", "LAST USED", "EXPIRES", "REVOKED"
            );
            for key in records {
                let projects = match &key.projects {
                    ProjectAccess::All => "all".to_string(),
                    ProjectAccess::Only(ids) => ids.join(","),
                };
                println!(
                    "{:<24} {:<6} {:<13} {:<25} {:<25} {:<25} {:<25} {}",
                    key.name,
                    key.scope,
                    key.prefix,
                    key.created_at,
                    key.last_used_at.as_deref().unwrap_or("-"),
                    key.expires_at.as_deref().unwrap_or("-"),
                    key.revoked_at.as_deref().unwrap_or("-"),
                    projects,
                );
            }
        }
        KeysCommand::Rotate { name, overlap } => {
            let overlap = parse_overlap(&overlap)?;
            let secret = auth::generate_secret()
                .map_err(|error| format!("no randomness for a key: {error}"))?;
            let retire_at = store::format_time(time::OffsetDateTime::now_utc() + overlap);

            let rotation = store
                .write_blocking(|tx| {
                    keys::rotate(tx, &name, &secret.hash, &secret.prefix, &retire_at)
                })
                .map_err(|error| error.to_string())?;

            let retiring = &rotation.retiring;
            tracing::info!(
                key = %name,
                retiring = %retiring.name,
                retires_at = retiring.expires_at.as_deref().unwrap_or("-"),
                "API key rotated"
            );
            eprintln!(
                "rotated key `{name}`: the old secret works as `{}` until {}; store the new \
                 secret now, it is not shown again:",
                retiring.name,
                retiring.expires_at.as_deref().unwrap_or("-")
            );
            println!("{}", secret.secret);
        }
        KeysCommand::Revoke { name } => {
            let record = store
                .write_blocking(|tx| keys::revoke(tx, &name))
                .map_err(|error| error.to_string())?;
            println!("revoked key `{}`", record.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The projects a new key may see: all without `--project`, else the named ones, each of
/// which must exist (a typo would lock the client out without saying why). Admin keys see
/// everything: the admin routes are not per project.
fn project_access(store: &Store, scope: Scope, ids: Vec<String>) -> Result<ProjectAccess, String> {
    if ids.is_empty() {
        return Ok(ProjectAccess::All);
    }
    if scope == Scope::Admin {
        return Err("--project cannot limit an admin key: admin routes span every project".into());
    }

    for id in &ids {
        store
            .read_blocking(|connection| store::projects::get(connection, id))
            .map_err(|error| match error {
                StoreError::NotFound(_) => format!("--project {id}: no such project"),
                other => other.to_string(),
            })?;
    }
    Ok(ProjectAccess::Only(ids))
}

fn search_command(config: &Config, command: SearchCommand) -> Result<ExitCode, String> {
    // Safe while the daemon runs: one more writer on a WAL database, as `keys create` is.
    let store = Store::open(&store_options(config)).map_err(|error| error.to_string())?;

    match command {
        SearchCommand::Status => {
            let model = search::builtin_model()?;
            let status = search::offline_status_blocking(&store, model)
                .map_err(|error| error.to_string())?;
            println!("model     {} (revision {})", status.model, status.revision);
            println!("indexed   {}", status.indexed);
            println!("pending   {}", status.pending);
            println!("stale     {}", status.stale);
        }
        SearchCommand::Reindex => {
            let reindexed = store
                .write_blocking(search::reindex_in)
                .map_err(|error| error.to_string())?;
            println!(
                "queued {} item(s) for embedding again: {} canvas(es), {} asset(s)",
                reindexed.queued, reindexed.canvases, reindexed.assets
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A duration such as `90s`, `30m`, `24h` or `7d`.
fn parse_overlap(text: &str) -> Result<time::Duration, String> {
    let invalid = || format!("--overlap must be a number with s, m, h or d, e.g. 24h: `{text}`");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let unit = match unit {
        "s" => time::Duration::SECOND,
        "m" => time::Duration::MINUTE,
        "h" => time::Duration::HOUR,
        "d" => time::Duration::DAY,
        _ => return Err(invalid()),
    };
    if number < 0 {
        return Err(invalid());
    }
    Ok(unit * number as i32)
}

fn parse_expiry(text: &str) -> Result<String, String> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("--expires-at must be an RFC 3339 time: {error}"))?;
    Ok(store::format_time(at))
}

fn models_command(config: &Config, command: ModelsCommand) -> Result<ExitCode, String> {
    let manifest = nexus_models::Manifest::builtin().map_err(|error| error.to_string())?;
    let models_dir = &config.inference.models_dir;

    match command {
        ModelsCommand::List => {
            for line in models::list(&manifest, models_dir) {
                println!("{line}");
            }
        }
        ModelsCommand::Verify => {
            let model_dir = manifest.model_dir(models_dir);
            manifest
                .verify(&model_dir)
                .map_err(|error| error.to_string())?;
            println!(
                "{}: all {} files verified",
                model_dir.display(),
                manifest.files.len()
            );
        }
        ModelsCommand::Pull { from } => {
            let mirror = from.unwrap_or_else(|| config.inference.mirror.clone());
            let fetched =
                models::pull(&manifest, models_dir, &mirror).map_err(|error| error.to_string())?;
            println!(
                "{}: {fetched} file(s) fetched, all {} verified",
                manifest.model_dir(models_dir).display(),
                manifest.files.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
