//! The daemon's configuration: one figment stack shared by Rocket and everything else.
//!
//! Layers, later ones winning: the defaults compiled in from `config/default.toml`, the file
//! given with `--config`, then `NEXUS_<SECTION>__<KEY>` environment variables. Every struct
//! denies unknown fields, so a misspelt key stops the daemon with the key and its source named
//! instead of silently keeping a default.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rocket::figment::Figment;
use rocket::figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// The compiled-in defaults; also the reference for every key an operator may set.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of environment overrides; `__` separates a section from its key.
const ENV_PREFIX: &str = "NEXUS_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    pub inference: InferenceConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub alerts: AlertsConfig,
    pub errors: ErrorsConfig,
    pub rate_limits: RateLimitsConfig,
    pub cors: CorsConfig,
    pub tls: TlsConfig,
    pub connections: ConnectionsConfig,
    pub replication: ReplicationConfig,
    pub assets: AssetsConfig,
    pub web: WebConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub address: IpAddr,
    pub port: u16,
    pub shutdown_grace_secs: u32,
    pub workers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub readers: usize,
    pub busy_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub json_body_bytes: u64,
    pub default_page_size: u32,
    pub max_page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    pub enabled: bool,
    pub device: DeviceSetting,
    pub models_dir: PathBuf,
    pub mirror: String,
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub queue_capacity: u32,
    pub request_timeout_ms: u64,
    pub max_inputs_per_request: u32,
    pub max_input_chars: usize,
    pub cache_bytes: u64,
}

/// Which device runs the model; see `inference.device` in `config/default.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceSetting {
    Auto,
    Gpu,
    Cpu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// Request rates per API key and route class, and per client address; see `[rate_limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub enabled: bool,
    pub read: Rate,
    pub write: Rate,
    pub inference: Rate,
    pub admin: Rate,
    /// Uploads of assets, per key: a bucket of their own, beside the one of writes.
    pub upload: Rate,
    pub address: Rate,
    pub trusted_proxies: Vec<IpAddr>,
    pub sweep_secs: u64,
}

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// Which web origins may call the API from a browser; see `[cors]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_secs: u64,
}

/// HTTPS on a second listener, served by the listener front; see `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    pub address: IpAddr,
    pub port: u16,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub reload_check_secs: u64,
    pub https_only: bool,
    pub hsts_max_age_secs: u64,
}

/// Connection limits and deadlines of the listener front; see `[connections]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    pub max_total: usize,
    pub max_per_address: usize,
    pub handshake_timeout_secs: u64,
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
}

impl TlsConfig {
    fn validate(&self, server: &ServerConfig) -> Result<(), (&'static str, &'static str)> {
        if self.https_only && !self.enabled {
            return Err(("tls.https_only", "needs tls.enabled"));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.cert_path.as_os_str().is_empty() || self.key_path.as_os_str().is_empty() {
            return Err((
                "tls.cert_path",
                "tls.cert_path and tls.key_path are needed when TLS is enabled",
            ));
        }
        if self.port != 0 && (self.address, self.port) == (server.address, server.port) {
            return Err((
                "tls.port",
                "must differ from server.port on the same address",
            ));
        }
        if self.reload_check_secs == 0 {
            return Err(("tls.reload_check_secs", "must be at least 1"));
        }
        Ok(())
    }

    /// Whether `new` differs in more than the certificate files, which a reload applies.
    fn needs_restart(&self, new: &TlsConfig) -> bool {
        let live = TlsConfig {
            cert_path: new.cert_path.clone(),
            key_path: new.key_path.clone(),
            ..self.clone()
        };
        live != *new
    }
}

impl ConnectionsConfig {
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_total == 0 {
            return Err(("connections.max_total", "must be at least 1"));
        }
        if self.max_per_address == 0 || self.max_per_address > self.max_total {
            return Err((
                "connections.max_per_address",
                "must be from 1 to connections.max_total",
            ));
        }
        for (key, secs) in [
            (
                "connections.handshake_timeout_secs",
                self.handshake_timeout_secs,
            ),
            ("connections.header_timeout_secs", self.header_timeout_secs),
            ("connections.idle_timeout_secs", self.idle_timeout_secs),
        ] {
            if secs == 0 {
                return Err((key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub access: MetricsAccess,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    Off,
    Public,
    Admin,
}

/// SLO thresholds and where alerts go; see `[alerts]` in `config/default.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub evaluate_interval_ms: u64,
    pub short_window_secs: u64,
    pub long_window_secs: u64,
    pub error_rate: f64,
    pub min_requests: u64,
    pub api_p99_ms: u64,
    pub inference_p99_ms: u64,
    pub cpu_percent: f64,
    pub vram_percent: f64,
    pub replication_lag_secs: u64,
    pub webhook_url: String,
    pub webhook_min_interval_secs: u64,
    pub webhook_attempts: u32,
}

/// Brand assets: what is accepted, how large, and the thumbnails; see `[assets]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetsConfig {
    /// Short type names (`png`, `svg`, `mp4`, ...; see `crate::assets::sniff::Kind`).
    pub allowed_types: Vec<String>,
    /// The largest upload of each type, in bytes, by short type name.
    pub max_bytes: BTreeMap<String, u64>,
    pub thumbnail_sizes: Vec<u32>,
    pub max_image_pixels: u64,
    pub svg_inline: bool,
}

/// The web app served at `/`; see `[web]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Empty: no web app, the API alone.
    pub root: PathBuf,
    pub csp: String,
}

impl AssetsConfig {
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        use crate::assets::sniff::Kind;

        const KNOWN: &str = "names a type this daemon does not know (png, jpeg, webp, gif, \
             avif, svg, woff2, ttf, otf, mp4, webm, pdf)";
        if self
            .allowed_types
            .iter()
            .any(|name| Kind::from_name(name).is_none())
        {
            return Err(("assets.allowed_types", KNOWN));
        }
        if self
            .max_bytes
            .keys()
            .any(|name| Kind::from_name(name).is_none())
        {
            return Err(("assets.max_bytes", KNOWN));
        }
        let unlimited = |name: &String| self.max_bytes.get(name).is_none_or(|max| *max == 0);
        if self.allowed_types.iter().any(unlimited) {
            return Err((
                "assets.max_bytes",
                "needs a size above 0 for every type in assets.allowed_types",
            ));
        }
        if self
            .thumbnail_sizes
            .iter()
            .any(|size| !(16..=4096).contains(size))
        {
            return Err((
                "assets.thumbnail_sizes",
                "each size must be from 16 to 4096",
            ));
        }
        if self.max_image_pixels == 0 {
            return Err(("assets.max_image_pixels", "must be at least 1"));
        }
        Ok(())
    }
}

impl WebConfig {
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !self.root.as_os_str().is_empty() && !self.root.is_dir() {
            return Err(("web.root", "must be empty or an existing folder"));
        }
        if self.csp.trim().is_empty() {
            return Err(("web.csp", "must not be empty"));
        }
        Ok(())
    }
}

impl RateLimitsConfig {
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        for (key, rate) in [
            ("rate_limits.read", self.read),
            ("rate_limits.write", self.write),
            ("rate_limits.inference", self.inference),
            ("rate_limits.admin", self.admin),
            ("rate_limits.upload", self.upload),
            ("rate_limits.address", self.address),
        ] {
            if !(rate.per_second.is_finite() && rate.per_second > 0.0) || rate.burst == 0 {
                return Err((key, "needs per_second above 0 and a burst of at least 1"));
            }
        }
        if self.sweep_secs == 0 {
            return Err(("rate_limits.sweep_secs", "must be at least 1"));
        }
        Ok(())
    }
}

impl CorsConfig {
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        for origin in &self.allowed_origins {
            if origin == "*" {
                if self.allow_credentials {
                    return Err((
                        "cors.allowed_origins",
                        "\"*\" cannot be combined with cors.allow_credentials",
                    ));
                }
                continue;
            }
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if host.is_none_or(|host| host.is_empty() || host.contains('/')) {
                return Err((
                    "cors.allowed_origins",
                    "each origin is \"*\" or scheme://host[:port], without a path",
                ));
            }
        }
        Ok(())
    }
}

impl AlertsConfig {
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let invalid = |key, why| Err((key, why));
        let slot = crate::telemetry::traffic::SLOT_SECS;
        let longest = crate::telemetry::traffic::LONGEST_WINDOW_SECS;

        if self.evaluate_interval_ms < 10 {
            return invalid("alerts.evaluate_interval_ms", "must be at least 10");
        }
        if self.short_window_secs < slot || !self.short_window_secs.is_multiple_of(slot) {
            return invalid(
                "alerts.short_window_secs",
                "must be a positive multiple of 10 seconds",
            );
        }
        if self.long_window_secs < self.short_window_secs
            || self.long_window_secs > longest
            || !self.long_window_secs.is_multiple_of(slot)
        {
            return invalid(
                "alerts.long_window_secs",
                "must be a multiple of 10 seconds, from the short window up to 3600",
            );
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return invalid("alerts.error_rate", "must be a fraction from 0 to 1");
        }
        for (key, percent) in [
            ("alerts.cpu_percent", self.cpu_percent),
            ("alerts.vram_percent", self.vram_percent),
        ] {
            if !(0.0..=100.0).contains(&percent) {
                return invalid(key, "must be a percentage from 0 to 100");
            }
        }
        let url = &self.webhook_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return invalid("alerts.webhook_url", "must be empty or an http(s) URL");
        }
        if self.webhook_attempts == 0 {
            return invalid("alerts.webhook_attempts", "must be at least 1");
        }
        Ok(())
    }
}

/// Continuous replication of the store; see `[replication]` in `config/default.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    pub batch_changes: usize,
    pub s3: S3ReplicaConfig,
    pub postgres: PostgresReplicaConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3ReplicaConfig {
    pub enabled: bool,
    pub url: String,
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub allow_http: bool,
    pub ship_interval_ms: u64,
    pub snapshot_interval_secs: u64,
    pub snapshot_after_bytes: u64,
    pub retention_days: u64,
    pub wait_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresReplicaConfig {
    pub enabled: bool,
    pub url: Secret,
    pub schema: String,
    pub apply_interval_ms: u64,
}

/// A credential from the configuration. It never reaches a log or a printed configuration:
/// both show `<redacted>`; only [`Secret::expose`] gives the value, to the client that needs
/// it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { "<redacted>" }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl ReplicationConfig {
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.batch_changes == 0 {
            return Err(("replication.batch_changes", "must be at least 1"));
        }
        let s3 = &self.s3;
        if s3.enabled && !(s3.url.starts_with("s3://") || s3.url.starts_with("file://")) {
            return Err((
                "replication.s3.url",
                "must be s3://bucket[/prefix] or file:///absolute/folder",
            ));
        }
        if s3.ship_interval_ms == 0 || s3.snapshot_interval_secs == 0 || s3.retention_days == 0 {
            return Err((
                "replication.s3",
                "ship_interval_ms, snapshot_interval_secs and retention_days must be above 0",
            ));
        }
        let postgres = &self.postgres;
        if postgres.enabled && postgres.url.is_empty() {
            return Err((
                "replication.postgres.url",
                "is needed when the replica is enabled",
            ));
        }
        let valid_schema = !postgres.schema.is_empty()
            && postgres
                .schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_schema {
            return Err((
                "replication.postgres.schema",
                "must be a lower-case identifier (a-z, 0-9, _)",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    pub sentry_sample_rate: f32,
    pub environment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// A configuration that could not be loaded. The message names the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<rocket::figment::Error> for ConfigError {
    fn from(error: rocket::figment::Error) -> Self {
        // figment reports one error per bad key; each carries its key path and source.
        let messages: Vec<String> = error.into_iter().map(describe_figment_error).collect();
        ConfigError::Invalid(messages.join("; "))
    }
}

fn describe_figment_error(error: rocket::figment::Error) -> String {
    let key = error.path.join(".");
    let source = describe_source(error.metadata.as_ref());

    // Depending on the provider, an unknown field's path may or may not include the field.
    let key = match &error.kind {
        rocket::figment::error::Kind::UnknownField(field, _)
            if error.path.last() != Some(field) =>
        {
            if key.is_empty() {
                field.clone()
            } else {
                format!("{key}.{field}")
            }
        }
        _ => key,
    };
    format!("key `{key}` in {source}: {}", error.kind)
}

/// Where a value came from: the file path, the environment variable, or the defaults.
fn describe_source(metadata: Option<&rocket::figment::Metadata>) -> String {
    match metadata {
        Some(metadata) => match &metadata.source {
            Some(source) => format!("{} ({source})", metadata.name),
            None => metadata.name.to_string(),
        },
        None => "the configuration".to_string(),
    }
}

impl Config {
    /// The figment stack: embedded defaults, then the optional file, then the environment.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));

        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }

        // Only variables with a section separator are configuration; this keeps unrelated
        // NEXUS_* variables (say, of a test harness) from being taken for unknown keys.
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        Ok(figment.merge(env))
    }

    /// Loads and validates the effective configuration.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let figment = Self::figment(file)?;
        let config: Config = figment.extract()?;

        config.validate().map_err(|(key, why)| {
            let source = describe_source(figment.find_metadata(key));
            ConfigError::Invalid(format!("key `{key}` in {source}: {why}"))
        })?;
        Ok(config)
    }

    /// Checks the rules serde cannot express; an error names the key and what is wrong.
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let invalid = |key, why| Err((key, why));

        if self.store.readers == 0 {
            return invalid("store.readers", "must be at least 1");
        }
        if self.limits.json_body_bytes < 1024 {
            return invalid("limits.json_body_bytes", "must be at least 1024");
        }
        if self.limits.default_page_size == 0 {
            return invalid("limits.default_page_size", "must be at least 1");
        }
        if self.limits.max_page_size < self.limits.default_page_size {
            return invalid(
                "limits.max_page_size",
                "must not be below limits.default_page_size",
            );
        }
        self.alerts.validate()?;
        self.rate_limits.validate()?;
        self.cors.validate()?;
        self.tls.validate(&self.server)?;
        self.connections.validate()?;
        self.replication.validate()?;
        self.assets.validate()?;
        self.web.validate()?;
        if !(0.0..=1.0).contains(&self.errors.sentry_sample_rate) {
            return invalid("errors.sentry_sample_rate", "must be from 0 to 1");
        }
        Ok(())
    }

    /// The sections a changed file cannot apply to the running daemon: they need a restart.
    /// The rest (`log.level`, `[alerts]`, `[rate_limits]`, `[cors]`, the TLS certificate
    /// files) is applied live.
    pub fn restart_sections_changed(&self, new: &Config) -> Vec<&'static str> {
        [
            ("server", self.server != new.server),
            ("store", self.store != new.store),
            ("tls", self.tls.needs_restart(&new.tls)),
            ("connections", self.connections != new.connections),
            ("limits", self.limits != new.limits),
            ("inference", self.inference != new.inference),
            ("metrics", self.metrics != new.metrics),
            ("errors", self.errors != new.errors),
            ("replication", self.replication != new.replication),
            ("assets", self.assets != new.assets),
            ("web", self.web != new.web),
            ("log.format", self.log.format != new.log.format),
        ]
        .into_iter()
        .filter_map(|(section, changed)| changed.then_some(section))
        .collect()
    }

    /// The address a local client (the healthcheck) reaches the API on.
    pub fn local_url(&self) -> String {
        let host = match self.server.address {
            address if address.is_unspecified() && address.is_ipv4() => "127.0.0.1".to_string(),
            address if address.is_unspecified() => "[::1]".to_string(),
            IpAddr::V6(address) => format!("[{address}]"),
            IpAddr::V4(address) => address.to_string(),
        };
        format!("http://{host}:{}", self.server.port)
    }

    /// The effective configuration as TOML, for `config check`; credentials ([`Secret`]) show
    /// as `<redacted>`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# unprintable: {error}\n"))
    }

    /// Path of the SQLite database inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.store.data_dir.join("nexus-canvas.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let config: Config = Figment::from(Toml::string(DEFAULT_TOML)).extract().unwrap();
        assert!(config.validate().is_ok());
        assert_eq!(config.server.port, 8000);
        assert_eq!(config.local_url(), "http://127.0.0.1:8000");
    }

    #[test]
    fn unknown_key_is_named() {
        let figment =
            Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string("[server]\nprot = 1\n"));
        let error = ConfigError::from(figment.extract::<Config>().unwrap_err()).to_string();
        assert!(error.contains("server.prot"), "{error}");
    }
}
