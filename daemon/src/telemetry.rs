//! Logging: `tracing` to standard error, as JSON lines or plain text.
//!
//! Standard error keeps standard output for what commands print (a new API key, the
//! effective configuration); journald collects both under systemd.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configured level.
pub fn init(format: LogFormat, level: LogLevel) {
    // Rocket's own per-request chatter duplicates our access log; keep only its warnings.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},rocket=warn", level.as_str())));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);

    // `try_init` fails only if a subscriber is already set, e.g. by a test harness.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };

    // A panicking handler is answered with a 500 by Rocket; make sure the cause is logged.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
}
