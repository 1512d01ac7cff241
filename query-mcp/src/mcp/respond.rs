//! The one path every tool answers through: progress while it works (when the client asked for
//! it), cancellation (the query stops when the client cancels), and the report as
//! `structuredContent`, as text (a summary, then the JSON, for clients that forward only
//! `content`) and with the document it rendered as an embedded resource.

use std::future::Future;
use std::time::Duration;
use std::time::Instant;

use rmcp::model::CallToolResult;
use rmcp::model::ContentBlock;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde_json::Value;

use super::documents::contents;
use super::documents::Documents;
use crate::analysis::report::Report;
use crate::error::QueryError;

/// How often a tool that runs long says it still runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Runs a tool's work under the request's cancellation, reporting progress, and answers.
pub async fn answer<R: Report>(
    ctx: &RequestContext<RoleServer>,
    documents: &Documents,
    work: impl Future<Output = Result<R, QueryError>>,
) -> CallToolResult {
    let _ticker = ctx.meta.get_progress_token().map(|token| {
        let peer = ctx.peer.clone();
        Ticker(tokio::spawn(async move {
            let started = Instant::now();
            let mut every = tokio::time::interval(PROGRESS_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let s = started.elapsed().as_secs_f64();
                let p = ProgressNotificationParam::new(token.clone(), s)
                    .with_message(format!("still working: {s:.1} s"));
                if peer.notify_progress(p).await.is_err() {
                    break;
                }
            }
        }))
    });
    // the work is dropped when the client cancels: its query stops with it
    let result = tokio::select! {
        r = work => r,
        _ = ctx.ct.cancelled() => Err(QueryError::Runtime("cancelled by the client".into())),
    };
    respond(result, documents)
}

/// The progress task, stopped when the tool answers or its future is dropped.
struct Ticker(tokio::task::JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The report (or the error, as a tool result with `isError`).
fn respond<R: Report>(result: Result<R, QueryError>, documents: &Documents) -> CallToolResult {
    let report = match result {
        Ok(r) => r,
        Err(e) => return CallToolResult::error(vec![ContentBlock::text(format!("error: {e}"))]),
    };
    let value = serde_json::to_value(&report).unwrap_or(Value::Null);
    let json = value.to_string();
    let mut out = CallToolResult::structured(value);
    out.content = vec![
        ContentBlock::text(report.summary()),
        ContentBlock::text(json),
    ];
    if let Some(d) = report.document() {
        documents.keep(d);
        out.content.push(ContentBlock::resource(contents(d)));
    }
    out
}
