//! `resolve_causal_chain`, first version: from off-CPU, waker and run-queue records, what the
//! target process waited on over a window, who ended the waits, and what that thread was doing
//! meanwhile (one more hop). The full wait-for-graph engine is issue 6.
//!
//! The window ends at the target's last recorded event, so the tool answers for a past
//! incident as well as for a live one.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use super::date_predicate;
use super::i;
use super::quoted;
use crate::engine::Engine;
use crate::engine::QueryError;

/// Arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainArgs {
    /// Process id (tgid) that was slow, > 0. Optional with trace_id (the span's process).
    // plain "integer" in the schema (not ["integer","null"]): clients coerce CLI strings by it
    #[serde(default)]
    #[schemars(with = "i64")]
    pub target_pid: Option<i64>,
    /// Window length in seconds, 1..=300, ending at the target's last recorded event. Not used
    /// with trace_id (the span is the window).
    #[serde(default)]
    #[schemars(with = "i64")]
    pub latency_window_s: Option<i64>,
    /// Include symbolized stacks of the longest wait.
    pub include_stacks: Option<bool>,
    /// A trace (32 hex digits) whose span gives the window and the process.
    pub trace_id: Option<String>,
    /// The span (16 hex digits) of that trace; default: its longest span.
    pub span_id: Option<String>,
    /// Only this host (the collector's host partition): pids repeat across a fleet's hosts.
    pub host: Option<String>,
}

/// The window of a trace's span and its process: (pid, start, end).
async fn span_window(
    engine: &Engine,
    trace: &str,
    span: Option<&str>,
) -> Result<(i64, i64, i64), QueryError> {
    let trace_id = super::trace::parse_trace_id(trace)?;
    let span_filter = match span {
        Some(s) => format!(" AND span_id = '{}'", super::trace::parse_span_id(s)?),
        None => String::new(),
    };
    let q = format!(
        "SELECT span_id, pid, start_time_unix_nano, end_time_unix_nano FROM app_spans \
         WHERE trace_id = '{trace_id}'{span_filter} ORDER BY duration_ns DESC LIMIT 1"
    );
    let Some(row) = engine.query(&q).await?.rows.into_iter().next() else {
        return Err(QueryError::Usage(format!(
            "span not found in app_spans for trace {trace_id}{span_filter}"
        )));
    };
    let (start, end) = (
        i(&row, "start_time_unix_nano"),
        i(&row, "end_time_unix_nano"),
    );
    let pid = match row["pid"].as_i64() {
        Some(p) => p,
        None => {
            // no process.pid on the span: the process its tagged kernel events came from
            let sid = row["span_id"].as_str().unwrap_or("");
            let q = format!(
                "SELECT pid FROM kernel_events WHERE span_id = '{}' AND trace_id = '{trace_id}' AND {} LIMIT 1",
                super::trace::parse_span_id(sid)?,
                date_predicate(start - 300_000_000_000, end)
            );
            engine.query(&q).await?.rows.first().map(|r| i(r, "pid")).ok_or_else(|| {
                QueryError::Usage(format!(
                    "the span {sid} carries no process.pid and no kernel event is tagged with it: pass target_pid"
                ))
            })?
        }
    };
    Ok((pid, start, end))
}

/// One link of the chain.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Link {
    /// 0 for the target, 1 for what it waited on, 2 for what that one was doing.
    pub hop: i64,
    /// Role of this link: `target`, `waker`, `waker_activity`, `cpu_holder`.
    pub role: String,
    /// Process id.
    pub pid: i64,
    /// Thread id.
    pub tid: i64,
    /// Thread name (traced data).
    pub comm: String,
    /// Milliseconds this link accounts for.
    pub ms: f64,
    /// That time as a share of the analysed window (0..1): how much of the latency this link explains.
    #[serde(default)]
    pub share_of_window: f64,
    /// What happened, in words.
    pub detail: String,
}

/// A query the agent can run again (`run_sql`) to see the rows behind a claim.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Evidence {
    /// What the rows show.
    pub description: String,
    /// The SQL.
    pub sql: String,
}

/// The answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChainReport {
    /// none | low | medium | high | critical
    pub severity: String,
    /// cpu_contention | lock_contention | io_wait | network_retransmit | cpu_throttling |
    /// gpu_sync | memory_reclaim | unknown
    pub blocking_mechanism: String,
    /// Who or what caused the wait: {pid, tid, comm} or a device; null when unknown.
    pub contention_source: Value,
    /// target → what it waited on → what that was doing.
    pub chain: Vec<Link>,
    /// Symbolized frames of the longest wait (kernel then user), when asked for.
    pub stack_trace: Vec<String>,
    /// What to do, specific to the evidence.
    pub recommended_action: String,
    /// Queries behind the answer.
    pub evidence: Vec<Evidence>,
    /// Window analysed, Unix ns.
    pub window_start_ns: i64,
    /// Window end, Unix ns.
    pub window_end_ns: i64,
    /// How to read traced strings.
    pub notice: String,
}

/// How far the chain is followed.
const MAX_HOPS: i64 = 6;

/// Calls in which the host waits for the GPU: sync calls and synchronous copies.
const GPU_WAIT: &str = "(event_name = 'cuda.sync' OR (event_name = 'cuda.memcpy' AND cuda_function NOT LIKE '%Async%'))";

/// How long before its waker's exit record a join's wait may have ended: on kernels that fire
/// the exit tracepoint after exit_mm, the joiner is woken before the record is written.
const JOIN_SLACK_NS: i64 = 5_000_000;

/// The wakers question's exclusions for waits that were joins: a wait on an exiting thread's
/// clear_child_tid futex that was under way when the thread exited (it began before the exit and
/// had not ended `JOIN_SLACK_NS` before it). The wait can end well after the exit record: the
/// exiting thread wakes its joiner later on its way out (exit_mm) and can be preempted in
/// between on a busy CPU, and the joiner then runs only when its CPU lets it — so the wait is
/// matched by spanning the exit, not by ending near it (a CI run under CPU contention saw the
/// join of a spinning thread taken for a lock wait).
fn join_exclusions(exits: &[Value], joiners: &[Value]) -> String {
    let mut not_joins = String::new();
    for x in exits {
        let (t, at, addr) = (i(x, "tid"), i(x, "time_unix_nano"), i(x, "futex_uaddr"));
        for j in joiners.iter().filter(|j| {
            i(j, "futex_uaddr") == addr
                && i(j, "start_ns") <= at
                && i(j, "end_ns") >= at - JOIN_SLACK_NS
        }) {
            not_joins.push_str(&format!(
                " AND NOT (tid = {} AND waker_tid = {t} AND time_unix_nano <= {at} \
                 AND time_unix_nano + duration_ns >= {})",
                i(j, "tid"),
                at - JOIN_SLACK_NS
            ));
        }
    }
    not_joins
}

fn severity(worst_share: f64, longest_ms: f64) -> &'static str {
    let by_share = match worst_share {
        s if s >= 0.5 => 4,
        s if s >= 0.2 => 3,
        s if s >= 0.05 => 2,
        s if s > 0.0 => 1,
        _ => 0,
    };
    let by_tail = match longest_ms {
        m if m >= 1000.0 => 3,
        m if m >= 100.0 => 2,
        m if m >= 10.0 => 1,
        _ => 0,
    };
    ["none", "low", "medium", "high", "critical"][by_share.max(by_tail)]
}

/// The cgroup v2 directory whose id (kernfs inode) is `id`, when this host has it: the query
/// service often runs where the collector does. Bounded walk; None elsewhere.
fn cgroup_by_id(id: i64) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if id <= 0 {
        return None;
    }
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        seen += 1;
        if seen > 20_000 {
            return None;
        }
        if std::fs::metadata(&dir).is_ok_and(|m| m.ino() as i64 == id) {
            return Some(dir);
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    None
}

/// ` on futex 0x… (op)`: the lock a wait was on, when the futex probe saw it; empty otherwise.
/// Asked of `other` (the target's window of other kinds, or the store).
async fn lock_of(
    other: &Source<'_>,
    pid: i64,
    hp: &str,
    tid: i64,
    start: i64,
    duration: i64,
) -> Result<String, QueryError> {
    let (t0, t1, lookback) = (
        start + 1_000_000,
        start + duration - 1_000_000,
        start - 1_000_000_000,
    );
    let store = format!(
        "pid = {pid}{hp} AND {}",
        date_predicate(lookback, start + duration)
    );
    let fx = other
        .rows_within(pid, (lookback, t0 + 1), &store, |w| {
            format!(
                "SELECT futex_uaddr, futex_op FROM kernel_events WHERE {w} AND tid = {tid} \
                 AND event_name = 'futex.wait' AND time_unix_nano <= {t0} AND time_unix_nano + duration_ns >= {t1} \
                 AND time_unix_nano >= {lookback} LIMIT 1"
            )
        })
        .await?;
    Ok(fx
        .first()
        .map(|f| {
            format!(
                " on futex 0x{:x} ({})",
                i(f, "futex_uaddr"),
                f["futex_op"].as_str().unwrap_or("wait")
            )
        })
        .unwrap_or_default())
}

/// The off-CPU interval of thread `tid` that overlaps the wait `(ws, we)` the most, among
/// those begun at `lookback` or later, for a predicate `w` (its process, host and dates).
fn activity_sql(w: &str, tid: i64, (ws, we): (i64, i64), lookback: i64) -> String {
    format!(
        "SELECT state, time_unix_nano, duration_ns, waker_pid, waker_tid, waker_comm, kernel_stack_id, \
         least(time_unix_nano + duration_ns, {we}) - greatest(time_unix_nano, {ws}) AS overlap_ns \
         FROM kernel_events WHERE {w} AND tid = {tid} AND event_name = 'sched.off_cpu' \
         AND time_unix_nano < {we} AND time_unix_nano + duration_ns > {ws} \
         AND time_unix_nano >= {lookback} ORDER BY overlap_ns DESC LIMIT 1"
    )
}

/// How far before a wait the chain first looks for the off-CPU interval of the thread it waited
/// on (see the hop loop).
const SHORT_LOOKBACK_NS: i64 = 1_000_000_000;

/// What the four questions asked of the target's scheduler records read (per thread, wakers,
/// CPU holders, the longest wait): the window holds these columns of the target's off-CPU and
/// run-queue rows, decoded once instead of once per question.
const SCHED_WINDOW_COLUMNS: &[&str] = &[
    "time_unix_nano",
    "duration_ns",
    "tid",
    "comm",
    "event_name",
    "state",
    "waker_pid",
    "waker_tid",
    "waker_comm",
    "prev_pid",
    "prev_tid",
    "prev_comm",
    "prev_cgroup_id",
    "prev_container_id",
    "kernel_stack_id",
    "user_stack_id",
];

/// The other kinds asked about: the target's thread exits, CUDA waits, kernel lock waits, CPU
/// throttling, retransmits, block requests — few rows, each asked about once or twice. Named
/// (not "all but the scheduler's"): the page index skips pages by the names in a list, not by
/// the names outside one.
const OTHER_KINDS: &[&str] = &[
    "futex.wait",
    "thread.exit",
    "process.exit",
    "cuda.sync",
    "cuda.memcpy",
    "cuda.launch",
    "kernel.lock_wait",
    "cpu.throttle",
    "tcp.retransmit",
    "block.io",
];

/// What the questions asked of the target's other records read.
const OTHER_WINDOW_COLUMNS: &[&str] = &[
    "time_unix_nano",
    "duration_ns",
    "tid",
    "comm",
    "event_name",
    "futex_uaddr",
    "futex_op",
    "cuda_function",
    "cuda_stream",
    "kernel_lock",
    "kernel_lock_kind",
    "kernel_stack_id",
    "cpu_throttled_periods",
    "cpu_periods",
    "cpu_max",
    "path",
    "cgroup_id",
    "daddr",
    "saddr",
    "device",
    "io_op",
    "bytes",
];

/// Where questions about the target's window are answered: a window of its decoded rows of
/// some kinds (asked with no predicate: it holds only the window's rows), or the store — when
/// the rows were too many to hold, or the question names a kind the window lacks or none.
struct Source<'a> {
    store: &'a Engine,
    window: Option<&'a Engine>,
    /// The window's predicate, as the store is asked.
    predicate: &'a str,
    kinds: &'a [&'a str],
    /// The window's process and `time_unix_nano` range `[start, end)`.
    pid: i64,
    range: (i64, i64),
}

impl<'a> Source<'a> {
    /// The window of `columns` of the rows matching `predicate` of `kinds`, or the store.
    async fn open(
        store: &'a Engine,
        window: &'a mut Option<Engine>,
        columns: &[&str],
        (predicate, pid, range): (&'a str, i64, (i64, i64)),
        kinds: &'a [&'a str],
    ) -> Result<Source<'a>, QueryError> {
        let list: Vec<String> = kinds.iter().map(|k| format!("'{k}'")).collect();
        *window = store
            .window(
                columns,
                &format!("{predicate} AND event_name IN ({})", list.join(", ")),
            )
            .await?;
        Ok(Source {
            store,
            window: window.as_ref(),
            predicate,
            kinds,
            pid,
            range,
        })
    }

    /// The window, when it holds every kind `statement` names.
    fn holding(&self, statement: &str) -> Option<&Engine> {
        let held = kinds_named(statement).is_some_and(|k| k.iter().all(|k| self.kinds.contains(k)));
        self.window.filter(|_| held)
    }

    /// Rows of `statement` asked of a window that holds its kinds. A window without rows (the
    /// target had none of its kinds: most processes have no CUDA, lock, throttling or
    /// retransmit records) answers every statement with no rows, unasked: the statements asked
    /// of it select, filter and group its rows — the one aggregate over all rows (throttling)
    /// reads no rows as it reads a row of nulls.
    async fn ask(window: &Engine, statement: &str) -> Result<Vec<Value>, QueryError> {
        if window.holds_no_rows() {
            return Ok(Vec::new());
        }
        Ok(window.query(statement).await?.rows)
    }

    /// Rows of the statement `sql` writes for a predicate: asked of the window when it holds
    /// every kind the statement names, of the store otherwise.
    async fn rows(&self, sql: impl Fn(&str) -> String) -> Result<Vec<Value>, QueryError> {
        let statement = sql("TRUE");
        match self.holding(&statement) {
            Some(window) => Self::ask(window, &statement).await,
            None => Ok(self.store.query(&sql(self.predicate)).await?.rows),
        }
    }

    /// Rows of a statement about process `pid` whose own conditions keep it to records begun
    /// within `[lo, hi)`, written by `sql` for a predicate: asked of the window when the window
    /// holds every row it could read (the window's process, a range within the window's, kinds
    /// it holds) — the chain's hops mostly ask about the target's own threads during one of its
    /// waits — of the store otherwise, with `store` (the statement's process, host and dates).
    async fn rows_within(
        &self,
        pid: i64,
        (lo, hi): (i64, i64),
        store: &str,
        sql: impl Fn(&str) -> String,
    ) -> Result<Vec<Value>, QueryError> {
        let statement = sql("TRUE");
        match self.holding(&statement) {
            Some(window) if pid == self.pid && lo >= self.range.0 && hi <= self.range.1 => {
                Self::ask(window, &statement).await
            }
            _ => Ok(self.store.query(&sql(store)).await?.rows),
        }
    }
}

/// The event kinds a statement names (`event_name = '…'`, `event_name IN ('…', …)`, any
/// table alias), or `None` where it names none — such a statement reads every kind.
fn kinds_named(sql: &str) -> Option<Vec<&str>> {
    fn literal(s: &str) -> Option<&str> {
        s.strip_prefix('\'')?.split('\'').next()
    }
    let mut kinds = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find("event_name") {
        rest = rest[at + "event_name".len()..].trim_start();
        if let Some(v) = rest.strip_prefix('=') {
            kinds.extend(literal(v.trim_start()));
        } else if let Some(v) = rest.strip_prefix("IN") {
            if let Some((list, _)) = v
                .trim_start()
                .strip_prefix('(')
                .and_then(|l| l.split_once(')'))
            {
                kinds.extend(list.split(',').filter_map(|k| literal(k.trim())));
            }
        }
    }
    (!kinds.is_empty()).then_some(kinds)
}

/// Runs the analysis.
pub async fn run(engine: &Engine, a: &ChainArgs) -> Result<ChainReport, QueryError> {
    let hp = super::host_predicate(&a.host)?;
    let span = match &a.trace_id {
        Some(t) => Some(span_window(engine, t, a.span_id.as_deref()).await?),
        None if a.span_id.is_some() => {
            return Err(QueryError::Usage("span_id needs trace_id".into()));
        }
        None => None,
    };
    let pid = match (a.target_pid, span) {
        (Some(p), _) => p,
        (None, Some((p, _, _))) => p,
        (None, None) => {
            return Err(QueryError::Usage(
                "target_pid is required (or give trace_id)".into(),
            ))
        }
    };
    if pid <= 0 || pid > i32::MAX as i64 {
        return Err(QueryError::Usage(format!(
            "target_pid must be a positive process id, got {pid}"
        )));
    }
    engine.check_pid(pid)?;
    let latency_window_s = match (a.latency_window_s, span) {
        (_, Some(_)) => 1,
        (Some(w), None) => w,
        (None, None) => {
            return Err(QueryError::Usage(
                "latency_window_s is required (1..=300) unless trace_id is given".into(),
            ))
        }
    };
    if !(1..=300).contains(&latency_window_s) {
        return Err(QueryError::Usage(format!(
            "latency_window_s must be within 1..=300, got {latency_window_s}"
        )));
    }
    let started = std::time::Instant::now();
    let since = || started.elapsed().as_secs_f64() * 1e3;
    let end = match span {
        Some((_, _, e)) => e,
        None => last_event_end(engine, pid, &hp).await?,
    };
    let notice = super::DATA_NOTICE.to_string();
    if end == 0 {
        return Ok(ChainReport {
            severity: "none".into(),
            blocking_mechanism: "unknown".into(),
            contention_source: Value::Null,
            chain: Vec::new(),
            stack_trace: Vec::new(),
            recommended_action: format!(
                "No kernel events are recorded for pid {pid}: record it with `causeway-collector run --pid {pid}` and ask again."
            ),
            evidence: Vec::new(),
            window_start_ns: 0,
            window_end_ns: 0,
            notice,
        });
    }
    let (start, window_ns) = match span {
        Some((_, s, e)) => (s, (e - s).max(1)),
        None => (
            end - latency_window_s * 1_000_000_000,
            latency_window_s * 1_000_000_000,
        ),
    };
    let w = format!(
        "pid = {pid}{hp} AND time_unix_nano >= {start} AND time_unix_nano < {end} AND {}",
        date_predicate(start, end)
    );
    let mut evidence = Vec::new();
    let mut q = |description: &str, sql: String| {
        evidence.push(Evidence {
            description: description.into(),
            sql: sql.clone(),
        });
        sql
    };

    // The target's records, decoded once in two windows (its scheduler records; its rarer
    // kinds): the questions below are asked of them, and the evidence quotes each as it reads
    // the store.
    tracing::debug!(ms = since(), "chain: window end found");
    let (mut sched_window, mut other_window) = (None, None);
    let (sched, other) = futures::try_join!(
        Source::open(
            engine,
            &mut sched_window,
            SCHED_WINDOW_COLUMNS,
            (&w, pid, (start, end)),
            &["sched.off_cpu", "sched.runq"],
        ),
        Source::open(
            engine,
            &mut other_window,
            OTHER_WINDOW_COLUMNS,
            (&w, pid, (start, end)),
            OTHER_KINDS
        ),
    )?;
    tracing::debug!(ms = since(), "chain: windows read");
    // per thread: time lost to each cause. Grouped by thread and state alone: the state tells
    // the kind (run-queue rows have none), and a thread's name is a label, not part of the key —
    // string keys over the window's rows (750k on the 1 h synthetic store) made the grouping
    // ~1/4 slower; a thread renamed within the window is one row, under the greater name.
    let per_thread_sql = |w: &str| {
        format!(
            "SELECT tid, max(comm) AS comm, coalesce(state, 'runq') AS state, count(*) AS n, \
             sum(duration_ns) AS total_ns, max(duration_ns) AS longest_ns FROM kernel_events \
             WHERE {w} AND event_name IN ('sched.off_cpu', 'sched.runq') \
             GROUP BY tid, state ORDER BY total_ns DESC"
        )
    };
    let exits_sql = |w: &str| {
        format!(
            "SELECT tid, time_unix_nano, futex_uaddr FROM kernel_events WHERE {w} \
             AND event_name IN ('thread.exit', 'process.exit') AND futex_uaddr IS NOT NULL \
             ORDER BY time_unix_nano LIMIT 64"
        )
    };
    let gpu_sql = |w: &str| {
        format!(
            "SELECT tid, comm, cuda_function, count(*) AS n, sum(duration_ns) AS total_ns, max(duration_ns) AS longest_ns, \
             max(cuda_stream) AS stream FROM kernel_events WHERE {w} AND {GPU_WAIT} \
             GROUP BY tid, comm, cuda_function ORDER BY total_ns DESC LIMIT 10"
        )
    };
    let cpu_sql = |w: &str| {
        format!(
            "SELECT prev_pid, prev_tid, prev_comm, count(*) AS n, sum(duration_ns) AS total_ns, \
             max(duration_ns) AS longest_ns, max(prev_cgroup_id) AS prev_cgroup_id, \
             max(prev_container_id) AS prev_container_id FROM kernel_events WHERE {w} AND event_name = 'sched.runq' \
             AND prev_pid <> {pid} GROUP BY prev_pid, prev_tid, prev_comm ORDER BY total_ns DESC LIMIT 5"
        )
    };
    let klock_sql = |w: &str| {
        format!(
            "SELECT tid, comm, kernel_lock, kernel_lock_kind, count(*) AS n, sum(duration_ns) AS total_ns, \
             max(duration_ns) AS longest_ns FROM kernel_events WHERE {w} AND event_name = 'kernel.lock_wait' \
             GROUP BY tid, comm, kernel_lock, kernel_lock_kind ORDER BY total_ns DESC LIMIT 5"
        )
    };
    let retrans_sql = |w: &str| {
        format!(
            "SELECT tid, daddr, saddr, count(*) AS n, min(time_unix_nano) AS first_ns FROM kernel_events \
             WHERE {w} AND event_name = 'tcp.retransmit' GROUP BY tid, daddr, saddr ORDER BY n DESC LIMIT 10"
        )
    };
    let throttle_sql = |w: &str| {
        format!(
            "SELECT sum(duration_ns) AS throttled_ns, sum(cpu_throttled_periods) AS throttled_periods, \
             sum(cpu_periods) AS periods, max(cpu_max) AS cpu_max, max(path) AS cgroup_path, \
             max(cgroup_id) AS cgroup_id FROM kernel_events WHERE {w} AND event_name = 'cpu.throttle'"
        )
    };
    let wakers_sql = |w: &str, not_joins: &str, not_gpu: &str| {
        format!(
            "SELECT waker_pid, waker_tid, waker_comm, count(*) AS n, sum(duration_ns) AS total_ns, \
             max(duration_ns) AS longest_ns FROM kernel_events k WHERE {w} AND event_name = 'sched.off_cpu' \
             AND state = 'sleep' AND waker_tid IS NOT NULL AND waker_pid <> 0 AND waker_tid <> tid{not_joins}{not_gpu} \
             GROUP BY waker_pid, waker_tid, waker_comm ORDER BY total_ns DESC LIMIT 5"
        )
    };
    // The wakers question leaves out joins and GPU waits, so it follows the exits and GPU
    // questions (few rows); every other question is asked at the same time (one query alone
    // leaves a core idle part of the time). The throttling question is asked whatever the
    // run-queue time turns out to be (one look at a few rows) and quoted only when it counts.
    let wakers_question = async {
        let (exits, gpu_waits) = futures::try_join!(other.rows(exits_sql), other.rows(gpu_sql))?;
        // a join (pthread_join) is waiting for work to finish, not contention: the joiner
        // waits on the exiting thread's clear_child_tid futex, which the collector records on
        // the exit event — leave those waits out of the wait-for graph
        let not_joins = if exits.is_empty() {
            String::new()
        } else {
            let addrs: Vec<String> = exits
                .iter()
                .map(|x| i(x, "futex_uaddr").to_string())
                .collect();
            let joiners = other
                .rows(|w| {
                    format!(
                        "SELECT tid, futex_uaddr, time_unix_nano AS start_ns, time_unix_nano + duration_ns AS end_ns \
                         FROM kernel_events WHERE {w} AND event_name = 'futex.wait' AND futex_uaddr IN ({}) LIMIT 256",
                        addrs.join(",")
                    )
                })
                .await?;
            join_exclusions(&exits, &joiners)
        };
        // waits for the GPU: CUDA sync calls and synchronous copies. The sleeps inside them are
        // the GPU's time, not a lock's, whoever signals their end (a driver thread, an interrupt)
        let not_gpu = if gpu_waits.is_empty() {
            String::new()
        } else {
            format!(
                " AND NOT EXISTS (SELECT 1 FROM kernel_events g WHERE g.pid = {pid} AND g.tid = k.tid \
                 AND g.time_unix_nano >= {} AND g.time_unix_nano < {end} AND {} \
                 AND k.time_unix_nano >= g.time_unix_nano AND k.time_unix_nano < g.time_unix_nano + g.duration_ns)",
                start - 60_000_000_000,
                GPU_WAIT.replace("event_name", "g.event_name").replace("cuda_function", "g.cuda_function")
            )
        };
        // (the wakers question, when it leaves out sleeps inside GPU waits, reads the CUDA
        // records: the store answers it then)
        let wakers = sched.rows(|w| wakers_sql(w, &not_joins, &not_gpu)).await?;
        Ok::<_, QueryError>((gpu_waits, not_joins, not_gpu, wakers))
    };
    let (per_thread, cpu_holders, klocks, retrans, throttle_rows, wakers_answer) = futures::try_join!(
        sched.rows(per_thread_sql),
        sched.rows(cpu_sql),
        other.rows(klock_sql),
        other.rows(retrans_sql),
        other.rows(throttle_sql),
        wakers_question,
    )?;
    let (gpu_waits, not_joins, not_gpu, wakers) = wakers_answer;
    tracing::debug!(ms = since(), "chain: window questions answered");
    q(
        "Per thread of the target: off-CPU time by state, and run-queue time, in the window",
        per_thread_sql(&w),
    );
    q(
        "Threads of the target that exited in the window, with the futex their joiners wait on",
        exits_sql(&w),
    );
    q(
        "The target's waits for the GPU (CUDA sync calls and synchronous copies), by thread and function",
        gpu_sql(&w),
    );
    q(
        "Threads that ended the target's sleeps (lock holders, producers), by time they ended (sleeps inside GPU waits left out)",
        wakers_sql(&w, &not_joins, &not_gpu),
    );
    q(
        "Tasks that held the CPU while the target waited in the run queue",
        cpu_sql(&w),
    );

    let sum_state = |state: &str| -> (i64, i64, f64) {
        // (total ns, longest ns, worst share of one thread)
        let rows: Vec<&Value> = per_thread.iter().filter(|r| r["state"] == state).collect();
        let total = rows.iter().map(|r| i(r, "total_ns")).sum();
        let longest = rows.iter().map(|r| i(r, "longest_ns")).max().unwrap_or(0);
        let worst =
            rows.iter().map(|r| i(r, "total_ns")).max().unwrap_or(0) as f64 / window_ns as f64;
        (total, longest, worst)
    };
    let lock_total = wakers.iter().map(|r| i(r, "total_ns")).sum::<i64>();
    let lock_longest = wakers.iter().map(|r| i(r, "longest_ns")).max().unwrap_or(0);
    let (disk_total, disk_longest, disk_share) = sum_state("disk");
    // D-state that is a wait for a contended kernel lock (an inode's i_rwsem, mmap_lock, a
    // mutex) is lock contention inside the kernel, not the device: its holder is the waker
    q(
        "The target's waits for contended kernel locks, by thread and lock",
        klock_sql(&w),
    );
    let klock_total: i64 = klocks
        .iter()
        .map(|r| i(r, "total_ns"))
        .sum::<i64>()
        .min(disk_total.max(0) + runq_total_hint(&per_thread));
    let klock_longest = klocks.iter().map(|r| i(r, "longest_ns")).max().unwrap_or(0);
    let klock_share =
        klocks.first().map(|r| i(r, "total_ns")).unwrap_or(0) as f64 / window_ns as f64;
    // what is left of D-state once the kernel lock waits are taken out
    let (disk_total, disk_share) = if disk_total > 0 {
        let left = (disk_total - klock_total).max(0);
        (left, disk_share * left as f64 / disk_total as f64)
    } else {
        (disk_total, disk_share)
    };
    let (runq_total, runq_longest, runq_share) = sum_state("runq");
    let (sleep_total, _, sleep_share) = sum_state("sleep");
    let lock_share = if sleep_total > 0 {
        sleep_share * lock_total as f64 / sleep_total as f64
    } else {
        0.0
    };

    // run-queue waits while the CPU ran its idle task (pid 0): the scheduler had the CPU free but
    // would not run the target — its cgroup was throttled (cpu.max), not out-competed
    let idle_total: i64 = cpu_holders
        .iter()
        .filter(|h| i(h, "prev_pid") == 0)
        .map(|h| i(h, "total_ns"))
        .sum();
    // the cgroup's own CFS counters (cpu.throttle rows, read by the collector from cpu.stat):
    // throttled even where other tasks used the idle time, with the quota that did it
    // (counted, and quoted, only when the target waited in the run queue: throttling needs that)
    let throttle = if runq_total > 0 {
        q(
            "CFS throttling of the target's CPU cgroup in the window (from its cpu.stat counters)",
            throttle_sql(&w),
        );
        throttle_rows
            .into_iter()
            .next()
            .filter(|r| i(r, "throttled_ns") > 0)
    } else {
        None
    };
    let worst_thread_runq = (runq_share * window_ns as f64) as i64;
    let throttled = runq_total > 0
        && (idle_total * 2 >= runq_total
            || throttle
                .as_ref()
                .is_some_and(|t| i(t, "throttled_ns") * 2 >= worst_thread_runq));
    // network: sleeps with no waking task (the network stack woke them from softirq) during which
    // the same thread's socket retransmitted
    q(
        "TCP retransmits of the target's sockets, by thread and peer",
        retrans_sql(&w),
    );
    let (mut net_total, mut net_longest) = (0i64, 0i64);
    if !retrans.is_empty() {
        let tids: Vec<String> = retrans.iter().map(|r| i(r, "tid").to_string()).collect();
        let times = other
            .rows(|w| {
                format!(
                    "SELECT tid, time_unix_nano FROM kernel_events WHERE {w} AND event_name = 'tcp.retransmit' LIMIT 2000"
                )
            })
            .await?;
        let sleeps = sched
            .rows(|w| {
                format!(
                    "SELECT tid, time_unix_nano, duration_ns FROM kernel_events WHERE {w} AND event_name = 'sched.off_cpu' \
                     AND state = 'sleep' AND waker_tid IS NULL AND tid IN ({}) LIMIT 5000",
                    tids.join(",")
                )
            })
            .await?;
        for s in &sleeps {
            let (st, en) = (
                i(s, "time_unix_nano"),
                i(s, "time_unix_nano") + i(s, "duration_ns"),
            );
            if times
                .iter()
                .any(|t| i(t, "tid") == i(s, "tid") && (st..=en).contains(&i(t, "time_unix_nano")))
            {
                net_total += en - st;
                net_longest = net_longest.max(en - st);
            }
        }
    }
    let net_share = net_total as f64 / window_ns as f64;
    let gpu_total: i64 = gpu_waits.iter().map(|r| i(r, "total_ns")).sum();
    let gpu_longest = gpu_waits
        .iter()
        .map(|r| i(r, "longest_ns"))
        .max()
        .unwrap_or(0);
    let mut gpu_by_thread: std::collections::BTreeMap<i64, i64> = Default::default();
    for r in &gpu_waits {
        *gpu_by_thread.entry(i(r, "tid")).or_default() += i(r, "total_ns");
    }
    let gpu_share = gpu_by_thread.values().copied().max().unwrap_or(0) as f64 / window_ns as f64;
    let mut candidates = [
        ("gpu_sync", gpu_total, gpu_longest, gpu_share),
        ("network_retransmit", net_total, net_longest, net_share),
        ("lock_contention", lock_total, lock_longest, lock_share),
        ("io_wait", disk_total, disk_longest, disk_share),
        ("kernel_lock", klock_total, klock_longest, klock_share),
        (
            if throttled {
                "cpu_throttling"
            } else {
                "cpu_contention"
            },
            runq_total,
            runq_longest,
            runq_share,
        ),
    ];
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
    let mut top = candidates[0];
    // D-state without block requests of the target's own but with kernel lock waits: the lock
    // is the evidence there is (the rest of that D-state is page locks and the like around it)
    if top.0 == "io_wait" && klock_total > 0 {
        let own_io_sql = |w: &str| {
            format!("SELECT count(*) AS n FROM kernel_events WHERE {w} AND event_name = 'block.io'")
        };
        q(
            "Block requests the target itself submitted in the window",
            own_io_sql(&w),
        );
        let own_io = other
            .rows(own_io_sql)
            .await?
            .first()
            .map(|r| i(r, "n"))
            .unwrap_or(0);
        if own_io == 0 {
            if let Some(k) = candidates.iter().find(|c| c.0 == "kernel_lock") {
                top = *k;
            }
        }
    }
    let (mechanism, mech_total, mech_longest, mech_share) = top;
    let mut chain = Vec::new();
    let mut contention_source = Value::Null;
    let mut stack_trace = Vec::new();
    let mut action;
    let ms = |ns: i64| ns as f64 / 1e6;

    // below a noise floor (under 1% of the window, no wait of 5 ms) nothing is contended: an
    // expert would not blame a few microsecond-scale run-queue waits
    if mech_total == 0 || (mech_share < 0.01 && mech_longest < 5_000_000) {
        return Ok(ChainReport {
            severity: "none".into(),
            blocking_mechanism: "unknown".into(),
            contention_source: Value::Null,
            chain,
            stack_trace,
            recommended_action: format!(
                "Nothing in the window explains a latency: pid {pid} shows no waits ended by another thread, no D-state and no run-queue delay worth naming (largest: {} {:.2} ms, {:.2}% of the window). Look at on-CPU work (a CPU profile), sleeps the program chose, or widen the window.",
                mechanism,
                mech_total as f64 / 1e6,
                mech_share * 100.0
            ),
            evidence,
            window_start_ns: start,
            window_end_ns: end,
            notice,
        });
    }
    // lock contention describes its own hop 0 (the longest wait the chain explains); the other
    // mechanisms start from the thread that lost the most time to them
    if mechanism != "lock_contention" && mechanism != "gpu_sync" && mechanism != "kernel_lock" {
        let state = match mechanism {
            "io_wait" => "disk",
            "network_retransmit" => "sleep",
            _ => "runq",
        };
        if let Some(t) = per_thread.iter().find(|r| r["state"] == state) {
            chain.push(target_link(
                pid,
                t,
                ms(i(t, "total_ns")),
                format!(
                    "{} intervals, {:.1} ms in all, longest {:.1} ms",
                    i(t, "n"),
                    ms(i(t, "total_ns")),
                    ms(i(t, "longest_ns"))
                ),
            ));
        }
    }
    match mechanism {
        "kernel_lock" => {
            let top = &klocks[0];
            let (tid, lock, kind) = (
                i(top, "tid"),
                super::data_text(top["kernel_lock"].as_str().unwrap_or("?")),
                super::data_text(top["kernel_lock_kind"].as_str().unwrap_or("lock")),
            );
            // where it is taken: the waiters' kernel stack above the lock's slow path names a
            // lock that has no symbol (per-object locks; global ones without KALLSYMS_ALL)
            let raw = top["kernel_lock"].as_str().unwrap_or("");
            let mut frames = Vec::new();
            if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                let stack_sql = |w: &str| {
                    format!(
                        "SELECT kernel_stack_id, count(*) AS n FROM kernel_events WHERE {w} \
                         AND event_name = 'kernel.lock_wait' AND kernel_lock = '{raw}' \
                         AND kernel_stack_id IS NOT NULL GROUP BY kernel_stack_id ORDER BY n DESC LIMIT 1"
                    )
                };
                q(
                    "Where the target takes the contended kernel lock: the waiters' most common kernel stack",
                    stack_sql(&w),
                );
                if let Some(r) = other.rows(stack_sql).await?.first() {
                    frames = stack_frames(engine, i(r, "kernel_stack_id")).await?;
                }
            }
            let taken_in = lock_callers(&frames);
            let place = if taken_in.is_empty() {
                String::new()
            } else {
                format!(", taken in {}", taken_in.join(" ← "))
            };
            if a.include_stacks.unwrap_or(false) {
                stack_trace.extend(frames.iter().cloned());
            }
            chain.push(target_link(
                pid,
                top,
                ms(i(top, "total_ns")),
                format!(
                    "waited {:.1} ms in the kernel for a contended {kind} ({lock}{place}), {} waits, longest {:.1} ms",
                    ms(i(top, "total_ns")),
                    i(top, "n"),
                    ms(i(top, "longest_ns"))
                ),
            ));
            // the holder released the lock: it is the waker of the thread's D-state waits
            let holder_sql = |w: &str| {
                format!(
                    "SELECT waker_pid, waker_tid, waker_comm, count(*) AS n, sum(duration_ns) AS total_ns FROM kernel_events \
                     WHERE {w} AND tid = {tid} AND event_name = 'sched.off_cpu' AND state = 'disk' AND waker_tid IS NOT NULL \
                     AND waker_tid <> tid GROUP BY waker_pid, waker_tid, waker_comm ORDER BY total_ns DESC LIMIT 1"
                )
            };
            q(
                "Who ended the waiting thread's D-state waits (the kernel lock's holder releases and wakes it)",
                holder_sql(&w),
            );
            let holder = sched.rows(holder_sql).await?;
            let per_object = lock.starts_with("0x");
            let what = if per_object {
                "a per-object lock (an inode's i_rwsem, an mm's mmap_lock, a per-device mutex)"
            } else {
                "a global kernel lock"
            };
            match holder.first() {
                Some(h) => {
                    let link = task_link(
                        h,
                        "waker_",
                        1,
                        "holder",
                        format!(
                            "released the {kind} and woke the target {} times",
                            i(h, "n")
                        ),
                    );
                    contention_source = serde_json::json!({
                        "kind": "kernel_lock", "lock": lock, "lock_kind": kind, "taken_in": taken_in,
                        "pid": link.pid, "tid": link.tid, "comm": link.comm,
                    });
                    chain.push(link);
                    action = format!(
                        "pid {pid} spent {:.1} ms waiting inside the kernel for a contended {kind} ({lock}: {what}{place}), held by {} (pid {}, tid {}) doing slow work under it — typically a large write, truncate or fsync of the same file, or munmap/mmap of a large mapping in the same process. Move that work off the shared file or mapping (separate files, smaller writes, no truncate on the hot path); include_stacks shows both call paths",
                        ms(klock_total),
                        quoted(&h["waker_comm"]),
                        i(h, "waker_pid"),
                        i(h, "waker_tid")
                    );
                }
                None => {
                    contention_source = serde_json::json!({
                        "kind": "kernel_lock", "lock": lock, "lock_kind": kind, "taken_in": taken_in,
                    });
                    action = format!(
                        "pid {pid} spent {:.1} ms waiting inside the kernel for a contended {kind} ({lock}: {what}{place}); its holder was not traced. Trace the whole host (no --pid) to name it",
                        ms(klock_total)
                    );
                }
            }
        }
        "gpu_sync" => {
            let top = &gpu_waits[0];
            let (tid, f) = (
                i(top, "tid"),
                super::data_text(top["cuda_function"].as_str().unwrap_or("?")),
            );
            let thread_total = gpu_by_thread.get(&tid).copied().unwrap_or(0);
            chain.push(target_link(
                pid,
                top,
                ms(thread_total),
                format!(
                    "{} calls of {f} waited {:.1} ms for the GPU, longest {:.1} ms",
                    i(top, "n"),
                    ms(i(top, "total_ns")),
                    ms(i(top, "longest_ns"))
                ),
            ));
            let stream = i(top, "stream");
            contention_source = serde_json::json!({
                "kind": "gpu", "function": f, "stream": stream, "calls": i(top, "n"), "longest_ms": ms(i(top, "longest_ns")),
            });
            chain.push(Link {
                hop: 1,
                role: "gpu".into(),
                pid: 0,
                tid: 0,
                comm: if stream != 0 { format!("GPU stream {stream:#x}") } else { "GPU".into() },
                ms: ms(gpu_total),
                detail: "the device was still running the work queued before the sync: the chain ends at the GPU".into(),
                ..Default::default()
            });
            action = format!(
                "pid {pid} spent {:.1} ms ({:.0}% of the window for its busiest thread) waiting in {f} and other GPU syncs, longest {:.1} ms: the GPU work queued before each sync is the critical path, not the host. Profile the kernels on that stream (Nsight Systems, torch.profiler), overlap copies and compute on separate streams, and drop syncs the host does not need (a .item()/.cpu() in the loop is one); analyze_gpu_launch_latency {{pid: {pid}}} shows whether launches were also starved of CPU",
                ms(gpu_total),
                gpu_share * 100.0,
                ms(gpu_longest)
            );
        }
        "lock_contention" => {
            let wk = &wakers[0];
            let (first_pid, first_tid) = (i(wk, "waker_pid"), i(wk, "waker_tid"));
            // the target's longest wait ended by the top waker: the wait the chain explains
            let longest_sql = |w: &str| {
                format!(
                    "SELECT tid, comm, time_unix_nano, duration_ns, kernel_stack_id, user_stack_id FROM kernel_events \
                     WHERE {w} AND event_name = 'sched.off_cpu' AND waker_tid = {first_tid}{not_joins} ORDER BY duration_ns DESC LIMIT 1"
                )
            };
            q(
                "The target's longest wait ended by its top waker",
                longest_sql(&w),
            );
            let longest = sched.rows(longest_sql).await?;
            let Some(l) = longest.first() else {
                return Err(QueryError::Runtime(
                    "the top waker's wait vanished between queries".into(),
                ));
            };
            // the lock the wait was on, and what the next hop did meanwhile (the first question
            // of the walk below, which needs only the wait): asked at once
            let (wait_start, wait_end) = (
                i(l, "time_unix_nano"),
                i(l, "time_unix_nano") + i(l, "duration_ns"),
            );
            // what a thread did during a wait, among its intervals begun at `lookback` or
            // later: (the statement as the store is asked, for the evidence; its rows)
            let ask_activity = |pid: i64, tid: i64, (ws, we): (i64, i64), lookback: i64| {
                let store = format!("pid = {pid}{hp} AND {}", date_predicate(ws - window_ns, we));
                let asked = activity_sql(&store, tid, (ws, we), lookback);
                let sched = &sched;
                async move {
                    let rows = sched
                        .rows_within(pid, (lookback, we), &store, |w| {
                            activity_sql(w, tid, (ws, we), lookback)
                        })
                        .await?;
                    Ok::<_, QueryError>((asked, rows))
                }
            };
            let short_lookback = |ws: i64| ws - SHORT_LOOKBACK_NS.min(window_ns);
            // the block requests a thread submitted during a wait (asked of a root in D-state)
            let io_sql = |pid: i64, tid: i64, (ws, we): (i64, i64)| {
                format!(
                    "SELECT device, count(*) AS n, sum(bytes) AS bytes, max(duration_ns) AS longest_ns FROM kernel_events \
                     WHERE pid = {pid}{hp} AND tid = {tid} AND event_name = 'block.io' \
                     AND time_unix_nano < {we} AND time_unix_nano + duration_ns > {ws} \
                     AND time_unix_nano >= {lookback} AND {dates} GROUP BY device ORDER BY n DESC LIMIT 1",
                    lookback = ws - window_ns,
                    dates = date_predicate(ws - window_ns, we)
                )
            };
            // (the first hop's block requests too: few rows, and the answer when it is the root)
            let first_io = io_sql(first_pid, first_tid, (wait_start, wait_end));
            tracing::debug!(ms = since(), "chain: longest wait found");
            let (lock, (first_activity, first_activity_rows), first_io_rows) = futures::try_join!(
                lock_of(
                    &other,
                    pid,
                    &hp,
                    i(l, "tid"),
                    wait_start,
                    i(l, "duration_ns")
                ),
                ask_activity(
                    first_pid,
                    first_tid,
                    (wait_start, wait_end),
                    short_lookback(wait_start)
                ),
                engine.query(&first_io),
            )?;
            let mut prefetched = Some((
                (first_pid, first_tid, wait_start, wait_end),
                first_activity,
                first_activity_rows,
            ));
            let mut prefetched_io = Some((first_io, first_io_rows.rows));
            chain.push(target_link(
                pid,
                l,
                ms(i(l, "duration_ns")),
                format!(
                    "waited {:.1} ms{lock} (its longest wait in the window); {:.1} ms in all were ended by the next hop",
                    ms(i(l, "duration_ns")),
                    ms(i(wk, "total_ns"))
                ),
            ));
            if a.include_stacks.unwrap_or(false) {
                stack_trace.extend(stack_frames(engine, i(l, "kernel_stack_id")).await?);
                stack_trace.extend(stack_frames(engine, i(l, "user_stack_id")).await?);
            }
            // walk the wait-for chain: while the thread that ended a wait was itself waiting
            // (off CPU for most of it) and was woken by yet another thread, follow that thread
            let (mut cur_pid, mut cur_tid, mut cur_comm) = (
                first_pid,
                first_tid,
                super::data_text(wk["waker_comm"].as_str().unwrap_or("")),
            );
            let (mut ws, mut we) = (wait_start, wait_end);
            let mut activity = String::new();
            let mut root_device: Option<String> = None;
            for hop in 1..=MAX_HOPS {
                // a thread is off CPU in one interval at a time: one that began within a second
                // of the wait and covers half of it is the answer; only a longer one, begun
                // earlier, needs the window's full lookback (which reads all of the thread's rows)
                let half = 0.5 * (we - ws) as f64;
                let (short, mut act) = match prefetched.take() {
                    Some((asked, sql, rows)) if asked == (cur_pid, cur_tid, ws, we) => (sql, rows),
                    _ => ask_activity(cur_pid, cur_tid, (ws, we), short_lookback(ws)).await?,
                };
                let what = format!(
                    "Hop {hop}: what thread {cur_tid} did while the previous hop waited on it"
                );
                if act
                    .first()
                    .is_some_and(|r| i(r, "overlap_ns") as f64 >= half)
                {
                    q(&what, short);
                } else {
                    let (full, rows) =
                        ask_activity(cur_pid, cur_tid, (ws, we), ws - window_ns).await?;
                    q(&what, full);
                    act = rows;
                }
                let half = 0.5 * (we - ws) as f64;
                if act
                    .first()
                    .is_some_and(|r| (i(r, "overlap_ns") as f64) < half)
                {
                    // no single wait covers it; many short D-state waits can (O_DIRECT, fsync)
                    let agg_sql = q(
                        &format!("Hop {hop}: off-CPU time of thread {cur_tid} by state while the previous hop waited"),
                        format!(
                            "SELECT state, min(time_unix_nano) AS time_unix_nano, sum(duration_ns) AS duration_ns, \
                             max(kernel_stack_id) AS kernel_stack_id, \
                             sum(least(time_unix_nano + duration_ns, {we}) - greatest(time_unix_nano, {ws})) AS overlap_ns \
                             FROM kernel_events WHERE pid = {cur_pid}{hp} AND tid = {cur_tid} AND event_name = 'sched.off_cpu' \
                             AND state = 'disk' AND time_unix_nano < {we} AND time_unix_nano + duration_ns > {ws} \
                             AND time_unix_nano >= {lookback} AND {dates} GROUP BY state",
                            lookback = ws - window_ns,
                            dates = date_predicate(ws - window_ns, we)
                        ),
                    );
                    act = engine.query(&agg_sql).await?.rows;
                }
                let waited = act.first().filter(|r| i(r, "overlap_ns") as f64 >= half);
                let Some(r) = waited else {
                    activity = "was running on CPU while the previous hop waited on it".into();
                    chain.push(Link {
                        hop,
                        role: "root".into(),
                        pid: cur_pid,
                        tid: cur_tid,
                        comm: cur_comm.clone(),
                        ms: ms(we - ws),
                        detail: activity.clone(),
                        ..Default::default()
                    });
                    break;
                };
                let frames = stack_frames(engine, i(r, "kernel_stack_id")).await?;
                let place = if frames.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", in {}",
                        frames
                            .iter()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" ← ")
                    )
                };
                let (next_pid, next_tid) = (i(r, "waker_pid"), i(r, "waker_tid"));
                let state = r["state"].as_str().unwrap_or("?").to_string();
                let follows = state == "sleep"
                    && next_pid != 0
                    && next_tid != 0
                    && next_tid != cur_tid
                    && hop < MAX_HOPS;
                if follows {
                    let lock = lock_of(
                        &other,
                        cur_pid,
                        &hp,
                        cur_tid,
                        i(r, "time_unix_nano"),
                        i(r, "duration_ns"),
                    )
                    .await?;
                    chain.push(Link {
                        hop,
                        role: "waiter".into(),
                        pid: cur_pid,
                        tid: cur_tid,
                        comm: cur_comm.clone(),
                        ms: ms(i(r, "duration_ns")),
                        detail: format!(
                            "was itself waiting ({state}) {:.1} ms{lock}{place}, until thread {next_tid} woke it",
                            ms(i(r, "duration_ns"))
                        ),
                        ..Default::default()
                    });
                    (cur_pid, cur_tid, cur_comm) = (
                        next_pid,
                        next_tid,
                        super::data_text(r["waker_comm"].as_str().unwrap_or("")),
                    );
                    (ws, we) = (
                        i(r, "time_unix_nano"),
                        i(r, "time_unix_nano") + i(r, "duration_ns"),
                    );
                    continue;
                }
                let mut io = String::new();
                if state == "disk" {
                    let asked = q(
                        &format!("Hop {hop}: block I/O of thread {cur_tid} while the previous hop waited on it"),
                        io_sql(cur_pid, cur_tid, (ws, we)),
                    );
                    let io_rows = match prefetched_io.take() {
                        Some((sql, rows)) if sql == asked => rows,
                        _ => engine.query(&asked).await?.rows,
                    };
                    if let Some(d) = io_rows.first() {
                        let dev = super::data_text(d["device"].as_str().unwrap_or("?"));
                        io = format!(
                            ", doing I/O on {dev} ({} requests, {:.1} MiB, longest {:.1} ms)",
                            i(d, "n"),
                            i(d, "bytes") as f64 / 1048576.0,
                            ms(i(d, "longest_ns"))
                        );
                        root_device = Some(dev);
                    }
                }
                activity = format!(
                    "was itself off CPU ({state}) for {:.1} ms of the {:.1} ms the previous hop waited{place}{io}, not woken by another thread",
                    ms(i(r, "overlap_ns")),
                    ms(we - ws)
                );
                chain.push(Link {
                    hop,
                    role: "root".into(),
                    pid: cur_pid,
                    tid: cur_tid,
                    comm: cur_comm.clone(),
                    ms: ms(i(r, "overlap_ns")),
                    detail: activity.clone(),
                    ..Default::default()
                });
                break;
            }
            tracing::debug!(ms = since(), "chain: hops done");
            contention_source =
                serde_json::json!({"pid": cur_pid, "tid": cur_tid, "comm": cur_comm});
            if let Some(dev) = &root_device {
                contention_source["device"] = Value::from(dev.clone());
            }
            let hops = chain.len().saturating_sub(1);
            action = format!(
                "{} (pid {cur_pid}, tid {cur_tid}) is the root of a {hops}-hop wait chain that kept pid {pid} waiting {:.1} ms in the window (longest {:.1} ms): it {activity}. It holds a lock (or owns the condition) the chain needs across a slow step — shorten that critical section: do not sleep, block or do I/O while holding it",
                quoted(&Value::from(cur_comm.clone())),
                ms(i(wk, "total_ns")),
                ms(i(l, "duration_ns")),
            );
        }
        "network_retransmit" => {
            let r = &retrans[0];
            let n: i64 = retrans
                .iter()
                .filter(|x| x["daddr"] == r["daddr"])
                .map(|x| i(x, "n"))
                .sum();
            let peer = super::data_text(r["daddr"].as_str().unwrap_or("?"));
            contention_source = serde_json::json!({
                "peer": peer, "local": super::data_text(r["saddr"].as_str().unwrap_or("?")), "retransmits": n,
            });
            chain.push(Link {
                hop: 1,
                role: "network".into(),
                pid: 0,
                tid: 0,
                comm: peer.clone(),
                ms: ms(net_total),
                detail: format!("{n} segments to {peer} were retransmitted while the target waited for the network"),
                ..Default::default()
            });
            action = format!(
                "pid {pid} waited {:.1} ms (longest {:.1} ms) on sockets that retransmitted {n} segments to {peer}: packets to that peer are being lost, and each loss costs at least one retransmission timeout (200 ms minimum on Linux). Find the drop: firewall/netfilter rules, NIC or qdisc drops (ip -s link, tc -s qdisc), a congested or faulty link, the peer's receive queue",
                ms(net_total),
                ms(net_longest)
            );
        }
        "cpu_throttling" => {
            // the cgroup the throttle rows name, else the one the target's rows carry most
            let cg = match throttle
                .as_ref()
                .map(|t| i(t, "cgroup_id"))
                .filter(|&c| c > 0)
            {
                Some(c) => c,
                None => {
                    let cg_sql = q(
                        "The target's cgroup in the window",
                        format!("SELECT cgroup_id, count(*) AS n FROM kernel_events WHERE {w} GROUP BY cgroup_id ORDER BY n DESC LIMIT 1"),
                    );
                    engine
                        .query(&cg_sql)
                        .await?
                        .rows
                        .first()
                        .map(|r| i(r, "cgroup_id"))
                        .unwrap_or(0)
                }
            };
            // what the collector read from the cgroup's counters, else what this host shows
            // (a bounded walk of the cgroup tree: only when the counters left something out)
            let text = |k: &str| {
                throttle
                    .as_ref()
                    .and_then(|t| t[k].as_str())
                    .map(super::data_text)
            };
            let local = if text("cpu_max").is_some() && text("cgroup_path").is_some() {
                None
            } else {
                cgroup_by_id(cg)
            };
            let limit = text("cpu_max").or_else(|| {
                local
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p.join("cpu.max")).ok())
                    .map(|s| s.trim().to_string())
            });
            let path =
                text("cgroup_path").or_else(|| local.as_ref().map(|p| p.display().to_string()));
            let (throttled_ns, throttled_periods, periods) = throttle
                .as_ref()
                .map(|t| {
                    (
                        i(t, "throttled_ns"),
                        i(t, "throttled_periods"),
                        i(t, "periods"),
                    )
                })
                .unwrap_or((0, 0, 0));
            contention_source = serde_json::json!({
                "cgroup_id": cg, "cgroup_path": path, "cpu_max": limit,
                "throttled_ms": ms(throttled_ns), "throttled_periods": throttled_periods, "periods": periods,
            });
            let counted = if periods > 0 {
                format!(
                    "; its cpu.stat counted {throttled_periods} of {periods} periods throttled ({:.0}%), {:.1} ms throttled",
                    100.0 * throttled_periods as f64 / periods as f64,
                    ms(throttled_ns)
                )
            } else {
                String::new()
            };
            // quota and period in µs: the CPUs the cgroup may use
            let cpus = limit.as_deref().and_then(|l| {
                let mut it = l.split_whitespace().map(|v| v.parse::<f64>().ok());
                match (it.next().flatten(), it.next().flatten()) {
                    (Some(q), Some(p)) if p > 0.0 => Some(q / p),
                    _ => None,
                }
            });
            chain.push(Link {
                hop: 1,
                role: "cgroup".into(),
                pid: 0,
                tid: 0,
                comm: path.clone().unwrap_or_else(|| format!("cgroup {cg}")),
                ms: ms(idle_total.max(throttled_ns)),
                detail: format!(
                    "the cgroup's CPU quota was used up{} while the target was runnable (the CPU sat idle {:.1} ms of it){counted}",
                    limit.as_deref().map(|l| format!(" (cpu.max {l})")).unwrap_or_default(),
                    ms(idle_total),
                ),
                ..Default::default()
            });
            action = format!(
                "pid {pid} was runnable but not running for {:.1} ms: its cgroup{} is throttled by its CPU quota{}{}{counted}. Raise cpu.max (quota/period) or the pod's CPU limit above what the cgroup burns at its peaks, or reduce the threads that burn the quota; throttling stalls every thread of the cgroup for the rest of each period",
                ms(runq_total),
                path.as_deref().map(|p| format!(" {p}")).unwrap_or_else(|| format!(" (id {cg})")),
                limit.as_deref().map(|l| format!(" (cpu.max {l})")).unwrap_or_default(),
                cpus.map(|c| format!(", i.e. {c:.2} CPUs")).unwrap_or_default(),
            );
        }
        "cpu_contention" => {
            if let Some(h) = cpu_holders.first() {
                let link = task_link(
                    h,
                    "prev_",
                    1,
                    "cpu_holder",
                    format!(
                        "held the CPU before {} of the target's run-queue waits ended",
                        i(h, "n")
                    ),
                );
                // the neighbour's cgroup: many small tasks of one container can out-compete the
                // target where no single task does. A run-queue row names only the task that ran
                // just before the target, so `processes` counts those seen (a lower bound: in a
                // fixed rotation it is always the same one)
                let groups_sql = |w: &str| {
                    format!(
                        "SELECT prev_cgroup_id, max(prev_container_id) AS prev_container_id, count(DISTINCT prev_pid) AS processes, \
                         count(*) AS n, sum(duration_ns) AS total_ns FROM kernel_events WHERE {w} AND event_name = 'sched.runq' \
                         AND prev_pid <> {pid} AND prev_pid <> 0 AND prev_cgroup_id IS NOT NULL \
                         GROUP BY prev_cgroup_id ORDER BY total_ns DESC LIMIT 3"
                    )
                };
                q(
                    "cgroups whose tasks held the CPU while the target waited in the run queue (noisy neighbours)",
                    groups_sql(&w),
                );
                let groups = sched.rows(groups_sql).await?;
                let describe = |id: i64, container: &Value| {
                    let path = cgroup_by_id(id).map(|p| p.display().to_string());
                    let container = container.as_str().map(super::data_text);
                    let name = match (&container, &path) {
                        (Some(c), _) => format!("container {c}"),
                        (None, Some(p)) => format!("cgroup {p}"),
                        (None, None) => format!("cgroup id {id}"),
                    };
                    (path, container, name)
                };
                // each description walks the cgroup tree once: the top group is usually the
                // hog's own cgroup, whose description is then reused
                let hog_cgroup = i(h, "prev_cgroup_id");
                let (hog_path, hog_container, hog_name) =
                    describe(hog_cgroup, &h["prev_container_id"]);
                contention_source = serde_json::json!({
                    "pid": link.pid, "tid": link.tid, "comm": link.comm,
                    "cgroup_id": h["prev_cgroup_id"], "cgroup_path": hog_path, "container_id": hog_container,
                });
                let top_group = groups.first().map(|g| {
                    let id = i(g, "prev_cgroup_id");
                    let described = if id == hog_cgroup {
                        (hog_path.clone(), hog_container.clone(), hog_name.clone())
                    } else {
                        describe(id, &g["prev_container_id"])
                    };
                    (g, described)
                });
                if let Some((g, (path, container, _))) = &top_group {
                    contention_source["neighbour_cgroup"] = serde_json::json!({
                        "cgroup_id": g["prev_cgroup_id"], "cgroup_path": path, "container_id": container,
                        "processes": g["processes"], "ms": ms(i(g, "total_ns")),
                        "share_of_runq": i(g, "total_ns") as f64 / runq_total.max(1) as f64,
                    });
                }
                // several processes of one cgroup behind most of the wait: the cgroup is the
                // neighbour to cap, not its busiest process
                let crowd = top_group
                    .filter(|(g, _)| i(g, "processes") > 1 && i(g, "total_ns") * 2 >= runq_total);
                chain.push(link);
                action = match crowd {
                    Some((g, (_, _, name))) => {
                        format!(
                            "pid {pid} waited {:.1} ms runnable but not running; the tasks of {name} ({} processes) held the CPU for {:.1} ms of it ({:.0}%), the largest single one {} (pid {}): cap that cgroup (its cpu.max / cpu.weight, the pod's CPU limit) or give the target its own CPUs (cpuset)",
                            ms(runq_total),
                            i(g, "processes"),
                            ms(i(g, "total_ns")),
                            100.0 * i(g, "total_ns") as f64 / runq_total.max(1) as f64,
                            quoted(&h["prev_comm"]),
                            i(h, "prev_pid")
                        )
                    }
                    None => format!(
                        "pid {pid} waited {:.1} ms runnable but not running; {} (pid {}, {hog_name}) had the CPU for the largest share: give the target its own CPUs (cpuset/taskset), or lower the neighbour's weight (nice, or cpu.weight of its cgroup)",
                        ms(runq_total),
                        quoted(&h["prev_comm"]),
                        i(h, "prev_pid")
                    ),
                };
            } else {
                action = format!(
                    "pid {pid} waited {:.1} ms runnable but not running, behind its own threads: it has more runnable threads than CPUs — size the thread pool to the CPUs it gets",
                    ms(runq_total)
                );
                contention_source = serde_json::json!({"pid": pid, "comm": "own threads"});
            }
            // a GPU job whose launching thread waits for a CPU leaves the GPU idle
            let launch_sql = |w: &str| {
                format!(
                    "SELECT count(*) AS n, sum(duration_ns) AS total_ns, max(duration_ns) AS longest_ns FROM kernel_events \
                     WHERE {w} AND event_name = 'cuda.launch'"
                )
            };
            q(
                "The target's slow CUDA launches in the window (launch CPU starvation)",
                launch_sql(&w),
            );
            if let Some(l) = other
                .rows(launch_sql)
                .await?
                .first()
                .filter(|l| i(l, "n") > 0)
            {
                action.push_str(&format!(
                    ". It is feeding a GPU: {} CUDA launches were slow ({:.1} ms in all, longest {:.1} ms) while it waited for a CPU, so the GPU sat idle — keep the launching thread on a CPU of its own (analyze_gpu_launch_latency {{pid: {pid}}} names each)",
                    i(l, "n"),
                    ms(i(l, "total_ns")),
                    ms(i(l, "longest_ns"))
                ));
            }
        }
        _ => {
            let dev_sql = |w: &str| {
                format!(
                    "SELECT device, io_op, count(*) AS n, sum(duration_ns) AS total_ns, max(duration_ns) AS longest_ns, \
                     sum(bytes) AS bytes FROM kernel_events WHERE {w} AND event_name = 'block.io' \
                     GROUP BY device, io_op ORDER BY total_ns DESC LIMIT 5"
                )
            };
            q(
                "The target's block I/O by device and request type",
                dev_sql(&w),
            );
            let devs = other.rows(dev_sql).await?;
            match devs.first() {
                Some(d) => {
                    let dev = super::data_text(d["device"].as_str().unwrap_or("?"));
                    let on_dev: Vec<&Value> =
                        devs.iter().filter(|r| r["device"] == d["device"]).collect();
                    let n: i64 = on_dev.iter().map(|r| i(r, "n")).sum();
                    let bytes: i64 = on_dev.iter().map(|r| i(r, "bytes")).sum();
                    let longest = on_dev.iter().map(|r| i(r, "longest_ns")).max().unwrap_or(0);
                    contention_source = serde_json::json!({
                        "device": dev, "requests": n, "bytes": bytes, "longest_request_ms": ms(longest),
                    });
                    chain.push(Link {
                        hop: 1,
                        role: "device".into(),
                        pid: 0,
                        tid: 0,
                        comm: dev.clone(),
                        ms: ms(on_dev.iter().map(|r| i(r, "total_ns")).sum()),
                        detail: format!(
                            "served {n} of the target's requests ({:.1} MiB, mostly {}), longest {:.1} ms",
                            bytes as f64 / 1048576.0,
                            d["io_op"].as_str().unwrap_or("?"),
                            ms(longest)
                        ),
                        ..Default::default()
                    });
                    action = format!(
                        "pid {pid} spent {:.1} ms blocked on I/O (D-state), longest {:.1} ms; its requests went to {dev}: {n} requests, {:.1} MiB, longest {:.1} ms. The device is the bottleneck: batch fsyncs (group commit), write asynchronously off the latency path, or move this data to a faster device; check {dev}'s queue depth and other writers",
                        ms(disk_total),
                        ms(disk_longest),
                        bytes as f64 / 1048576.0,
                        ms(longest)
                    );
                }
                None => {
                    action = format!(
                        "pid {pid} spent {:.1} ms in uninterruptible (D-state) waits, longest {:.1} ms, but submitted no block requests of its own in the window: it waited on someone else's I/O (a journal commit, writeback, a network file system) or on memory reclaim — look at the kernel stacks of those waits (include_stacks)",
                        ms(disk_total),
                        ms(disk_longest)
                    );
                }
            }
        }
    }
    let window_ms = window_ns as f64 / 1e6;
    for l in &mut chain {
        l.share_of_window = (l.ms / window_ms).clamp(0.0, 1.0);
    }
    tracing::debug!(ms = since(), "chain: report written");
    Ok(ChainReport {
        severity: severity(mech_share, ms(mech_longest)).into(),
        blocking_mechanism: if mechanism == "kernel_lock" {
            "lock_contention"
        } else {
            mechanism
        }
        .into(),
        contention_source,
        chain,
        stack_trace,
        recommended_action: action,
        evidence,
        window_start_ns: start,
        window_end_ns: end,
        notice,
    })
}

/// Hop 0: the target's thread a row names (`tid`, `comm`), with the time it lost.
fn target_link(pid: i64, row: &Value, ms: f64, detail: String) -> Link {
    Link {
        hop: 0,
        role: "target".into(),
        pid,
        tid: i(row, "tid"),
        comm: super::data_text(row["comm"].as_str().unwrap_or("")),
        ms,
        detail,
        ..Default::default()
    }
}

/// A chain link for the task a row names through `{prefix}pid`, `{prefix}tid`, `{prefix}comm`
/// (a waker, the task that had the CPU), accounting the row's `total_ns`.
fn task_link(row: &Value, prefix: &str, hop: i64, role: &str, detail: String) -> Link {
    Link {
        hop,
        role: role.into(),
        pid: i(row, &format!("{prefix}pid")),
        tid: i(row, &format!("{prefix}tid")),
        comm: super::data_text(row[format!("{prefix}comm")].as_str().unwrap_or("")),
        ms: i(row, "total_ns") as f64 / 1e6,
        detail,
        ..Default::default()
    }
}

/// Run-queue time that can hide inside a kernel lock wait (a woken waiter queues before it runs).
fn runq_total_hint(per_thread: &[Value]) -> i64 {
    per_thread
        .iter()
        .filter(|r| r["state"] == "runq")
        .map(|r| i(r, "total_ns"))
        .sum()
}

/// End of the process's last recorded event, 0 when it has none.
///
/// A bare `max(...) WHERE pid = P` reads the pid column of every file. The store's newest time
/// comes from file statistics alone, and files are pruned by their time range, so the search
/// looks back from there in growing steps (10 s, 5 min, 1 h, 1 day) before scanning everything.
async fn last_event_end(engine: &Engine, pid: i64, hp: &str) -> Result<i64, QueryError> {
    let newest = engine
        .query("SELECT max(time_unix_nano) AS t FROM kernel_events")
        .await?;
    let newest = newest.rows.first().map(|r| i(r, "t")).unwrap_or(0);
    if newest == 0 {
        return Ok(0);
    }
    for back_s in [10i64, 300, 3_600, 86_400, i64::MAX / 2_000_000_000] {
        let from = newest.saturating_sub(back_s.saturating_mul(1_000_000_000));
        let r = engine
            .query(&format!(
                "SELECT max(time_unix_nano + duration_ns) AS t FROM kernel_events \
                 WHERE pid = {pid}{hp} AND time_unix_nano >= {from}"
            ))
            .await?;
        let t = r.rows.first().map(|r| i(r, "t")).unwrap_or(0);
        if t > 0 {
            return Ok(t);
        }
    }
    Ok(0)
}

/// The functions that take a kernel lock, innermost first (up to three): a waiter's kernel
/// stack with the tracing and locking machinery above them left out (`bpf_*`, tracepoint
/// iterators, the mutex/rwsem/spinlock slow paths, the scheduler). Offsets are dropped.
fn lock_callers(frames: &[String]) -> Vec<String> {
    const MACHINERY: &[&str] = &[
        "bpf_",
        "__bpf",
        "__traceiter_",
        "trace_",
        "perf_trace",
        "__mutex",
        "mutex_",
        "rwsem_",
        "__rwsem",
        "down_",
        "__down",
        "up_",
        "_raw_",
        "__raw_",
        "do_raw_",
        "queued_",
        "native_queued",
        "__pv_queued",
        "pv_queued",
        "rt_mutex",
        "__rt_mutex",
        "rt_spin",
        "percpu_down",
        "__percpu_down",
        "percpu_rwsem",
        "schedule",
        "__schedule",
        "preempt_schedule",
        "io_schedule",
        "osq_",
        "lock_acquire",
    ];
    frames
        .iter()
        .map(|f| f.split(['+', ' ']).next().unwrap_or_default().to_string())
        .skip_while(|f| {
            f.is_empty() || f.starts_with("0x") || MACHINERY.iter().any(|m| f.starts_with(m))
        })
        .take(3)
        .collect()
}

/// Frames of a stack id, innermost first (empty when unknown).
async fn stack_frames(engine: &Engine, id: i64) -> Result<Vec<String>, QueryError> {
    if id == 0 {
        return Ok(Vec::new());
    }
    let rows = engine
        .query(&format!(
            "SELECT frames FROM stacks WHERE stack_id = {id} LIMIT 1"
        ))
        .await?;
    Ok(rows
        .rows
        .first()
        .and_then(|r| r["frames"].as_array())
        .map(|a| {
            a.iter()
                .map(|v| super::data_text(v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default())
}

impl ChainReport {
    /// A short text summary.
    pub fn summary(&self) -> String {
        let src = match &self.contention_source {
            Value::Null => "unknown".to_string(),
            v if v["kind"] == "gpu" => format!(
                "the GPU ({}, stream {:#x})",
                quoted(&v["function"]),
                i(v, "stream")
            ),
            v if v.get("device").is_some() => format!("device {}", quoted(&v["device"])),
            v if v.get("peer").is_some() => format!("peer {}", quoted(&v["peer"])),
            v if v.get("cgroup_id").is_some() => match v["cgroup_path"].as_str() {
                Some(_) => format!("cgroup {}", quoted(&v["cgroup_path"])),
                None => format!("cgroup id {}", i(v, "cgroup_id")),
            },
            v => format!("{} (pid {})", quoted(&v["comm"]), v["pid"]),
        };
        format!(
            "severity {}: {} — source {src}. {}",
            self.severity, self.blocking_mechanism, self.recommended_action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::join_exclusions;
    use super::kinds_named;
    use super::lock_callers;
    use super::severity;

    #[test]
    fn lock_callers_skip_the_lock_and_tracing_frames() {
        let frames: Vec<String> = [
            "bpf_trace_run2+0x8c",
            "__traceiter_contention_end+0x4a",
            "rwsem_down_write_slowpath+0x2f1",
            "down_write+0x5b",
            "ext4_buffered_write_iter+0x3d",
            "vfs_write+0x23a",
            "ksys_write+0x6b",
            "do_syscall_64+0x82",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            lock_callers(&frames),
            vec!["ext4_buffered_write_iter", "vfs_write", "ksys_write"]
        );
        assert!(lock_callers(&[]).is_empty());
    }

    #[test]
    fn severity_takes_the_worse_of_share_and_tail() {
        assert_eq!(severity(0.0, 0.0), "none");
        assert_eq!(severity(0.003, 200.0), "medium");
        assert_eq!(severity(0.6, 1.0), "critical");
        assert_eq!(severity(0.01, 5.0), "low");
        assert_eq!(severity(0.3, 1500.0), "high");
    }

    /// A question goes to a window only if the window holds every kind it names: the names are
    /// read from `=` and `IN` comparisons, with table aliases; a question naming none reads
    /// every kind.
    #[test]
    fn kinds_named_reads_equalities_lists_and_aliases() {
        assert_eq!(
            kinds_named("SELECT 1 FROM kernel_events WHERE TRUE AND event_name = 'sched.runq'"),
            Some(vec!["sched.runq"])
        );
        assert_eq!(
            kinds_named(
                "SELECT 1 FROM kernel_events k WHERE event_name IN ('sched.off_cpu', 'sched.runq') \
                 AND NOT EXISTS (SELECT 1 FROM kernel_events g WHERE (g.event_name = 'cuda.sync' \
                 OR (g.event_name='cuda.memcpy' AND g.cuda_function NOT LIKE '%Async%')))"
            ),
            Some(vec!["sched.off_cpu", "sched.runq", "cuda.sync", "cuda.memcpy"])
        );
        assert_eq!(
            kinds_named("SELECT cgroup_id, count(*) FROM kernel_events WHERE TRUE GROUP BY 1"),
            None
        );
    }

    /// A join whose joiner ran again long after the exit (it waited behind CPU hogs) is still a
    /// join; a wait on the same futex that ended before the exit, or began after it, is not.
    #[test]
    fn a_join_is_the_wait_under_way_at_the_exit() {
        let exits = vec![
            serde_json::json!({"tid": 11, "time_unix_nano": 1_000_000_000i64, "futex_uaddr": 4096}),
        ];
        let joiner = |start: i64, end: i64| serde_json::json!({"tid": 10, "futex_uaddr": 4096, "start_ns": start, "end_ns": end});
        // woken after the exit record, ran again 40 ms later
        let late = join_exclusions(&exits, &[joiner(0, 1_040_000_000)]);
        assert_eq!(
            late,
            " AND NOT (tid = 10 AND waker_tid = 11 AND time_unix_nano <= 1000000000 \
             AND time_unix_nano + duration_ns >= 995000000)"
        );
        assert!(join_exclusions(&exits, &[joiner(0, 900_000_000)]).is_empty());
        assert!(join_exclusions(&exits, &[joiner(1_001_000_000, 1_002_000_000)]).is_empty());
        let other_futex = serde_json::json!({"tid": 10, "futex_uaddr": 8192, "start_ns": 0, "end_ns": 1_000_000_000i64});
        assert!(join_exclusions(&exits, &[other_futex]).is_empty());
    }
}
