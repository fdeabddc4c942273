//! Which of the peer's file offers the receiver takes, and when.
//!
//! A peer is not trusted with the receiver's disk, memory or file handles: every offer it makes
//! would otherwise open a part file at once. [`Admission`] keeps at most
//! [`MAX_RECEIVING`] transfers receiving at a time and holds up to [`MAX_WAITING`] further
//! offers until one ends (a person dropping ten files on the avatar gets all ten, in turn), and
//! limits how many offers and bytes one peer may send in a session. Pure and clockless: the
//! caller passes `now_ms`.

use std::collections::VecDeque;

use crate::peer::{DeclineReason, FileOffer, TransferId};

/// Transfers receiving at once (each holds a part file open).
pub const MAX_RECEIVING: usize = 4;
/// Offers held until a receiving slot frees; more are declined as busy.
pub const MAX_WAITING: usize = 64;
/// Offers one peer may make back to back...
pub const OFFER_BURST: u32 = 64;
/// ...and then one every this many milliseconds.
pub const OFFER_REFILL_MS: u64 = 500;
/// Bytes one peer may offer in one session (from its arrival until it leaves): ten files of the
/// largest size.
pub const MAX_SESSION_BYTES: u64 = 10 * crate::peer::MAX_FILE_BYTES;

/// What to do with an offer now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Start receiving it.
    Receive(FileOffer),
    /// Held until a slot frees (nothing to do yet).
    Wait,
    /// Decline it.
    Decline(DeclineReason),
}

/// The receiver's admission state for the current peer.
#[derive(Debug, Clone)]
pub struct Admission {
    waiting: VecDeque<FileOffer>,
    offered_bytes: u64,
    tokens: u32,
    refilled_at_ms: u64,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            offered_bytes: 0,
            tokens: OFFER_BURST,
            refilled_at_ms: 0,
        }
    }
}

impl Admission {
    /// A new session: the budgets start over and held offers are dropped (their sender left).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn take_token(&mut self, now_ms: u64) -> bool {
        let refills = now_ms.saturating_sub(self.refilled_at_ms) / OFFER_REFILL_MS;
        if refills > 0 {
            let tokens = (u64::from(self.tokens) + refills).min(u64::from(OFFER_BURST));
            self.tokens = tokens as u32;
            self.refilled_at_ms = if self.tokens == OFFER_BURST {
                now_ms
            } else {
                self.refilled_at_ms + refills * OFFER_REFILL_MS
            };
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// A new offer from the peer, with `receiving` transfers under way. `busy_key` says whether
    /// a transfer with the same part key is already receiving (two transfers must never share a
    /// part file).
    pub fn on_offer(
        &mut self,
        offer: FileOffer,
        receiving: usize,
        busy_key: bool,
        now_ms: u64,
    ) -> Verdict {
        if !self.take_token(now_ms) {
            return Verdict::Decline(DeclineReason::Limit);
        }
        let same_key = |o: &FileOffer| o.resume_key == offer.resume_key && o.size == offer.size;
        if busy_key || self.waiting.iter().any(same_key) {
            return Verdict::Decline(DeclineReason::Invalid);
        }
        if self.offered_bytes.saturating_add(offer.size) > MAX_SESSION_BYTES {
            return Verdict::Decline(DeclineReason::Limit);
        }
        self.offered_bytes += offer.size;
        if receiving < MAX_RECEIVING && self.waiting.is_empty() {
            return Verdict::Receive(offer);
        }
        if self.waiting.len() >= MAX_WAITING {
            self.offered_bytes -= offer.size;
            return Verdict::Decline(DeclineReason::Busy);
        }
        self.waiting.push_back(offer);
        Verdict::Wait
    }

    /// The next held offer to start, if a slot is free with `receiving` under way.
    pub fn next(&mut self, receiving: usize) -> Option<FileOffer> {
        if receiving < MAX_RECEIVING {
            self.waiting.pop_front()
        } else {
            None
        }
    }

    /// The peer withdrew a held offer; true if it was held.
    pub fn withdraw(&mut self, transfer: TransferId) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|o| o.transfer != transfer);
        before != self.waiting.len()
    }

    /// Whether an offer with this id is being held.
    pub fn holds(&self, transfer: TransferId) -> bool {
        self.waiting.iter().any(|o| o.transfer == transfer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: u64, size: u64) -> FileOffer {
        FileOffer {
            transfer: TransferId(id),
            name: format!("f{id}"),
            size,
            mime: String::new(),
            resume_key: [id as u8; 32],
        }
    }

    #[test]
    fn at_most_four_receive_and_the_rest_wait_their_turn() {
        let mut a = Admission::default();
        let mut receiving = 0;
        for id in 0..10 {
            match a.on_offer(offer(id, 10), receiving, false, 0) {
                Verdict::Receive(_) => receiving += 1,
                Verdict::Wait => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(receiving, MAX_RECEIVING);
        assert_eq!(a.next(receiving), None);
        // One ends: the oldest held offer goes next.
        assert_eq!(
            a.next(receiving - 1).map(|o| o.transfer),
            Some(TransferId(4))
        );
        assert!(a.withdraw(TransferId(9)));
        assert!(!a.holds(TransferId(9)));
    }

    #[test]
    fn a_flood_of_offers_is_held_then_declined() {
        let mut a = Admission::default();
        let verdicts: Vec<Verdict> = (0..1_000)
            .map(|id| a.on_offer(offer(id, 0), MAX_RECEIVING, false, 0))
            .collect();
        let waiting = verdicts.iter().filter(|v| **v == Verdict::Wait).count();
        assert_eq!(waiting, MAX_WAITING);
        let limited = verdicts
            .iter()
            .filter(|v| **v == Verdict::Decline(DeclineReason::Limit))
            .count();
        assert_eq!(limited, 1_000 - OFFER_BURST as usize);
        // Time refills the budget, slowly.
        let mut a = Admission::default();
        for id in 0..u64::from(OFFER_BURST) {
            a.on_offer(offer(id, 0), 0, false, 0);
        }
        assert_eq!(
            a.on_offer(offer(100, 0), 0, false, 10),
            Verdict::Decline(DeclineReason::Limit)
        );
        assert_ne!(
            a.on_offer(offer(101, 0), 0, false, OFFER_REFILL_MS),
            Verdict::Decline(DeclineReason::Limit)
        );
    }

    #[test]
    fn bytes_per_session_and_shared_part_keys_are_refused() {
        let mut a = Admission::default();
        let big = crate::peer::MAX_FILE_BYTES;
        let taken = (0..20)
            .filter(|&id| !matches!(a.on_offer(offer(id, big), 0, false, 0), Verdict::Decline(_)))
            .count() as u64;
        assert_eq!(taken * big, MAX_SESSION_BYTES);
        a.reset();
        assert!(matches!(
            a.on_offer(offer(1, big), 0, false, 0),
            Verdict::Receive(_)
        ));
        assert_eq!(
            a.on_offer(offer(2, 5), 0, true, 0),
            Verdict::Decline(DeclineReason::Invalid)
        );
    }
}
