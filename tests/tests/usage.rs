//! (e) Bad config and flags: exit code 2 and a message naming the field. No root needed: these
//! fail before anything is loaded.

use std::process::Command;

use causeway_tests::bin;
use causeway_tests::int;
use causeway_tests::query_cmd;
use causeway_tests::sql;

fn collector(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin("causeway-collector"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes a synthetic store (`causeway-testkit synth`) of `seconds` at `rate` events/s.
fn synth(store: &std::path::Path, seconds: &str, rate: &str) {
    let out = Command::new(bin("causeway-testkit"))
        .args(["synth", "--store", store.to_str().unwrap()])
        .args(["--seconds", seconds, "--rate", rate])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn with_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, text).unwrap();
    collector(&["run", "--config", p.to_str().unwrap()])
}

#[test]
fn unknown_config_key_is_named() {
    let (code, err) = with_config("thresholds:\n  min_offcpu: 1ms\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("min_offcpu"), "{err}");
}

#[test]
fn bad_config_value_names_the_field() {
    let (code, err) = with_config("thresholds:\n  min_off_cpu: soon\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("thresholds.min_off_cpu"), "{err}");
    let (code, err) = with_config("storage:\n  flush_rows: 0\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("storage.flush_rows"), "{err}");
    let (code, err) = with_config("pids: nope\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pids"), "{err}");
}

#[test]
fn missing_config_file_is_a_usage_error() {
    let (code, err) = collector(&["run", "--config", "/nonexistent/causeway.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/causeway.yaml"), "{err}");
}

#[test]
fn bad_flags_are_named() {
    for (args, needle) in [
        (vec!["run", "--duration", "forever"], "--duration"),
        (vec!["run", "--pid", "0"], "--pid"),
        (vec!["run", "--pid", "abc"], "--pid"),
        (vec!["run", "--store", "gs://bucket"], "store"),
        (vec!["run", "--min-off-cpu", "5"], "--min-off-cpu"),
        (vec!["run", "--no-such-flag"], "--no-such-flag"),
        (vec!["run", "--cgroup", "/nonexistent/cgroup"], "cgroup"),
        (vec!["run", "--cgroup", "/tmp"], "cgroup v2"),
    ] {
        let (code, err) = collector(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?} should name {needle}: {err}");
    }
}

#[test]
fn query_rejects_writes_and_bad_sql_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("kernel_events")).unwrap();
    for q in [
        "DROP TABLE kernel_events",
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
        "SELEC 1",
        "SELECT nope FROM kernel_events",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let out = query_cmd(dir.path(), q);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{q}: no message");
    }
    let out = query_cmd(dir.path(), "SELECT count(*) AS n FROM kernel_events");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = query_cmd(&dir.path().join("absent"), "SELECT 1");
    assert_eq!(
        missing.status.code(),
        Some(1),
        "a missing store is a runtime error"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
}

/// DataFusion's options come from DATAFUSION_* environment variables: a bad value stops the
/// command with exit 2 and the option's name; a good one is used.
#[test]
fn a_bad_datafusion_environment_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("kernel_events")).unwrap();
    let store = dir.path().to_str().unwrap();
    let var = "DATAFUSION_EXECUTION_TARGET_PARTITIONS";
    let bad = causeway_tests::query_cmd_env(store, &[(var, "many".into())], "SELECT 1 AS one");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(
        err.contains("DATAFUSION_") && err.contains("target_partitions") && err.contains("many"),
        "{err}"
    );
    let good = causeway_tests::query_cmd_env(
        store,
        &[(var, "1".into())],
        "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.target_partitions'",
    );
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(out.contains("\"1\""), "{out}");
    // unset: two partitions per core
    let cores = std::thread::available_parallelism().unwrap().get();
    let rows = sql(
        dir.path(),
        "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.target_partitions'",
    );
    assert_eq!(rows[0]["value"], (2 * cores).to_string(), "{rows:?}");
    // footers and page indexes of two hours of a 50k events/s collector's files stay decoded
    // (security.footer_cache_mib; DataFusion's own 50 MiB holds ~137 of an hour's 180)
    let rows = sql(
        dir.path(),
        "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.runtime.metadata_cache_limit'",
    );
    assert_eq!(rows[0]["value"], "128M", "{rows:?}");
}

/// Queries bounded in time skip, while planning, the files whose time range lies outside
/// (query-mcp/src/pruned.rs) — and still see every row inside: the counts match the same bounds
/// written as an expression the pruning cannot read, and a range before all data counts 0.
#[test]
fn time_bounded_queries_open_only_the_files_of_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // 2.5M rows in files of 1M: three files of 100, 100 and 50 s
    synth(&store, "250", "10000");
    let start: i64 = 1_795_773_600 * 1_000_000_000;
    let s = |sec: i64| start + sec * 1_000_000_000;
    for (lo, hi) in [
        (s(110), s(150)),
        (s(95), s(105)),
        (s(0), s(250)),
        (s(-100), s(-50)),
    ] {
        let pruned = sql(
            &store,
            &format!("SELECT count(*) AS n FROM kernel_events WHERE time_unix_nano >= {lo} AND time_unix_nano < {hi}"),
        );
        let unpruned = sql(
            &store,
            &format!("SELECT count(*) AS n FROM kernel_events WHERE time_unix_nano + 0 >= {lo} AND time_unix_nano + 0 < {hi}"),
        );
        assert_eq!(int(&pruned[0], "n"), int(&unpruned[0], "n"), "[{lo}, {hi})");
        assert_eq!(
            int(&pruned[0], "n"),
            ((hi.min(s(250)) - lo.max(s(0))).max(0) / 1_000_000_000) * 10_000,
            "[{lo}, {hi})"
        );
    }
    let plan = sql(
        &store,
        &format!(
            "EXPLAIN ANALYZE SELECT count(*) FROM kernel_events WHERE time_unix_nano >= {} AND time_unix_nano < {}",
            s(110),
            s(150)
        ),
    );
    let text = serde_json::to_string(&plan).unwrap();
    // the scan's file groups (a file may be split into byte ranges): one distinct file
    let files: std::collections::BTreeSet<&str> = text
        .split("part-")
        .skip(1)
        .filter_map(|s| s.split(".parquet").next())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one file of three should be scanned: {text}"
    );
}

/// A kept window keeps the answers given about it (query-mcp/src/window_cache.rs): the second
/// and third causal chain about the same window answer its questions from them, and with no
/// windows kept (`--window-cache-mib 0`) every call asks them again. Seen in the engine's debug
/// log, on a synthetic store.
#[test]
fn repeated_calls_about_a_kept_window_reuse_its_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    synth(&store, "30", "5000");
    let kept_answers = |cache_mib: &str| {
        let out = Command::new(bin("causeway-query"))
            .env("CAUSEWAY_LOG", "causeway_query=debug")
            .args(["bench", "--store", store.to_str().unwrap(), "--pid", "4242"])
            .args(["--iterations", "3", "--tool", "resolve_causal_chain"])
            .args(["--window-cache-mib", cache_mib])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        let json = String::from_utf8_lossy(&out.stdout);
        assert!(json.contains("\"n\":3"), "three chains timed: {json}");
        log.matches("answer kept with the window").count()
    };
    let kept = kept_answers("256");
    assert!(
        kept >= 2 * 3,
        "the second and third call reuse the window's answers: {kept}"
    );
    assert_eq!(kept_answers("0"), 0);
}
