//! `resolve_causal_chain`: what a process waited on over a window, who ended the waits, and
//! what those threads were doing — followed to the root of the wait-for chain.
//!
//! The window ends at the process's last recorded event (so the tool answers for a past
//! incident as well as for a live one), or is a trace's span. The analysis reads the target's
//! rows into two windows (windows.rs), asks its questions of them (facts.rs), decides the
//! cause with no further question (classify.rs), then follows that cause's hops (hops/).

mod args;
mod classify;
mod facts;
mod hops;
mod report;
mod rows;
mod source;
mod target;
mod windows;

pub use args::ChainArgs;
pub use report::ChainReport;

use crate::analysis::mechanism::Mechanism;
use crate::analysis::mechanism::Severity;
use crate::analysis::text::EvidenceLog;
use crate::analysis::text::DATA_NOTICE;
use crate::engine::Engine;
use crate::error::QueryError;

/// Runs the analysis.
pub async fn run(engine: &dyn Engine, a: &ChainArgs) -> Result<ChainReport, QueryError> {
    let started = std::time::Instant::now();
    let since = || started.elapsed().as_secs_f64() * 1e3;
    let target = match target::resolve(engine, a).await? {
        target::Resolved::Window(t) => t,
        target::Resolved::NoEvents(pid) => return Ok(ChainReport::nothing(pid)),
    };
    let mut ev = EvidenceLog::default();
    tracing::debug!(ms = since(), "chain: window end found");
    let held = windows::read(engine, &target).await?;
    let win = windows::Windows::new(engine, &target, &held);
    tracing::debug!(ms = since(), "chain: windows read");
    let (facts, exclusions) = facts::gather(&win, &target, &mut ev).await?;
    tracing::debug!(ms = since(), "chain: window questions answered");
    let verdict = classify::classify(&facts, target.window_ns);
    facts::quote_used(
        verdict.runq_ns > 0,
        verdict.consulted_own_io,
        &target.predicate,
        &mut ev,
    );
    let top = verdict.top;
    let mut report = ChainReport {
        severity: Severity::None,
        blocking_mechanism: Mechanism::Unknown,
        contention_source: None,
        chain: Vec::new(),
        stack_trace: Vec::new(),
        recommended_action: String::new(),
        evidence: Vec::new(),
        window_start_ns: target.start,
        window_end_ns: target.end,
        notice: DATA_NOTICE.to_string(),
    };
    if !verdict.significant {
        report.recommended_action = format!(
            "Nothing in the window explains a latency: pid {} shows no waits ended by another thread, no D-state and no run-queue delay worth naming (largest: {} {:.2} ms, {:.2}% of the window). Look at on-CPU work (a CPU profile), sleeps the program chose, or widen the window.",
            target.pid,
            top.cause.name(),
            top.total_ns as f64 / 1e6,
            top.share * 100.0
        );
        report.evidence = ev.0;
        return Ok(report);
    }
    let ctx = hops::Ctx {
        engine,
        win: &win,
        target: &target,
        facts: &facts,
        verdict: &verdict,
        exclusions: &exclusions,
    };
    let explained = hops::explain(&ctx, &mut ev).await?;
    let window_ms = target.window_ns as f64 / 1e6;
    report.chain = explained.chain;
    for l in &mut report.chain {
        l.share_of_window = (l.ms / window_ms).clamp(0.0, 1.0);
    }
    report.severity = Severity::of(top.share, top.longest_ns as f64 / 1e6);
    report.blocking_mechanism = top.cause.mechanism();
    report.contention_source = explained.source;
    report.stack_trace = explained.stack_trace;
    report.recommended_action = explained.action;
    report.evidence = ev.0;
    tracing::debug!(ms = since(), "chain: report written");
    Ok(report)
}
