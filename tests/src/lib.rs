//! Helpers for the end-to-end tests: start the real collector on the real kernel, drive the
//! built-in workloads, and read the results back through `causeway-query`.

use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdin;
use std::process::ChildStdout;
use std::process::Command;
use std::process::Output;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;

mod scenario;

pub use scenario::spinner;
pub use scenario::Scenario;

/// Path of a workspace binary, next to the test executable's directory (target/<profile>/).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --release --workspace` first",
        p.display()
    );
    p
}

/// True when the tests may load BPF programs. Off CI, without root, the caller skips loudly;
/// on CI (CI=true) a missing privilege is a failure, never a skip.
pub fn can_trace(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    require_tool(
        test,
        unsafe { libc::geteuid() } == 0,
        "root (to load BPF programs)",
    )
}

/// A running `causeway-collector run`.
pub struct Collector {
    child: Option<Child>,
    /// The store directory it writes to.
    pub store: PathBuf,
}

impl Collector {
    /// Starts the collector writing to `store` with extra flags, and waits until its probes are
    /// attached.
    pub fn start(store: &Path, args: &[&str]) -> Collector {
        Self::start_with_env(store.to_str().expect("utf-8 store path"), &[], args)
    }

    /// Starts the collector with any `--store` URL and extra environment variables.
    pub fn start_with_env(store: &str, env: &[(&str, String)], args: &[&str]) -> Collector {
        let ready = std::env::temp_dir().join(format!("causeway-ready-{}", rand_suffix()));
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(bin("causeway-collector"))
            .arg("run")
            .arg("--store")
            .arg(store)
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CAUSEWAY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting causeway-collector");
        let mut c = Collector {
            child: Some(child),
            store: PathBuf::from(store),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Some(status) = c.child.as_mut().unwrap().try_wait().unwrap() {
                let out = c.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "collector exited ({status}) before attaching:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "collector did not attach within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&ready);
        c
    }

    /// The collector's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends a signal without waiting.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGINT, then waits for the final flush; returns its output.
    pub fn stop(mut self) -> Output {
        self.signal(libc::SIGINT);
        let out = self
            .child
            .take()
            .unwrap()
            .wait_with_output()
            .expect("collector output");
        assert!(
            out.status.success(),
            "collector failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// SIGKILL, no flush.
    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.take().unwrap().wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_nanos()
    )
}

fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Records one run of a built-in workload with the collector tracing only its pid; returns the
/// pid and the workload's result line.
pub fn record(store: &Path, workload: &[&str], collector_args: &[&str]) -> (i32, Value) {
    let w = Workload::spawn(workload);
    let pid = w.pid;
    let pid_arg = pid.to_string();
    let mut args = vec!["--pid", pid_arg.as_str(), "--flush-interval", "1s"];
    args.extend_from_slice(collector_args);
    let c = Collector::start(store, &args);
    let result = w.run();
    // let the last switches reach the ring buffer before the final drain
    std::thread::sleep(Duration::from_millis(300));
    c.stop();
    (pid, result)
}

/// A built-in workload (`causeway-testkit workload …`) that waits for `go`.
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Its pid.
    pub pid: i32,
}

impl Workload {
    /// Starts a workload with `--wait-stdin` and reads its pid.
    pub fn spawn(args: &[&str]) -> Workload {
        let mut cmd = Command::new(bin("causeway-testkit"));
        cmd.arg("workload").args(args).arg("--wait-stdin");
        Self::spawn_command(cmd)
    }

    /// Starts any program that prints `{"ready": pid}`, waits for a line on stdin, and prints
    /// one JSON result line.
    pub fn spawn_command(mut cmd: Command) -> Workload {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting workload");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let pid = v["ready"].as_i64().expect("ready pid") as i32;
        Workload {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// Lets it run and waits for its result line.
    pub fn run(mut self) -> Value {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        drop(stdin);
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "workload failed: {status}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
}

/// Runs `causeway-query sql` and returns its rows as JSON objects.
pub fn sql(store: &Path, query: &str) -> Vec<Value> {
    sql_env(store.to_str().expect("utf-8 store path"), &[], query)
}

/// Runs `causeway-query sql --format json` and returns the raw output.
pub fn query_cmd(store: &Path, query: &str) -> Output {
    query_cmd_env(store.to_str().expect("utf-8 store path"), &[], query)
}

/// `causeway-query sql --format json` with any `--store` URL and extra environment variables.
pub fn query_cmd_env(store: &str, env: &[(&str, String)], query: &str) -> Output {
    Command::new(bin("causeway-query"))
        .args(["sql", query, "--format", "json", "--store", store])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running causeway-query")
}

/// Like [`sql`], for any store URL and environment.
pub fn sql_env(store: &str, env: &[(&str, String)], query: &str) -> Vec<Value> {
    let out = query_cmd_env(store, env, query);
    assert!(
        out.status.success(),
        "query failed ({}): {query}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON rows");
    v.as_array().cloned().unwrap_or_default()
}

/// Says why a test that needs an external tool cannot run: a failure on CI (which installs
/// it), a loud skip elsewhere. Returns false when the test should stop.
pub fn require_tool(test: &str, ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {what} is missing, and CI installs it (.ci/run)");
    }
    eprintln!("\n*** SKIPPED {test}: {what} is missing ***\n");
    false
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_root() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mounts
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split_whitespace().next()? == "cgroup2")
                .then(|| pre.split_whitespace().nth(4).map(str::to_string))?
        })
        .next()
        .expect("a cgroup v2 mount (CI kernels have one)")
}

/// An i64 field of a JSON row.
pub fn int(row: &Value, key: &str) -> i64 {
    row[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} missing or not an integer in {row}"))
}

/// The fake CUDA libraries and workloads (tests/cuda/build.sh), built once per test process into
/// the target directory: `libcudart.so.12/.13`, `libcuda.so.1`, `libnccl.so.2`, `cw-cuda-workload`
/// (runtime 12) and `cw-cuda-workload-13`.
pub fn fake_cuda() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let out = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>/")
                .join("fakecuda");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda/build.sh");
            let o = Command::new("bash")
                .arg(&script)
                .arg(&out)
                .output()
                .expect("running tests/cuda/build.sh");
            assert!(
                o.status.success(),
                "building the fake CUDA libraries failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            out
        })
        .clone()
}

/// Parses `causeway-query <args> --json`.
pub fn query_json(args: &[&str]) -> Value {
    let out = Command::new(bin("causeway-query"))
        .args(args)
        .arg("--json")
        .output()
        .expect("causeway-query runs");
    assert!(
        out.status.success(),
        "causeway-query {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    v
}

/// A cgroup v2 directory made for one test (on the unified hierarchy, wherever it is mounted),
/// removed when dropped (once its processes have exited).
pub struct TempCgroup {
    /// The directory.
    pub path: PathBuf,
}

impl TempCgroup {
    /// Creates `<cgroup2 mount>/<name>-<pid of the test>`; None without a cgroup v2 mount.
    pub fn create(name: &str) -> Option<TempCgroup> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let root = mounts.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split_whitespace().next()? == "cgroup2")
                .then(|| pre.split_whitespace().nth(4).map(PathBuf::from))
                .flatten()
        })?;
        let path = root.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).ok()?;
        Some(TempCgroup { path })
    }

    /// Moves a process into it.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.path.display()));
    }

    /// Its cgroup id (the directory's inode), what kernel_events' cgroup columns hold.
    pub fn id(&self) -> i64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).unwrap().ino() as i64
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
