//! What the binaries share: flag value parsers and logging.

use std::time::Duration;

/// clap value parser for durations (`250ms`, `10s`, `1h`).
pub fn duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

/// Logs to stderr at `CAUSEWAY_LOG` (an env-filter; default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAUSEWAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
