//! Waiting for and taking records from the ring buffer.

use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;

/// Waits for records up to `timeout`: in the ring buffer's epoll, which the programs wake only
/// once `wake_bytes` are unread (bpf/common.bpf.h), so a burst is read early and a quiet
/// collector sleeps whole drain intervals instead of waking every few ms. The epoll is
/// level-triggered, though: it answers at once when a record landed between the last drain and
/// the wait; then the rest of the wait is paced like a timer (at most `PACE`), so a steady
/// stream does not turn the loop into a spin of one-record drains.
pub(super) fn wait_for_records(
    rb: &libbpf_rs::RingBuffer<'_>,
    timeout: Duration,
    wake_bytes: usize,
) {
    const PACE: Duration = Duration::from_millis(10);
    let started = Instant::now();
    // whole ms, rounded up: a sub-ms remainder rounded down to 0 would return at once, and the
    // caller would spin until its deadline
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: a valid epoll fd owned by `rb`, one event slot on the stack; EINTR just returns.
    let n = unsafe { libc::epoll_wait(rb.epoll_fd(), &mut ev, 1, ms) };
    let left = timeout.saturating_sub(started.elapsed());
    if n > 0 && !left.is_zero() && unread_bytes(rb) < wake_bytes {
        std::thread::sleep(left.min(PACE));
    }
}

/// Bytes written to the ring buffer and not yet read.
fn unread_bytes(rb: &libbpf_rs::RingBuffer<'_>) -> usize {
    use libbpf_rs::AsRawLibbpf;
    // SAFETY: the ring buffer object lives as long as `rb`; ring 0 is the one map it reads.
    unsafe {
        let ring = libbpf_sys::ring_buffer__ring(rb.as_libbpf_object().as_ptr(), 0);
        if ring.is_null() {
            return 0;
        }
        libbpf_sys::ring__avail_data_size(ring) as usize
    }
}

/// Takes at most `max` records from the ring buffer (through its callback).
pub(super) fn drain(rb: &libbpf_rs::RingBuffer<'_>, max: usize) -> Result<()> {
    let n = rb.consume_raw_n(max);
    if n < 0 {
        return Err(std::io::Error::from_raw_os_error(-n)).context("draining the ring buffer");
    }
    Ok(())
}
