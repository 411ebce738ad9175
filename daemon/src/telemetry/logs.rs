//! Logging: `tracing` to standard error, as JSON lines or plain text, with a level that can
//! change while the daemon runs, and error reports to Sentry when `SENTRY_DSN` is set.
//!
//! Standard error keeps standard output for what commands print (a new API key, the
//! effective configuration); journald collects both under systemd.

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::config::{ErrorsConfig, LogFormat, LogLevel};

/// The standard variable Sentry's SDKs read their project address from.
const SENTRY_DSN_VAR: &str = "SENTRY_DSN";

/// Keeps logging and error reporting alive; dropping it flushes pending Sentry reports.
pub struct Logging {
    pub level: LevelHandle,
    _sentry: Option<sentry::ClientInitGuard>,
}

/// Changes the log level of the running process.
#[derive(Clone)]
pub struct LevelHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it is the operator's explicit choice and wins over the config.
    from_env: bool,
}

impl LevelHandle {
    /// Applies `level`; returns false when `RUST_LOG` pins the filter instead.
    pub fn set(&self, level: LogLevel) -> Result<bool, String> {
        if self.from_env {
            return Ok(false);
        }
        self.filter
            .reload(level_filter(level))
            .map(|()| true)
            .map_err(|error| error.to_string())
    }
}

fn level_filter(level: LogLevel) -> EnvFilter {
    // Rocket's own per-request chatter duplicates our access log; keep only its warnings.
    // tokio-postgres logs every statement's parameters at debug, which are row data (API key
    // hashes, documents): never below info.
    EnvFilter::new(format!(
        "{},rocket=warn,tokio_postgres=info",
        level.as_str()
    ))
}

/// Installs the global subscriber and, with `SENTRY_DSN` set, the Sentry client.
pub fn init(format: LogFormat, level: LogLevel, errors: &ErrorsConfig) -> Logging {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| level_filter(level));
    let (filter, handle) = reload::Layer::new(filter);

    let output = fmt::layer().with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Json => output
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        LogFormat::Text => output.with_ansi(false).boxed(),
    };
    // `try_init` fails only if a subscriber is already set, e.g. by a test harness.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init();

    // A panicking handler is answered with a 500 by Rocket; log the cause with a backtrace.
    // The event is emitted inside the handler's span, so it carries the request id.
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        tracing::error!(panic = %info, %backtrace, "panic");
    }));

    // Installed after our hook, which Sentry's panic integration keeps and calls.
    let sentry = start_sentry(errors);
    Logging {
        level: LevelHandle {
            filter: handle,
            from_env,
        },
        _sentry: sentry,
    }
}

fn start_sentry(errors: &ErrorsConfig) -> Option<sentry::ClientInitGuard> {
    let dsn = std::env::var(SENTRY_DSN_VAR)
        .ok()
        .filter(|dsn| !dsn.is_empty())?;
    let dsn = match dsn.parse::<sentry::types::Dsn>() {
        Ok(dsn) => dsn,
        Err(error) => {
            tracing::error!(%error, "SENTRY_DSN is not a valid DSN; errors are only logged");
            return None;
        }
    };

    // The DSN was parsed above, so the builder's own parse (which panics) cannot fail; the
    // sample rate was validated with the configuration.
    let options = sentry::ClientOptions::new()
        .dsn(&dsn.to_string())
        .release(concat!("nexus-canvasd@", env!("CARGO_PKG_VERSION")))
        .environment(errors.environment.clone())
        .sample_rate(errors.sentry_sample_rate)
        .attach_stacktrace(true);
    let guard = sentry::init(options);
    tracing::info!(
        sample_rate = errors.sentry_sample_rate,
        "reporting errors to Sentry"
    );
    Some(guard)
}

/// Reports a server fault to Sentry, if it is configured (a no-op otherwise).
pub fn report_error(request_id: &str, route: &str, code: &str, detail: &str) {
    sentry::with_scope(
        |scope| {
            scope.set_tag("request_id", request_id);
            scope.set_tag("route", route);
            scope.set_tag("code", code);
        },
        || sentry::capture_message(detail, sentry::Level::Error),
    );
}
