//! `causeway-query serve` configuration (YAML). Every field has a default; unknown keys are
//! errors that name the key. `read_only` exists only to be refused if set to false.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Top-level configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Store URL (overridden by --store).
    pub store: String,
    /// Always true: the service cannot write. Setting false is an error.
    pub read_only: bool,
    /// Security limits.
    pub security: Security,
    /// HTTP transport.
    pub http: Http,
}

/// Limits applied to every tool and to SQL.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    /// Only these pids are visible (empty: all).
    pub allow_pids: Vec<i32>,
    /// These pids are never visible.
    pub deny_pids: Vec<i32>,
    /// Requests per second each HTTP client (its MCP session, else its address) may make once
    /// authenticated, beyond which it gets 429.
    pub rate_limit_per_second: u32,
    /// Rows returned by one tool call or query at most (the rest is marked truncated).
    pub max_rows: usize,
    /// Bytes of one result at most (JSON); larger results are cut and marked truncated.
    pub max_result_bytes: usize,
    /// Seconds one query may run.
    pub query_timeout_s: u64,
    /// Memory one query may use, MiB.
    pub memory_limit_mib: usize,
    /// Decoded windows (a process's rows in a tool's time window) kept between tool calls,
    /// MiB; the next call about the same window over the same files reuses them, and the
    /// answers given about them. 0: none kept.
    pub window_cache_mib: usize,
    /// Parquet footers and page indexes kept between queries, MiB (DataFusion's file metadata
    /// cache). Its own default, 50, holds ~137 of the 180 files an hour at 50k events/s writes
    /// (~0.37 MiB each), and every query that touches another decodes its footer again.
    pub footer_cache_mib: usize,
    /// Largest accepted HTTP request body, bytes.
    pub max_request_bytes: usize,
}

/// HTTP transport settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// File holding the bearer token (first line).
    pub token_file: Option<String>,
    /// Environment variable holding the bearer token, used when no file is set.
    pub token_env: String,
    /// Browser origins allowed to call (e.g. "http://localhost:6274"); others get 403.
    pub allowed_origins: Vec<String>,
    /// Host header values accepted (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Seconds a connection may take to send a request's headers before it is closed.
    pub header_timeout_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: "file://./data".into(),
            read_only: true,
            security: Security::default(),
            http: Http::default(),
        }
    }
}

impl Default for Security {
    fn default() -> Self {
        Security {
            allow_pids: Vec::new(),
            deny_pids: Vec::new(),
            rate_limit_per_second: 100,
            max_rows: 1000,
            max_result_bytes: 256 * 1024,
            query_timeout_s: 10,
            memory_limit_mib: 512,
            window_cache_mib: 256,
            footer_cache_mib: 128,
            max_request_bytes: 1024 * 1024,
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            token_file: None,
            token_env: "CAUSEWAY_MCP_TOKEN".into(),
            allowed_origins: Vec::new(),
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            header_timeout_s: 10,
        }
    }
}

impl Security {
    /// The query timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.query_timeout_s)
    }

    /// True when an allow or deny list hides some pids.
    pub fn has_pid_policy(&self) -> bool {
        !self.allow_pids.is_empty() || !self.deny_pids.is_empty()
    }

    /// True when `pid` may be shown.
    pub fn pid_visible(&self, pid: i32) -> bool {
        (self.allow_pids.is_empty() || self.allow_pids.contains(&pid))
            && !self.deny_pids.contains(&pid)
    }
}

impl Config {
    /// Loads and validates a file; errors name the file and field.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses YAML text.
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            format!("invalid config field `{path}`: {}", e.into_inner())
        })?;
        let bad = |f: &str, why: &str| Err(format!("invalid config field `{f}`: {why}"));
        if !cfg.read_only {
            return bad(
                "read_only",
                "causeway-query is read-only by construction; it cannot be switched off",
            );
        }
        if cfg.security.rate_limit_per_second == 0 {
            return bad("security.rate_limit_per_second", "must be positive");
        }
        if cfg.http.header_timeout_s == 0 || cfg.http.header_timeout_s > 300 {
            return bad("http.header_timeout_s", "must be within 1..=300");
        }
        if cfg.security.max_rows == 0 || cfg.security.max_rows > 100_000 {
            return bad("security.max_rows", "must be within 1..=100000");
        }
        if cfg.security.query_timeout_s == 0 || cfg.security.query_timeout_s > 600 {
            return bad("security.query_timeout_s", "must be within 1..=600");
        }
        if cfg.security.memory_limit_mib < 16 {
            return bad("security.memory_limit_mib", "must be at least 16");
        }
        if cfg.security.window_cache_mib > cfg.security.memory_limit_mib {
            return bad(
                "security.window_cache_mib",
                "must not exceed security.memory_limit_mib",
            );
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_the_default() {
        let text = include_str!("../../config/query.example.yaml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }

    #[test]
    fn read_only_cannot_be_switched_off_and_keys_are_named() {
        assert!(Config::parse("read_only: false\n")
            .unwrap_err()
            .contains("read_only"));
        assert!(Config::parse("security:\n  max_rowz: 3\n")
            .unwrap_err()
            .contains("max_rowz"));
        let e = Config::parse("security:\n  max_rows: 0\n").unwrap_err();
        assert!(e.contains("security.max_rows"), "{e}");
        let e = Config::parse("security:\n  memory_limit_mib: 64\n  window_cache_mib: 65\n")
            .unwrap_err();
        assert!(e.contains("security.window_cache_mib"), "{e}");
        let none = Config::parse("security:\n  window_cache_mib: 0\n").unwrap();
        assert_eq!(none.security.window_cache_mib, 0);
    }

    #[test]
    fn pid_policy() {
        let s = Security {
            allow_pids: vec![1, 2],
            deny_pids: vec![2],
            ..Default::default()
        };
        assert!(s.pid_visible(1));
        assert!(!s.pid_visible(2));
        assert!(!s.pid_visible(3));
        assert!(Security::default().pid_visible(3));
    }
}
