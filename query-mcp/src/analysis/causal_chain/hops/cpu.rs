//! Run-queue waits behind other tasks: the task that had the CPU, its cgroup, and the cgroup
//! whose tasks held it most (noisy neighbours are cgroups as often as processes).

use causeway_proto::names::event::CUDA_LAUNCH;
use causeway_proto::names::event::RUNQ;

use super::context::busiest;
use super::context::cgroup_by_id;
use super::context::ms;
use super::context::Ctx;
use super::context::Explained;
use crate::analysis::causal_chain::report::ContentionSource;
use crate::analysis::causal_chain::report::Link;
use crate::analysis::causal_chain::report::Neighbour;
use crate::analysis::causal_chain::report::Role;
use crate::analysis::causal_chain::report::Task;
use crate::analysis::causal_chain::rows::CgroupHolder;
use crate::analysis::causal_chain::rows::Count;
use crate::analysis::causal_chain::rows::CpuHolder;
use crate::analysis::causal_chain::rows::State;
use crate::analysis::text::data_text;
use crate::analysis::text::quote;
use crate::analysis::text::EvidenceLog;
use crate::error::QueryError;

/// A cgroup described: (its directory here, its container, a name for it).
type Described = (Option<String>, Option<String>, String);

fn describe(id: i64, container: Option<&str>) -> Described {
    let path = cgroup_by_id(id).map(|p| p.display().to_string());
    let container = container.map(data_text);
    let name = match (&container, &path) {
        (Some(c), _) => format!("container {c}"),
        (None, Some(p)) => format!("cgroup {p}"),
        (None, None) => format!("cgroup id {id}"),
    };
    (path, container, name)
}

/// Who had the CPU, and what to cap.
pub async fn explain(ctx: &Ctx<'_>, ev: &mut EvidenceLog) -> Result<Explained, QueryError> {
    let (pid, w) = (ctx.target.pid, ctx.target.predicate.as_str());
    let runq_total = ctx.verdict.runq_ns;
    let mut out = Explained {
        chain: busiest(ctx, State::Runq).into_iter().collect(),
        ..Default::default()
    };
    match ctx.facts.cpu_holders.first() {
        Some(h) => neighbours(ctx, h, ev, &mut out).await?,
        None => {
            out.action = format!(
                "pid {pid} waited {:.1} ms runnable but not running, behind its own threads: it has more runnable threads than CPUs — size the thread pool to the CPUs it gets",
                ms(runq_total)
            );
            out.source = Some(ContentionSource::OwnThreads {
                pid,
                comm: "own threads".into(),
            });
        }
    }
    // a GPU job whose launching thread waits for a CPU leaves the GPU idle
    let launch_sql = |w: &str| {
        format!(
            "SELECT count(*) AS n, sum(duration_ns) AS total_ns, max(duration_ns) AS longest_ns FROM kernel_events \
             WHERE {w} AND event_name = '{CUDA_LAUNCH}'"
        )
    };
    ev.quote(
        "The target's slow CUDA launches in the window (launch CPU starvation)",
        launch_sql(w),
    );
    if let Some(l) = ctx
        .win
        .other
        .rows::<Count>(launch_sql)
        .await?
        .first()
        .filter(|l| l.n > 0)
    {
        out.action.push_str(&format!(
            ". It is feeding a GPU: {} CUDA launches were slow ({:.1} ms in all, longest {:.1} ms) while it waited for a CPU, so the GPU sat idle — keep the launching thread on a CPU of its own (analyze_gpu_launch_latency {{pid: {pid}}} names each)",
            l.n,
            ms(l.total_ns),
            ms(l.longest_ns)
        ));
    }
    Ok(out)
}

/// The task `h` that had the CPU most, and the cgroup whose tasks had it most.
async fn neighbours(
    ctx: &Ctx<'_>,
    h: &CpuHolder,
    ev: &mut EvidenceLog,
    out: &mut Explained,
) -> Result<(), QueryError> {
    let (pid, w) = (ctx.target.pid, ctx.target.predicate.as_str());
    let runq_total = ctx.verdict.runq_ns;
    let link = Link::thread(
        1,
        Role::CpuHolder,
        (h.prev_pid, h.prev_tid, &h.prev_comm),
        ms(h.total_ns),
        format!(
            "held the CPU before {} of the target's run-queue waits ended",
            h.n
        ),
    );
    // many small tasks of one container can out-compete the target where no single task does.
    // A run-queue row names only the task that ran just before the target, so `processes`
    // counts those seen (a lower bound: in a fixed rotation it is always the same one)
    let groups_sql = |w: &str| {
        format!(
            "SELECT prev_cgroup_id, max(prev_container_id) AS prev_container_id, count(DISTINCT prev_pid) AS processes, \
             count(*) AS n, sum(duration_ns) AS total_ns FROM kernel_events WHERE {w} AND event_name = '{RUNQ}' \
             AND prev_pid <> {pid} AND prev_pid <> 0 AND prev_cgroup_id IS NOT NULL \
             GROUP BY prev_cgroup_id ORDER BY total_ns DESC LIMIT 3"
        )
    };
    ev.quote(
        "cgroups whose tasks held the CPU while the target waited in the run queue (noisy neighbours)",
        groups_sql(w),
    );
    let groups = ctx.win.sched.rows::<CgroupHolder>(groups_sql).await?;
    // each description walks the cgroup tree once: the top group is usually the hog's own
    // cgroup, whose description is then reused
    let hog_cgroup = h.prev_cgroup_id.unwrap_or(0);
    let hog = describe(hog_cgroup, h.prev_container_id.as_deref());
    let top_group: Option<(&CgroupHolder, Described)> = groups.first().map(|g| {
        let id = g.prev_cgroup_id.unwrap_or(0);
        let described = if id == hog_cgroup {
            hog.clone()
        } else {
            describe(id, g.prev_container_id.as_deref())
        };
        (g, described)
    });
    let share = |g: &CgroupHolder| g.total_ns as f64 / runq_total.max(1) as f64;
    let neighbour = top_group
        .as_ref()
        .map(|(g, (path, container, _))| Neighbour {
            cgroup_id: g.prev_cgroup_id,
            cgroup_path: path.clone(),
            container_id: container.clone(),
            processes: g.processes,
            ms: ms(g.total_ns),
            share_of_runq: share(g),
        });
    out.source = Some(ContentionSource::CpuHolder {
        task: Task {
            pid: link.pid,
            tid: link.tid,
            comm: link.comm.clone(),
        },
        cgroup_id: h.prev_cgroup_id,
        cgroup_path: hog.0.clone(),
        container_id: hog.1.clone(),
        neighbour_cgroup: neighbour,
    });
    out.chain.push(link);
    // several processes of one cgroup behind most of the wait: the cgroup is the neighbour to
    // cap, not its busiest process
    let crowd = top_group.filter(|(g, _)| g.processes > 1 && g.total_ns * 2 >= runq_total);
    out.action = match crowd {
        Some((g, (_, _, name))) => format!(
            "pid {pid} waited {:.1} ms runnable but not running; the tasks of {name} ({} processes) held the CPU for {:.1} ms of it ({:.0}%), the largest single one {} (pid {}): cap that cgroup (its cpu.max / cpu.weight, the pod's CPU limit) or give the target its own CPUs (cpuset)",
            ms(runq_total),
            g.processes,
            ms(g.total_ns),
            100.0 * share(g),
            quote(&h.prev_comm),
            h.prev_pid
        ),
        None => format!(
            "pid {pid} waited {:.1} ms runnable but not running; {} (pid {}, {}) had the CPU for the largest share: give the target its own CPUs (cpuset/taskset), or lower the neighbour's weight (nice, or cpu.weight of its cgroup)",
            ms(runq_total),
            quote(&h.prev_comm),
            h.prev_pid,
            hog.2
        ),
    };
    Ok(())
}
