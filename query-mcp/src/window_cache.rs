//! Decoded windows kept between tool calls. An agent looking into an incident asks about the
//! same process and window again and again (the causal chain, then the chain with stacks, the
//! off-CPU intervals of its hot thread); each such call decodes the same rows of the same files.
//! A window is reused only when the statement that read it is the same and the scan would read
//! the very same files (path, size, modification time — the collector never rewrites a file): a
//! file that arrives late for the window (another host's collector), or one that retention
//! removed, makes it a new window.
//!
//! The answers already given about a kept window are kept with it: its rows do not change
//! while it is kept, so neither does the answer to a statement about them (the causal chain
//! asks the same questions of its window on every call).

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use datafusion::common::tree_node::TreeNode;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::TableProvider;
use datafusion::physical_plan::ExecutionPlan;

use crate::answer::Answer;

/// The files a scan reads: (location, size, modification time in ms).
pub type Files = BTreeSet<(String, u64, i64)>;

/// How long an unused window is kept.
const IDLE: Duration = Duration::from_secs(300);

/// Bytes of answers kept per window, at most: beside a window's megabytes of rows, the tools'
/// questions about it are a few rows each.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The answers given about one window.
pub type Answers = Arc<Mutex<AnswerBook>>;

/// Statement → answer, within [`MAX_ANSWER_BYTES`].
#[derive(Default)]
pub struct AnswerBook {
    answers: HashMap<String, Answer>,
    bytes: usize,
}

impl AnswerBook {
    /// The answer given to `statement`, if any.
    pub fn get(&self, statement: &str) -> Option<&Answer> {
        self.answers.get(statement)
    }

    /// Keeps the answer to `statement` while the book has room.
    pub fn keep(&mut self, statement: &str, rows: &Answer) {
        let bytes = rows.bytes() + statement.len();
        if self.bytes + bytes <= MAX_ANSWER_BYTES && !self.answers.contains_key(statement) {
            self.bytes += bytes;
            self.answers.insert(statement.to_string(), rows.clone());
        }
    }

    /// No answer kept.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// A kept window: its rows, and the answers given about them.
#[derive(Clone)]
pub struct Kept {
    /// The window's rows.
    pub table: Arc<dyn TableProvider>,
    /// The answers already given about them.
    pub answers: Answers,
    /// How many rows it holds.
    pub rows: usize,
}

/// Windows read before, least recently used first out, within a byte budget.
pub struct WindowCache {
    budget: usize,
    entries: Mutex<Vec<Entry>>,
}

struct Entry {
    statement: String,
    files: Files,
    kept: Kept,
    bytes: usize,
    used: Instant,
}

impl WindowCache {
    /// A cache holding at most `budget` bytes of decoded rows (0: none kept).
    pub fn new(budget: usize) -> Self {
        WindowCache {
            budget,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The window `statement` read from exactly `files`, if it is kept.
    pub fn get(&self, statement: &str, files: &Files) -> Option<Kept> {
        let mut entries = self.entries.lock().ok()?;
        let now = Instant::now();
        entries.retain(|e| now.duration_since(e.used) < IDLE);
        let e = entries
            .iter_mut()
            .find(|e| e.statement == statement && &e.files == files)?;
        e.used = now;
        Some(e.kept.clone())
    }

    /// Keeps a window (of `bytes` decoded bytes), making room by dropping the least recently
    /// used ones. Not kept: anything with a zero budget (even a window of no rows), a window
    /// larger than the whole budget, and one whose scan named no file (nothing would tell when
    /// it goes stale).
    pub fn put(&self, statement: &str, files: Files, kept: Kept, bytes: usize) {
        if self.budget == 0 || bytes > self.budget || files.is_empty() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.retain(|e| e.statement != statement);
        entries.sort_by_key(|e| e.used);
        let mut held: usize = entries.iter().map(|e| e.bytes).sum();
        while held + bytes > self.budget && !entries.is_empty() {
            held -= entries.remove(0).bytes;
        }
        entries.push(Entry {
            statement: statement.to_string(),
            files,
            kept,
            bytes,
            used: Instant::now(),
        });
    }

    /// Bytes held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.entries
            .lock()
            .map(|e| e.iter().map(|e| e.bytes).sum())
            .unwrap_or(0)
    }
}

/// The files a physical plan's file scans read.
pub fn scanned_files(plan: &Arc<dyn ExecutionPlan>) -> Files {
    let mut files = Files::new();
    let _ = plan.apply(|node| {
        if let Some(scan) = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|e| e.data_source().downcast_ref::<FileScanConfig>())
        {
            for f in scan.file_groups.iter().flat_map(|g| g.iter()) {
                files.insert((
                    f.object_meta.location.to_string(),
                    f.object_meta.size,
                    f.object_meta.last_modified.timestamp_millis(),
                ));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::datasource::empty::EmptyTable;

    fn table() -> Kept {
        Kept {
            table: Arc::new(EmptyTable::new(Arc::new(arrow::datatypes::Schema::empty()))),
            answers: Answers::default(),
            rows: 0,
        }
    }

    fn files(names: &[(&str, u64)]) -> Files {
        names.iter().map(|(n, s)| (n.to_string(), *s, 0)).collect()
    }

    #[test]
    fn a_window_is_reused_only_for_the_same_statement_over_the_same_files() {
        let cache = WindowCache::new(100);
        let a = files(&[("a.parquet", 10), ("b.parquet", 20)]);
        cache.put("SELECT 1", a.clone(), table(), 40);
        assert!(cache.get("SELECT 1", &a).is_some());
        assert!(cache.get("SELECT 2", &a).is_none(), "another statement");
        // a file that arrived late for the window, one retention removed, one of another size
        let late = files(&[("a.parquet", 10), ("b.parquet", 20), ("c.parquet", 5)]);
        let removed = files(&[("b.parquet", 20)]);
        let grown = files(&[("a.parquet", 10), ("b.parquet", 21)]);
        for other in [late, removed, grown] {
            assert!(cache.get("SELECT 1", &other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn answers_stay_with_their_window_and_go_with_it() {
        let cache = WindowCache::new(100);
        let f = files(&[("a.parquet", 1)]);
        let kept = table();
        cache.put("window", f.clone(), kept.clone(), 40);
        let column = |n: usize| -> arrow::array::ArrayRef {
            Arc::new(arrow::array::Int64Array::from(vec![1i64; n]))
        };
        let batch = |n: usize| Answer {
            batches: vec![
                arrow::record_batch::RecordBatch::try_from_iter([("n", column(n))]).unwrap(),
            ],
            truncated: false,
        };
        kept.answers.lock().unwrap().keep("SELECT n", &batch(1));
        let again = cache.get("window", &f).expect("kept");
        let book = again.answers.lock().unwrap();
        assert_eq!(book.get("SELECT n").unwrap().num_rows(), 1);
        drop(book);
        // within its bytes: an answer that would pass them is not kept
        kept.answers
            .lock()
            .unwrap()
            .keep("SELECT big", &batch(MAX_ANSWER_BYTES / 8));
        assert!(kept.answers.lock().unwrap().get("SELECT big").is_none());
        // a new window for the statement (its files changed) starts with no answers
        cache.put("window", f.clone(), table(), 40);
        assert!(cache
            .get("window", &f)
            .unwrap()
            .answers
            .lock()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_least_recently_used_window_makes_room_and_none_exceeds_the_budget() {
        let cache = WindowCache::new(100);
        let f = files(&[("a.parquet", 1)]);
        cache.put("one", f.clone(), table(), 40);
        cache.put("two", f.clone(), table(), 40);
        assert!(cache.get("one", &f).is_some()); // "two" is now the least recently used
        cache.put("three", f.clone(), table(), 40);
        assert!(cache.get("two", &f).is_none());
        assert!(cache.get("one", &f).is_some() && cache.get("three", &f).is_some());
        assert_eq!(cache.held(), 80);
        cache.put("huge", f.clone(), table(), 101);
        assert!(cache.get("huge", &f).is_none());
        assert_eq!(cache.held(), 80);
        let none = WindowCache::new(0);
        none.put("one", f.clone(), table(), 1);
        none.put("empty", f.clone(), table(), 0);
        assert!(none.get("one", &f).is_none() && none.get("empty", &f).is_none());
        cache.put("no files", Files::new(), table(), 1);
        assert!(cache.get("no files", &Files::new()).is_none());
    }
}
