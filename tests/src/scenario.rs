//! One end-to-end test on the real kernel: it may load BPF programs (else a loud skip, or a
//! failure on CI), it has the tools it names, and a store of its own in a temporary directory
//! that goes with it.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;

use serde_json::Value;

use crate::bin;
use crate::can_trace;
use crate::require_tool;
use crate::Collector;

/// A test's store and scratch directory.
pub struct Scenario {
    name: &'static str,
    dir: tempfile::TempDir,
    /// The store the test's collector writes and its queries read.
    pub store: PathBuf,
}

impl Scenario {
    /// The test `name`, when it can load BPF programs; its directory under the system's
    /// temporary directory.
    pub fn new(name: &'static str) -> Option<Scenario> {
        Self::in_dir(name, std::env::temp_dir())
    }

    /// The same, with its directory on a disk (`/var/tmp`), not tmpfs: for I/O scenarios.
    pub fn on_disk(name: &'static str) -> Option<Scenario> {
        Self::in_dir(name, PathBuf::from("/var/tmp"))
    }

    fn in_dir(name: &'static str, parent: PathBuf) -> Option<Scenario> {
        if !can_trace(name) {
            return None;
        }
        let dir = tempfile::tempdir_in(parent).expect("a temporary directory");
        let store = dir.path().join("store");
        Some(Scenario { name, dir, store })
    }

    /// The scenario, when every command in `tools` is installed (else a loud skip, or a
    /// failure on CI); `what` names the packages.
    pub fn needs(self, tools: &[&str], what: &str) -> Option<Scenario> {
        let found = tools.iter().all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        require_tool(self.name, found, what).then_some(self)
    }

    /// A path in the test's directory, beside the store.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The collector writing to the test's store with extra flags, its probes attached.
    pub fn collector(&self, args: &[&str]) -> Collector {
        Collector::start(&self.store, args)
    }

    /// Records one run of a built-in workload with the collector tracing only its pid.
    pub fn record(&self, workload: &[&str], collector_args: &[&str]) -> (i32, Value) {
        crate::record(&self.store, workload, collector_args)
    }

    /// `causeway-query <args> --store <the store> --json`, printed.
    pub fn query_json(&self, args: &[&str]) -> Value {
        let store = self.store.to_str().expect("utf-8 store path");
        crate::query_json(&[args, &["--store", store]].concat())
    }

    /// The causal chain of `pid` over the last 60 s of its records (`causeway-query diagnose`,
    /// the analysis behind `resolve_causal_chain`).
    pub fn diagnose(&self, pid: i32) -> Value {
        self.query_json(&["diagnose", "--pid", &pid.to_string(), "--window", "60s"])
    }

    /// Rows of a statement over the store.
    pub fn sql(&self, query: &str) -> Vec<Value> {
        crate::sql(&self.store, query)
    }

    /// The store's directory.
    pub fn store(&self) -> &Path {
        &self.store
    }
}

/// `causeway-testkit workload spin`: `threads` spinners pinned to `cpu` for `time`.
pub fn spinner(threads: usize, cpu: usize, time: &str) -> std::process::Child {
    Command::new(bin("causeway-testkit"))
        .args(["workload", "spin", "--threads", &threads.to_string()])
        .args(["--cpu", &cpu.to_string(), "--time", time])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting a spinner")
}
