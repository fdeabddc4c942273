//! Duet patch: the SCTP receive buffer of native peer connections (opt-in, process-wide).
//!
//! Why: the receive buffer is the window SCTP advertises. Data behind a lost packet waits in it
//! until the retransmission arrives, a round trip or more, and at rtc-sctp's default (1 MiB) a
//! 100 ms path with 0.5 % loss kept closing the window (Duet's measurements:
//! `docs/bench/wan.md` in its repository). The default (0) leaves it as stock matchbox does.

use std::sync::atomic::{AtomicU32, Ordering};

static SCTP_RECEIVE_BUFFER_BYTES: AtomicU32 = AtomicU32::new(0);

/// Sets SCTP's receive buffer (the advertised window) of peer connections created after this
/// call. `0` restores rtc-sctp's default. Native only.
pub fn set_sctp_receive_buffer_size(bytes: u32) {
    SCTP_RECEIVE_BUFFER_BYTES.store(bytes, Ordering::Relaxed);
}

/// The requested size (0 = rtc-sctp's default).
pub fn sctp_receive_buffer_size() -> u32 {
    SCTP_RECEIVE_BUFFER_BYTES.load(Ordering::Relaxed)
}
