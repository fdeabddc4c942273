//! Calls: the sans-IO state machine each peer runs for one voice or video call, and the signals
//! it exchanges with the peer.
//!
//! Media never rides matchbox's data connection (matchbox has data channels only). A call gets a
//! peer connection of its own, created when the call is accepted and closed when it ends. Its
//! offer, answer and ICE candidates travel as [`CallSignal`]s inside
//! [`crate::peer::Control::Call`] over the control channel the two peers already share, so the
//! signaling server never learns that a call happened.
//!
//! This module decides only *what happens*: who rings, who offers (always the caller, so the
//! two never offer at once; a call negotiates an audio and a video transceiver from the start,
//! so turning the camera on later needs no second offer), what the avatars show, when media
//! starts and stops and why a call ended. The platform layer does the WebRTC and device work,
//! performs the [`CallEffect`]s and reports back (`local_description`, `media_connected`,
//! `media_failed`, ...). Stale signals (another call's, or out of order) are dropped, never
//! acted on: the peer may be hostile or simply slower.

use serde::{Deserialize, Serialize};

/// Identifies one call; chosen at random by the caller. Also breaks ties when both people
/// press "call" at once: the larger id goes ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId(pub u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Largest SDP accepted on the wire (a two-transceiver browser offer is 3-6 KB).
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Largest ICE candidate line accepted on the wire (real ones are under 200 bytes).
pub const MAX_CANDIDATE_BYTES: usize = 1024;
/// Most remote ICE candidates taken per call (a real peer sends a handful per network
/// interface); more are dropped, so a peer cannot grow our memory with them.
pub const MAX_REMOTE_CANDIDATES: u32 = 50;
/// Calls the peer may ring back to back, and how often after that: one every
/// [`INVITE_REFILL_MS`]. A peer ringing in a loop is answered "busy" without ringing here.
pub const INVITE_BURST: u32 = 3;
/// See [`INVITE_BURST`].
pub const INVITE_REFILL_MS: u64 = 10_000;
/// How long an unanswered call rings before the caller gives up.
pub const RING_MS: u64 = 45_000;
/// How long an accepted call may take to get its media flowing before both give up.
pub const CONNECT_MS: u64 = 30_000;

/// What one peer says to the other about a call, over the control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallSignal {
    /// "I am calling you." `video`: the caller starts with the camera on (the callee's prompt
    /// says "video call").
    Invite {
        /// The new call.
        call: CallId,
        /// Whether the caller's camera is on.
        video: bool,
    },
    /// The callee takes the call; the caller now offers.
    Accept {
        /// The call.
        call: CallId,
    },
    /// The callee does not take the call.
    Decline {
        /// The call.
        call: CallId,
        /// Why, for the caller's screen.
        reason: DeclineReason,
    },
    /// The caller's SDP offer for the media connection.
    Offer {
        /// The call.
        call: CallId,
        /// At most [`MAX_SDP_BYTES`].
        sdp: String,
    },
    /// The callee's SDP answer.
    Answer {
        /// The call.
        call: CallId,
        /// At most [`MAX_SDP_BYTES`].
        sdp: String,
    },
    /// One trickled ICE candidate of the media connection.
    Candidate {
        /// The call.
        call: CallId,
        /// The candidate line, at most [`MAX_CANDIDATE_BYTES`].
        candidate: String,
        /// The media section it belongs to, by id.
        mid: Option<String>,
        /// The media section it belongs to, by index.
        mline: Option<u16>,
    },
    /// The sender's microphone and camera state, for the avatars.
    Media {
        /// The call.
        call: CallId,
        /// Microphone muted.
        muted: bool,
        /// Camera on.
        camera: bool,
    },
    /// Either side ends the call.
    Hangup {
        /// The call.
        call: CallId,
        /// Why, for the other side's screen.
        reason: HangupReason,
    },
}

impl CallSignal {
    /// The call this signal is about.
    pub fn call(&self) -> CallId {
        match self {
            CallSignal::Invite { call, .. }
            | CallSignal::Accept { call }
            | CallSignal::Decline { call, .. }
            | CallSignal::Offer { call, .. }
            | CallSignal::Answer { call, .. }
            | CallSignal::Candidate { call, .. }
            | CallSignal::Media { call, .. }
            | CallSignal::Hangup { call, .. } => *call,
        }
    }

    /// Checks the limits the types cannot express.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            CallSignal::Offer { sdp, .. } | CallSignal::Answer { sdp, .. }
                if sdp.len() > MAX_SDP_BYTES =>
            {
                Err("session description longer than 32 KiB")
            }
            CallSignal::Candidate { candidate, mid, .. }
                if candidate.len() > MAX_CANDIDATE_BYTES
                    || mid.as_ref().is_some_and(|m| m.len() > 64) =>
            {
                Err("ICE candidate longer than 1 KiB")
            }
            _ => Ok(()),
        }
    }
}

/// Why a callee did not take a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeclineReason {
    /// They pressed "decline".
    Declined,
    /// They are in a call already.
    Busy,
    /// Their app has no call media (an app built without it).
    Unsupported,
}

/// Why a call was ended by one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HangupReason {
    /// They pressed "hang up" (or left the room).
    HungUp,
    /// Nobody answered in time.
    NoAnswer,
    /// Their app found no microphone.
    NoMicrophone,
    /// They did not allow the microphone.
    PermissionDenied,
    /// The media connection could not be set up or broke.
    MediaFailed,
}

/// Where the call stands: what the avatars and the call bar show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// No call.
    Idle,
    /// We invited; the peer's app rings.
    Calling {
        /// The call.
        call: CallId,
        /// Our camera starts on.
        video: bool,
    },
    /// The peer invites us; we choose.
    Ringing {
        /// The call.
        call: CallId,
        /// The caller's camera is on.
        video: bool,
    },
    /// Accepted; the media connection is being set up.
    Connecting {
        /// The call.
        call: CallId,
        /// We are the caller (we offer).
        offerer: bool,
    },
    /// Media flows.
    Active {
        /// The call.
        call: CallId,
        /// We are the caller.
        offerer: bool,
    },
}

impl CallPhase {
    /// The current call, if any.
    pub fn call(&self) -> Option<CallId> {
        match *self {
            CallPhase::Idle => None,
            CallPhase::Calling { call, .. }
            | CallPhase::Ringing { call, .. }
            | CallPhase::Connecting { call, .. }
            | CallPhase::Active { call, .. } => Some(call),
        }
    }
}

/// Why a call ended, from this side's point of view; `Display` is the sentence the UI shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// We hung up.
    HungUp,
    /// The peer hung up.
    PeerHungUp,
    /// We declined the call.
    Declined,
    /// The peer declined our call.
    PeerDeclined,
    /// The peer is in another call.
    PeerBusy,
    /// Nobody answered (either side sees this).
    NoAnswer,
    /// The peer left the room.
    PeerLeft,
    /// We have no microphone.
    NoMicrophone,
    /// The peer has no microphone.
    PeerNoMicrophone,
    /// We did not allow the microphone.
    PermissionDenied,
    /// The peer did not allow their microphone.
    PeerPermissionDenied,
    /// The media connection failed (either side).
    MediaFailed,
    /// A call came in, and this app cannot take calls.
    CannotCall,
    /// The peer's app cannot take calls.
    PeerCannotCall,
}

impl std::fmt::Display for CallEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallEnd::HungUp => "Call ended.",
            CallEnd::PeerHungUp => "Your peer ended the call.",
            CallEnd::Declined => "You declined the call.",
            CallEnd::PeerDeclined => "Your peer declined the call.",
            CallEnd::PeerBusy => "Your peer is busy in another call.",
            CallEnd::NoAnswer => "No answer: the call rang for 45 seconds.",
            CallEnd::PeerLeft => "Call ended: your peer left the room.",
            CallEnd::NoMicrophone => "No microphone was found, so the call could not start.",
            CallEnd::PeerNoMicrophone => "Your peer has no microphone, so the call ended.",
            CallEnd::PermissionDenied => {
                "The microphone is blocked for this page. Allow it in the browser's site \
                 settings, then call again."
            }
            CallEnd::PeerPermissionDenied => "Your peer's browser blocked their microphone.",
            CallEnd::MediaFailed => "The call's connection failed. Try calling again.",
            CallEnd::CannotCall => {
                "Your peer tried to call you, but this app cannot take calls: open the room's \
                 link in a browser to talk."
            }
            CallEnd::PeerCannotCall => {
                "Your peer's app cannot take calls: ask them to open the room's link in a browser."
            }
        })
    }
}

impl CallEnd {
    /// What we tell the peer when the call ends this way on our side.
    fn hangup_reason(self) -> HangupReason {
        match self {
            CallEnd::NoAnswer => HangupReason::NoAnswer,
            CallEnd::NoMicrophone => HangupReason::NoMicrophone,
            CallEnd::PermissionDenied => HangupReason::PermissionDenied,
            CallEnd::MediaFailed => HangupReason::MediaFailed,
            _ => HangupReason::HungUp,
        }
    }

    /// How a peer's hang-up reads on our side.
    fn from_peer(reason: HangupReason) -> Self {
        match reason {
            HangupReason::HungUp => CallEnd::PeerHungUp,
            HangupReason::NoAnswer => CallEnd::NoAnswer,
            HangupReason::NoMicrophone => CallEnd::PeerNoMicrophone,
            HangupReason::PermissionDenied => CallEnd::PeerPermissionDenied,
            HangupReason::MediaFailed => CallEnd::MediaFailed,
        }
    }
}

/// What the platform must do after a step of the machine, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEffect {
    /// Send this to the peer over the control channel.
    Send(CallSignal),
    /// Something for the media connection to do.
    Media(MediaOp),
    /// The peer's microphone or camera changed.
    PeerMedia {
        /// Their microphone is muted.
        muted: bool,
        /// Their camera is on.
        camera: bool,
    },
    /// The call is over; show why.
    Ended(CallEnd),
}

/// What the media connection must do: the part of the machine's effects each platform's media
/// engine carries out (and nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOp {
    /// Open the microphone (and the camera when `video`) and create the media connection; the
    /// offerer then creates an offer and hands it to [`Call::local_description`].
    Start {
        /// The call.
        call: CallId,
        /// We offer (we are the caller).
        offerer: bool,
        /// Start with the camera on.
        video: bool,
    },
    /// Apply the peer's offer (then answer through [`Call::local_description`]) or answer.
    RemoteDescription {
        /// The call.
        call: CallId,
        /// Offer (we answer) or answer.
        offer: bool,
        /// The SDP.
        sdp: String,
    },
    /// Add the peer's ICE candidate to the media connection.
    RemoteCandidate {
        /// The call.
        call: CallId,
        /// The candidate line.
        candidate: String,
        /// Media section id.
        mid: Option<String>,
        /// Media section index.
        mline: Option<u16>,
    },
    /// Mute or unmute the microphone track, turn the camera track on or off.
    SetLocal {
        /// Microphone muted.
        muted: bool,
        /// Camera on.
        camera: bool,
    },
    /// Close the media connection and release the devices.
    Stop {
        /// The call.
        call: CallId,
    },
}

/// A local action that does not fit the call's state: the UI should not have offered it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// "Call" while a call is already ringing or running.
    #[error("there is a call already")]
    Busy,
    /// "Accept" or "decline" with nothing ringing.
    #[error("no call is ringing")]
    NotRinging,
}

/// One side's call state machine. Clockless: callers pass `now_ms` (any monotonic clock).
#[derive(Debug, Clone)]
pub struct Call {
    phase: CallPhase,
    /// When the current phase began.
    since_ms: u64,
    muted: bool,
    camera: bool,
    /// Remote candidates taken in the current call, against [`MAX_REMOTE_CANDIDATES`].
    remote_candidates: u32,
    /// Invites the peer may still make now, and when that was last worked out.
    invites: (u32, u64),
}

impl Default for Call {
    fn default() -> Self {
        Self::new()
    }
}

impl Call {
    /// No call.
    pub fn new() -> Self {
        Self {
            phase: CallPhase::Idle,
            since_ms: 0,
            muted: false,
            camera: false,
            remote_candidates: 0,
            invites: (INVITE_BURST, 0),
        }
    }

    /// Takes one of the peer's invites if it has one left at `now_ms`.
    fn take_invite(&mut self, now_ms: u64) -> bool {
        let (left, since) = self.invites;
        let refilled = (now_ms.saturating_sub(since) / INVITE_REFILL_MS) as u32;
        let (left, since) = if refilled > 0 {
            (
                (left + refilled).min(INVITE_BURST),
                since + u64::from(refilled) * INVITE_REFILL_MS,
            )
        } else {
            (left, since)
        };
        let since = if left >= INVITE_BURST { now_ms } else { since };
        if left == 0 {
            self.invites = (0, since);
            return false;
        }
        self.invites = (left - 1, since);
        true
    }

    /// Where the call stands.
    pub fn phase(&self) -> CallPhase {
        self.phase
    }

    /// Our microphone is muted.
    pub fn muted(&self) -> bool {
        self.muted
    }

    /// Our camera is on.
    pub fn camera(&self) -> bool {
        self.camera
    }

    fn enter(&mut self, phase: CallPhase, now_ms: u64) {
        if phase.call() != self.phase.call() {
            self.remote_candidates = 0;
        }
        self.phase = phase;
        self.since_ms = now_ms;
    }

    /// We call the peer (with the camera on when `video`). Media starts once they accept.
    pub fn start(
        &mut self,
        call: CallId,
        video: bool,
        now_ms: u64,
    ) -> Result<Vec<CallEffect>, CallError> {
        if self.phase != CallPhase::Idle {
            return Err(CallError::Busy);
        }
        self.muted = false;
        self.camera = video;
        self.enter(CallPhase::Calling { call, video }, now_ms);
        Ok(vec![CallEffect::Send(CallSignal::Invite { call, video })])
    }

    /// We take the ringing call (camera on when `video`).
    pub fn accept(&mut self, video: bool, now_ms: u64) -> Result<Vec<CallEffect>, CallError> {
        let CallPhase::Ringing { call, .. } = self.phase else {
            return Err(CallError::NotRinging);
        };
        self.muted = false;
        self.camera = video;
        self.enter(
            CallPhase::Connecting {
                call,
                offerer: false,
            },
            now_ms,
        );
        Ok(vec![
            CallEffect::Send(CallSignal::Accept { call }),
            CallEffect::Media(MediaOp::Start {
                call,
                offerer: false,
                video,
            }),
        ])
    }

    /// We turn the ringing call down.
    pub fn decline(&mut self, now_ms: u64) -> Result<Vec<CallEffect>, CallError> {
        self.decline_as(DeclineReason::Declined, now_ms)
    }

    /// Turns the ringing call down for `reason` (an app without call media declines every call
    /// as [`DeclineReason::Unsupported`] at once, so the caller is told instead of left ringing).
    pub fn decline_as(
        &mut self,
        reason: DeclineReason,
        now_ms: u64,
    ) -> Result<Vec<CallEffect>, CallError> {
        let CallPhase::Ringing { call, .. } = self.phase else {
            return Err(CallError::NotRinging);
        };
        self.enter(CallPhase::Idle, now_ms);
        Ok(vec![
            CallEffect::Send(CallSignal::Decline { call, reason }),
            CallEffect::Ended(match reason {
                DeclineReason::Unsupported => CallEnd::CannotCall,
                _ => CallEnd::Declined,
            }),
        ])
    }

    /// We end the call, whatever its phase (calling, ringing, connecting, active). Nothing
    /// happens without a call.
    pub fn hang_up(&mut self, now_ms: u64) -> Vec<CallEffect> {
        self.end(CallEnd::HungUp, true, now_ms)
    }

    /// Our side failed: no microphone, permission denied, or the media connection broke. The
    /// call ends on both sides with the reason. Stale reports (another call) are ignored.
    pub fn media_failed(&mut self, call: CallId, why: CallEnd, now_ms: u64) -> Vec<CallEffect> {
        if self.phase.call() != Some(call) {
            return Vec::new();
        }
        self.end(why, true, now_ms)
    }

    /// The peer left the room: any call ends, nothing is sent.
    pub fn peer_left(&mut self, now_ms: u64) -> Vec<CallEffect> {
        self.end(CallEnd::PeerLeft, false, now_ms)
    }

    fn end(&mut self, why: CallEnd, tell_peer: bool, now_ms: u64) -> Vec<CallEffect> {
        let Some(call) = self.phase.call() else {
            return Vec::new();
        };
        let media = matches!(
            self.phase,
            CallPhase::Connecting { .. } | CallPhase::Active { .. }
        );
        let ringing = matches!(self.phase, CallPhase::Ringing { .. });
        self.enter(CallPhase::Idle, now_ms);
        let mut effects = Vec::new();
        if tell_peer {
            effects.push(CallEffect::Send(if ringing && why == CallEnd::HungUp {
                CallSignal::Decline {
                    call,
                    reason: DeclineReason::Declined,
                }
            } else {
                CallSignal::Hangup {
                    call,
                    reason: why.hangup_reason(),
                }
            }));
        }
        if media {
            effects.push(CallEffect::Media(MediaOp::Stop { call }));
        }
        effects.push(CallEffect::Ended(if ringing && why == CallEnd::HungUp {
            CallEnd::Declined
        } else {
            why
        }));
        effects
    }

    /// Our media connection produced its offer (caller) or answer (callee): send it.
    pub fn local_description(&mut self, call: CallId, sdp: String) -> Vec<CallEffect> {
        match self.phase {
            CallPhase::Connecting { call: c, offerer } | CallPhase::Active { call: c, offerer }
                if c == call =>
            {
                vec![CallEffect::Send(if offerer {
                    CallSignal::Offer { call, sdp }
                } else {
                    CallSignal::Answer { call, sdp }
                })]
            }
            _ => Vec::new(),
        }
    }

    /// Our media connection found an ICE candidate: send it.
    pub fn local_candidate(
        &mut self,
        call: CallId,
        candidate: String,
        mid: Option<String>,
        mline: Option<u16>,
    ) -> Vec<CallEffect> {
        match self.phase {
            CallPhase::Connecting { call: c, .. } | CallPhase::Active { call: c, .. }
                if c == call =>
            {
                vec![CallEffect::Send(CallSignal::Candidate {
                    call,
                    candidate,
                    mid,
                    mline,
                })]
            }
            _ => Vec::new(),
        }
    }

    /// Media flows (the media connection reports "connected").
    pub fn media_connected(&mut self, call: CallId, now_ms: u64) -> Vec<CallEffect> {
        if let CallPhase::Connecting { call: c, offerer } = self.phase
            && c == call
        {
            self.enter(CallPhase::Active { call, offerer }, now_ms);
            // The peer learns our starting state (it knows the caller's camera from the invite,
            // not the callee's).
            return vec![CallEffect::Send(CallSignal::Media {
                call,
                muted: self.muted,
                camera: self.camera,
            })];
        }
        Vec::new()
    }

    /// We mute or unmute, turn the camera on or off (during a call; remembered otherwise).
    pub fn set_media(&mut self, muted: bool, camera: bool) -> Vec<CallEffect> {
        if (muted, camera) == (self.muted, self.camera) {
            return Vec::new();
        }
        self.muted = muted;
        self.camera = camera;
        match self.phase {
            CallPhase::Connecting { call, .. } | CallPhase::Active { call, .. } => vec![
                CallEffect::Media(MediaOp::SetLocal { muted, camera }),
                CallEffect::Send(CallSignal::Media {
                    call,
                    muted,
                    camera,
                }),
            ],
            _ => Vec::new(),
        }
    }

    /// Timeouts: an unanswered call stops ringing on both sides after [`RING_MS`], a call
    /// whose media does not connect within [`CONNECT_MS`] fails.
    pub fn tick(&mut self, now_ms: u64) -> Vec<CallEffect> {
        let waited = now_ms.saturating_sub(self.since_ms);
        match self.phase {
            CallPhase::Calling { .. } if waited >= RING_MS => {
                self.end(CallEnd::NoAnswer, true, now_ms)
            }
            // The caller's timeout tells us; this one only covers a caller that vanished
            // without a word (its hang-up lost with the connection).
            CallPhase::Ringing { .. } if waited >= RING_MS + 5_000 => {
                self.end(CallEnd::NoAnswer, false, now_ms)
            }
            CallPhase::Connecting { .. } if waited >= CONNECT_MS => {
                self.end(CallEnd::MediaFailed, true, now_ms)
            }
            _ => Vec::new(),
        }
    }

    /// What the peer said. Signals that do not fit (another call, the wrong phase, a
    /// description from the wrong side) are dropped; a second invite while busy is declined.
    pub fn on_signal(&mut self, signal: CallSignal, now_ms: u64) -> Vec<CallEffect> {
        if signal.validate().is_err() {
            return Vec::new();
        }
        let current = self.phase.call();
        match signal {
            // A peer ringing in a loop is told "busy" without ringing here.
            CallSignal::Invite { call, .. }
                if matches!(self.phase, CallPhase::Idle) && !self.take_invite(now_ms) =>
            {
                vec![CallEffect::Send(CallSignal::Decline {
                    call,
                    reason: DeclineReason::Busy,
                })]
            }
            CallSignal::Invite { call, video } => match self.phase {
                CallPhase::Idle => {
                    self.enter(CallPhase::Ringing { call, video }, now_ms);
                    Vec::new()
                }
                // Both pressed "call" at once: the larger id goes ahead, and its callee takes
                // it without asking (they wanted to talk too).
                CallPhase::Calling { call: ours, video } if call > ours => {
                    self.enter(CallPhase::Ringing { call, video }, now_ms);
                    self.accept(video, now_ms).unwrap_or_default()
                }
                CallPhase::Calling { call: ours, .. } if call < ours => Vec::new(),
                // A repeat of the call we know.
                _ if current == Some(call) => Vec::new(),
                _ => vec![CallEffect::Send(CallSignal::Decline {
                    call,
                    reason: DeclineReason::Busy,
                })],
            },
            CallSignal::Accept { call } => match self.phase {
                CallPhase::Calling { call: c, video } if c == call => {
                    self.enter(
                        CallPhase::Connecting {
                            call,
                            offerer: true,
                        },
                        now_ms,
                    );
                    vec![CallEffect::Media(MediaOp::Start {
                        call,
                        offerer: true,
                        video,
                    })]
                }
                _ => Vec::new(),
            },
            CallSignal::Decline { call, reason } => match self.phase {
                CallPhase::Calling { call: c, .. } if c == call => {
                    self.enter(CallPhase::Idle, now_ms);
                    vec![CallEffect::Ended(match reason {
                        DeclineReason::Declined => CallEnd::PeerDeclined,
                        DeclineReason::Busy => CallEnd::PeerBusy,
                        DeclineReason::Unsupported => CallEnd::PeerCannotCall,
                    })]
                }
                _ => Vec::new(),
            },
            CallSignal::Offer { call, sdp } => match self.phase {
                CallPhase::Connecting {
                    call: c,
                    offerer: false,
                }
                | CallPhase::Active {
                    call: c,
                    offerer: false,
                } if c == call => vec![CallEffect::Media(MediaOp::RemoteDescription {
                    call,
                    offer: true,
                    sdp,
                })],
                _ => Vec::new(),
            },
            CallSignal::Answer { call, sdp } => match self.phase {
                CallPhase::Connecting {
                    call: c,
                    offerer: true,
                }
                | CallPhase::Active {
                    call: c,
                    offerer: true,
                } if c == call => vec![CallEffect::Media(MediaOp::RemoteDescription {
                    call,
                    offer: false,
                    sdp,
                })],
                _ => Vec::new(),
            },
            CallSignal::Candidate {
                call,
                candidate,
                mid,
                mline,
            } => match self.phase {
                CallPhase::Connecting { call: c, .. } | CallPhase::Active { call: c, .. }
                    if c == call && self.remote_candidates < MAX_REMOTE_CANDIDATES =>
                {
                    self.remote_candidates += 1;
                    vec![CallEffect::Media(MediaOp::RemoteCandidate {
                        call,
                        candidate,
                        mid,
                        mline,
                    })]
                }
                _ => Vec::new(),
            },
            CallSignal::Media {
                call,
                muted,
                camera,
            } => match self.phase {
                CallPhase::Connecting { call: c, .. } | CallPhase::Active { call: c, .. }
                    if c == call =>
                {
                    vec![CallEffect::PeerMedia { muted, camera }]
                }
                _ => Vec::new(),
            },
            CallSignal::Hangup { call, reason } if current == Some(call) => {
                self.end(CallEnd::from_peer(reason), false, now_ms)
            }
            CallSignal::Hangup { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delivers every `Send` in `effects` to `to`, returning what `to` did in response (its
    /// own sends included, not delivered back).
    fn deliver(effects: &[CallEffect], to: &mut Call, now: u64) -> Vec<CallEffect> {
        effects
            .iter()
            .filter_map(|e| match e {
                CallEffect::Send(signal) => Some(to.on_signal(signal.clone(), now)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn sent(effects: &[CallEffect]) -> Vec<&CallSignal> {
        effects
            .iter()
            .filter_map(|e| match e {
                CallEffect::Send(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn ended(effects: &[CallEffect]) -> Option<CallEnd> {
        effects.iter().find_map(|e| match e {
            CallEffect::Ended(why) => Some(*why),
            _ => None,
        })
    }

    #[test]
    fn a_peer_ringing_in_a_loop_is_told_busy_and_candidates_are_capped() {
        let mut bob = Call::new();
        let mut rang = 0;
        let mut busy = 0;
        // 20 invites, each hung up at once, within two seconds.
        for i in 0..20u64 {
            let now = 1_000_000 + i * 100;
            let effects = bob.on_signal(
                CallSignal::Invite {
                    call: CallId(i + 1),
                    video: false,
                },
                now,
            );
            if matches!(bob.phase(), CallPhase::Ringing { .. }) {
                rang += 1;
            } else if matches!(
                sent(&effects)[..],
                [CallSignal::Decline {
                    reason: DeclineReason::Busy,
                    ..
                }]
            ) {
                busy += 1;
            }
            bob.on_signal(
                CallSignal::Hangup {
                    call: CallId(i + 1),
                    reason: HangupReason::HungUp,
                },
                now + 1,
            );
        }
        assert_eq!((rang, busy), (INVITE_BURST, 20 - INVITE_BURST));
        // Later, calls ring again.
        bob.on_signal(
            CallSignal::Invite {
                call: CallId(99),
                video: false,
            },
            1_000_000 + 2_000 + INVITE_REFILL_MS,
        );
        assert!(matches!(bob.phase(), CallPhase::Ringing { .. }));

        let (mut ada, _, id) = connected_pair();
        let taken = (0..1_000)
            .filter(|i| {
                !ada.on_signal(
                    CallSignal::Candidate {
                        call: id,
                        candidate: format!("candidate:{i} 1 udp 1 ::1 5000 typ host"),
                        mid: None,
                        mline: Some(0),
                    },
                    100,
                )
                .is_empty()
            })
            .count();
        // connected_pair already delivered one.
        assert_eq!(taken as u32, MAX_REMOTE_CANDIDATES - 1);
    }

    /// Ada calls Bob, Bob accepts, descriptions and candidates cross, both connect.
    fn connected_pair() -> (Call, Call, CallId) {
        let (mut ada, mut bob) = (Call::new(), Call::new());
        let id = CallId(7);
        let invite = ada.start(id, false, 0).unwrap();
        assert!(deliver(&invite, &mut bob, 10).is_empty());
        assert_eq!(
            bob.phase(),
            CallPhase::Ringing {
                call: id,
                video: false
            }
        );
        let accepted = bob.accept(true, 20).unwrap();
        assert!(accepted.contains(&CallEffect::Media(MediaOp::Start {
            call: id,
            offerer: false,
            video: true
        })));
        let started = deliver(&accepted, &mut ada, 30);
        assert_eq!(
            started,
            vec![CallEffect::Media(MediaOp::Start {
                call: id,
                offerer: true,
                video: false
            })]
        );
        let offer = ada.local_description(id, "v=0 offer".into());
        let applied = deliver(&offer, &mut bob, 40);
        assert_eq!(
            applied,
            vec![CallEffect::Media(MediaOp::RemoteDescription {
                call: id,
                offer: true,
                sdp: "v=0 offer".into()
            })]
        );
        let answer = bob.local_description(id, "v=0 answer".into());
        assert!(matches!(
            deliver(&answer, &mut ada, 50)[..],
            [CallEffect::Media(MediaOp::RemoteDescription {
                offer: false,
                ..
            })]
        ));
        let candidate = bob.local_candidate(
            id,
            "candidate:1 1 udp 1 ::1 5000 typ host".into(),
            Some("0".into()),
            Some(0),
        );
        assert!(matches!(
            deliver(&candidate, &mut ada, 55)[..],
            [CallEffect::Media(MediaOp::RemoteCandidate { .. })]
        ));
        let ada_media = ada.media_connected(id, 60);
        let bob_media = bob.media_connected(id, 60);
        // Each tells the other its starting microphone and camera.
        assert_eq!(
            deliver(&bob_media, &mut ada, 61),
            vec![CallEffect::PeerMedia {
                muted: false,
                camera: true
            }]
        );
        assert_eq!(
            deliver(&ada_media, &mut bob, 61),
            vec![CallEffect::PeerMedia {
                muted: false,
                camera: false
            }]
        );
        assert_eq!(
            ada.phase(),
            CallPhase::Active {
                call: id,
                offerer: true
            }
        );
        assert_eq!(
            bob.phase(),
            CallPhase::Active {
                call: id,
                offerer: false
            }
        );
        (ada, bob, id)
    }

    #[test]
    fn a_call_connects_and_either_side_hangs_up() {
        let (mut ada, mut bob, id) = connected_pair();
        let hangup = bob.hang_up(100);
        assert!(hangup.contains(&CallEffect::Media(MediaOp::Stop { call: id })));
        assert_eq!(ended(&hangup), Some(CallEnd::HungUp));
        let on_ada = deliver(&hangup, &mut ada, 110);
        assert!(on_ada.contains(&CallEffect::Media(MediaOp::Stop { call: id })));
        assert_eq!(ended(&on_ada), Some(CallEnd::PeerHungUp));
        assert_eq!(ada.phase(), CallPhase::Idle);
        assert_eq!(bob.phase(), CallPhase::Idle);
        // Nothing left to hang up.
        assert!(ada.hang_up(120).is_empty());
    }

    #[test]
    fn mute_and_camera_reach_the_peer() {
        let (mut ada, mut bob, _) = connected_pair();
        let muted = ada.set_media(true, false);
        assert!(muted.contains(&CallEffect::Media(MediaOp::SetLocal {
            muted: true,
            camera: false
        })));
        assert_eq!(
            deliver(&muted, &mut bob, 70),
            vec![CallEffect::PeerMedia {
                muted: true,
                camera: false
            }]
        );
        // No change, no message.
        assert!(ada.set_media(true, false).is_empty());
        assert!(ada.muted());
    }

    #[test]
    fn declined_busy_and_unanswered_calls_end_with_a_reason() {
        let (mut ada, mut bob) = (Call::new(), Call::new());
        let invite = ada.start(CallId(1), false, 0).unwrap();
        deliver(&invite, &mut bob, 0);
        let declined = bob.decline(5).unwrap();
        assert_eq!(ended(&declined), Some(CallEnd::Declined));
        assert_eq!(
            ended(&deliver(&declined, &mut ada, 6)),
            Some(CallEnd::PeerDeclined)
        );

        // Bob is in a call with someone... or rather, already ringing for another call.
        let (mut cat, mut dan) = (Call::new(), Call::new());
        deliver(&cat.start(CallId(2), false, 0).unwrap(), &mut dan, 0);
        let second = Call::new().start(CallId(3), false, 0).unwrap();
        let busy = deliver(&second, &mut dan, 1);
        assert_eq!(
            sent(&busy),
            vec![&CallSignal::Decline {
                call: CallId(3),
                reason: DeclineReason::Busy
            }]
        );
        // Dan still rings for Cat's call.
        assert_eq!(
            dan.phase(),
            CallPhase::Ringing {
                call: CallId(2),
                video: false
            }
        );

        // Nobody answers Cat: the ringing stops on both sides after RING_MS.
        assert!(cat.tick(RING_MS - 1).is_empty());
        let timeout = cat.tick(RING_MS);
        assert_eq!(ended(&timeout), Some(CallEnd::NoAnswer));
        assert_eq!(
            ended(&deliver(&timeout, &mut dan, RING_MS)),
            Some(CallEnd::NoAnswer)
        );
        assert_eq!(dan.phase(), CallPhase::Idle);
    }

    #[test]
    fn both_calling_at_once_makes_one_call() {
        let (mut ada, mut bob) = (Call::new(), Call::new());
        let from_ada = ada.start(CallId(10), false, 0).unwrap();
        let from_bob = bob.start(CallId(20), true, 0).unwrap();
        // Invites cross. Bob's id is larger: Ada takes Bob's call, Bob ignores Ada's.
        let ada_did = deliver(&from_bob, &mut ada, 1);
        let bob_did = deliver(&from_ada, &mut bob, 1);
        assert!(bob_did.is_empty());
        assert_eq!(
            ada.phase(),
            CallPhase::Connecting {
                call: CallId(20),
                offerer: false
            }
        );
        let bob_started = deliver(&ada_did, &mut bob, 2);
        assert_eq!(
            bob_started,
            vec![CallEffect::Media(MediaOp::Start {
                call: CallId(20),
                offerer: true,
                video: true
            })]
        );
    }

    #[test]
    fn stale_and_hostile_signals_are_dropped() {
        let (mut ada, mut bob, id) = connected_pair();
        let other = CallId(99);
        // Another call's signals, an answer sent to the answerer, an offer to the offerer.
        for (to_ada, signal) in [
            (
                true,
                CallSignal::Hangup {
                    call: other,
                    reason: HangupReason::HungUp,
                },
            ),
            (
                true,
                CallSignal::Offer {
                    call: id,
                    sdp: "x".into(),
                },
            ),
            (
                false,
                CallSignal::Answer {
                    call: id,
                    sdp: "x".into(),
                },
            ),
            (false, CallSignal::Accept { call: id }),
            (
                false,
                CallSignal::Offer {
                    call: id,
                    sdp: "x".repeat(MAX_SDP_BYTES + 1),
                },
            ),
            (
                false,
                CallSignal::Candidate {
                    call: id,
                    candidate: "c".repeat(2000),
                    mid: None,
                    mline: None,
                },
            ),
        ] {
            assert!(
                (if to_ada { &mut ada } else { &mut bob })
                    .on_signal(signal.clone(), 80)
                    .is_empty(),
                "{signal:?} was acted on"
            );
        }
        assert!(matches!(ada.phase(), CallPhase::Active { .. }));
        assert!(matches!(bob.phase(), CallPhase::Active { .. }));
        // Descriptions and candidates mean nothing without a call.
        let mut idle = Call::new();
        assert!(
            idle.on_signal(
                CallSignal::Offer {
                    call: id,
                    sdp: "x".into()
                },
                0
            )
            .is_empty()
        );
        assert!(
            idle.on_signal(CallSignal::Accept { call: id }, 0)
                .is_empty()
        );
        assert_eq!(idle.phase(), CallPhase::Idle);
        // A stale report from our own media stack does nothing either.
        assert!(ada.media_failed(other, CallEnd::MediaFailed, 90).is_empty());
        assert!(ada.local_description(other, "x".into()).is_empty());
    }

    #[test]
    fn device_failures_end_the_call_on_both_sides_in_words() {
        let (mut ada, mut bob) = (Call::new(), Call::new());
        let invite = ada.start(CallId(5), false, 0).unwrap();
        deliver(&invite, &mut bob, 0);
        let accepted = bob.accept(false, 1).unwrap();
        deliver(&accepted, &mut ada, 2);
        // Bob's browser refuses the microphone.
        let failed = bob.media_failed(CallId(5), CallEnd::PermissionDenied, 3);
        assert_eq!(ended(&failed), Some(CallEnd::PermissionDenied));
        assert!(failed.contains(&CallEffect::Media(MediaOp::Stop { call: CallId(5) })));
        let on_ada = deliver(&failed, &mut ada, 4);
        assert_eq!(ended(&on_ada), Some(CallEnd::PeerPermissionDenied));
        assert!(on_ada.contains(&CallEffect::Media(MediaOp::Stop { call: CallId(5) })));
        assert!(CallEnd::PermissionDenied.to_string().contains("Allow it"));
    }

    #[test]
    fn media_that_never_connects_fails_and_a_leaving_peer_ends_the_call() {
        let (mut ada, mut bob) = (Call::new(), Call::new());
        deliver(&ada.start(CallId(8), false, 0).unwrap(), &mut bob, 0);
        let accepted = bob.accept(false, 0).unwrap();
        deliver(&accepted, &mut ada, 0);
        let timeout = ada.tick(CONNECT_MS);
        assert_eq!(ended(&timeout), Some(CallEnd::MediaFailed));
        assert_eq!(
            ended(&deliver(&timeout, &mut bob, CONNECT_MS)),
            Some(CallEnd::MediaFailed)
        );

        let (mut ada, _bob, id) = connected_pair();
        let left = ada.peer_left(200);
        assert!(sent(&left).is_empty(), "nobody to tell");
        assert!(left.contains(&CallEffect::Media(MediaOp::Stop { call: id })));
        assert_eq!(ended(&left), Some(CallEnd::PeerLeft));
    }

    #[test]
    fn an_app_without_call_media_says_so_at_once() {
        let (mut ada, mut desk) = (Call::new(), Call::new());
        deliver(&ada.start(CallId(12), false, 0).unwrap(), &mut desk, 0);
        let refused = desk.decline_as(DeclineReason::Unsupported, 1).unwrap();
        assert_eq!(ended(&refused), Some(CallEnd::CannotCall));
        assert!(CallEnd::CannotCall.to_string().contains("in a browser"));
        let told = deliver(&refused, &mut ada, 2);
        assert_eq!(ended(&told), Some(CallEnd::PeerCannotCall));
        assert_eq!(ada.phase(), CallPhase::Idle);
    }

    #[test]
    fn hanging_up_while_ringing_declines() {
        let (mut ada, mut bob) = (Call::new(), Call::new());
        deliver(&ada.start(CallId(4), true, 0).unwrap(), &mut bob, 0);
        let gone = bob.hang_up(1);
        assert_eq!(ended(&gone), Some(CallEnd::Declined));
        assert!(
            !gone
                .iter()
                .any(|e| matches!(e, CallEffect::Media(MediaOp::Stop { .. })))
        );
        assert_eq!(
            ended(&deliver(&gone, &mut ada, 2)),
            Some(CallEnd::PeerDeclined)
        );
        assert_eq!(bob.accept(false, 3), Err(CallError::NotRinging));
        assert_eq!(ada.start(CallId(6), false, 4).map(|_| ()), Ok(()));
        assert_eq!(
            ada.start(CallId(7), false, 5).map(|_| ()),
            Err(CallError::Busy)
        );
    }
}
