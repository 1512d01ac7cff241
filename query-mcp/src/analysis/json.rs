//! Columns of JSON rows (the analyses that read `serde_json` rows).

use serde_json::Value;

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
