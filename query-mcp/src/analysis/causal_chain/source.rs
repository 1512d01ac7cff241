//! Where questions about the target's window are answered: a window of its decoded rows of
//! some kinds, or the store.

use serde::de::DeserializeOwned;

use crate::engine::Engine;
use crate::error::QueryError;

/// A window of the target's decoded rows of some kinds (asked with no predicate: it holds only
/// the window's rows), or the store — when the rows were too many to hold, or the question
/// names a kind the window lacks or none.
pub struct Source<'a> {
    store: &'a dyn Engine,
    window: Option<&'a dyn Engine>,
    /// The window's predicate, as the store is asked.
    predicate: &'a str,
    kinds: &'a [&'a str],
    /// The window's process and `time_unix_nano` range `[start, end)`.
    pid: i64,
    range: (i64, i64),
}

/// The window a [`Source`] reads from, held by the caller while the source lives.
pub type Held = Option<Box<dyn Engine>>;

impl<'a> Source<'a> {
    /// Reads the window of `columns` of the rows matching `predicate` of `kinds` into `held`.
    pub async fn read(
        store: &dyn Engine,
        columns: &[&str],
        predicate: &str,
        kinds: &[&str],
    ) -> Result<Held, QueryError> {
        let list: Vec<String> = kinds.iter().map(|k| format!("'{k}'")).collect();
        store
            .window(
                columns,
                &format!("{predicate} AND event_name IN ({})", list.join(", ")),
            )
            .await
    }

    /// A source over a window `read` returned (or the store alone when it returned none).
    pub fn new(
        store: &'a dyn Engine,
        held: &'a Held,
        (predicate, pid, range): (&'a str, i64, (i64, i64)),
        kinds: &'a [&'a str],
    ) -> Source<'a> {
        Source {
            store,
            window: held.as_deref(),
            predicate,
            kinds,
            pid,
            range,
        }
    }

    /// The window, when it holds every kind `statement` names.
    fn holding(&self, statement: &str) -> Option<&'a dyn Engine> {
        let held = kinds_named(statement).is_some_and(|k| k.iter().all(|k| self.kinds.contains(k)));
        self.window.filter(|_| held)
    }

    /// Rows of `statement` asked of a window that holds its kinds. A window without rows (the
    /// target had none of its kinds: most processes have no CUDA, lock, throttling or
    /// retransmit records) answers every statement with no rows, unasked: the statements asked
    /// of it select, filter and group its rows — the one aggregate over all rows (throttling)
    /// reads no rows as it reads a row of nulls.
    async fn ask<T: DeserializeOwned>(
        window: &dyn Engine,
        statement: &str,
    ) -> Result<Vec<T>, QueryError> {
        if window.holds_no_rows() {
            return Ok(Vec::new());
        }
        window.rows(statement).await
    }

    /// Rows of the statement `sql` writes for a predicate: asked of the window when it holds
    /// every kind the statement names, of the store otherwise.
    pub async fn rows<T: DeserializeOwned>(
        &self,
        sql: impl Fn(&str) -> String,
    ) -> Result<Vec<T>, QueryError> {
        let statement = sql("TRUE");
        match self.holding(&statement) {
            Some(window) => Self::ask(window, &statement).await,
            None => self.store.rows(&sql(self.predicate)).await,
        }
    }

    /// Rows of a statement about process `pid` whose own conditions keep it to records begun
    /// within `[lo, hi)`, written by `sql` for a predicate: asked of the window when the window
    /// holds every row it could read (the window's process, a range within the window's, kinds
    /// it holds) — the chain's hops mostly ask about the target's own threads during one of its
    /// waits — of the store otherwise, with `store` (the statement's process, host and dates).
    pub async fn rows_within<T: DeserializeOwned>(
        &self,
        pid: i64,
        (lo, hi): (i64, i64),
        store: &str,
        sql: impl Fn(&str) -> String,
    ) -> Result<Vec<T>, QueryError> {
        let statement = sql("TRUE");
        match self.holding(&statement) {
            Some(window) if pid == self.pid && lo >= self.range.0 && hi <= self.range.1 => {
                Self::ask(window, &statement).await
            }
            _ => self.store.rows(&sql(store)).await,
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

#[cfg(test)]
mod tests {
    use super::kinds_named;

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
}
