//! Waits for the GPU: the chain ends at the device's stream.

use super::context::ms;
use super::context::Ctx;
use super::context::Explained;
use crate::analysis::causal_chain::classify::gpu_by_thread;
use crate::analysis::causal_chain::report::ContentionSource;
use crate::analysis::causal_chain::report::Link;
use crate::analysis::causal_chain::report::Role;
use crate::analysis::causal_chain::report::SourceKind;
use crate::analysis::text::data_text;

/// The sync call the target waited in most, and the stream it waited for.
pub fn explain(ctx: &Ctx<'_>) -> Explained {
    let pid = ctx.target.pid;
    let top = &ctx.facts.gpu_waits[0];
    let f = data_text(&top.cuda_function);
    let gpu = ctx.verdict.top;
    let thread_total = gpu_by_thread(ctx.facts).get(&top.tid).copied().unwrap_or(0);
    let stream = top.stream;
    let chain = vec![
        Link::thread(
            0,
            Role::Target,
            (pid, top.tid, &top.comm),
            ms(thread_total),
            format!(
                "{} calls of {f} waited {:.1} ms for the GPU, longest {:.1} ms",
                top.n,
                ms(top.total_ns),
                ms(top.longest_ns)
            ),
        ),
        Link::thing(
            1,
            Role::Gpu,
            if stream != 0 {
                format!("GPU stream {stream:#x}")
            } else {
                "GPU".into()
            },
            ms(gpu.total_ns),
            "the device was still running the work queued before the sync: the chain ends at the GPU".into(),
        ),
    ];
    let action = format!(
        "pid {pid} spent {:.1} ms ({:.0}% of the window for its busiest thread) waiting in {f} and other GPU syncs, longest {:.1} ms: the GPU work queued before each sync is the critical path, not the host. Profile the kernels on that stream (Nsight Systems, torch.profiler), overlap copies and compute on separate streams, and drop syncs the host does not need (a .item()/.cpu() in the loop is one); analyze_gpu_launch_latency {{pid: {pid}}} shows whether launches were also starved of CPU",
        ms(gpu.total_ns),
        gpu.share * 100.0,
        ms(gpu.longest_ns)
    );
    Explained {
        chain,
        source: Some(ContentionSource::Gpu {
            kind: SourceKind::Gpu,
            function: f,
            stream,
            calls: top.n,
            longest_ms: ms(top.longest_ns),
        }),
        stack_trace: Vec::new(),
        action,
    }
}
