//! The chain behind each cause, one file per cause: from the target's thread to what it waited
//! on and, where that was a thread, what that thread was doing.

mod context;
mod cpu;
mod gpu;
mod io;
mod kernel_lock;
mod network;
mod throttle;
mod wait_chain;

pub use context::Ctx;
pub use context::Explained;

use super::classify::Cause;
use crate::analysis::text::EvidenceLog;
use crate::error::QueryError;

/// The chain of the verdict's cause.
pub async fn explain(ctx: &Ctx<'_>, ev: &mut EvidenceLog) -> Result<Explained, QueryError> {
    match ctx.verdict.top.cause {
        Cause::KernelLock => kernel_lock::explain(ctx, ev).await,
        Cause::GpuSync => Ok(gpu::explain(ctx)),
        Cause::Lock => wait_chain::explain(ctx, ev).await,
        Cause::Network => Ok(network::explain(ctx)),
        Cause::Throttling => throttle::explain(ctx, ev).await,
        Cause::CpuContention => cpu::explain(ctx, ev).await,
        Cause::Io => io::explain(ctx, ev).await,
    }
}
