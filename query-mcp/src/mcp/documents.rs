//! The documents tools rendered (flamegraphs, timelines), kept for `resources/read` and listed by
//! `resources/list`: the most recent ones, within a count and a byte budget.

use std::collections::VecDeque;
use std::sync::Mutex;

use rmcp::model::Resource;
use rmcp::model::ResourceContents;

use crate::analysis::report::Document;

/// Documents kept, at most.
const MAX_DOCUMENTS: usize = 32;
/// Bytes of documents kept, at most.
const MAX_BYTES: usize = 32 << 20;

/// Recently rendered documents, oldest first out.
#[derive(Default)]
pub struct Documents {
    kept: Mutex<VecDeque<Document>>,
}

impl Documents {
    /// Keeps `doc`, dropping the oldest ones past the budget (a document larger than the whole
    /// budget is not kept: it was returned inline).
    pub fn keep(&self, doc: &Document) {
        if doc.text.len() > MAX_BYTES {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.push_back(doc.clone());
        let mut bytes: usize = kept.iter().map(|d| d.text.len()).sum();
        while kept.len() > MAX_DOCUMENTS || bytes > MAX_BYTES {
            let Some(old) = kept.pop_front() else { break };
            bytes -= old.text.len();
        }
    }

    /// The documents kept, newest first.
    pub fn list(&self) -> Vec<Resource> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .rev()
            .map(|d| {
                let name = d.uri.rsplit('/').next().unwrap_or(&d.uri).to_string();
                Resource::new(d.uri.clone(), name)
                    .with_mime_type(d.mime)
                    .with_size(d.text.len() as u64)
            })
            .collect()
    }

    /// The document at `uri`, if it is kept.
    pub fn read(&self, uri: &str) -> Option<ResourceContents> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|d| d.uri == uri).map(|d| contents(d))
    }
}

/// A document as resource contents.
pub fn contents(d: &Document) -> ResourceContents {
    ResourceContents::TextResourceContents {
        uri: d.uri.clone(),
        mime_type: Some(d.mime.into()),
        text: d.text.clone(),
        meta: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: usize, bytes: usize) -> Document {
        Document {
            uri: format!("causeway://test/{n}"),
            mime: "text/plain",
            text: "x".repeat(bytes),
        }
    }

    #[test]
    fn the_newest_documents_are_kept_within_the_budget() {
        let d = Documents::default();
        for n in 0..MAX_DOCUMENTS + 5 {
            d.keep(&doc(n, 10));
        }
        let listed = d.list();
        assert_eq!(listed.len(), MAX_DOCUMENTS);
        assert_eq!(
            listed[0].uri,
            format!("causeway://test/{}", MAX_DOCUMENTS + 4)
        );
        assert!(d.read("causeway://test/0").is_none());
        assert!(d
            .read(&format!("causeway://test/{}", MAX_DOCUMENTS + 4))
            .is_some());
        d.keep(&doc(999, MAX_BYTES / 2 + 1));
        d.keep(&doc(1000, MAX_BYTES / 2 + 1));
        assert_eq!(d.list().len(), 1, "two halves do not fit");
        d.keep(&doc(1001, MAX_BYTES + 1));
        assert!(d.read("causeway://test/1001").is_none());
    }
}
