//! D-state: the device that served the target's block requests, or someone else's I/O.

use causeway_proto::names::event::BLOCK_IO;

use super::context::busiest;
use super::context::ms;
use super::context::Ctx;
use super::context::Explained;
use crate::analysis::causal_chain::report::ContentionSource;
use crate::analysis::causal_chain::report::Link;
use crate::analysis::causal_chain::report::Role;
use crate::analysis::causal_chain::rows::DeviceIo;
use crate::analysis::causal_chain::rows::State;
use crate::analysis::text::data_text;
use crate::analysis::text::EvidenceLog;
use crate::error::QueryError;

const MIB: f64 = 1048576.0;

/// The device the target's requests went to most.
pub async fn explain(ctx: &Ctx<'_>, ev: &mut EvidenceLog) -> Result<Explained, QueryError> {
    let pid = ctx.target.pid;
    let disk = ctx.verdict.top;
    let dev_sql = |w: &str| {
        format!(
            "SELECT device, io_op, count(*) AS n, sum(duration_ns) AS total_ns, max(duration_ns) AS longest_ns, \
             sum(bytes) AS bytes FROM kernel_events WHERE {w} AND event_name = '{BLOCK_IO}' \
             GROUP BY device, io_op ORDER BY total_ns DESC LIMIT 5"
        )
    };
    ev.quote(
        "The target's block I/O by device and request type",
        dev_sql(&ctx.target.predicate),
    );
    let devs = ctx.win.other.rows::<DeviceIo>(dev_sql).await?;
    let mut out = Explained {
        chain: busiest(ctx, State::Disk).into_iter().collect(),
        ..Default::default()
    };
    let Some(d) = devs.first() else {
        out.action = format!(
            "pid {pid} spent {:.1} ms in uninterruptible (D-state) waits, longest {:.1} ms, but submitted no block requests of its own in the window: it waited on someone else's I/O (a journal commit, writeback, a network file system) or on memory reclaim — look at the kernel stacks of those waits (include_stacks)",
            ms(disk.total_ns),
            ms(disk.longest_ns)
        );
        return Ok(out);
    };
    let dev = data_text(d.device.as_deref().unwrap_or("?"));
    let on_dev: Vec<&DeviceIo> = devs.iter().filter(|r| r.device == d.device).collect();
    let n: i64 = on_dev.iter().map(|r| r.n).sum();
    let bytes: i64 = on_dev.iter().map(|r| r.bytes).sum();
    let longest = on_dev.iter().map(|r| r.longest_ns).max().unwrap_or(0);
    out.chain.push(Link::thing(
        1,
        Role::Device,
        dev.clone(),
        ms(on_dev.iter().map(|r| r.total_ns).sum()),
        format!(
            "served {n} of the target's requests ({:.1} MiB, mostly {}), longest {:.1} ms",
            bytes as f64 / MIB,
            d.io_op.as_deref().unwrap_or("?"),
            ms(longest)
        ),
    ));
    out.action = format!(
        "pid {pid} spent {:.1} ms blocked on I/O (D-state), longest {:.1} ms; its requests went to {dev}: {n} requests, {:.1} MiB, longest {:.1} ms. The device is the bottleneck: batch fsyncs (group commit), write asynchronously off the latency path, or move this data to a faster device; check {dev}'s queue depth and other writers",
        ms(disk.total_ns),
        ms(disk.longest_ns),
        bytes as f64 / MIB,
        ms(longest)
    );
    out.source = Some(ContentionSource::Device {
        device: dev,
        requests: n,
        bytes,
        longest_request_ms: ms(longest),
    });
    Ok(out)
}
