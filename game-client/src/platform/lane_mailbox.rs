//! What both platforms' lane connections hand to the wire: their reports and the frames they
//! received, bounded, ringing the host's wake. The connections themselves are each platform's
//! own (`native/lanes.rs`, `web/lanes.rs`).

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::ports::{LANE_INBOX_BYTES, LaneId, LaneReport, Wake};
use crate::util::lock_shared as lock;

/// See the module docs.
pub struct LaneMailbox {
    reports: Mutex<Vec<LaneReport>>,
    frames: Mutex<(VecDeque<matchbox_socket::Packet>, usize)>,
    wake: Wake,
}

impl LaneMailbox {
    /// Empty; `wake` rings whenever something arrives.
    pub fn new(wake: Wake) -> Self {
        Self {
            reports: Mutex::default(),
            frames: Mutex::default(),
            wake,
        }
    }

    /// A connection's news, for the lane machine.
    pub fn report(&self, what: LaneReport) {
        lock(&self.reports).push(what);
        self.wake.wake();
    }

    /// Drops what `lane`'s connection reported and the wire has not read: it is going, and
    /// its news must not reach the machine as news of the lane's next connection.
    pub fn forget(&self, lane: LaneId) {
        lock(&self.reports).retain(|r| r.lane() != lane);
    }

    /// The reports since the last call, in order.
    pub fn take_reports(&self) -> Vec<LaneReport> {
        std::mem::take(&mut *lock(&self.reports))
    }

    /// A frame `lane` received. Past [`LANE_INBOX_BYTES`] waiting it is not kept, and `false`
    /// says the lane is to be failed: an honest peer never has that much in flight.
    pub fn frame(&self, frame: matchbox_socket::Packet) -> bool {
        {
            let mut frames = lock(&self.frames);
            if frames.1 + frame.len() > LANE_INBOX_BYTES {
                return false;
            }
            frames.1 += frame.len();
            frames.0.push_back(frame);
        }
        self.wake.wake();
        true
    }

    /// The frames received since the last call, each lane's in order.
    pub fn take_frames(&self) -> Vec<matchbox_socket::Packet> {
        let mut frames = lock(&self.frames);
        frames.1 = 0;
        frames.0.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_past_the_bound_are_refused_and_the_bound_starts_over_when_taken() {
        let mailbox = LaneMailbox::new(Wake::default());
        let frame = matchbox_socket::Packet::from(vec![0u8; 1 << 20]);
        let kept = (0..40).take_while(|_| mailbox.frame(frame.clone())).count();
        assert_eq!(kept, LANE_INBOX_BYTES >> 20);
        assert_eq!(mailbox.take_frames().len(), kept);
        assert!(mailbox.frame(frame), "taken frames no longer count");
    }

    #[test]
    fn a_going_lanes_reports_are_forgotten() {
        let mailbox = LaneMailbox::new(Wake::default());
        mailbox.report(LaneReport::Failed(1));
        mailbox.report(LaneReport::Opened(2));
        mailbox.forget(1);
        assert_eq!(mailbox.take_reports(), vec![LaneReport::Opened(2)]);
    }
}
