//! The fault-scenario suite: real faults on the real kernel, each checked by the causal-chain
//! engine's top-1 mechanism and contention source (`causeway-query diagnose --json`, the same
//! analysis as the MCP tool `resolve_causal_chain`).
//!
//! Each scenario runs alone too, as a demo of that fault:
//! `cargo test --release --workspace --test scenarios <name> -- --nocapture` prints the diagnosis.

use std::path::Path;
use std::process::Command;

use causeway_tests::int;
use causeway_tests::require_tool;
use causeway_tests::spinner;
use causeway_tests::Collector;
use causeway_tests::Scenario;
use causeway_tests::TempCgroup;
use causeway_tests::Workload;
use serde_json::Value;

fn mechanism(v: &Value) -> &str {
    v["blocking_mechanism"].as_str().unwrap_or("")
}

/// A spinner on CPU 0 for 5 s, moved into `cg`.
fn hog_on_cpu0_in(cg: &TempCgroup) -> std::process::Child {
    let hog = spinner(1, 0, "5s");
    cg.add(hog.id());
    hog
}

/// A CPU hog pinned to the target's CPU, in a cgroup of its own: the target waits in the run
/// queue behind it, and the diagnosis names the hog and its cgroup.
#[test]
fn cpu_hog_on_the_targets_cpu() {
    let Some(s) = Scenario::new("cpu_hog_on_the_targets_cpu") else {
        return;
    };
    let cg = TempCgroup::create("cw-hog").expect("a cgroup v2 mount (unified hierarchy)");
    let mut hog = hog_on_cpu0_in(&cg);
    let (pid, _) = s.record(
        &["spin", "--threads", "1", "--cpu", "0", "--time", "2s"],
        &[],
    );
    let hog_pid = hog.id() as i64;
    let _ = hog.kill();
    let _ = hog.wait();
    let v = s.diagnose(pid);
    assert_eq!(mechanism(&v), "cpu_contention", "{v}");
    assert_eq!(v["contention_source"]["pid"].as_i64(), Some(hog_pid), "{v}");
    assert_eq!(
        v["contention_source"]["cgroup_id"].as_i64(),
        Some(cg.id()),
        "the hog's cgroup: {v}"
    );
    assert_eq!(
        v["contention_source"]["cgroup_path"].as_str(),
        cg.path.to_str(),
        "{v}"
    );
    assert!(
        v["recommended_action"]
            .as_str()
            .unwrap()
            .contains(&hog_pid.to_string()),
        "{v}"
    );
}

/// Noisy neighbours: three processes of one cgroup (a container's workers) share the target's
/// CPU. None of them alone holds the CPU most; their cgroup does, and the diagnosis says so.
#[test]
fn noisy_neighbour_cgroup_of_many_processes() {
    let Some(s) = Scenario::new("noisy_neighbour_cgroup_of_many_processes") else {
        return;
    };
    let cg = TempCgroup::create("cw-neighbours").expect("a cgroup v2 mount (unified hierarchy)");
    let mut hogs: Vec<_> = (0..3).map(|_| hog_on_cpu0_in(&cg)).collect();
    let (pid, _) = s.record(
        &["spin", "--threads", "1", "--cpu", "0", "--time", "2s"],
        &[],
    );
    for h in hogs.iter_mut() {
        let _ = h.kill();
        let _ = h.wait();
    }
    let v = s.diagnose(pid);
    assert_eq!(mechanism(&v), "cpu_contention", "{v}");
    let n = &v["contention_source"]["neighbour_cgroup"];
    assert_eq!(n["cgroup_id"].as_i64(), Some(cg.id()), "{v}");
    // a run-queue row names the task that ran just before the target: when the scheduler keeps
    // a fixed rotation that is always the same one of the three, so the processes seen are
    // 1..=3 — the cgroup, not the process, is what is certain
    let seen = n["processes"].as_i64().unwrap_or(0);
    assert!((1..=3).contains(&seen), "{v}");
    assert!(n["share_of_runq"].as_f64().unwrap_or(0.0) > 0.5, "{v}");
    let action = v["recommended_action"].as_str().unwrap();
    assert!(action.contains(cg.path.to_str().unwrap()), "{action}");
    if seen > 1 {
        assert!(action.contains("processes) held the CPU"), "{action}");
    }
}

/// A mutex holder sleeping inside its critical section.
#[test]
fn mutex_holder_doing_a_slow_operation() {
    let Some(s) = Scenario::new("mutex_holder_doing_a_slow_operation") else {
        return;
    };
    let (pid, result) = s.record(&["mutex", "--hold", "300ms"], &[]);
    let v = s.diagnose(pid);
    assert_eq!(mechanism(&v), "lock_contention", "{v}");
    assert_eq!(
        v["contention_source"]["tid"].as_i64(),
        Some(int(&result, "holder_tid")),
        "{v}"
    );
    assert_eq!(v["contention_source"]["comm"], "cw-holder", "{v}");
    let share = v["chain"][0]["share_of_window"].as_f64().unwrap();
    assert!(
        share > 0.0 && share <= 1.0,
        "each link carries its share of the window: {v}"
    );
}

/// Two hops: the waiter blocks on a lock whose holder is writing (O_DIRECT) and fsyncing.
#[test]
fn two_hop_chain_lock_then_io() {
    let Some(s) = Scenario::on_disk("two_hop_chain_lock_then_io") else {
        return;
    };
    let file = s.path("data.bin");
    let (pid, result) = s.record(
        &[
            "lockio",
            "--file",
            file.to_str().unwrap(),
            "--bytes",
            "33554432",
            "--rounds",
            "3",
            "--direct",
        ],
        &["--min-off-cpu", "200us"],
    );
    let v = s.diagnose(pid);
    assert_eq!(mechanism(&v), "lock_contention", "{v}");
    let src = &v["contention_source"];
    assert_eq!(src["tid"].as_i64(), Some(int(&result, "holder_tid")), "{v}");
    assert!(src["device"].is_string(), "the root's device is named: {v}");
    let chain = v["chain"].as_array().unwrap();
    let root = chain.last().unwrap();
    assert_eq!(root["role"], "root", "{v}");
    assert!(
        root["detail"].as_str().unwrap().contains("(disk)"),
        "the holder was in D-state: {v}"
    );
    assert!(
        root["detail"].as_str().unwrap().contains("doing I/O on"),
        "{v}"
    );
}

/// Mounts a fresh ext4 on a loop device; unmounts and detaches on drop.
struct LoopFs {
    dev: String,
    mnt: tempfile::TempDir,
    _img: tempfile::TempDir,
}

impl LoopFs {
    fn new() -> Option<LoopFs> {
        let img_dir = tempfile::tempdir_in("/var/tmp").ok()?;
        let img = img_dir.path().join("fs.img");
        std::fs::File::create(&img).ok()?.set_len(256 << 20).ok()?;
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("losetup failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mnt = tempfile::tempdir().ok()?;
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F", &dev])
            .status()
            .ok()?
            .success()
            && Command::new("mount")
                .arg(&dev)
                .arg(mnt.path())
                .status()
                .ok()?
                .success();
        if !ok {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
            return None;
        }
        Some(LoopFs {
            dev,
            mnt,
            _img: img_dir,
        })
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt.path()).status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// fsync and O_DIRECT writes on a loop device: the thread is blocked on I/O to that device.
#[test]
fn io_stall_on_a_loop_device() {
    let Some(s) = Scenario::new("io_stall_on_a_loop_device").and_then(|s| {
        s.needs(
            &["losetup", "mkfs.ext4", "mount"],
            "losetup/mkfs.ext4/mount (util-linux, e2fsprogs)",
        )
    }) else {
        return;
    };
    let Some(fs) = LoopFs::new() else {
        panic!("could not set up a loop device with ext4 (root, loop module)");
    };
    let file = fs.mnt.path().join("stall.bin");
    let (pid, _) = s.record(
        &[
            "fsync",
            "--file",
            file.to_str().unwrap(),
            "--bytes",
            "8388608",
            "--rounds",
            "6",
            "--direct",
        ],
        &[],
    );
    let v = s.diagnose(pid);
    assert_eq!(mechanism(&v), "io_wait", "{v}");
    let loop_name = fs.dev.trim_start_matches("/dev/");
    assert_eq!(v["contention_source"]["device"], loop_name, "{v}");
    assert!(
        v["recommended_action"]
            .as_str()
            .unwrap()
            .contains(loop_name),
        "{v}"
    );
}

/// A CPU quota (cgroup CFS bandwidth: cpu.max on v2, cpu.cfs_quota_us on v1): the target is
/// runnable while its CPU idles.
#[test]
fn cpu_quota_throttling() {
    let Some(s) = Scenario::new("cpu_quota_throttling") else {
        return;
    };
    // v2 with the cpu controller, else the v1 cpu hierarchy
    let v2 = Path::new("/sys/fs/cgroup/cgroup.subtree_control");
    let (dir, quota): (std::path::PathBuf, Box<dyn Fn(&Path)>) =
        if std::fs::read_to_string(v2).is_ok_and(|s| s.contains("cpu")) {
            (
                Path::new("/sys/fs/cgroup").join(format!("cw-throttle-{}", std::process::id())),
                Box::new(|d: &Path| std::fs::write(d.join("cpu.max"), "10000 100000").unwrap()),
            )
        } else if Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
            (
                Path::new("/sys/fs/cgroup/cpu").join(format!("cw-throttle-{}", std::process::id())),
                Box::new(|d: &Path| {
                    std::fs::write(d.join("cpu.cfs_period_us"), "100000").unwrap();
                    std::fs::write(d.join("cpu.cfs_quota_us"), "10000").unwrap();
                }),
            )
        } else {
            assert!(require_tool(
                "cpu_quota_throttling",
                false,
                "a cgroup cpu controller (v2 cpu.max or v1 cfs quota)"
            ));
            return;
        };
    std::fs::create_dir_all(&dir).unwrap();
    quota(&dir);
    let store = s.store();
    let w = Workload::spawn(&["spin", "--threads", "1", "--cpu", "1", "--time", "2s"]);
    std::fs::write(dir.join("cgroup.procs"), w.pid.to_string()).unwrap();
    let pid = w.pid;
    let c = Collector::start(
        &store,
        &["--pid", &pid.to_string(), "--flush-interval", "1s"],
    );
    w.run();
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.stop();
    let _ = std::fs::remove_dir(&dir);
    let v = s.diagnose(pid);
    assert_eq!(mechanism(&v), "cpu_throttling", "{v}");
    assert!(v["contention_source"]["cgroup_id"].is_i64(), "{v}");
    // the collector's cpu.throttle rows: the cgroup's own counters and quota
    let src = &v["contention_source"];
    assert!(src["throttled_periods"].as_i64().unwrap_or(0) > 0, "{v}");
    assert!(
        src["periods"].as_i64().unwrap_or(0) >= src["throttled_periods"].as_i64().unwrap_or(0),
        "{v}"
    );
    assert_eq!(src["cpu_max"].as_str(), Some("10000 100000"), "{v}");
    assert_eq!(src["cgroup_path"].as_str(), dir.to_str(), "{v}");
    assert!(
        v["recommended_action"].as_str().unwrap().contains("quota"),
        "{v}"
    );
}

/// The negative control: a thread that only sleeps is not contended.
#[test]
fn nanosleep_only_reports_no_contention() {
    let Some(s) = Scenario::new("nanosleep_only_reports_no_contention") else {
        return;
    };
    let (pid, _) = s.record(&["sleep", "--each", "50ms", "--count", "20"], &[]);
    let v = s.diagnose(pid);
    assert_eq!(v["severity"], "none", "{v}");
    assert_eq!(mechanism(&v), "unknown", "{v}");
}

/// A peer in its own network namespace behind a veth pair, an echo server there, and an nftables
/// rule in the peer's input path dropping a share of the data segments it receives (there is no
/// netem here; a drop in the sender's own output path would be a local error, not a loss the
/// sender retransmits). Torn down on drop.
struct LossyPeer {
    ns: String,
    veth: String,
    table: String,
    server: std::process::Child,
    addr: String,
}

impl LossyPeer {
    fn new(drop_percent: u32) -> LossyPeer {
        let id = std::process::id() % 100_000;
        let (ns, veth, peer, table) = (
            format!("cwns{id}"),
            format!("cwa{id}"),
            format!("cwb{id}"),
            format!("cwtest{id}"),
        );
        let run = |args: &[&str]| {
            let st = Command::new(args[0])
                .args(&args[1..])
                .status()
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(st.success(), "{args:?} failed");
        };
        let octet = 1 + (id % 200);
        let (local, remote) = (format!("10.{octet}.77.1"), format!("10.{octet}.77.2"));
        run(&["ip", "netns", "add", &ns]);
        run(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
        ]);
        run(&["ip", "link", "set", &peer, "netns", &ns]);
        run(&["ip", "addr", "add", &format!("{local}/24"), "dev", &veth]);
        run(&["ip", "link", "set", &veth, "up"]);
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("{remote}/24"),
            "dev",
            &peer,
        ]);
        run(&["ip", "netns", "exec", &ns, "ip", "link", "set", &peer, "up"]);
        run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let server = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c"])
            .arg(
                "import socket,threading\n\
                 s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('0.0.0.0', 9000)); s.listen(8)\n\
                 def serve(c):\n    while True:\n        d=c.recv(65536)\n        if not d: break\n        c.sendall(d)\n\
                 while True:\n    c,_=s.accept(); threading.Thread(target=serve,args=(c,),daemon=True).start()\n",
            )
            .spawn()
            .expect("echo server");
        run(&[
            "ip", "netns", "exec", &ns, "nft", "add", "table", "inet", &table,
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "add",
            "chain",
            "inet",
            &table,
            "in",
            "{ type filter hook input priority 0 ; }",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "add",
            "rule",
            "inet",
            &table,
            "in",
            "tcp",
            "dport",
            "9000",
            "meta",
            "length",
            "gt",
            "200",
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            &drop_percent.to_string(),
            "drop",
        ]);
        // wait for the server to listen
        let addr = format!("{remote}:9000");
        for _ in 0..100 {
            if std::net::TcpStream::connect_timeout(
                &addr.parse().unwrap(),
                std::time::Duration::from_millis(200),
            )
            .is_ok()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        LossyPeer {
            ns,
            veth,
            table,
            server,
            addr,
        }
    }
}

impl Drop for LossyPeer {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "nft",
                "delete",
                "table",
                "inet",
                &self.table,
            ])
            .status();
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// TCP retransmits: request/response to a peer behind a lossy path (nftables random drops).
#[test]
fn tcp_retransmits_on_a_lossy_path() {
    let Some(s) = Scenario::new("tcp_retransmits_on_a_lossy_path")
        .and_then(|s| s.needs(&["ip", "nft"], "ip (iproute2) and nft (nftables)"))
    else {
        return;
    };
    let peer = LossyPeer::new(25);
    let store = s.store();
    let (pid, result) = s.record(
        &[
            "tcp",
            "--addr",
            &peer.addr,
            "--requests",
            "30",
            "--size",
            "8192",
        ],
        &[],
    );
    let v = s.diagnose(pid);
    assert_eq!(mechanism(&v), "network_retransmit", "{v}");
    assert_eq!(v["contention_source"]["peer"], peer.addr.as_str(), "{v}");
    assert!(
        v["contention_source"]["retransmits"].as_i64().unwrap() >= 1,
        "{v}"
    );
    let rows = causeway_tests::sql(
        &store,
        &format!("SELECT count(*) AS n FROM kernel_events WHERE event_name = 'tcp.retransmit' AND tid = {}", int(&result, "tid")),
    );
    assert!(
        int(&rows[0], "n") >= 1,
        "retransmits are attributed to the sending thread, not softirq: {rows:?}"
    );
}

/// A kernel lock held across slow work: the truncator rewrites and truncates a file while the
/// writer's small writes to it wait for the inode's i_rwsem in the kernel (D-state, no device).
#[test]
fn kernel_lock_held_across_a_truncate() {
    let Some(s) = Scenario::new("kernel_lock_held_across_a_truncate") else {
        return;
    };
    // tmpfs: the wait is the inode lock alone, with no device behind it
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let file = shm.path().join("shared.bin");
    let (pid, result) = s.record(
        &["klock", "--file", file.to_str().unwrap(), "--rounds", "10"],
        &[],
    );
    let v = s.diagnose(pid);
    assert_eq!(mechanism(&v), "lock_contention", "{v}");
    let src = &v["contention_source"];
    assert_eq!(
        src["kind"], "kernel_lock",
        "a kernel lock, not the device: {v}"
    );
    assert_eq!(
        src["lock_kind"], "rwsem_write",
        "the inode lock taken for writing: {v}"
    );
    assert_eq!(
        src["tid"].as_i64(),
        Some(int(&result, "holder_tid")),
        "the truncator holds it: {v}"
    );
    assert_eq!(
        v["chain"][0]["tid"].as_i64(),
        Some(int(&result, "waiter_tid")),
        "{v}"
    );
    // the lock has no symbol (per-object); the waiters' kernel stack says where it is taken:
    // the file system's write path (ext4_/shmem_file_write_iter …) under pwrite, not the rwsem
    // slow path or the tracing frames above it
    let taken_in: Vec<&str> = src["taken_in"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        taken_in.first().is_some_and(|f| f.contains("write")),
        "where the lock is taken: {v}"
    );
    assert!(
        taken_in
            .iter()
            .any(|f| f.contains("pwrite") || f.contains("vfs_write")),
        "{v}"
    );
}
