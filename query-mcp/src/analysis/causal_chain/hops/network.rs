//! Sleeps on sockets that retransmitted: the chain ends at the peer that lost the segments.

use super::context::busiest;
use super::context::ms;
use super::context::Ctx;
use super::context::Explained;
use crate::analysis::causal_chain::report::ContentionSource;
use crate::analysis::causal_chain::report::Link;
use crate::analysis::causal_chain::report::Role;
use crate::analysis::causal_chain::rows::State;
use crate::analysis::text::data_text;

/// The peer the target's sockets retransmitted to most.
pub fn explain(ctx: &Ctx<'_>) -> Explained {
    let pid = ctx.target.pid;
    let retransmits = &ctx.facts.retransmits;
    let r = &retransmits[0];
    let n: i64 = retransmits
        .iter()
        .filter(|x| x.daddr == r.daddr)
        .map(|x| x.n)
        .sum();
    let peer = data_text(r.daddr.as_deref().unwrap_or("?"));
    let net = ctx.verdict.top;
    let mut chain: Vec<Link> = busiest(ctx, State::Sleep).into_iter().collect();
    chain.push(Link::thing(
        1,
        Role::Network,
        peer.clone(),
        ms(net.total_ns),
        format!(
            "{n} segments to {peer} were retransmitted while the target waited for the network"
        ),
    ));
    let action = format!(
        "pid {pid} waited {:.1} ms (longest {:.1} ms) on sockets that retransmitted {n} segments to {peer}: packets to that peer are being lost, and each loss costs at least one retransmission timeout (200 ms minimum on Linux). Find the drop: firewall/netfilter rules, NIC or qdisc drops (ip -s link, tc -s qdisc), a congested or faulty link, the peer's receive queue",
        ms(net.total_ns),
        ms(net.longest_ns)
    );
    Explained {
        chain,
        source: Some(ContentionSource::Peer {
            local: data_text(r.saddr.as_deref().unwrap_or("?")),
            peer,
            retransmits: n,
        }),
        stack_trace: Vec::new(),
        action,
    }
}
