//! Is the peer still there, and how far away? A sans-I/O clock over the control channel.
//!
//! WebRTC itself says little, and late: a cut link leaves the data channel open and silent, and
//! webrtc-rs reported nothing through a 10 s outage, so a person typed into a connection that
//! was not there. Each side pings once a second; anything that arrives from the peer (a frame on
//! either channel) proves it is there. After [`QUIET_AFTER_MS`] of silence the link is *quiet*:
//! the UI says "reconnecting" and chat is refused rather than queued. A pong for the latest ping
//! gives the round-trip time the UI shows.

/// How often each side pings the other.
pub const PING_INTERVAL_MS: u64 = 1_000;

/// Silence after which the link counts as interrupted: three missed pings. Short enough that a
/// person who types into a cut link is told at once, long enough that one lost packet (a
/// retransmission after ~1 RTO) or a busy frame does not flap the status.
pub const QUIET_AFTER_MS: u64 = 3_000;

/// Silence after which the connection is given up and both sides join the room afresh. Until
/// then the connection may still recover by itself (SCTP retransmits once the link is back:
/// a 10 s outage resumed on the same connection); past it a new connection is quicker than
/// waiting for ICE to declare failure (~30 s), and it is the only way back when the home's
/// address changed (NAT rebinding), where the old path never answers again.
pub const REJOIN_AFTER_MS: u64 = 15_000;

/// How the link to the peer is, as the person should see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Frames arrive; `rtt_ms` is the smoothed round-trip time once a pong measured it.
    Live {
        /// Smoothed round trip, whole milliseconds.
        rtt_ms: Option<u32>,
    },
    /// Nothing arrived for `silent_s` whole seconds (at least [`QUIET_AFTER_MS`]).
    Quiet {
        /// Seconds since the last frame from the peer.
        silent_s: u32,
    },
}

impl Health {
    /// Whether the link is interrupted.
    pub fn is_quiet(&self) -> bool {
        matches!(self, Health::Quiet { .. })
    }

    /// Whether the silence has lasted long enough to give the connection up
    /// ([`REJOIN_AFTER_MS`]).
    pub fn gives_up(&self) -> bool {
        matches!(self, Health::Quiet { silent_s } if u64::from(*silent_s) * 1_000 >= REJOIN_AFTER_MS)
    }
}

/// The liveness clock of one connection. Time is injected (ms on any monotonic scale).
#[derive(Debug, Clone)]
pub struct Liveness {
    last_heard_ms: u64,
    next_ping_ms: u64,
    /// The latest ping: its id and when it left. Older pings are forgotten, so a burst of stale
    /// pongs after an outage measures nothing.
    outstanding: Option<(u32, u64)>,
    next_id: u32,
    /// Smoothed round trip (RFC 6298's SRTT, gain 1/8), microseconds for precision.
    srtt_us: Option<u64>,
}

impl Liveness {
    /// A connection that was just established at `now_ms`: counted as heard, first ping now.
    pub fn new(now_ms: u64) -> Self {
        Self {
            last_heard_ms: now_ms,
            next_ping_ms: now_ms,
            outstanding: None,
            next_id: 0,
            srtt_us: None,
        }
    }

    /// Something arrived from the peer.
    pub fn heard(&mut self, now_ms: u64) {
        self.last_heard_ms = self.last_heard_ms.max(now_ms);
    }

    /// The id of a ping to send now, if one is due.
    pub fn ping_due(&mut self, now_ms: u64) -> Option<u32> {
        if now_ms < self.next_ping_ms {
            return None;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.outstanding = Some((id, now_ms));
        self.next_ping_ms = now_ms + PING_INTERVAL_MS;
        Some(id)
    }

    /// The peer answered ping `id`. Only the latest ping is measured.
    pub fn on_pong(&mut self, id: u32, now_ms: u64) {
        self.heard(now_ms);
        let Some((latest, sent_ms)) = self.outstanding else {
            return;
        };
        if latest != id {
            return;
        }
        self.outstanding = None;
        let sample_us = now_ms.saturating_sub(sent_ms) * 1_000;
        self.srtt_us = Some(match self.srtt_us {
            None => sample_us,
            Some(srtt) => (srtt * 7 + sample_us) / 8,
        });
    }

    /// How the link is at `now_ms`.
    pub fn health(&self, now_ms: u64) -> Health {
        let silent_ms = now_ms.saturating_sub(self.last_heard_ms);
        if silent_ms >= QUIET_AFTER_MS {
            Health::Quiet {
                silent_s: u32::try_from(silent_ms / 1_000).unwrap_or(u32::MAX),
            }
        } else {
            Health::Live {
                rtt_ms: self
                    .srtt_us
                    .map(|us| u32::try_from(us.div_ceil(1_000)).unwrap_or(u32::MAX)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_once_a_second() {
        let mut clock = Liveness::new(10_000);
        assert_eq!(clock.ping_due(10_000), Some(0));
        assert_eq!(clock.ping_due(10_999), None);
        assert_eq!(clock.ping_due(11_000), Some(1));
        assert_eq!(clock.ping_due(11_500), None);
    }

    #[test]
    fn a_pong_for_the_latest_ping_measures_the_round_trip_smoothed() {
        let mut clock = Liveness::new(0);
        let id = clock.ping_due(0).unwrap();
        clock.on_pong(id, 40);
        assert_eq!(clock.health(40), Health::Live { rtt_ms: Some(40) });
        let id = clock.ping_due(1_000).unwrap();
        clock.on_pong(id, 1_120);
        // 7/8 of 40 + 1/8 of 120.
        assert_eq!(clock.health(1_120), Health::Live { rtt_ms: Some(50) });
        // A second pong for the same ping measures nothing.
        clock.on_pong(id, 1_900);
        assert_eq!(clock.health(1_900), Health::Live { rtt_ms: Some(50) });
    }

    #[test]
    fn a_stale_pong_after_an_outage_counts_as_heard_but_measures_nothing() {
        let mut clock = Liveness::new(0);
        let first = clock.ping_due(0).unwrap();
        for t in 1..=9 {
            clock.ping_due(t * 1_000);
        }
        clock.on_pong(first, 9_500);
        assert_eq!(clock.health(9_500), Health::Live { rtt_ms: None });
    }

    #[test]
    fn silence_turns_quiet_after_three_seconds_and_any_frame_ends_it() {
        let mut clock = Liveness::new(0);
        clock.heard(1_000);
        assert!(!clock.health(3_999).is_quiet());
        assert_eq!(clock.health(4_000), Health::Quiet { silent_s: 3 });
        assert_eq!(clock.health(11_900), Health::Quiet { silent_s: 10 });
        assert!(!clock.health(15_999).gives_up());
        assert!(clock.health(16_000).gives_up());
        clock.heard(16_000);
        assert_eq!(clock.health(16_000), Health::Live { rtt_ms: None });
    }

    #[test]
    fn time_going_backwards_does_not_unhear_a_frame() {
        let mut clock = Liveness::new(5_000);
        clock.heard(4_000);
        assert!(!clock.health(7_999).is_quiet());
        assert!(clock.health(8_000).is_quiet());
    }
}
