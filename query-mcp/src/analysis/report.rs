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
