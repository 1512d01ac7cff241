//! Predicates the analyses write into their SQL: partitions covering a time window, a checked
//! host name, validated trace and span ids. Nothing from a caller reaches SQL unchecked.

use causeway_proto::layout;

use crate::error::QueryError;

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
pub fn host_predicate(host: &Option<String>) -> Result<String, QueryError> {
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
        Some(h) => Err(QueryError::Usage(format!(
            "host must be a host name (letters, digits, '.', '_', '-'), got {:?}",
            h.chars().take(64).collect::<String>()
        ))),
    }
}

/// A validated, lower-case trace id.
pub fn parse_trace_id(s: &str) -> Result<String, QueryError> {
    let t = s.trim().to_ascii_lowercase();
    if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) || t.bytes().all(|b| b == b'0') {
        return Err(QueryError::Usage(format!(
            "trace_id must be 32 hex digits and not all zero, got {:?}",
            s.chars().take(64).collect::<String>()
        )));
    }
    Ok(t)
}

/// A validated, lower-case span id.
pub fn parse_span_id(s: &str) -> Result<String, QueryError> {
    let t = s.trim().to_ascii_lowercase();
    if t.len() != 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(QueryError::Usage(format!(
            "span_id must be 16 hex digits, got {:?}",
            s.chars().take(64).collect::<String>()
        )));
    }
    Ok(t)
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
    fn ids_are_validated() {
        assert!(parse_trace_id("0af7651916cd43dd8448eb211c80319c").is_ok());
        assert_eq!(
            parse_trace_id(" 0AF7651916CD43DD8448EB211C80319C ").unwrap(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        for bad in [
            "",
            "xyz",
            "00000000000000000000000000000000",
            "0af7651916cd43dd8448eb211c80319c' OR 1=1 --",
        ] {
            assert!(parse_trace_id(bad).unwrap_err().is_usage(), "{bad}");
        }
        assert!(parse_span_id("b7ad6b7169203331").is_ok());
        assert!(parse_span_id("b7ad6b71692033").is_err());
    }

    #[test]
    fn host_names_are_checked() {
        assert_eq!(
            host_predicate(&Some("node-7.a_b".into())).unwrap(),
            " AND host = 'node-7.a_b'"
        );
        assert!(host_predicate(&Some("x' OR 1=1".into())).is_err());
        assert_eq!(host_predicate(&None).unwrap(), "");
    }
}
