//! Which of the peer's file offers the receiver takes, and when.
//!
//! A peer is not trusted with the receiver's disk, memory or file handles: every offer it makes
//! would otherwise open a part file at once. [`Admission`] keeps at most
//! [`MAX_RECEIVING`] transfers receiving at a time and holds up to [`MAX_WAITING`] further
//! offers until one ends (a person dropping ten files on the avatar gets all ten, in turn), and
//! limits how many offers and bytes one peer may send in a session. An offer larger than the
//! person's threshold is not taken before they say yes: it waits as a question (at most
//! [`MAX_ASKING`] at a time). Pure and clockless: the caller passes `now_ms`.

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
/// Offers waiting for the person's yes or no at once; more large offers are declined as busy.
pub const MAX_ASKING: usize = 8;
/// Files up to this size are taken without asking unless the configuration says otherwise.
pub const DEFAULT_ASK_ABOVE_BYTES: u64 = 25 * 1024 * 1024;
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
    /// Too large to take unasked: ask the person ([`Admission::answer`] with their reply).
    Ask(FileOffer),
    /// Decline it.
    Decline(DeclineReason),
}

/// The receiver's admission state for the current peer.
#[derive(Debug, Clone)]
pub struct Admission {
    waiting: VecDeque<FileOffer>,
    asking: Vec<FileOffer>,
    /// Offers larger than this are asked about.
    ask_above: u64,
    offered_bytes: u64,
    tokens: u32,
    refilled_at_ms: u64,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(DEFAULT_ASK_ABOVE_BYTES)
    }
}

impl Admission {
    /// Admission that asks the person about offers larger than `ask_above` bytes.
    pub fn new(ask_above: u64) -> Self {
        Self {
            waiting: VecDeque::new(),
            asking: Vec::new(),
            ask_above,
            offered_bytes: 0,
            tokens: OFFER_BURST,
            refilled_at_ms: 0,
        }
    }

    /// A new session: the budgets start over and held offers and open questions are dropped
    /// (their sender left).
    pub fn reset(&mut self) {
        *self = Self::new(self.ask_above);
    }

    /// The offers waiting for the person's answer, oldest first.
    pub fn asking(&self) -> &[FileOffer] {
        &self.asking
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
        self.consider(offer, receiving, busy_key, true, now_ms)
    }

    /// Like [`on_offer`](Self::on_offer), for the resume of a file the person already said yes
    /// to (the sender reconnected): not asked again, every other limit holds.
    pub fn on_resumed_offer(
        &mut self,
        offer: FileOffer,
        receiving: usize,
        busy_key: bool,
        now_ms: u64,
    ) -> Verdict {
        self.consider(offer, receiving, busy_key, false, now_ms)
    }

    fn consider(
        &mut self,
        offer: FileOffer,
        receiving: usize,
        busy_key: bool,
        may_ask: bool,
        now_ms: u64,
    ) -> Verdict {
        if !self.take_token(now_ms) {
            return Verdict::Decline(DeclineReason::Limit);
        }
        let same_key = |o: &FileOffer| o.resume_key == offer.resume_key && o.size == offer.size;
        if busy_key || self.waiting.iter().chain(&self.asking).any(same_key) {
            return Verdict::Decline(DeclineReason::Invalid);
        }
        if self.offered_bytes.saturating_add(offer.size) > MAX_SESSION_BYTES {
            return Verdict::Decline(DeclineReason::Limit);
        }
        // An offer no receiver takes (over the largest size) is not put to the person: it goes
        // on to be declined with its reason.
        if may_ask && offer.size > self.ask_above && offer.size <= crate::peer::MAX_FILE_BYTES {
            if self.asking.len() >= MAX_ASKING {
                return Verdict::Decline(DeclineReason::Busy);
            }
            self.offered_bytes += offer.size;
            self.asking.push(offer.clone());
            return Verdict::Ask(offer);
        }
        self.offered_bytes += offer.size;
        self.admit(offer, receiving)
    }

    /// Receives `offer` now if a slot is free and nothing is ahead of it, else holds it.
    fn admit(&mut self, offer: FileOffer, receiving: usize) -> Verdict {
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

    /// The person's answer about an offer they were asked about, with `receiving` transfers
    /// under way: yes receives it (or holds it for a slot), no declines it as refused. `None`
    /// if nothing is asked under that id (withdrawn meanwhile, or answered twice).
    pub fn answer(&mut self, transfer: TransferId, yes: bool, receiving: usize) -> Option<Verdict> {
        let at = self.asking.iter().position(|o| o.transfer == transfer)?;
        let offer = self.asking.remove(at);
        if yes {
            Some(self.admit(offer, receiving))
        } else {
            self.offered_bytes -= offer.size;
            Some(Verdict::Decline(DeclineReason::Refused))
        }
    }

    /// The next held offer to start, if a slot is free with `receiving` under way.
    pub fn next(&mut self, receiving: usize) -> Option<FileOffer> {
        if receiving < MAX_RECEIVING {
            self.waiting.pop_front()
        } else {
            None
        }
    }

    /// The peer withdrew a held or asked-about offer; true if it was there.
    pub fn withdraw(&mut self, transfer: TransferId) -> bool {
        let before = self.waiting.len() + self.asking.len();
        self.waiting.retain(|o| o.transfer != transfer);
        self.asking.retain(|o| o.transfer != transfer);
        before != self.waiting.len() + self.asking.len()
    }

    /// Whether an offer with this id is being held or asked about.
    pub fn holds(&self, transfer: TransferId) -> bool {
        self.waiting
            .iter()
            .chain(&self.asking)
            .any(|o| o.transfer == transfer)
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
    fn a_resume_of_an_approved_file_is_not_asked_again_but_still_limited() {
        let mut a = Admission::new(100);
        assert!(matches!(
            a.on_resumed_offer(offer(1, 500), 0, false, 0),
            Verdict::Receive(_)
        ));
        // The size limit and the busy key still hold.
        assert_eq!(
            a.on_resumed_offer(offer(2, 500), 0, true, 0),
            Verdict::Decline(DeclineReason::Invalid)
        );
        assert!(matches!(
            a.on_offer(offer(3, 500), 0, false, 0),
            Verdict::Ask(_)
        ));
    }

    #[test]
    fn at_most_four_receive_and_the_rest_wait_their_turn() {
        let mut a = Admission::new(u64::MAX);
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
        let mut a = Admission::new(u64::MAX);
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
    fn large_offers_wait_for_the_persons_answer() {
        let mut a = Admission::new(100);
        assert!(matches!(
            a.on_offer(offer(1, 100), 0, false, 0),
            Verdict::Receive(_)
        ));
        assert_eq!(
            a.on_offer(offer(2, 101), 1, false, 0),
            Verdict::Ask(offer(2, 101))
        );
        assert!(a.holds(TransferId(2)));
        assert_eq!(a.next(1), None, "a question is not started by a free slot");
        // Over the largest size: not a question (the receiver declines it with its reason).
        let huge = crate::peer::MAX_FILE_BYTES + 1;
        assert!(matches!(
            a.on_offer(offer(9, huge), 1, false, 0),
            Verdict::Receive(_)
        ));
        // Yes with a slot free: received; no: refused; a second answer does nothing.
        assert!(matches!(
            a.answer(TransferId(2), true, 1),
            Some(Verdict::Receive(_))
        ));
        assert_eq!(a.answer(TransferId(2), false, 1), None);
        a.on_offer(offer(3, 500), 1, false, 0);
        assert_eq!(
            a.answer(TransferId(3), false, 1),
            Some(Verdict::Decline(DeclineReason::Refused))
        );
        // Yes with every slot taken: held for one.
        a.on_offer(offer(4, 500), MAX_RECEIVING, false, 0);
        assert_eq!(
            a.answer(TransferId(4), true, MAX_RECEIVING),
            Some(Verdict::Wait)
        );
        // The same file asked about twice is refused; the sender withdrawing ends the question.
        a.on_offer(offer(5, 500), 0, false, 0);
        assert_eq!(
            a.on_offer(offer(5, 500), 0, false, 0),
            Verdict::Decline(DeclineReason::Invalid)
        );
        assert!(a.withdraw(TransferId(5)));
        assert!(a.asking().is_empty());
        // At most MAX_ASKING open questions.
        let asked = (10..30)
            .filter(|&id| matches!(a.on_offer(offer(id, 500), 0, false, 0), Verdict::Ask(_)))
            .count();
        assert_eq!(asked, MAX_ASKING);
        a.reset();
        assert!(a.asking().is_empty());
        assert!(matches!(
            a.on_offer(offer(40, 500), 0, false, 0),
            Verdict::Ask(_)
        ));
    }

    #[test]
    fn bytes_per_session_and_shared_part_keys_are_refused() {
        let mut a = Admission::new(u64::MAX);
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
