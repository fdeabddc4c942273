//! Lanes: extra peer connections a file transfer is striped over, and the sans-IO machine each
//! peer runs for them.
//!
//! Why: every peer connection has one SCTP association and one congestion window, and on a
//! lossy path that window, not the link, is the ceiling. Chromium's data channels halve theirs on
//! every loss, so between two browsers one connection moves about 1.3 MiB/s on a 40 ms path
//! with 0.1 % loss where TCP moves 11; four connections moved 3.9 times one
//! (`docs/bench/wan.md`, "Several connections lift it"). Several data channels on one
//! connection share its association and would not help.
//!
//! A lane is negotiated like a call's media connection: its offer, answer and ICE candidates
//! travel as [`LaneSignal`]s over the control channel the peers already share, so the signaling
//! server never learns of it. Only one side opens lanes (the one whose identity key sorts
//! higher, so the two never offer at once), while a transfer of at least
//! [`MIN_STRIPED_BYTES`] runs in either direction; lanes close after [`LANE_IDLE_MS`] without
//! one. An open lane carries data frames only, in both directions; control stays on the main
//! connection.
//!
//! Everything the peer sends is bounded: at most [`MAX_LANES`] lanes, each negotiated within
//! [`LANE_CONNECT_MS`], [`LANE_OPEN_BURST`] negotiations back to back and then one per
//! [`LANE_REFILL_MS`] (each costs an ICE and DTLS handshake here), at most
//! [`MAX_REMOTE_CANDIDATES`] candidates per lane, and SDP and candidates as long as a call's.
//! A signal that breaks a rule closes that lane, never the main connection.

use serde::{Deserialize, Serialize};

pub use crate::call::{MAX_CANDIDATE_BYTES, MAX_REMOTE_CANDIDATES, MAX_SDP_BYTES};

/// Most lanes. While lanes are open the data goes over them only (the main connection keeps
/// control and chat); a TURN relay holds an allocation per lane, not more bytes. The opener
/// opens [`lanes_for`] the path's round trip.
pub const MAX_LANES: u8 = 8;
/// Lanes on a short path. Measured in the lab (`docs/bench/wan.md`), two Chromiums moving bytes
/// from memory on `city` (20 ms): 5.2-5.4 MiB/s over 4 connections, 4.40 over 8, 3.30 over 16
/// (two cores: each connection costs Chromium CPU).
pub const SHORT_PATH_LANES: u8 = 4;
/// A round trip from which the path counts as long and gets [`MAX_LANES`]. On `far` (100 ms,
/// 0.5 % loss) each Chromium connection is held near `1.22 / sqrt(p)` packets per round trip
/// by its loss answer: 0.63 MiB/s over 4 connections, 1.42 over 8, 2.20 over 16.
pub const LONG_PATH_RTT_MS: u32 = 50;

/// How many lanes the opener opens on a path of this round trip (unknown: a short path's).
pub fn lanes_for(rtt_ms: Option<u32>) -> u8 {
    match rtt_ms {
        Some(rtt) if rtt >= LONG_PATH_RTT_MS => MAX_LANES,
        _ => SHORT_PATH_LANES,
    }
}
/// How long a lane may take from its offer to an open data channel; then it is closed.
pub const LANE_CONNECT_MS: u64 = 15_000;
/// How long lanes stay open without a transfer that wants them.
pub const LANE_IDLE_MS: u64 = 30_000;
/// Transfers smaller than this are not worth the handshakes: 8 MiB moves in a few seconds on
/// one connection.
pub const MIN_STRIPED_BYTES: u64 = 8 << 20;
/// Lane negotiations the opener may start back to back, and then one per [`LANE_REFILL_MS`]:
/// every lane of a long path at once, and on a short path each lane once more.
pub const LANE_OPEN_BURST: u32 = MAX_LANES as u32;
/// See [`LANE_OPEN_BURST`].
pub const LANE_REFILL_MS: u64 = 10_000;

/// One lane, by number: `0 .. MAX_LANES`.
pub type LaneId = u8;

/// What one peer says to the other about a lane, over the control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LaneSignal {
    /// The opener's SDP offer for a lane's connection.
    Offer {
        /// The lane.
        lane: LaneId,
        /// At most [`MAX_SDP_BYTES`].
        sdp: String,
    },
    /// The other side's SDP answer.
    Answer {
        /// The lane.
        lane: LaneId,
        /// At most [`MAX_SDP_BYTES`].
        sdp: String,
    },
    /// One trickled ICE candidate of a lane's connection.
    Candidate {
        /// The lane.
        lane: LaneId,
        /// The candidate line, at most [`MAX_CANDIDATE_BYTES`].
        candidate: String,
        /// The media section it belongs to, by id.
        mid: Option<String>,
        /// The media section it belongs to, by index.
        mline: Option<u16>,
    },
    /// Either side closes a lane (idle, failed, or refused).
    Close {
        /// The lane.
        lane: LaneId,
    },
}

impl LaneSignal {
    /// The lane this signal is about.
    pub fn lane(&self) -> LaneId {
        match self {
            LaneSignal::Offer { lane, .. }
            | LaneSignal::Answer { lane, .. }
            | LaneSignal::Candidate { lane, .. }
            | LaneSignal::Close { lane } => *lane,
        }
    }

    /// Checks the limits the types cannot express.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            _ if self.lane() >= MAX_LANES => Err("lane number out of range"),
            LaneSignal::Offer { sdp, .. } | LaneSignal::Answer { sdp, .. }
                if sdp.len() > MAX_SDP_BYTES =>
            {
                Err("session description longer than 32 KiB")
            }
            LaneSignal::Candidate { candidate, mid, .. }
                if candidate.len() > MAX_CANDIDATE_BYTES
                    || mid.as_ref().is_some_and(|m| m.len() > 64) =>
            {
                Err("ICE candidate longer than 1 KiB")
            }
            _ => Ok(()),
        }
    }
}

/// What the platform's lane connections must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneOp {
    /// Create the lane's connection (with the room's ICE servers) and its data channel; the
    /// opener then creates an offer and hands it to [`Lanes::local_description`].
    Create {
        /// The lane.
        lane: LaneId,
        /// This side offers.
        offerer: bool,
    },
    /// Apply the peer's offer (then answer through [`Lanes::local_description`]) or answer.
    RemoteDescription {
        /// The lane.
        lane: LaneId,
        /// Offer (we answer) or answer.
        offer: bool,
        /// The SDP.
        sdp: String,
    },
    /// Add the peer's ICE candidate to the lane's connection.
    RemoteCandidate {
        /// The lane.
        lane: LaneId,
        /// The candidate line.
        candidate: String,
        /// Media section id.
        mid: Option<String>,
        /// Media section index.
        mline: Option<u16>,
    },
    /// Close the lane's connection; frames still queued on it are lost.
    Close {
        /// The lane.
        lane: LaneId,
    },
}

/// What the caller must do after a step of the machine, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneEffect {
    /// Send this to the peer over the control channel.
    Send(LaneSignal),
    /// Something for the lane connections to do.
    Op(LaneOp),
    /// A lane that was open closed: the transfers that had frames on it lost them and must
    /// start again from what the receiver persisted.
    Lost(LaneId),
}

/// Why a peer's lane signal was not taken (the lane it named is closed, if it was open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LaneRefusal {
    /// Out of the signal's limits ([`LaneSignal::validate`]).
    #[error("lane signal out of limits: {0}")]
    Invalid(&'static str),
    /// An offer from the side that does not open lanes.
    #[error("the peer offered a lane but this side opens them")]
    NotOpener,
    /// An offer for a lane already being negotiated or open.
    #[error("the peer offered lane {0} twice")]
    Twice(LaneId),
    /// More offers than [`LANE_OPEN_BURST`] allows now.
    #[error("the peer opens lanes faster than allowed")]
    TooFast,
    /// An answer or candidate for a lane that is not being negotiated.
    #[error("signal for lane {0}, which is not being negotiated")]
    Stale(LaneId),
    /// More candidates than [`MAX_REMOTE_CANDIDATES`] for one lane.
    #[error("too many ICE candidates for lane {0}")]
    TooManyCandidates(LaneId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Negotiating since `since` ms.
    Connecting {
        since: u64,
    },
    Open,
}

#[derive(Debug, Clone, Copy)]
struct Lane {
    phase: Phase,
    remote_candidates: u32,
}

/// One side's lanes. Clockless: callers pass `now_ms` (any monotonic clock).
#[derive(Debug, Clone)]
pub struct Lanes {
    /// This side opens lanes (its identity sorts higher).
    opener: bool,
    lanes: [Option<Lane>; MAX_LANES as usize],
    /// Negotiations still allowed now, and when that was last worked out (token bucket).
    opens: (u32, u64),
    /// When a transfer last wanted lanes.
    wanted_ms: Option<u64>,
    /// Lanes the opener opens (see [`Lanes::set_count`]).
    count: u8,
    effects: Vec<LaneEffect>,
}

impl Lanes {
    /// No lanes yet; `opener` says whether this side opens them.
    pub fn new(opener: bool) -> Self {
        Self {
            opener,
            lanes: [None; MAX_LANES as usize],
            opens: (LANE_OPEN_BURST, 0),
            wanted_ms: None,
            count: SHORT_PATH_LANES,
            effects: Vec::new(),
        }
    }

    /// How many lanes to open (at most [`MAX_LANES`]); taken only while none is open or
    /// connecting, so a round trip that moves during a transfer does not open and close lanes.
    pub fn set_count(&mut self, count: u8) {
        if self.lanes.iter().all(Option::is_none) {
            self.count = count.clamp(1, MAX_LANES);
        }
    }

    /// How many lanes the opener opens.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// The lanes whose data channel is open, to stripe frames over.
    pub fn open(&self) -> impl Iterator<Item = LaneId> + '_ {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, lane)| lane.is_some_and(|l| l.phase == Phase::Open))
            .map(|(i, _)| i as LaneId)
    }

    fn get(&self, lane: LaneId) -> Option<&Lane> {
        self.lanes.get(usize::from(lane)).and_then(Option::as_ref)
    }

    fn slot(&mut self, lane: LaneId) -> Option<&mut Option<Lane>> {
        self.lanes.get_mut(usize::from(lane))
    }

    /// The effects of the steps so far, in order.
    pub fn take_effects(&mut self) -> Vec<LaneEffect> {
        std::mem::take(&mut self.effects)
    }

    /// Takes one negotiation from the bucket if one is left at `now_ms`.
    fn take_open(&mut self, now_ms: u64) -> bool {
        let (left, since) = self.opens;
        let refilled = (now_ms.saturating_sub(since) / LANE_REFILL_MS) as u32;
        let (left, since) = if refilled > 0 {
            (
                left.saturating_add(refilled).min(LANE_OPEN_BURST),
                since + u64::from(refilled) * LANE_REFILL_MS,
            )
        } else {
            (left, since)
        };
        let since = if left >= LANE_OPEN_BURST {
            now_ms
        } else {
            since
        };
        if left == 0 {
            self.opens = (0, since);
            return false;
        }
        self.opens = (left - 1, since);
        true
    }

    /// One turn: `wanted` says whether a transfer of at least [`MIN_STRIPED_BYTES`] runs in
    /// either direction. The opener opens the lanes missing (as the bucket allows); lanes that
    /// took too long to connect close, and all close once nothing wanted them for
    /// [`LANE_IDLE_MS`].
    pub fn tick(&mut self, wanted: bool, now_ms: u64) {
        if wanted {
            self.wanted_ms = Some(now_ms);
        }
        for lane in 0..MAX_LANES {
            if let Some(Lane {
                phase: Phase::Connecting { since },
                ..
            }) = self.get(lane).copied()
                && now_ms.saturating_sub(since) >= LANE_CONNECT_MS
            {
                self.close(lane, true);
            }
        }
        let idle = self
            .wanted_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= LANE_IDLE_MS);
        if idle {
            for lane in 0..MAX_LANES {
                if self.get(lane).is_some() {
                    self.close(lane, true);
                }
            }
            return;
        }
        if !self.opener {
            return;
        }
        for lane in 0..self.count {
            if self.get(lane).is_none() && self.take_open(now_ms) {
                self.lanes[usize::from(lane)] = Some(Lane {
                    phase: Phase::Connecting { since: now_ms },
                    remote_candidates: 0,
                });
                self.effects.push(LaneEffect::Op(LaneOp::Create {
                    lane,
                    offerer: true,
                }));
            }
        }
    }

    /// When [`Lanes::tick`] has something to do if nothing else happens: a negotiation's
    /// deadline, the idle close, or a refill of the bucket the opener waits for.
    pub fn poll_timeout(&self) -> Option<u64> {
        let deadlines = self
            .lanes
            .iter()
            .flatten()
            .filter_map(|lane| match lane.phase {
                Phase::Connecting { since } => Some(since + LANE_CONNECT_MS),
                Phase::Open => None,
            });
        let busy = self.lanes.iter().any(Option::is_some);
        let idle = self.wanted_ms.filter(|_| busy).map(|at| at + LANE_IDLE_MS);
        let missing = self.lanes.iter().any(Option::is_none);
        let refill = (self.opener && missing && self.wanted_ms.is_some() && self.opens.0 == 0)
            .then_some(self.opens.1 + LANE_REFILL_MS);
        deadlines.chain(idle).chain(refill).min()
    }

    /// Closes `lane` here; `tell` sends the peer a `Close` too.
    fn close(&mut self, lane: LaneId, tell: bool) {
        let Some(slot) = self.slot(lane) else {
            return;
        };
        let Some(was) = slot.take() else {
            return;
        };
        self.effects.push(LaneEffect::Op(LaneOp::Close { lane }));
        if tell {
            self.effects
                .push(LaneEffect::Send(LaneSignal::Close { lane }));
        }
        if was.phase == Phase::Open {
            self.effects.push(LaneEffect::Lost(lane));
        }
    }

    /// A signal from the peer. A refused one closes the lane it named, if any, and says why.
    pub fn on_signal(&mut self, signal: LaneSignal, now_ms: u64) -> Result<(), LaneRefusal> {
        if let Err(why) = signal.validate() {
            if signal.lane() < MAX_LANES {
                self.close(signal.lane(), true);
            }
            return Err(LaneRefusal::Invalid(why));
        }
        let lane = signal.lane();
        let refusal = match signal {
            LaneSignal::Close { lane } => {
                self.close(lane, false);
                return Ok(());
            }
            LaneSignal::Offer { .. } if self.opener => LaneRefusal::NotOpener,
            LaneSignal::Offer { .. } if self.get(lane).is_some() => LaneRefusal::Twice(lane),
            LaneSignal::Offer { .. } if !self.take_open(now_ms) => LaneRefusal::TooFast,
            LaneSignal::Offer { sdp, .. } => {
                self.wanted_ms = Some(now_ms);
                self.lanes[usize::from(lane)] = Some(Lane {
                    phase: Phase::Connecting { since: now_ms },
                    remote_candidates: 0,
                });
                self.effects.push(LaneEffect::Op(LaneOp::Create {
                    lane,
                    offerer: false,
                }));
                self.effects.push(LaneEffect::Op(LaneOp::RemoteDescription {
                    lane,
                    offer: true,
                    sdp,
                }));
                return Ok(());
            }
            LaneSignal::Answer { sdp, .. } => match self.get(lane) {
                Some(Lane {
                    phase: Phase::Connecting { .. },
                    ..
                }) if self.opener => {
                    self.effects.push(LaneEffect::Op(LaneOp::RemoteDescription {
                        lane,
                        offer: false,
                        sdp,
                    }));
                    return Ok(());
                }
                _ => LaneRefusal::Stale(lane),
            },
            LaneSignal::Candidate {
                candidate,
                mid,
                mline,
                ..
            } => {
                let Some(Some(state)) = self.slot(lane) else {
                    return Err(LaneRefusal::Stale(lane));
                };
                state.remote_candidates += 1;
                if state.remote_candidates > MAX_REMOTE_CANDIDATES {
                    LaneRefusal::TooManyCandidates(lane)
                } else {
                    self.effects.push(LaneEffect::Op(LaneOp::RemoteCandidate {
                        lane,
                        candidate,
                        mid,
                        mline,
                    }));
                    return Ok(());
                }
            }
        };
        // A late answer or candidate for a lane closed meanwhile is normal; anything else
        // ends the lane it named.
        if !matches!(refusal, LaneRefusal::Stale(_)) || self.get(lane).is_some() {
            self.close(lane, true);
        }
        Err(refusal)
    }

    /// The platform made this side's offer or answer for `lane`.
    pub fn local_description(&mut self, lane: LaneId, sdp: String) {
        if self.get(lane).is_some() {
            let signal = if self.opener {
                LaneSignal::Offer { lane, sdp }
            } else {
                LaneSignal::Answer { lane, sdp }
            };
            self.effects.push(LaneEffect::Send(signal));
        }
    }

    /// The platform gathered one of this side's ICE candidates for `lane`.
    pub fn local_candidate(
        &mut self,
        lane: LaneId,
        candidate: String,
        mid: Option<String>,
        mline: Option<u16>,
    ) {
        if self.get(lane).is_some() {
            self.effects.push(LaneEffect::Send(LaneSignal::Candidate {
                lane,
                candidate,
                mid,
                mline,
            }));
        }
    }

    /// The lane's data channel opened: frames may go over it now.
    pub fn opened(&mut self, lane: LaneId) {
        if let Some(Some(state)) = self.slot(lane) {
            state.phase = Phase::Open;
        }
    }

    /// The lane's connection failed or closed by itself.
    pub fn failed(&mut self, lane: LaneId) {
        self.close(lane, true);
    }

    /// The peer left: every lane closes (nobody to tell).
    pub fn reset(&mut self) {
        for lane in 0..MAX_LANES {
            self.close(lane, false);
        }
        self.wanted_ms = None;
    }
}

#[cfg(test)]
mod tests;
