//! Duet patch: what the sender knows about its path, so that its answer to a lost packet can
//! tell random loss from a full queue.
//!
//! RFC 4960's congestion control halves `cwnd` on every loss and grows it by one MTU per round
//! trip. On a link that loses packets at random (Wi-Fi, mobile) that keeps the window near
//! `1.22 / sqrt(p)` packets whatever the link carries: measured in Duet's network lab, 100 ms
//! round trip, 0.5 % loss, 50 Mbit/s, a data channel moved 0.20 MiB/s where one TCP stream
//! (Linux CUBIC) moved 5.35 MiB/s over the same emulated link.
//!
//! The estimate here follows TCP Westwood+: the rate at which the peer acknowledges data and
//! the smallest round trip seen give the bandwidth-delay product, the window that fills the
//! path without a queue. A loss while the round trip is near its minimum is random loss: the
//! window stays. A loss while the round trip is well above its minimum means a queue filled:
//! the window falls to the bandwidth-delay product, which drains that queue. And the window
//! only grows while it is below `GROWTH_CAP` bandwidth-delay products, so on a router with a
//! queue too short to show in the round trip, the excess that overflows it stays bounded
//! (BBR's choice of two, made smaller).
//!
//! A queue too short to show in the round trip (a LAN router: 2 ms of queue at 1 Gbit/s, with
//! round trips counted in whole milliseconds) still shows in the losses: a full queue drops a
//! burst of packets sent back to back, random loss a packet here and there. A recovery that
//! finds more than `BURST_PERCENT` of its window lost, with at least `BURST_RUNS` of the losses
//! right after another lost packet, is treated as a full queue. (The share alone took random
//! loss for a full queue on the mobile profile: at 1 % a recovery of two or three round trips
//! finds 3 % of a window lost, and the window was cut nearly every second.)
//!
//! Measured in memory (`tests/tests/sctp_wan.rs`, 100 ms, 50 Mbit/s, 0.5 % loss): keeping 0.9
//! of the window per loss still pinned it near 70 kB (0.78 MB/s), because on such a path a
//! loss comes nearly every round trip; no reduction at all is what lets it reach the path.

use std::time::{Duration, Instant};

/// The smallest round trip is forgotten after this long, so a path that got longer (a new
/// route, a relay) is learned again.
const MIN_RTT_LIFETIME: Duration = Duration::from_secs(10);
/// The shortest span one delivery-rate sample covers (a round trip when longer).
const MIN_SAMPLE: Duration = Duration::from_millis(20);
/// A round trip this much above the minimum (a quarter of it, plus a few milliseconds of
/// scheduling noise) means data waits in a queue.
const QUEUE_SHARE: f64 = 0.25;
const QUEUE_SLACK_MS: f64 = 5.0;
/// Share of the window kept, at least, after a loss with a queue behind it (RFC 4960 halves it).
const QUEUE_LOSS_KEEP: f64 = 0.5;
/// Lost packets, as a share of the window (percent), that make a recovery a full queue's...
const BURST_PERCENT: u32 = 3;
/// ...when this many of them came right after another lost packet (random loss at 1 % puts
/// two lost packets side by side about once in a hundred losses).
const BURST_RUNS: u32 = 2;
/// Delivery-rate samples (each at least a round trip) the rate is the highest of.
const RATE_SAMPLES: usize = 10;
/// The window grows only while below this many bandwidth-delay products.
const GROWTH_CAP: f64 = 1.5;

/// The sender's view of its path.
#[derive(Debug, Default)]
pub(crate) struct PathEstimate {
    /// Smallest round trip (ms) and when it was measured.
    min_rtt: Option<(u64, Instant)>,
    /// Smoothed round trip (ms), as the RTO calculation keeps it.
    srtt: u64,
    /// The latest round trip measured (ms; one per round trip).
    latest_rtt: u64,
    /// Delivery rate, bytes per second: the highest of the last `RATE_SAMPLES` samples (as
    /// BBR keeps it), since a sample taken while a loss was being repaired says little about
    /// what the path carries.
    rate: f64,
    samples: [f64; RATE_SAMPLES],
    next_sample: usize,
    sample_bytes: u64,
    sample_start: Option<Instant>,
    /// The recovery in progress.
    episode: Option<Episode>,
}

/// One recovery's losses.
#[derive(Debug, Clone, Copy)]
struct Episode {
    /// Packets found lost.
    losses: u32,
    /// Of those, found right after another lost packet sent just before it.
    runs: u32,
    /// The window it began with, in packets.
    window: u32,
    /// Whether it was already answered as a full queue.
    congested: bool,
}

impl PathEstimate {
    /// A round trip measured (Karn's rule applies upstream) and the smoothed one after it.
    pub(crate) fn on_rtt(&mut self, rtt_ms: u64, srtt_ms: u64, now: Instant) {
        self.srtt = srtt_ms;
        self.latest_rtt = rtt_ms;
        let keep = self.min_rtt.is_some_and(|(min, at)| {
            min <= rtt_ms && now.saturating_duration_since(at) < MIN_RTT_LIFETIME
        });
        if !keep {
            self.min_rtt = Some((rtt_ms, now));
        }
    }

    /// Bytes the peer newly acknowledged (cumulatively or in gap blocks) at `now`.
    pub(crate) fn on_acked(&mut self, bytes: u64, now: Instant) {
        // The first acknowledgement only starts the first sample: its bytes were delivered
        // before it, and counted in a span that starts at it they made the first sample (the
        // highest, for ten samples) too high by one acknowledgement's worth.
        let Some(start) = self.sample_start else {
            self.sample_start = Some(now);
            return;
        };
        self.sample_bytes += bytes;
        let span = now.saturating_duration_since(start);
        if span >= MIN_SAMPLE.max(Duration::from_millis(self.srtt)) {
            let sample = self.sample_bytes as f64 / span.as_secs_f64();
            self.samples[self.next_sample] = sample;
            self.next_sample = (self.next_sample + 1) % RATE_SAMPLES;
            self.rate = self.samples.iter().copied().fold(0.0, f64::max);
            self.sample_bytes = 0;
            self.sample_start = Some(now);
        }
    }

    /// A recovery begins with one loss, from a window of `cwnd` bytes; `congested`: it was
    /// already answered as a full queue.
    pub(crate) fn start_recovery(&mut self, cwnd: u32, mtu: u32, congested: bool) {
        self.episode = Some(Episode {
            losses: 1,
            runs: 0,
            window: (cwnd / mtu.max(1)).max(1),
            congested,
        });
    }

    /// Another packet found lost in the recovery (`after_a_loss`: the packet sent just before
    /// it was lost too); `true` the first time the losses add up to a burst (a full queue),
    /// which the caller answers once.
    pub(crate) fn loss_in_recovery(&mut self, after_a_loss: bool) -> bool {
        let Some(episode) = &mut self.episode else {
            return false;
        };
        episode.losses += 1;
        episode.runs += u32::from(after_a_loss);
        let burst = episode.losses >= 3
            && episode.losses * 100 > episode.window * BURST_PERCENT
            && episode.runs >= BURST_RUNS;
        if !episode.congested && burst {
            episode.congested = true;
            return true;
        }
        false
    }

    /// Whether the recovery in progress was answered as a full queue.
    pub(crate) fn recovery_congested(&self) -> bool {
        self.episode.is_some_and(|e| e.congested)
    }

    /// The window for a full queue: the bandwidth-delay product, at most halving `cwnd`.
    pub(crate) fn window_for_queue(&self, cwnd: u32, floor: u32) -> u32 {
        self.bdp()
            .unwrap_or(0)
            .max((cwnd as f64 * QUEUE_LOSS_KEEP) as u32)
            .min(cwnd)
            .max(floor)
    }

    /// Whether the round trip says a queue is building: the smoothed round trip and the latest
    /// one both well above the smallest one. The smoothed one alone keeps the first round
    /// trips for a second or more (a sample weighs an eighth, one per round trip), and those
    /// are the ones the peer's delayed SACK inflates: the small messages before a transfer
    /// go alone and are acknowledged after its 200 ms timer. The latest alone reads a
    /// jittery path's spikes as a queue.
    pub(crate) fn queueing(&self) -> bool {
        match self.min_rtt {
            Some((min, _)) if self.srtt > 0 => {
                let above = |rtt: u64| rtt as f64 > min as f64 * (1.0 + QUEUE_SHARE) + QUEUE_SLACK_MS;
                above(self.srtt) && above(self.latest_rtt)
            }
            _ => false,
        }
    }

    /// Whether a window of `cwnd` bytes can be what fills a queue: above `floor` (a few
    /// packets), and above the bandwidth-delay product once known. Below it, a round trip
    /// above the smallest is not this sender's queue: after a retransmission timeout the
    /// window is one packet, which the peer acknowledges alone after its 200 ms delayed-SACK
    /// timer. Measured in the lab (`far`): those round trips read as a queue, slow start
    /// stayed at one packet per 300 ms until the smallest round trip expired, 8 s later.
    pub(crate) fn window_can_queue(&self, cwnd: u32, floor: u32) -> bool {
        cwnd > floor && self.bdp().is_none_or(|bdp| cwnd > bdp)
    }

    /// Bytes the path holds without a queue (delivery rate × smallest round trip), once both
    /// are known.
    pub(crate) fn bdp(&self) -> Option<u32> {
        let (min, _) = self.min_rtt?;
        (self.rate > 0.0).then(|| (self.rate * min as f64 / 1000.0).min(u32::MAX as f64) as u32)
    }

    /// The window after a loss, from `cwnd`: kept on random loss, the bandwidth-delay product
    /// on a full queue; never more than `cwnd`, never below `floor`.
    pub(crate) fn window_after_loss(&self, cwnd: u32, floor: u32) -> u32 {
        // At most RFC 4960's step down at a time: a delivery-rate estimate taken across a
        // repair stall is low, and more on it left the window far below the path.
        if self.queueing() {
            self.window_for_queue(cwnd, floor)
        } else {
            cwnd.max(floor)
        }
    }

    /// Whether `cwnd` may grow: below `GROWTH_CAP` bandwidth-delay products plus `slack` (a
    /// few packets, so a window that is still small always may), or while the product is not
    /// known yet.
    pub(crate) fn may_grow(&self, cwnd: u32, slack: u32) -> bool {
        self.bdp()
            .is_none_or(|bdp| (cwnd as f64) < bdp as f64 * GROWTH_CAP + slack as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(min_rtt: u64, srtt: u64, rate: f64) -> PathEstimate {
        let now = Instant::now();
        let mut p = PathEstimate::default();
        p.on_rtt(min_rtt, srtt, now);
        p.srtt = srtt;
        p.latest_rtt = srtt;
        p.rate = rate;
        p
    }

    #[test]
    fn random_loss_keeps_the_window_and_growth_stops_past_the_cap() {
        // 100 ms, no queue: the window stays.
        let p = path(100, 104, 6e6);
        assert!(!p.queueing());
        assert_eq!(p.window_after_loss(600_000, 4800), 600_000);
        // 6 MB/s × 100 ms = 600 kB: grows below 1.5 of that, not above.
        assert!(p.may_grow(800_000, 4800));
        assert!(!p.may_grow(1_000_000, 4800));
    }

    #[test]
    fn a_full_queue_drains_to_the_bandwidth_delay_product() {
        // 100 ms path, 300 ms smoothed: a queue. 6 MB/s × 100 ms = 600 kB.
        let p = path(100, 300, 6e6);
        assert!(p.queueing());
        assert_eq!(p.window_after_loss(800_000, 4800), 600_000);
        // At most half down at a time, never up.
        assert_eq!(p.window_after_loss(1_800_000, 4800), 900_000);
        assert_eq!(p.window_after_loss(300_000, 4800), 300_000);
    }

    #[test]
    fn a_burst_of_losses_in_one_recovery_is_a_full_queue() {
        let mut p = path(100, 104, 6e6);
        // A 500-packet window: 3 % is 15 packets.
        p.start_recovery(600_000, 1200, false);
        for _ in 0..14 {
            assert!(!p.loss_in_recovery(true));
        }
        assert!(!p.recovery_congested());
        assert!(p.loss_in_recovery(true), "the sixteenth loss is a burst");
        assert!(p.recovery_congested());
        assert!(!p.loss_in_recovery(true), "answered once");
    }

    #[test]
    fn many_losses_none_side_by_side_are_random() {
        let mut p = path(100, 104, 6e6);
        p.start_recovery(600_000, 1200, false);
        for _ in 0..40 {
            assert!(!p.loss_in_recovery(false));
        }
        assert!(!p.loss_in_recovery(true), "one run");
        assert!(p.loss_in_recovery(true), "two runs");
    }

    #[test]
    fn the_rate_follows_what_is_acknowledged_per_round_trip() {
        let t0 = Instant::now();
        let mut p = PathEstimate::default();
        p.on_rtt(50, 50, t0);
        for i in 1..=40u64 {
            // 60 kB every 10 ms: 6 MB/s.
            p.on_acked(60_000, t0 + Duration::from_millis(10 * i));
        }
        let bdp = p.bdp().expect("known");
        assert!((250_000..=350_000).contains(&bdp), "{bdp}");
    }

    #[test]
    fn the_smallest_round_trip_is_relearned_after_a_while() {
        let t0 = Instant::now();
        let mut p = PathEstimate::default();
        p.on_rtt(20, 20, t0);
        p.on_rtt(80, 30, t0 + Duration::from_secs(1));
        assert_eq!(p.min_rtt.map(|m| m.0), Some(20));
        p.on_rtt(80, 80, t0 + MIN_RTT_LIFETIME + Duration::from_secs(1));
        assert_eq!(p.min_rtt.map(|m| m.0), Some(80));
    }
}
