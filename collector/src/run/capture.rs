//! Decoding and enrichment of ring-buffer records (the ring buffer's callback): the rate limit,
//! decoding, container ids, stack work for the stack thread, and the batches that fill.

use std::time::Duration;
use std::time::Instant;

use causeway_proto::KernelEvent;

use super::stacks::StackWork;
use crate::clock::BootToWall;
use crate::probes;
use crate::probes::record::Decoded;
use crate::probes::wire;

/// A batch allocation larger than this (events) is freed rather than kept for refilling: one
/// burst must not pin its high-water mark for the rest of the run.
const SPARE_MAX_EVENTS: usize = 16 * 1024;

/// Decoding state shared with the ring-buffer callback.
pub struct Capture {
    pub(super) clock: BootToWall,
    pub(super) stack_work: StackWork,
    pub(super) events: Vec<KernelEvent>,
    /// An emptied batch to fill next (see `recycle`).
    spare: Option<Vec<KernelEvent>>,
    pub(super) kept: Option<Vec<KernelEvent>>,
    pub(super) decoded: [u64; wire::EV_MAX],
    pub(super) shed: u64,
    pub(super) undecodable: u64,
    pub(super) limit_per_sec: u64,
    window_start: Instant,
    window_count: u64,
    containers: crate::containers::Containers,
    /// Processes whose mappings were read for the stack thread (until they exit).
    maps_read: std::collections::HashSet<i32>,
}

impl Capture {
    /// The capture path of a run: events kept in the summary when `keep_events`, records shed
    /// above `limit_per_sec` (0: no limit).
    pub(super) fn live(keep_events: bool, limit_per_sec: u64) -> Capture {
        Capture {
            kept: keep_events.then(Vec::new),
            limit_per_sec,
            ..Capture::detached()
        }
    }

    /// The capture path without a kernel behind it (bench-ingest): same decoding and enrichment.
    pub fn detached() -> Capture {
        Capture {
            clock: BootToWall::sample(),
            stack_work: StackWork::default(),
            events: Vec::new(),
            spare: None,
            kept: None,
            decoded: [0; wire::EV_MAX],
            shed: 0,
            undecodable: 0,
            limit_per_sec: 0,
            window_start: Instant::now(),
            window_count: 0,
            containers: crate::containers::Containers::new(),
            maps_read: Default::default(),
        }
    }

    /// Takes the events decoded so far.
    pub fn take_events(&mut self) -> Vec<KernelEvent> {
        let next = match self.spare.take() {
            // the next batch is likely as large as this one: a smaller spare would regrow
            // (copies, and fresh pages) while it fills
            Some(v) if v.capacity() >= self.events.len() => v,
            _ => Vec::with_capacity(self.events.len()),
        };
        std::mem::replace(&mut self.events, next)
    }

    /// Hands back a taken batch's allocation, emptied by the writer, to be filled again: a
    /// fresh one costs page faults for every event (~430 bytes each). The larger of two is
    /// kept: a small one (the stack thread's) in place of the capture's own would make every
    /// later batch regrow from it.
    pub fn recycle(&mut self, mut events: Vec<KernelEvent>) {
        events.clear();
        let larger = self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity() < events.capacity());
        if larger && events.capacity() <= SPARE_MAX_EVENTS {
            self.spare = Some(events);
        }
    }

    /// Events made in user space (cgroup counters), kept like decoded ones.
    pub fn push_events(&mut self, events: Vec<KernelEvent>) {
        if let Some(k) = self.kept.as_mut() {
            k.extend(events.iter().cloned());
        }
        self.events.extend(events);
    }

    /// Records decoded so far and records that did not decode.
    pub fn counts(&self) -> (u64, u64) {
        (self.decoded.iter().sum(), self.undecodable)
    }

    /// Decodes and enriches one ring-buffer record (the ring buffer callback; bench-ingest).
    pub fn on_record(&mut self, data: &[u8]) {
        if self.limit_per_sec > 0 && !probes::is_lifecycle(data) {
            if self.window_start.elapsed() >= Duration::from_secs(1) {
                self.window_start = Instant::now();
                self.window_count = 0;
            }
            self.window_count += 1;
            if self.window_count > self.limit_per_sec {
                self.shed += 1;
                return;
            }
        }
        let Some(mut decoded) = probes::decode(data, &self.clock) else {
            self.undecodable += 1;
            return;
        };
        let t = data.first().copied().unwrap_or(0) as usize;
        if t < wire::EV_MAX {
            self.decoded[t] += 1;
        }
        let ev = match &mut decoded {
            Decoded::Event(ev) => ev,
            Decoded::WithStacks { event, .. } => event,
            Decoded::WithFunction { event, .. } => event,
        };
        let owner = self.containers.lookup(ev.cgroup_id as u64);
        (ev.container_id, ev.pod_uid) = (owner.container_id, owner.pod_uid);
        if let Some(neighbour) = ev.prev_cgroup_id.filter(|&c| c > 0) {
            ev.prev_container_id = self.containers.lookup(neighbour as u64).container_id;
        }
        if let Some(k) = self.kept.as_mut() {
            k.push(ev.clone());
        }
        // a process's executable mappings, read at its first record while it lives: its stacks
        // are symbolized later, on the stack thread, often after it has exited
        if ev.pid > 0 && self.maps_read.insert(ev.pid) {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/maps", ev.pid)) {
                let maps = crate::stacks::executable_mappings(&text);
                self.stack_work.maps.push((ev.pid, maps));
            }
        }
        match decoded {
            Decoded::Event(ev) => {
                if ev.event_name == causeway_proto::names::event::PROCESS_EXIT {
                    self.stack_work.exited.push(ev.pid);
                    self.maps_read.remove(&ev.pid);
                }
                self.events.push(ev);
            }
            Decoded::WithStacks {
                event,
                kernel,
                user,
            } => self.stack_work.items.push((event, kernel, user)),
            Decoded::WithFunction { event, addr } => self.stack_work.functions.push((event, addr)),
        }
    }
}
