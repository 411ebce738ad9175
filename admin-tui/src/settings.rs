//! The command line, and where the console finds the daemon and its admin key: flags first,
//! then environment variables, then the packaged daemon's own files.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

/// The packaged daemon's configuration, read for its listen address.
pub const DAEMON_CONFIG: &str = "/etc/nexus-canvas/config.toml";
/// Where the packaging puts the operator's admin key.
pub const DEFAULT_KEY_FILE: &str = "/etc/nexus-canvas/admin.key";
/// The daemon's own default listen address.
const FALLBACK_URL: &str = "http://127.0.0.1:8000";
/// Faster refreshes would mostly measure the console: the daemon's windows move in 10 s slots.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Operator console for nexus-canvasd: health, traffic against the SLOs, GPU, store and
/// alerts, refreshed live from the admin status document.
#[derive(Debug, Parser)]
#[command(name = "nexus-canvas-console", version)]
pub struct Cli {
    /// The daemon's URL [default: from /etc/nexus-canvas/config.toml's [server] address and
    /// port when readable, else http://127.0.0.1:8000]
    #[arg(long, env = "NEXUS_CONSOLE_URL")]
    pub url: Option<String>,

    /// File holding an admin key; it must not be readable by other users [default: the
    /// NEXUS_ADMIN_KEY environment variable when set, else /etc/nexus-canvas/admin.key]
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Time between refreshes: seconds (fractions allowed) or with a unit, as in 500ms or 2s
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
}

/// What the console runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: String,
    pub key: String,
    pub interval: Duration,
}

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error(
        "refusing the admin key file {path}: other users can read it (mode {mode:03o}); \
         run `chmod o-r {path}`"
    )]
    KeyReadableByOthers { path: String, mode: u32 },
    #[error(
        "cannot read the admin key file {path}: {source}; give one with --key-file or set \
         NEXUS_ADMIN_KEY"
    )]
    KeyFile {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the admin key from {0} is empty")]
    EmptyKey(String),
    #[error("the daemon URL must start with http:// or https://: {0}")]
    Url(String),
}

impl Settings {
    /// `admin_key` is the `NEXUS_ADMIN_KEY` variable; `daemon_config` the daemon's
    /// configuration file to take a default URL from.
    pub fn resolve(
        cli: Cli,
        admin_key: Option<String>,
        daemon_config: &Path,
    ) -> Result<Settings, SettingsError> {
        let url = match cli.url {
            Some(url) => url,
            None => url_from_daemon_config(daemon_config).unwrap_or_else(|| FALLBACK_URL.into()),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SettingsError::Url(url));
        }

        // An explicit file wins; the variable beats only the packaged default.
        let (key, source) = match (cli.key_file, admin_key) {
            (Some(path), _) => (read_key_file(&path)?, path.display().to_string()),
            (None, Some(key)) => (key, "NEXUS_ADMIN_KEY".to_string()),
            (None, None) => {
                let path = Path::new(DEFAULT_KEY_FILE);
                (read_key_file(path)?, DEFAULT_KEY_FILE.to_string())
            }
        };
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err(SettingsError::EmptyKey(source));
        }

        Ok(Settings {
            url: url.trim_end_matches('/').to_string(),
            key,
            interval: cli.interval,
        })
    }
}

/// Reads a key file, refusing one that other users can read: an admin key grants everything.
fn read_key_file(path: &Path) -> Result<String, SettingsError> {
    let shown = path.display().to_string();
    let io_error = |source| SettingsError::KeyFile {
        path: shown.clone(),
        source,
    };
    let mode = fs::metadata(path).map_err(io_error)?.permissions().mode();
    if mode & 0o004 != 0 {
        return Err(SettingsError::KeyReadableByOthers {
            path: shown,
            mode: mode & 0o777,
        });
    }
    fs::read_to_string(path).map_err(io_error)
}

/// The part of the daemon's configuration the console needs; the rest is ignored.
#[derive(Deserialize)]
struct DaemonConfig {
    #[serde(default)]
    server: ServerSection,
}

#[derive(Default, Deserialize)]
struct ServerSection {
    address: Option<String>,
    port: Option<u16>,
}

/// Where the daemon configured in `path` listens, as a URL to connect to; `None` when the
/// file cannot be read or parsed.
fn url_from_daemon_config(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let config: DaemonConfig = toml::from_str(&text).ok()?;
    let address = config.server.address.unwrap_or_else(|| "127.0.0.1".into());
    let port = config.server.port.unwrap_or(8000);
    // A wildcard listen address is reached on loopback; an IPv6 literal needs brackets.
    let host = match address.trim_matches(['[', ']']) {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        v6 if v6.contains(':') => format!("[{v6}]"),
        host => host.to_string(),
    };
    Some(format!("http://{host}:{port}"))
}

/// `1`, `0.5`, `2s` or `500ms`.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(millis) = text.strip_suffix("ms") {
        (millis, 0.001)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 1, 0.5, 2s or 500ms"))?;
    let interval = Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("`{text}` is not a positive duration"))?;
    if interval < MIN_INTERVAL {
        return Err(format!("the interval must be at least {MIN_INTERVAL:?}"));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("nexus-canvas-console").chain(args.iter().copied()))
            .unwrap()
    }

    fn key_file(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join("admin.key");
        fs::write(&path, "nxs_secret\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn intervals_take_seconds_or_units() {
        assert_eq!(parse_interval("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn the_daemon_config_gives_the_default_url() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let url = |text: &str| {
            fs::write(&config, text).unwrap();
            url_from_daemon_config(&config)
        };
        assert_eq!(
            url("[server]\naddress = \"10.0.0.5\"\nport = 9000\n[store]\nreaders = 2\n"),
            Some("http://10.0.0.5:9000".into())
        );
        assert_eq!(
            url("[server]\naddress = \"0.0.0.0\"\n"),
            Some("http://127.0.0.1:8000".into())
        );
        assert_eq!(
            url("[server]\naddress = \"::\"\nport = 1\n"),
            Some("http://[::1]:1".into())
        );
        assert_eq!(
            url("[server]\naddress = \"fd00::2\"\n"),
            Some("http://[fd00::2]:8000".into())
        );
        assert_eq!(
            url("[log]\nlevel = \"debug\"\n"),
            Some("http://127.0.0.1:8000".into())
        );
        assert_eq!(url("not toml ["), None);
        assert_eq!(
            url_from_daemon_config(&dir.path().join("missing.toml")),
            None
        );
    }

    #[test]
    fn the_key_comes_from_the_flag_then_the_variable_then_the_default_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), 0o640);
        let config = dir.path().join("none.toml");

        let from_file = Settings::resolve(
            cli(&["--key-file", path.to_str().unwrap(), "--url", "http://h:1/"]),
            Some("from_env".into()),
            &config,
        )
        .unwrap();
        assert_eq!(from_file.key, "nxs_secret");
        assert_eq!(from_file.url, "http://h:1");
        assert_eq!(from_file.interval, Duration::from_secs(1));

        // Built directly, not parsed: NEXUS_CONSOLE_URL in the test's environment must not count.
        let defaults = || Cli {
            url: None,
            key_file: None,
            interval: Duration::from_secs(1),
        };
        let from_env = Settings::resolve(defaults(), Some(" from_env\n".into()), &config).unwrap();
        assert_eq!(from_env.key, "from_env");
        assert_eq!(from_env.url, FALLBACK_URL);

        let empty = Settings::resolve(defaults(), Some("  ".into()), &config).unwrap_err();
        assert!(matches!(empty, SettingsError::EmptyKey(_)), "{empty}");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), 0o644);
        let error = Settings::resolve(
            cli(&["--key-file", path.to_str().unwrap()]),
            None,
            &dir.path().join("none.toml"),
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(matches!(
            error,
            SettingsError::KeyReadableByOthers { mode: 0o644, .. }
        ));
        assert!(
            message.contains("other users can read it (mode 644)"),
            "{message}"
        );
        assert!(message.contains("chmod o-r"), "{message}");
    }

    #[test]
    fn a_missing_key_file_says_how_to_give_one() {
        let error = Settings::resolve(
            cli(&["--key-file", "/nonexistent/admin.key"]),
            None,
            Path::new("/nonexistent/config.toml"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("NEXUS_ADMIN_KEY"), "{error}");
    }

    #[test]
    fn urls_need_a_scheme() {
        let error = Settings::resolve(
            cli(&["--url", "localhost:8000"]),
            Some("key".into()),
            Path::new("/nonexistent"),
        )
        .unwrap_err();
        assert!(matches!(error, SettingsError::Url(_)));
    }
}
