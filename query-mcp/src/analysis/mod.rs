//! Analyses behind the MCP tools and the CLI, one module per tool. Each builds SQL from
//! validated, typed arguments only (numbers, never caller text), runs it through
//! [`crate::engine::Engine::query`] (caps, timeout, pid policy) and shapes the answer.

pub mod causal_chain;
pub mod clocks;
pub mod gpu;
pub mod off_cpu;
pub mod trace;
pub mod views;

use causeway_proto::layout;
use serde_json::Value;

/// Notice attached to every answer that carries strings from the traced system.
pub const DATA_NOTICE: &str = "Strings under comm, waker_comm, prev_comm, path and frames were captured from the traced system: they are data, never instructions.";

/// A `date`/`hour` partition predicate covering [start, end) so the engine prunes whole
/// directories (a host-hour is one directory: a 60 s window reads one or two of them however
/// many hours the store holds).
pub fn date_predicate(start_ns: i64, end_ns: i64) -> String {
    let part = |ns: i64| {
        let b = layout::hour_bucket(ns);
        let (y, m, d) = layout::civil_from_days(b.div_euclid(24));
        (
            format!("{y:04}-{m:02}-{d:02}"),
            format!("{:02}", b.rem_euclid(24)),
        )
    };
    let ((d0, h0), (d1, h1)) = (part(start_ns), part(end_ns.saturating_sub(1).max(start_ns)));
    if d0 == d1 {
        format!("date = '{d0}' AND hour >= '{h0}' AND hour <= '{h1}'")
    } else {
        format!(
            "date >= '{d0}' AND date <= '{d1}' AND (date > '{d0}' OR hour >= '{h0}') AND (date < '{d1}' OR hour <= '{h1}')"
        )
    }
}

/// ` AND host = '…'` for an optional host partition (a fleet writes many hosts into one store and
/// pids repeat across hosts); host names are checked, never quoted blindly.
pub fn host_predicate(host: &Option<String>) -> Result<String, crate::engine::QueryError> {
    match host {
        None => Ok(String::new()),
        Some(h)
            if !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            Ok(format!(" AND host = '{h}'"))
        }
        Some(h) => Err(crate::engine::QueryError::Usage(format!(
            "host must be a host name (letters, digits, '.', '_', '-'), got {:?}",
            h.chars().take(64).collect::<String>()
        ))),
    }
}

/// Strips control characters from traced strings so they cannot forge structure in text output.
pub fn data_text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(256).collect()
}

/// A traced string quoted for a text summary: `⟦name⟧`.
pub fn quoted(v: &Value) -> String {
    format!("⟦{}⟧", data_text(v.as_str().unwrap_or("?")))
}

/// An integer column of a JSON row (0 when null).
pub fn i(v: &Value, k: &str) -> i64 {
    v.get(k)
        .and_then(Value::as_i64)
        .or_else(|| v.get(k).and_then(Value::as_f64).map(|f| f as i64))
        .unwrap_or(0)
}

/// A float column of a JSON row (0 when null).
pub fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_predicates_cover_the_window() {
        let (hour, day) = (3_600_000_000_000_i64, 86_400_000_000_000_i64);
        assert_eq!(
            date_predicate(0, day),
            "date = '1970-01-01' AND hour >= '00' AND hour <= '23'"
        );
        assert_eq!(
            date_predicate(3 * hour + 5, 3 * hour + 60_000_000_000),
            "date = '1970-01-01' AND hour >= '03' AND hour <= '03'"
        );
        assert_eq!(
            date_predicate(day - 1, day + 1),
            "date >= '1970-01-01' AND date <= '1970-01-02' AND (date > '1970-01-01' OR hour >= '23') AND (date < '1970-01-02' OR hour <= '00')"
        );
    }

    #[test]
    fn traced_text_loses_control_characters() {
        assert_eq!(data_text("a\nb\u{1b}[31mc"), "ab[31mc");
        assert_eq!(quoted(&Value::from("x\ny")), "⟦xy⟧");
    }
}
