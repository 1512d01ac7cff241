//! What every analysis answers with: a structured report (the MCP tool's `structuredContent`,
//! the CLI's `--json`), its summary in words (the MCP text content), a longer text for a
//! terminal, and, for views, the document it rendered.

use serde::Serialize;

/// A document a report carries beside its structure (an SVG, a timeline).
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// Where an MCP client finds it.
    pub uri: String,
    /// Its media type.
    pub mime: &'static str,
    /// The document.
    pub text: String,
}

/// A URI no other document of this or another run of the server has: `causeway://<kind>/<name>-<n>.<ext>`,
/// `n` unique to the call (the server's start time, then a counter).
pub fn document_uri(kind: &str, name: &str, ext: &str) -> String {
    use std::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering;
    use std::sync::OnceLock;
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("causeway://{kind}/{name}-{start:x}-{n}.{ext}")
}

/// An analysis's answer.
pub trait Report: Serialize {
    /// The answer in one paragraph.
    fn summary(&self) -> String;

    /// The answer for a terminal: the summary and the details beneath it.
    fn text(&self) -> String {
        self.summary()
    }

    /// The document the report describes, if it rendered one.
    fn document(&self) -> Option<&Document> {
        None
    }
}
