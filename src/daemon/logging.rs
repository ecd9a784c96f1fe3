//! Logging: to the journal with structured fields when its socket exists, else to stderr
//! (text or JSON).

use crate::config::model::{LogFormat, LogLevel};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The journal's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Under systemd stderr also reaches the journal, but without fields: prefer the native
    // protocol when the socket is there and stderr is not a terminal someone is watching.
    let use_journal = std::path::Path::new(JOURNAL_SOCKET).exists()
        && std::env::var_os("JOURNAL_STREAM").is_some();
    if use_journal && let Ok(layer) = tracing_journald::layer() {
        let layer = layer.with_syslog_identifier("garrison".into());
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init();
        return;
    }
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}
