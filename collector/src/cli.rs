//! Flag value parsers shared by the subcommands.

use std::time::Duration;

/// clap value parser for durations (`250ms`, `10s`, `1h`).
pub fn duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}
