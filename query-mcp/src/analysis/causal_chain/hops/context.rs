//! What every cause's hops are asked with and answer, and the helpers they share.

use crate::analysis::causal_chain::classify::Verdict;
use crate::analysis::causal_chain::facts::Exclusions;
use crate::analysis::causal_chain::facts::Facts;
use crate::analysis::causal_chain::report::ContentionSource;
use crate::analysis::causal_chain::report::Link;
use crate::analysis::causal_chain::report::Role;
use crate::analysis::causal_chain::rows::Frames;
use crate::analysis::causal_chain::rows::State;
use crate::analysis::causal_chain::target::Target;
use crate::analysis::causal_chain::windows::Windows;
use crate::engine::Engine;
use crate::error::QueryError;

/// What the hops are asked with.
pub struct Ctx<'a> {
    /// The store.
    pub engine: &'a dyn Engine,
    /// The target's windows.
    pub win: &'a Windows<'a>,
    /// The target and its window.
    pub target: &'a Target,
    /// What the window questions found.
    pub facts: &'a Facts,
    /// The finding.
    pub verdict: &'a Verdict,
    /// What the wakers question left out.
    pub exclusions: &'a Exclusions,
}

/// A cause explained.
#[derive(Debug, Default)]
pub struct Explained {
    /// target → what it waited on → …
    pub chain: Vec<Link>,
    /// Who or what caused the wait.
    pub source: Option<ContentionSource>,
    /// Frames of the longest wait, when asked for.
    pub stack_trace: Vec<String>,
    /// What to do.
    pub action: String,
}

/// Milliseconds.
pub fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Hop 0: the thread that lost the most time in `state`.
pub fn busiest(ctx: &Ctx<'_>, state: State) -> Option<Link> {
    let t = ctx.facts.per_thread.iter().find(|r| r.state == state)?;
    Some(Link::thread(
        0,
        Role::Target,
        (ctx.target.pid, t.tid, &t.comm),
        ms(t.total_ns),
        format!(
            "{} intervals, {:.1} ms in all, longest {:.1} ms",
            t.n,
            ms(t.total_ns),
            ms(t.longest_ns)
        ),
    ))
}

/// Frames of a stack id, innermost first (empty when unknown).
pub async fn stack_frames(engine: &dyn Engine, id: i64) -> Result<Vec<String>, QueryError> {
    if id == 0 {
        return Ok(Vec::new());
    }
    let rows = engine
        .rows::<Frames>(&format!(
            "SELECT frames FROM stacks WHERE stack_id = {id} LIMIT 1"
        ))
        .await?;
    Ok(rows
        .into_iter()
        .next()
        .map(|r| {
            r.frames
                .iter()
                .map(|f| crate::analysis::text::data_text(f.as_deref().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default())
}

/// The cgroup v2 directory whose id (kernfs inode) is `id`, when this host has it: the query
/// service often runs where the collector does. Bounded walk; None elsewhere.
pub fn cgroup_by_id(id: i64) -> Option<std::path::PathBuf> {
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
