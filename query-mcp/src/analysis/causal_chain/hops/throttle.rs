//! Run-queue waits while the target's cgroup was throttled: the chain ends at the cgroup and
//! its quota.

use super::context::busiest;
use super::context::cgroup_by_id;
use super::context::ms;
use super::context::Ctx;
use super::context::Explained;
use crate::analysis::causal_chain::report::ContentionSource;
use crate::analysis::causal_chain::report::Link;
use crate::analysis::causal_chain::report::Role;
use crate::analysis::causal_chain::rows::CgroupId;
use crate::analysis::causal_chain::rows::State;
use crate::analysis::text::data_text;
use crate::analysis::text::EvidenceLog;
use crate::error::QueryError;

/// The cgroup, its quota and what its counters say.
pub async fn explain(ctx: &Ctx<'_>, ev: &mut EvidenceLog) -> Result<Explained, QueryError> {
    let pid = ctx.target.pid;
    let (runq_total, idle_total) = (ctx.verdict.runq_ns, ctx.verdict.idle_ns);
    let throttle = ctx.facts.throttle.as_ref().filter(|t| t.throttled_ns > 0);
    // the cgroup the throttle rows name, else the one the target's rows carry most
    let cg = match throttle.map(|t| t.cgroup_id).filter(|&c| c > 0) {
        Some(c) => c,
        None => {
            let cg_sql = ev.quote(
                "The target's cgroup in the window",
                format!(
                    "SELECT cgroup_id, count(*) AS n FROM kernel_events WHERE {} GROUP BY cgroup_id ORDER BY n DESC LIMIT 1",
                    ctx.target.predicate
                ),
            );
            ctx.engine
                .rows::<CgroupId>(&cg_sql)
                .await?
                .first()
                .map_or(0, |r| r.cgroup_id)
        }
    };
    // what the collector read from the cgroup's counters, else what this host shows (a
    // bounded walk of the cgroup tree: only when the counters left something out)
    let counted_max = throttle.and_then(|t| t.cpu_max.as_deref()).map(data_text);
    let counted_path = throttle
        .and_then(|t| t.cgroup_path.as_deref())
        .map(data_text);
    let local = if counted_max.is_some() && counted_path.is_some() {
        None
    } else {
        cgroup_by_id(cg)
    };
    let limit = counted_max.or_else(|| {
        local
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p.join("cpu.max")).ok())
            .map(|s| s.trim().to_string())
    });
    let path = counted_path.or_else(|| local.as_ref().map(|p| p.display().to_string()));
    let (throttled_ns, throttled_periods, periods) = throttle
        .map(|t| (t.throttled_ns, t.throttled_periods, t.periods))
        .unwrap_or((0, 0, 0));
    let counted = if periods > 0 {
        format!(
            "; its cpu.stat counted {throttled_periods} of {periods} periods throttled ({:.0}%), {:.1} ms throttled",
            100.0 * throttled_periods as f64 / periods as f64,
            ms(throttled_ns)
        )
    } else {
        String::new()
    };
    let cpu_max = limit
        .as_deref()
        .map(|l| format!(" (cpu.max {l})"))
        .unwrap_or_default();
    let mut chain: Vec<Link> = busiest(ctx, State::Runq).into_iter().collect();
    chain.push(Link::thing(
        1,
        Role::Cgroup,
        path.clone().unwrap_or_else(|| format!("cgroup {cg}")),
        ms(idle_total.max(throttled_ns)),
        format!(
            "the cgroup's CPU quota was used up{cpu_max} while the target was runnable (the CPU sat idle {:.1} ms of it){counted}",
            ms(idle_total),
        ),
    ));
    let action = format!(
        "pid {pid} was runnable but not running for {:.1} ms: its cgroup{} is throttled by its CPU quota{cpu_max}{}{counted}. Raise cpu.max (quota/period) or the pod's CPU limit above what the cgroup burns at its peaks, or reduce the threads that burn the quota; throttling stalls every thread of the cgroup for the rest of each period",
        ms(runq_total),
        path.as_deref().map(|p| format!(" {p}")).unwrap_or_else(|| format!(" (id {cg})")),
        cpus(limit.as_deref()).map(|c| format!(", i.e. {c:.2} CPUs")).unwrap_or_default(),
    );
    Ok(Explained {
        chain,
        source: Some(ContentionSource::Throttled {
            cgroup_id: cg,
            cgroup_path: path,
            cpu_max: limit,
            throttled_ms: ms(throttled_ns),
            throttled_periods,
            periods,
        }),
        stack_trace: Vec::new(),
        action,
    })
}

/// The CPUs a `cpu.max` of `quota period` (µs) allows.
fn cpus(limit: Option<&str>) -> Option<f64> {
    let mut it = limit?.split_whitespace().map(|v| v.parse::<f64>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(q), Some(p)) if p > 0.0 => Some(q / p),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_quota_over_a_period_is_cpus() {
        assert_eq!(super::cpus(Some("50000 100000")), Some(0.5));
        assert_eq!(super::cpus(Some("max 100000")), None);
        assert_eq!(super::cpus(None), None);
    }
}
