//! Sleeps another thread ended: the wait-for chain from the target's longest such wait, through
//! each thread that was itself waiting while the previous one waited on it, to its root.

use causeway_proto::names::event::BLOCK_IO;
use causeway_proto::names::event::FUTEX_WAIT;
use causeway_proto::names::event::OFF_CPU;

use super::context::ms;
use super::context::stack_frames;
use super::context::Ctx;
use super::context::Explained;
use crate::analysis::causal_chain::report::ContentionSource;
use crate::analysis::causal_chain::report::Link;
use crate::analysis::causal_chain::report::Role;
use crate::analysis::causal_chain::report::Task;
use crate::analysis::causal_chain::rows::Activity;
use crate::analysis::causal_chain::rows::DeviceIo;
use crate::analysis::causal_chain::rows::Futex;
use crate::analysis::causal_chain::rows::State;
use crate::analysis::causal_chain::rows::Wait;
use crate::analysis::sql::date_predicate;
use crate::analysis::text::data_text;
use crate::analysis::text::quote;
use crate::analysis::text::EvidenceLog;
use crate::error::QueryError;

/// How far the chain is followed.
const MAX_HOPS: i64 = 6;

/// How far before a wait the chain first looks for the off-CPU interval of the thread it
/// waited on.
const SHORT_LOOKBACK_NS: i64 = 1_000_000_000;

/// A thread the chain reached, and the wait (start, end) the previous hop spent on it.
#[derive(Debug, Clone, PartialEq)]
struct Reached {
    pid: i64,
    tid: i64,
    comm: String,
    wait: (i64, i64),
}

/// What a thread did during a wait: the statement as the store is asked (for the evidence),
/// and its rows.
type Asked = (String, Vec<Activity>);

/// The off-CPU interval of thread `tid` that overlaps the wait `(ws, we)` the most, among
/// those begun at `lookback` or later, for a predicate `w` (its process, host and dates).
fn activity_sql(w: &str, tid: i64, (ws, we): (i64, i64), lookback: i64) -> String {
    format!(
        "SELECT state, time_unix_nano, duration_ns, waker_pid, waker_tid, waker_comm, kernel_stack_id, \
         least(time_unix_nano + duration_ns, {we}) - greatest(time_unix_nano, {ws}) AS overlap_ns \
         FROM kernel_events WHERE {w} AND tid = {tid} AND event_name = '{OFF_CPU}' \
         AND time_unix_nano < {we} AND time_unix_nano + duration_ns > {ws} \
         AND time_unix_nano >= {lookback} ORDER BY overlap_ns DESC LIMIT 1"
    )
}

/// What thread `at` did during its wait, among its intervals begun at `lookback` or later.
async fn activity(ctx: &Ctx<'_>, at: &Reached, lookback: i64) -> Result<Asked, QueryError> {
    let (ws, we) = at.wait;
    let store = ctx
        .target
        .process_dates(at.pid, ws - ctx.target.window_ns, we);
    let asked = activity_sql(&store, at.tid, at.wait, lookback);
    let rows = ctx
        .win
        .sched
        .rows_within(at.pid, (lookback, we), &store, |w| {
            activity_sql(w, at.tid, at.wait, lookback)
        })
        .await?;
    Ok((asked, rows))
}

/// The block requests a thread submitted during a wait (asked of a root in D-state).
fn io_sql(ctx: &Ctx<'_>, at: &Reached) -> String {
    let (ws, we) = at.wait;
    let (hp, lookback) = (&ctx.target.hp, ws - ctx.target.window_ns);
    format!(
        "SELECT device, count(*) AS n, sum(bytes) AS bytes, max(duration_ns) AS longest_ns FROM kernel_events \
         WHERE pid = {}{hp} AND tid = {} AND event_name = '{BLOCK_IO}' \
         AND time_unix_nano < {we} AND time_unix_nano + duration_ns > {ws} \
         AND time_unix_nano >= {lookback} AND {} GROUP BY device ORDER BY n DESC LIMIT 1",
        at.pid,
        at.tid,
        date_predicate(lookback, we)
    )
}

/// ` on futex 0x… (op)`: the lock a wait was on, when the futex probe saw it; empty otherwise.
async fn lock_of(
    ctx: &Ctx<'_>,
    pid: i64,
    tid: i64,
    (start, duration): (i64, i64),
) -> Result<String, QueryError> {
    let (t0, t1, lookback) = (
        start + 1_000_000,
        start + duration - 1_000_000,
        start - 1_000_000_000,
    );
    let store = ctx.target.process_dates(pid, lookback, start + duration);
    let fx = ctx
        .win
        .other
        .rows_within::<Futex>(pid, (lookback, t0 + 1), &store, |w| {
            format!(
                "SELECT futex_uaddr, futex_op FROM kernel_events WHERE {w} AND tid = {tid} \
                 AND event_name = '{FUTEX_WAIT}' AND time_unix_nano <= {t0} AND time_unix_nano + duration_ns >= {t1} \
                 AND time_unix_nano >= {lookback} LIMIT 1"
            )
        })
        .await?;
    Ok(fx
        .first()
        .map(|f| {
            format!(
                " on futex 0x{:x} ({})",
                f.futex_uaddr,
                f.futex_op.as_deref().unwrap_or("wait")
            )
        })
        .unwrap_or_default())
}

/// The chain from the target's longest wait ended by its top waker.
pub async fn explain(ctx: &Ctx<'_>, ev: &mut EvidenceLog) -> Result<Explained, QueryError> {
    let (pid, w) = (ctx.target.pid, ctx.target.predicate.as_str());
    let wk = &ctx.facts.wakers[0];
    let not_joins = &ctx.exclusions.not_joins;
    // the target's longest wait ended by the top waker: the wait the chain explains
    let longest_sql = |w: &str| {
        format!(
            "SELECT tid, comm, time_unix_nano, duration_ns, kernel_stack_id, user_stack_id FROM kernel_events \
             WHERE {w} AND event_name = '{OFF_CPU}' AND waker_tid = {}{not_joins} ORDER BY duration_ns DESC LIMIT 1",
            wk.waker_tid
        )
    };
    ev.quote(
        "The target's longest wait ended by its top waker",
        longest_sql(w),
    );
    let Some(l) = ctx
        .win
        .sched
        .rows::<Wait>(longest_sql)
        .await?
        .into_iter()
        .next()
    else {
        return Err(QueryError::Runtime(
            "the top waker's wait vanished between queries".into(),
        ));
    };
    let first = Reached {
        pid: wk.waker_pid,
        tid: wk.waker_tid,
        comm: data_text(&wk.waker_comm),
        wait: (l.time_unix_nano, l.time_unix_nano + l.duration_ns),
    };
    // the lock the wait was on, what the next hop did meanwhile and its block requests (the
    // answer when it is the root): asked at once
    let first_io = io_sql(ctx, &first);
    tracing::debug!("chain: longest wait found");
    let (lock, first_activity, first_io_rows) = futures::try_join!(
        lock_of(ctx, pid, l.tid, (l.time_unix_nano, l.duration_ns)),
        activity(ctx, &first, short_lookback(ctx, first.wait.0)),
        ctx.engine.rows::<DeviceIo>(&first_io),
    )?;
    let mut out = Explained::default();
    out.chain.push(Link::thread(
        0,
        Role::Target,
        (pid, l.tid, &l.comm),
        ms(l.duration_ns),
        format!(
            "waited {:.1} ms{lock} (its longest wait in the window); {:.1} ms in all were ended by the next hop",
            ms(l.duration_ns),
            ms(wk.total_ns)
        ),
    ));
    if ctx.target.include_stacks {
        out.stack_trace
            .extend(stack_frames(ctx.engine, l.kernel_stack_id).await?);
        out.stack_trace
            .extend(stack_frames(ctx.engine, l.user_stack_id).await?);
    }
    let prefetched = Prefetched {
        activity: Some((first.clone(), first_activity)),
        io: Some((first_io, first_io_rows)),
    };
    let root = walk(ctx, first, prefetched, ev, &mut out.chain).await?;
    tracing::debug!("chain: hops done");
    let hops = out.chain.len().saturating_sub(1);
    out.action = format!(
        "{} (pid {}, tid {}) is the root of a {hops}-hop wait chain that kept pid {pid} waiting {:.1} ms in the window (longest {:.1} ms): it {}. It holds a lock (or owns the condition) the chain needs across a slow step — shorten that critical section: do not sleep, block or do I/O while holding it",
        quote(&root.at.comm),
        root.at.pid,
        root.at.tid,
        ms(wk.total_ns),
        ms(l.duration_ns),
        root.activity,
    );
    out.source = Some(ContentionSource::Task {
        task: Task {
            pid: root.at.pid,
            tid: root.at.tid,
            comm: root.at.comm,
        },
        device: root.device,
    });
    Ok(out)
}

/// Answers asked before the walk, for its first hop.
struct Prefetched {
    activity: Option<(Reached, Asked)>,
    io: Option<(String, Vec<DeviceIo>)>,
}

/// Where the walk ended.
struct Root {
    at: Reached,
    activity: String,
    device: Option<String>,
}

fn short_lookback(ctx: &Ctx<'_>, ws: i64) -> i64 {
    ws - SHORT_LOOKBACK_NS.min(ctx.target.window_ns)
}

/// Walks the wait-for chain: while the thread that ended a wait was itself waiting (off CPU for
/// most of it) and was woken by yet another thread, follows that thread.
async fn walk(
    ctx: &Ctx<'_>,
    mut at: Reached,
    mut prefetched: Prefetched,
    ev: &mut EvidenceLog,
    chain: &mut Vec<Link>,
) -> Result<Root, QueryError> {
    let mut hop = 1;
    loop {
        let (ws, we) = at.wait;
        let Some(r) = covering(ctx, &at, hop, prefetched.activity.take(), ev).await? else {
            let activity = "was running on CPU while the previous hop waited on it".to_string();
            chain.push(Link::thread(
                hop,
                Role::Root,
                (at.pid, at.tid, &at.comm),
                ms(we - ws),
                activity.clone(),
            ));
            return Ok(Root {
                at,
                activity,
                device: None,
            });
        };
        let frames = stack_frames(ctx.engine, r.kernel_stack_id).await?;
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
        let state = r.state.name();
        let follows = r.state == State::Sleep
            && r.waker_pid != 0
            && r.waker_tid != 0
            && r.waker_tid != at.tid
            && hop < MAX_HOPS;
        if follows {
            let lock = lock_of(ctx, at.pid, at.tid, (r.time_unix_nano, r.duration_ns)).await?;
            chain.push(Link::thread(
                hop,
                Role::Waiter,
                (at.pid, at.tid, &at.comm),
                ms(r.duration_ns),
                format!(
                    "was itself waiting ({state}) {:.1} ms{lock}{place}, until thread {} woke it",
                    ms(r.duration_ns),
                    r.waker_tid
                ),
            ));
            at = Reached {
                pid: r.waker_pid,
                tid: r.waker_tid,
                comm: data_text(&r.waker_comm),
                wait: (r.time_unix_nano, r.time_unix_nano + r.duration_ns),
            };
            hop += 1;
            continue;
        }
        let (io, device) = if r.state == State::Disk {
            root_io(ctx, &at, hop, prefetched.io.take(), ev).await?
        } else {
            (String::new(), None)
        };
        let activity = format!(
            "was itself off CPU ({state}) for {:.1} ms of the {:.1} ms the previous hop waited{place}{io}, not woken by another thread",
            ms(r.overlap_ns),
            ms(we - ws)
        );
        chain.push(Link::thread(
            hop,
            Role::Root,
            (at.pid, at.tid, &at.comm),
            ms(r.overlap_ns),
            activity.clone(),
        ));
        return Ok(Root {
            at,
            activity,
            device,
        });
    }
}

/// What thread `at` did during its wait, when one off-CPU interval (or its D-state waits
/// together) covers half of it. A thread is off CPU in one interval at a time: one that began
/// within a second of the wait and covers half of it is the answer; only a longer one, begun
/// earlier, needs the window's full lookback (which reads all of the thread's rows).
async fn covering(
    ctx: &Ctx<'_>,
    at: &Reached,
    hop: i64,
    prefetched: Option<(Reached, Asked)>,
    ev: &mut EvidenceLog,
) -> Result<Option<Activity>, QueryError> {
    let (ws, we) = at.wait;
    let half = 0.5 * (we - ws) as f64;
    let (short, mut act) = match prefetched {
        Some((asked, answer)) if &asked == at => answer,
        _ => activity(ctx, at, short_lookback(ctx, ws)).await?,
    };
    let what = format!(
        "Hop {hop}: what thread {} did while the previous hop waited on it",
        at.tid
    );
    if act.first().is_some_and(|r| r.overlap_ns as f64 >= half) {
        ev.quote(&what, short);
    } else {
        let (full, rows) = activity(ctx, at, ws - ctx.target.window_ns).await?;
        ev.quote(&what, full);
        act = rows;
    }
    if act.first().is_some_and(|r| (r.overlap_ns as f64) < half) {
        // no single wait covers it; many short D-state waits can (O_DIRECT, fsync)
        let lookback = ws - ctx.target.window_ns;
        let agg_sql = ev.quote(
            &format!(
                "Hop {hop}: off-CPU time of thread {} by state while the previous hop waited",
                at.tid
            ),
            format!(
                "SELECT state, min(time_unix_nano) AS time_unix_nano, sum(duration_ns) AS duration_ns, \
                 max(kernel_stack_id) AS kernel_stack_id, \
                 sum(least(time_unix_nano + duration_ns, {we}) - greatest(time_unix_nano, {ws})) AS overlap_ns \
                 FROM kernel_events WHERE {} AND tid = {} AND event_name = '{OFF_CPU}' \
                 AND state = 'disk' AND time_unix_nano < {we} AND time_unix_nano + duration_ns > {ws} \
                 AND time_unix_nano >= {lookback} GROUP BY state",
                ctx.target.process_dates(at.pid, lookback, we),
                at.tid
            ),
        );
        act = ctx.engine.rows(&agg_sql).await?;
    }
    Ok(act
        .into_iter()
        .next()
        .filter(|r| r.overlap_ns as f64 >= half))
}

/// The block I/O of a root in D-state: (the detail, its device).
async fn root_io(
    ctx: &Ctx<'_>,
    at: &Reached,
    hop: i64,
    prefetched: Option<(String, Vec<DeviceIo>)>,
    ev: &mut EvidenceLog,
) -> Result<(String, Option<String>), QueryError> {
    let asked = ev.quote(
        &format!(
            "Hop {hop}: block I/O of thread {} while the previous hop waited on it",
            at.tid
        ),
        io_sql(ctx, at),
    );
    let rows = match prefetched {
        Some((sql, rows)) if sql == asked => rows,
        _ => ctx.engine.rows::<DeviceIo>(&asked).await?,
    };
    Ok(match rows.first() {
        Some(d) => {
            let dev = data_text(d.device.as_deref().unwrap_or("?"));
            (
                format!(
                    ", doing I/O on {dev} ({} requests, {:.1} MiB, longest {:.1} ms)",
                    d.n,
                    d.bytes as f64 / 1048576.0,
                    ms(d.longest_ns)
                ),
                Some(dev),
            )
        }
        None => (String::new(), None),
    })
}
