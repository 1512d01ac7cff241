//! The stack thread: resolves raw stacks into stack ids and kernel host stubs into names off
//! the capture thread (normalization and symbolization can take hundreds of milliseconds the
//! first time a binary is seen, and the ring buffer must keep draining).

use std::collections::HashMap;

use anyhow::Result;
use causeway_proto::KernelEvent;
use tokio::sync::mpsc;

use super::writer::Batch;
use crate::probes::wire;
use crate::stacks::StackTable;

/// Events whose raw stacks the stack thread resolves, and processes that exited (whose raw
/// addresses mean nothing any more).
#[derive(Default)]
pub(super) struct StackWork {
    pub(super) items: Vec<(KernelEvent, Vec<u64>, Vec<u64>)>,
    /// Events with a function address to name (CUDA kernels launched).
    pub(super) functions: Vec<(KernelEvent, u64)>,
    /// Processes that exited.
    pub(super) exited: Vec<i32>,
    /// /proc/PID/maps of processes whose first user stack came in, read while they lived.
    pub(super) maps: Vec<(i32, String)>,
}

/// Resolves stacks off the capture thread: normalization and symbolization can take hundreds of
/// milliseconds the first time a binary is seen, and the ring buffer must keep draining.
pub(super) fn spawn(
    writer: mpsc::Sender<Batch>,
) -> Result<(
    std::sync::mpsc::SyncSender<StackWork>,
    std::thread::JoinHandle<()>,
)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<StackWork>(8);
    let handle = std::thread::Builder::new()
        .name("cw-stacks".into())
        .spawn(move || {
            let mut table = StackTable::new(wire::MAX_STACK);
            let mut maps: HashMap<i32, String> = HashMap::new();
            for work in rx {
                maps.extend(work.maps);
                let mut events = Vec::with_capacity(work.items.len());
                for (mut ev, kernel, user) in work.items {
                    ev.kernel_stack_id = table.kernel(&kernel, ev.time_unix_nano);
                    let text = maps.get(&ev.pid).map(String::as_str);
                    ev.user_stack_id = table.user(ev.pid, &user, ev.time_unix_nano, text);
                    events.push(ev);
                }
                for (mut ev, addr) in work.functions {
                    ev.cuda_kernel = table.function_name(ev.pid, addr);
                    events.push(ev);
                }
                for pid in work.exited {
                    table.forget_process(pid);
                    maps.remove(&pid);
                }
                let batch = Batch {
                    events,
                    stacks: table.take_new(),
                    stats: Vec::new(),
                    hists: Vec::new(),
                };
                if writer.blocking_send(batch).is_err() {
                    break;
                }
            }
        })?;
    Ok((tx, handle))
}
