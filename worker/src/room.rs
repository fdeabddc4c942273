//! The room's decisions, with no runtime in sight.
//!
//! Who may join, whom a frame goes to, when a socket is closed and why, when a room expires: all of
//! it is decided here by plain functions over plain data, so it runs (and is unit-tested) natively.
//! The Durable Object adapter (`runtime::durable`) only feeds events in and carries the resulting
//! actions out. Keeping storage off this path is deliberate: a storage write per relayed frame was
//! measured to be the throughput knee of a relay object, so nothing here ever asks for one.

use std::collections::{BTreeMap, BTreeSet};

use duet_shared::api::{
    CLIENT_ICE_BURST, CLIENT_ICE_PER_SECOND, CLIENT_JOIN_BURST, CLIENT_JOINS_PER_SECOND, ErrorCode,
    MAX_CANDIDATE_BYTES, MAX_FRAME_BYTES, MAX_SDP_BYTES, ROOM_CAPACITY, ROOM_ICE_BURST,
    ROOM_ICE_PER_SECOND, ROOM_JOIN_BURST, ROOM_JOINS_PER_SECOND, close,
};
use duet_shared::trust::{JOIN_PROOF_SKEW_MS, PublicKey};
use matchbox_protocol::{JsonPeerEvent, JsonPeerRequest, PeerId, PeerRequest};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a connected socket remembers about itself. Stored as the WebSocket's attachment so that it
/// survives the object being hibernated and woken again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The id matchbox knows this socket by (sent in `IdAssigned`).
    pub peer: PeerId,
    /// The client's stable identity: its `?identity=` UUID, or for a Duet client one derived
    /// from its room key.
    pub identity: Uuid,
    /// Salted hash of the client's IP address, if the edge told us one. Never the address itself.
    pub ip_hash: Option<String>,
    /// Set once the server has said goodbye to this socket (kick, ban, takeover, error). A socket
    /// can linger in the runtime's list while its close handshake finishes; it no longer counts.
    #[serde(default)]
    pub gone: bool,
    /// When the socket joined (ms since the epoch), for the owner's list of who holds the
    /// seats. 0 for a socket that joined before it was recorded.
    #[serde(default)]
    pub joined_ms: u64,
    /// The room key a Duet client proved it holds (see [`duet_shared::trust::JoinProof`]);
    /// `None` for a plain matchbox client, which named only a UUID.
    #[serde(default)]
    pub key: Option<PublicKey>,
    /// The time of the proof this seat was taken with: only a newer proof by the same key
    /// replaces it.
    #[serde(default)]
    pub proof_ms: u64,
}

/// Who a joining socket says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A plain matchbox client: a UUID anyone who learns it can repeat.
    Plain(Uuid),
    /// A Duet client whose proof for `key`, signed at `proof_ms`, verified.
    Keyed {
        /// Its room key.
        key: PublicKey,
        /// When the proof was signed.
        proof_ms: u64,
    },
}

impl Claim {
    /// The UUID the seat is recorded under.
    pub fn identity(&self) -> Uuid {
        match self {
            Claim::Plain(id) => *id,
            Claim::Keyed { key, .. } => key.uuid(),
        }
    }

    /// The key, for a keyed claim.
    pub fn key(&self) -> Option<PublicKey> {
        match self {
            Claim::Plain(_) => None,
            Claim::Keyed { key, .. } => Some(*key),
        }
    }

    /// When its proof was signed (0 for a plain claim, which has none).
    pub fn proof_ms(&self) -> u64 {
        match self {
            Claim::Plain(_) => 0,
            Claim::Keyed { proof_ms, .. } => *proof_ms,
        }
    }
}

/// Everything the room persists: written on create, ban and join/leave, never per message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// When the room was created (ms since the epoch).
    pub created_ms: u64,
    /// Hex SHA-256 of the owner key. The key itself is never stored.
    pub owner_key_hash: String,
    /// Per-room random salt for IP hashes, so hashes cannot be joined across rooms.
    pub ip_salt: String,
    /// Last join or leave (ms since the epoch); the idle clock starts here.
    pub last_active_ms: u64,
    /// The room key of the owner's device, once the owner reserved a seat
    /// (`PUT /api/rooms/{room}/owner-seat`).
    #[serde(default)]
    pub owner_seat: Option<PublicKey>,
    /// Whether anybody ever joined. A room nobody joins lives only [the short TTL]
    /// (`UNJOINED_ROOM_TTL_SECS`), so minted rooms nobody uses do not pile up. Records from
    /// before this field count as joined.
    #[serde(default = "joined_before_the_field")]
    pub ever_joined: bool,
}

fn joined_before_the_field() -> bool {
    true
}

/// The room's ban list: room keys, identities and salted IP hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bans {
    /// Banned plain-client identities.
    pub identities: BTreeSet<Uuid>,
    /// Banned salted IP hashes (catches a banned person who mints a new identity).
    pub ip_hashes: BTreeSet<String>,
    /// Banned room keys: a Duet client is banned by the key it proved, which nobody else holds.
    #[serde(default)]
    pub keys: BTreeSet<PublicKey>,
}

impl Bans {
    /// Adds a member's key (or, for a plain client, its identity) and (if known) IP hash.
    pub fn ban(&mut self, member: &Member) {
        match member.key {
            Some(key) => {
                self.keys.insert(key);
            }
            None => {
                self.identities.insert(member.identity);
            }
        }
        if let Some(hash) = &member.ip_hash {
            self.ip_hashes.insert(hash.clone());
        }
    }

    /// Whether the claim itself (its key or plain identity) is banned.
    fn names(&self, claim: &Claim) -> bool {
        match claim {
            Claim::Plain(id) => self.identities.contains(id),
            Claim::Keyed { key, .. } => self.keys.contains(key),
        }
    }

    /// Whether a newcomer with this claim and IP hash is refused.
    pub fn covers(&self, claim: &Claim, ip_hash: Option<&str>) -> bool {
        self.names(claim) || ip_hash.is_some_and(|h| self.ip_hashes.contains(h))
    }

    /// True when nobody is banned.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.ip_hashes.is_empty() && self.keys.is_empty()
    }
}

/// The newest join proof the room took per key, for the last [`JOIN_PROOF_SKEW_MS`]: a proof
/// is taken once. Older entries are dropped, as their proofs are refused as stale anyway, so
/// the list stays as short as the join rate limits allow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenProofs(pub BTreeMap<PublicKey, u64>);

/// Most entries [`SeenProofs`] keeps, whatever the rate limits: the oldest go first.
pub const MAX_SEEN_PROOFS: usize = 512;

impl SeenProofs {
    /// The newest proof time taken for `key`.
    pub fn last(&self, key: &PublicKey) -> Option<u64> {
        self.0.get(key).copied()
    }

    /// Records a taken proof and forgets what can no longer verify.
    pub fn record(&mut self, key: PublicKey, proof_ms: u64, now_ms: u64) {
        let newest = self.0.entry(key).or_insert(proof_ms);
        *newest = (*newest).max(proof_ms);
        self.0
            .retain(|_, ms| ms.saturating_add(JOIN_PROOF_SKEW_MS) >= now_ms);
        while self.0.len() > MAX_SEEN_PROOFS {
            let Some(oldest) = self.0.iter().min_by_key(|(_, ms)| **ms).map(|(k, _)| *k) else {
                break;
            };
            self.0.remove(&oldest);
        }
    }
}

/// The answer to "may this socket join?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinDecision {
    /// Let it in. If `replaces` is set, that older socket of the same identity must be closed first.
    Admit {
        /// The stale socket this one takes over from (reload, ghost connection).
        replaces: Option<PeerId>,
    },
    /// The room's owner, back to a full room: that seat (the newest other one) makes way.
    Reclaim {
        /// The seat that is closed for the owner.
        displaces: PeerId,
    },
    /// Refuse before upgrading, with this reason.
    Refuse(ErrorCode),
}

/// Decides whether a socket making `claim` (from `ip_hash`) may join a room whose live members
/// are `present`. `seen` is the newest proof the room took for the claim's key, if any.
///
/// A returning identity takes its old seat instead of counting as a third person, unless that
/// identity itself is banned. For a Duet client that means the same room key with a newer proof
/// than any the room took for it; a plain client's UUID never displaces a key holder. The IP ban
/// is not applied to a returning identity: the person already in the room is not the one who was
/// banned, even when they share a network. `owner` is the room key the owner reserved a seat for:
/// a join proven by it is never refused as full; the newest other seat makes way.
pub fn decide_join(
    present: &[Member],
    bans: &Bans,
    claim: &Claim,
    ip_hash: Option<&str>,
    seen: Option<u64>,
    owner: Option<&PublicKey>,
) -> JoinDecision {
    let live: Vec<&Member> = present.iter().filter(|m| !m.gone).collect();
    if bans.names(claim) {
        return JoinDecision::Refuse(ErrorCode::Banned);
    }
    let returning = match claim {
        Claim::Plain(id) => live.iter().find(|m| m.key.is_none() && m.identity == *id),
        Claim::Keyed { key, proof_ms } => {
            let old = live.iter().find(|m| m.key == Some(*key));
            let newest = old.map(|m| m.proof_ms).max(seen);
            if newest.is_some_and(|newest| *proof_ms <= newest) {
                return JoinDecision::Refuse(ErrorCode::ProofReused);
            }
            old
        }
    };
    if let Some(old) = returning {
        return JoinDecision::Admit {
            replaces: Some(old.peer),
        };
    }
    if bans.covers(claim, ip_hash) {
        return JoinDecision::Refuse(ErrorCode::Banned);
    }
    if live.len() >= ROOM_CAPACITY as usize {
        let is_owner = owner.is_some_and(|owner| claim.key().as_ref() == Some(owner));
        let newest_other = live
            .iter()
            .filter(|m| m.key.as_ref() != owner)
            .max_by_key(|m| m.joined_ms);
        return match (is_owner, newest_other) {
            (true, Some(other)) => JoinDecision::Reclaim {
                displaces: other.peer,
            },
            _ => JoinDecision::Refuse(ErrorCode::RoomFull),
        };
    }
    JoinDecision::Admit { replaces: None }
}

/// A frame as the runtime hands it over.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame of this many bytes.
    Binary(usize),
}

/// Why a frame ends its socket. Each maps to a WebSocket close code and a short reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is over the 65536-byte limit")]
    TooBig(usize),
    /// Binary frames are not part of matchbox's protocol.
    #[error("binary frames are not supported; send matchbox JSON text")]
    Binary,
    /// Text that is not a matchbox `PeerRequest`.
    #[error("not a matchbox request ({0})")]
    Invalid(String),
    /// A signal whose data is not what matchbox peers exchange.
    #[error("bad signal: {0}")]
    BadSignal(String),
    /// The token bucket ran dry.
    #[error("too many messages; slow down")]
    Flood,
}

impl FrameError {
    /// The close code this error ends the socket with.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooBig(_) => close::TOO_BIG,
            FrameError::Binary => close::UNSUPPORTED_DATA,
            FrameError::Invalid(_) | FrameError::BadSignal(_) => close::INVALID_FRAME,
            FrameError::Flood => close::POLICY_VIOLATION,
        }
    }

    /// The close reason: the error's words, cut to the 123 bytes a close frame can carry.
    pub fn close_reason(&self) -> String {
        truncate_reason(&self.to_string())
    }
}

/// What to do with a well-formed frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// Send `frame` to `to`.
    Relay {
        /// Receiving peer.
        to: PeerId,
        /// The exact `PeerEvent::Signal` text, serialized as stock matchbox does.
        frame: String,
    },
    /// Nothing to send: a keep-alive, or a signal to yourself or to a peer that is not here
    /// (which happens legitimately when the other side just left), so it is dropped quietly.
    Drop(DropReason),
}

/// Why a valid frame produced nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `"KeepAlive"`.
    KeepAlive,
    /// A signal addressed to its own sender.
    ToSelf,
    /// A signal to a peer id that is not (or no longer) in the room.
    AbsentPeer,
}

/// The kind of a relayed `Signal` frame (`Offer`, `Answer`, `IceCandidate`: the key of its
/// `data`), for the opt-in diagnostic log; `other` for anything else.
pub fn signal_kind(frame: &str) -> String {
    let kind = serde_json::from_str::<serde_json::Value>(frame)
        .ok()
        .and_then(|v| {
            v.get("Signal")?
                .get("data")?
                .as_object()?
                .keys()
                .next()
                .cloned()
        });
    kind.unwrap_or_else(|| "other".into())
}

/// Routes one frame from `sender` given the live peers of the room.
///
/// The relayed frame is built from `matchbox_protocol`'s own types and serializer, so it is the
/// same bytes stock `matchbox_signaling` would send.
pub fn route_frame(
    sender: PeerId,
    live: &[PeerId],
    frame: Frame<'_>,
) -> Result<Routed, FrameError> {
    let text = match frame {
        Frame::Binary(len) if len > MAX_FRAME_BYTES => return Err(FrameError::TooBig(len)),
        Frame::Binary(_) => return Err(FrameError::Binary),
        Frame::Text(t) if t.len() > MAX_FRAME_BYTES => return Err(FrameError::TooBig(t.len())),
        Frame::Text(t) => t,
    };
    let request: JsonPeerRequest =
        serde_json::from_str(text).map_err(|e| FrameError::Invalid(e.to_string()))?;
    match request {
        PeerRequest::KeepAlive => Ok(Routed::Drop(DropReason::KeepAlive)),
        PeerRequest::Signal { receiver, data } => {
            // Checked first: a malformed signal is an offence whoever it is addressed to.
            check_signal(&data).map_err(FrameError::BadSignal)?;
            if receiver == sender {
                Ok(Routed::Drop(DropReason::ToSelf))
            } else if !live.contains(&receiver) {
                Ok(Routed::Drop(DropReason::AbsentPeer))
            } else {
                Ok(Routed::Relay {
                    to: receiver,
                    frame: event_text(&JsonPeerEvent::Signal { sender, data }),
                })
            }
        }
    }
}

/// Checks a signal's data is what matchbox peers exchange: `{"Offer": sdp}`, `{"Answer": sdp}`
/// or `{"IceCandidate": json}`, each a string within its limit. The receiving client parses it
/// with its WebRTC stack; anything else can only be an attack on that parser.
pub fn check_signal(data: &serde_json::Value) -> Result<(), String> {
    let Some(object) = data.as_object().filter(|o| o.len() == 1) else {
        return Err(r#"data must be {"Offer"|"Answer"|"IceCandidate": string}"#.into());
    };
    let (kind, value) = object.iter().next().expect("one entry, checked above");
    let limit = match kind.as_str() {
        "Offer" | "Answer" => MAX_SDP_BYTES,
        "IceCandidate" => MAX_CANDIDATE_BYTES,
        _ => return Err(format!("unknown signal kind {:.20?}", kind)),
    };
    match value.as_str() {
        Some(text) if text.len() <= limit => Ok(()),
        Some(text) => Err(format!(
            "{kind} of {} bytes is over its {limit}-byte limit",
            text.len()
        )),
        None => Err(format!("{kind} must be a string")),
    }
}

/// Serializes a server event exactly as `matchbox_signaling` does (`serde_json::to_string`).
pub fn event_text(event: &JsonPeerEvent) -> String {
    // Serializing these plain enums cannot fail: no maps with non-string keys, no custom impls.
    serde_json::to_string(event).unwrap_or_default()
}

/// A token bucket: `burst` events back to back, refilled at `per_second`.
///
/// Per socket it is flood protection for frames ([`RateLimiter::new`]); per room and per client
/// address it limits joins and ICE requests ([`RequestLimits`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimiter {
    tokens: f64,
    last_ms: f64,
    burst: f64,
    per_second: f64,
}

impl RateLimiter {
    /// Frames a socket may send back to back. Generous enough for a WebRTC negotiation burst (an
    /// offer plus dozens of ICE candidates), tight enough that a loop sending garbage is cut off.
    pub const BURST: f64 = 200.0;
    /// Frames per second refilled.
    pub const PER_SECOND: f64 = 50.0;

    /// A full frame bucket at time `now_ms`.
    pub fn new(now_ms: f64) -> Self {
        Self::with(Self::BURST, Self::PER_SECOND, now_ms)
    }

    /// A full bucket of `burst` tokens refilled at `per_second`, at time `now_ms`.
    pub fn with(burst: f64, per_second: f64, now_ms: f64) -> Self {
        Self {
            tokens: burst,
            last_ms: now_ms,
            burst,
            per_second,
        }
    }

    fn refill(&mut self, now_ms: f64) {
        let elapsed = ((now_ms - self.last_ms) / 1000.0).max(0.0);
        self.last_ms = now_ms.max(self.last_ms);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
    }

    /// Whether a token is there now, without taking it.
    pub fn has_token(&mut self, now_ms: f64) -> bool {
        self.refill(now_ms);
        self.tokens >= 1.0
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now_ms: f64) -> bool {
        if self.has_token(now_ms) {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again (so forgetting it loses nothing).
    pub fn is_full(&mut self, now_ms: f64) -> bool {
        self.refill(now_ms);
        self.tokens >= self.burst
    }
}

/// Request limits of one room, for one kind of request (joins, ICE servers): a bucket for the
/// room and one per client address (its salted hash; clients without one share a bucket). Two
/// tabs on one machine are two requests, well within.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    room: RateLimiter,
    clients: std::collections::HashMap<String, RateLimiter>,
    client_burst: f64,
    client_per_second: f64,
}

impl RequestLimits {
    /// Most client buckets kept: past this, full buckets are forgotten (they hold no debt).
    const MAX_CLIENTS: usize = 256;

    /// Fresh join limits at `now_ms`.
    pub fn joins(now_ms: f64) -> Self {
        Self::with(
            (ROOM_JOIN_BURST, ROOM_JOINS_PER_SECOND),
            (CLIENT_JOIN_BURST, CLIENT_JOINS_PER_SECOND),
            now_ms,
        )
    }

    /// Fresh limits on asking for ICE servers (which may mint TURN credentials) at `now_ms`.
    pub fn ice(now_ms: f64) -> Self {
        Self::with(
            (ROOM_ICE_BURST, ROOM_ICE_PER_SECOND),
            (CLIENT_ICE_BURST, CLIENT_ICE_PER_SECOND),
            now_ms,
        )
    }

    fn with(room: (f64, f64), client: (f64, f64), now_ms: f64) -> Self {
        Self {
            room: RateLimiter::with(room.0, room.1, now_ms),
            clients: Default::default(),
            client_burst: client.0,
            client_per_second: client.1,
        }
    }

    /// Whether a request from `client` may go ahead at `now_ms`; takes a token from both
    /// buckets if so, from neither if not (a client cut off does not drain the room's budget).
    pub fn allow(&mut self, client: Option<&str>, now_ms: f64) -> bool {
        if self.clients.len() >= Self::MAX_CLIENTS {
            self.clients.retain(|_, bucket| !bucket.is_full(now_ms));
        }
        let client = client.unwrap_or("").to_owned();
        let full = self.clients.len() >= Self::MAX_CLIENTS && !self.clients.contains_key(&client);
        let (burst, per_second) = (self.client_burst, self.client_per_second);
        let bucket = self
            .clients
            .entry(client)
            .or_insert_with(|| RateLimiter::with(burst, per_second, now_ms));
        if full || !bucket.has_token(now_ms) || !self.room.has_token(now_ms) {
            return false;
        }
        bucket.allow(now_ms) && self.room.allow(now_ms)
    }
}

/// What the idle alarm should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmDecision {
    /// Nobody has been here for the whole idle period: delete everything the room stored.
    Expire,
    /// Look again at this time (ms since the epoch).
    CheckAt(u64),
}

/// The two lifetimes of an empty room (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// After its last join or leave, for a room somebody joined.
    pub idle_ms: u64,
    /// After its creation, for a room nobody ever joined.
    pub unjoined_ms: u64,
}

/// Decides an idle alarm at `now_ms` for `record`'s room with `live_members` in it.
pub fn on_alarm(
    now_ms: u64,
    record: &RoomRecord,
    live_members: usize,
    lifetimes: Lifetimes,
) -> AlarmDecision {
    if live_members > 0 {
        return AlarmDecision::CheckAt(now_ms + lifetimes.idle_ms);
    }
    let (since, ttl) = if record.ever_joined {
        (record.last_active_ms, lifetimes.idle_ms)
    } else {
        (record.created_ms, lifetimes.unjoined_ms)
    };
    let due = since.saturating_add(ttl);
    if now_ms >= due {
        AlarmDecision::Expire
    } else {
        AlarmDecision::CheckAt(due)
    }
}

/// Cuts a close reason to the 123 bytes RFC 6455 allows, on a character boundary.
pub fn truncate_reason(reason: &str) -> String {
    const MAX: usize = 123;
    if reason.len() <= MAX {
        return reason.to_owned();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_shared::trust::DeviceKey;

    fn member(identity: u128, ip: Option<&str>) -> Member {
        Member {
            peer: PeerId(Uuid::new_v4()),
            identity: Uuid::from_u128(identity),
            ip_hash: ip.map(str::to_owned),
            gone: false,
            joined_ms: 0,
            key: None,
            proof_ms: 0,
        }
    }

    fn plain(identity: u128) -> Claim {
        Claim::Plain(Uuid::from_u128(identity))
    }

    #[test]
    fn first_and_second_are_admitted_third_is_refused() {
        let bans = Bans::default();
        let a = member(1, Some("ip"));
        let b = member(2, Some("ip"));
        assert_eq!(
            decide_join(
                &[],
                &bans,
                &Claim::Plain(a.identity),
                Some("ip"),
                None,
                None
            ),
            JoinDecision::Admit { replaces: None }
        );
        assert_eq!(
            decide_join(
                std::slice::from_ref(&a),
                &bans,
                &Claim::Plain(b.identity),
                Some("ip"),
                None,
                None
            ),
            JoinDecision::Admit { replaces: None }
        );
        assert_eq!(
            decide_join(&[a, b], &bans, &plain(3), Some("ip"), None, None),
            JoinDecision::Refuse(ErrorCode::RoomFull)
        );
    }

    #[test]
    fn returning_identity_takes_over_instead_of_being_third() {
        let a = member(1, None);
        let b = member(2, None);
        let decision = decide_join(
            &[a.clone(), b],
            &Bans::default(),
            &Claim::Plain(a.identity),
            None,
            None,
            None,
        );
        assert_eq!(
            decision,
            JoinDecision::Admit {
                replaces: Some(a.peer)
            }
        );
    }

    #[test]
    fn gone_sockets_do_not_count() {
        let mut a = member(1, None);
        a.gone = true;
        let b = member(2, None);
        assert_eq!(
            decide_join(&[a, b], &Bans::default(), &plain(3), None, None, None),
            JoinDecision::Admit { replaces: None }
        );
    }

    #[test]
    fn bans_cover_identity_and_ip_hash() {
        let banned = member(7, Some("h1"));
        let mut bans = Bans::default();
        bans.ban(&banned);
        // Same identity from elsewhere.
        assert_eq!(
            decide_join(
                &[],
                &bans,
                &Claim::Plain(banned.identity),
                Some("other"),
                None,
                None
            ),
            JoinDecision::Refuse(ErrorCode::Banned)
        );
        // New identity from the banned address.
        assert_eq!(
            decide_join(&[], &bans, &plain(8), Some("h1"), None, None),
            JoinDecision::Refuse(ErrorCode::Banned)
        );
        // Somebody else entirely.
        assert_eq!(
            decide_join(&[], &bans, &plain(9), Some("h2"), None, None),
            JoinDecision::Admit { replaces: None }
        );
        // Banned beats full: the banned person learns why, not a misleading "full".
        let a = member(1, None);
        let b = member(2, None);
        assert_eq!(
            decide_join(
                &[a, b],
                &bans,
                &Claim::Plain(banned.identity),
                None,
                None,
                None
            ),
            JoinDecision::Refuse(ErrorCode::Banned)
        );
    }

    #[test]
    fn present_identity_sharing_a_banned_network_may_reconnect() {
        let stayer = member(1, Some("shared-nat"));
        let mut bans = Bans::default();
        bans.ban(&member(2, Some("shared-nat")));
        assert_eq!(
            decide_join(
                std::slice::from_ref(&stayer),
                &bans,
                &Claim::Plain(stayer.identity),
                Some("shared-nat"),
                None,
                None
            ),
            JoinDecision::Admit {
                replaces: Some(stayer.peer)
            }
        );
    }

    fn keyed(byte: u8, proof_ms: u64) -> Claim {
        let key = DeviceKey::from_seed([byte; 32]).room_key("room").public();
        Claim::Keyed { key, proof_ms }
    }

    fn seated(claim: &Claim, ip: Option<&str>) -> Member {
        let Claim::Keyed { key, proof_ms } = *claim else {
            panic!("a keyed claim");
        };
        Member {
            key: Some(key),
            proof_ms,
            identity: key.uuid(),
            ..member(0, ip)
        }
    }

    #[test]
    fn a_key_replaces_its_own_seat_only_with_a_newer_proof() {
        let ada = seated(&keyed(1, 100), None);
        let bob = seated(&keyed(2, 100), None);
        let room = [ada.clone(), bob];
        assert_eq!(
            decide_join(
                &room,
                &Bans::default(),
                &keyed(1, 101),
                None,
                Some(100),
                None
            ),
            JoinDecision::Admit {
                replaces: Some(ada.peer)
            },
            "a reload signs anew"
        );
        for replayed in [100, 99] {
            assert_eq!(
                decide_join(
                    &room,
                    &Bans::default(),
                    &keyed(1, replayed),
                    None,
                    Some(100),
                    None
                ),
                JoinDecision::Refuse(ErrorCode::ProofReused),
                "a copied proof never takes the seat"
            );
        }
        // Taken once even after its holder left: the room remembers it.
        assert_eq!(
            decide_join(&[], &Bans::default(), &keyed(1, 100), None, Some(100), None),
            JoinDecision::Refuse(ErrorCode::ProofReused)
        );
    }

    #[test]
    fn a_plain_uuid_never_displaces_a_key_holder() {
        let ada = seated(&keyed(1, 100), None);
        let bob = member(2, None);
        let room = [ada.clone(), bob];
        assert_eq!(
            decide_join(
                &room,
                &Bans::default(),
                &Claim::Plain(ada.identity),
                None,
                None,
                None
            ),
            JoinDecision::Refuse(ErrorCode::RoomFull)
        );
        assert_eq!(
            decide_join(
                std::slice::from_ref(&ada),
                &Bans::default(),
                &Claim::Plain(ada.identity),
                None,
                None,
                None
            ),
            JoinDecision::Admit { replaces: None },
            "it takes a free seat as somebody else"
        );
    }

    #[test]
    fn a_ban_names_the_key_and_spares_the_innocent() {
        let ada = seated(&keyed(1, 100), Some("ada-net"));
        let mallory = seated(&keyed(3, 100), Some("shared"));
        let mut bans = Bans::default();
        bans.ban(&mallory);
        assert!(bans.identities.is_empty(), "a key holder is banned by key");
        assert_eq!(
            decide_join(&[], &bans, &keyed(3, 200), Some("elsewhere"), None, None),
            JoinDecision::Refuse(ErrorCode::Banned)
        );
        // Mallory on a new network with a new key is caught by the address, but not Ada.
        assert_eq!(
            decide_join(&[], &bans, &keyed(4, 200), Some("shared"), None, None),
            JoinDecision::Refuse(ErrorCode::Banned)
        );
        assert_eq!(
            decide_join(
                std::slice::from_ref(&ada),
                &bans,
                &keyed(1, 200),
                Some("shared"),
                Some(100),
                None
            ),
            JoinDecision::Admit {
                replaces: Some(ada.peer)
            },
            "Ada on the banned network keeps her seat"
        );
        // Wearing Ada's public key without her signature gets Mallory nothing: the proof
        // does not verify (see the shared crate's tests), and a copy is refused above.
    }

    #[test]
    fn the_owners_key_always_finds_a_seat_and_the_newest_other_makes_way() {
        let owner = keyed(9, 100);
        let Claim::Keyed { key: owner_key, .. } = owner else {
            unreachable!()
        };
        let first = Member {
            joined_ms: 1,
            ..member(1, None)
        };
        let newest = Member {
            joined_ms: 2,
            ..member(2, None)
        };
        let full = [first.clone(), newest.clone()];
        let bans = Bans::default();
        assert_eq!(
            decide_join(&full, &bans, &owner, None, None, Some(&owner_key)),
            JoinDecision::Reclaim {
                displaces: newest.peer
            }
        );
        // Nobody else gets that right, and without a reservation the owner is refused too.
        assert_eq!(
            decide_join(&full, &bans, &keyed(5, 100), None, None, Some(&owner_key)),
            JoinDecision::Refuse(ErrorCode::RoomFull)
        );
        assert_eq!(
            decide_join(&full, &bans, &owner, None, None, None),
            JoinDecision::Refuse(ErrorCode::RoomFull)
        );
        // A banned owner key is still banned.
        let mut banned = Bans::default();
        banned.keys.insert(owner_key);
        assert_eq!(
            decide_join(&full, &banned, &owner, None, None, Some(&owner_key)),
            JoinDecision::Refuse(ErrorCode::Banned)
        );
    }

    #[test]
    fn seen_proofs_forget_what_can_no_longer_verify() {
        let mut seen = SeenProofs::default();
        let Claim::Keyed { key: a, .. } = keyed(1, 0) else {
            unreachable!()
        };
        let Claim::Keyed { key: b, .. } = keyed(2, 0) else {
            unreachable!()
        };
        seen.record(a, 1_000, 1_000);
        seen.record(a, 500, 1_000);
        assert_eq!(seen.last(&a), Some(1_000), "only the newest counts");
        seen.record(b, 1_000 + JOIN_PROOF_SKEW_MS, 1_000 + JOIN_PROOF_SKEW_MS);
        assert_eq!(seen.last(&a), Some(1_000), "still within the window");
        seen.record(b, 1_001 + JOIN_PROOF_SKEW_MS, 1_001 + JOIN_PROOF_SKEW_MS);
        assert_eq!(seen.last(&a), None, "past the window: stale anyway");
        for i in 0..(MAX_SEEN_PROOFS as u64 + 10) {
            let Claim::Keyed { key, .. } = keyed((i % 250) as u8, 0) else {
                unreachable!()
            };
            let mut k = key;
            k.0[31] ^= (i / 250) as u8;
            seen.0.insert(k, 5_000_000 - i);
        }
        seen.record(a, 5_000_000, 5_000_000);
        assert!(seen.0.len() <= MAX_SEEN_PROOFS);
        assert_eq!(seen.last(&a), Some(5_000_000));
    }

    #[test]
    fn signal_is_relayed_with_sender_and_untouched_data() {
        let a = PeerId(Uuid::from_u128(1));
        let b = PeerId(Uuid::from_u128(2));
        let text = format!(
            r#"{{"Signal":{{"receiver":"{}","data":{{"Offer":"v=0 sdp"}}}}}}"#,
            b.0
        );
        let routed = route_frame(a, &[a, b], Frame::Text(&text)).unwrap();
        assert_eq!(
            routed,
            Routed::Relay {
                to: b,
                frame: format!(
                    r#"{{"Signal":{{"sender":"{}","data":{{"Offer":"v=0 sdp"}}}}}}"#,
                    a.0
                )
            }
        );
    }

    #[test]
    fn the_diagnostic_log_names_a_signal_by_kind_only() {
        let frame = r#"{"Signal":{"sender":"x","data":{"IceCandidate":"candidate:1 1 udp"}}}"#;
        assert_eq!(signal_kind(frame), "IceCandidate");
        assert_eq!(
            signal_kind(r#"{"Signal":{"sender":"x","data":1}}"#),
            "other"
        );
        assert_eq!(signal_kind("not json"), "other");
    }

    #[test]
    fn keepalive_self_and_absent_are_dropped() {
        let a = PeerId(Uuid::from_u128(1));
        let b = PeerId(Uuid::from_u128(2));
        assert_eq!(
            route_frame(a, &[a], Frame::Text(r#""KeepAlive""#)),
            Ok(Routed::Drop(DropReason::KeepAlive))
        );
        let to_self = format!(
            r#"{{"Signal":{{"receiver":"{}","data":{{"Answer":"x"}}}}}}"#,
            a.0
        );
        assert_eq!(
            route_frame(a, &[a, b], Frame::Text(&to_self)),
            Ok(Routed::Drop(DropReason::ToSelf))
        );
        let to_absent = format!(
            r#"{{"Signal":{{"receiver":"{}","data":{{"IceCandidate":"x"}}}}}}"#,
            Uuid::from_u128(9)
        );
        assert_eq!(
            route_frame(a, &[a, b], Frame::Text(&to_absent)),
            Ok(Routed::Drop(DropReason::AbsentPeer))
        );
    }

    #[test]
    fn bad_frames_map_to_close_codes() {
        let a = PeerId(Uuid::from_u128(1));
        let cases: Vec<(Frame, u16)> = vec![
            (Frame::Text("hello"), 1007),
            (Frame::Text(r#"{"Shout":1}"#), 1007),
            (
                Frame::Text(r#"{"Signal":{"receiver":"not-a-uuid","data":1}}"#),
                1007,
            ),
            (Frame::Binary(10), 1003),
            (Frame::Binary(MAX_FRAME_BYTES + 1), 1009),
        ];
        for (frame, code) in cases {
            let err = route_frame(a, &[a], frame).unwrap_err();
            assert_eq!(err.close_code(), code, "{frame:?}");
            assert!(err.close_reason().len() <= 123);
        }
        let big = "x".repeat(MAX_FRAME_BYTES + 1);
        assert_eq!(
            route_frame(a, &[a], Frame::Text(&big)).unwrap_err(),
            FrameError::TooBig(MAX_FRAME_BYTES + 1)
        );
    }

    #[test]
    fn only_offers_answers_and_candidates_of_bounded_size_are_relayed() {
        let a = PeerId(Uuid::from_u128(1));
        let b = PeerId(Uuid::from_u128(2));
        let signal = |data: serde_json::Value| {
            serde_json::json!({"Signal": {"receiver": b, "data": data}}).to_string()
        };
        for good in [
            serde_json::json!({"Offer": "v=0"}),
            serde_json::json!({"Answer": "x"}),
            serde_json::json!({"IceCandidate": "{\"candidate\":\"x\"}"}),
            serde_json::json!({"Offer": "o".repeat(MAX_SDP_BYTES)}),
        ] {
            let routed = route_frame(a, &[a, b], Frame::Text(&signal(good.clone())));
            assert!(matches!(routed, Ok(Routed::Relay { .. })), "{good}");
        }
        for bad in [
            serde_json::json!(1),
            serde_json::json!("candidate:1"),
            serde_json::json!(null),
            serde_json::json!({}),
            serde_json::json!({"Offer": 5}),
            serde_json::json!({"Offer": "x", "Answer": "y"}),
            serde_json::json!({"Shout": "x"}),
            serde_json::json!({"Offer": "o".repeat(MAX_SDP_BYTES + 1)}),
            serde_json::json!({"IceCandidate": "c".repeat(MAX_CANDIDATE_BYTES + 1)}),
        ] {
            let err = route_frame(a, &[a, b], Frame::Text(&signal(bad.clone()))).unwrap_err();
            assert!(matches!(err, FrameError::BadSignal(_)), "{bad}: {err:?}");
            assert_eq!(err.close_code(), 1007);
            assert!(err.close_reason().starts_with("bad signal"), "{bad}");
        }
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_refills() {
        let mut limiter = RateLimiter::new(0.0);
        let allowed = (0..1000).filter(|_| limiter.allow(0.0)).count();
        assert_eq!(allowed, RateLimiter::BURST as usize);
        assert!(!limiter.allow(0.0));
        // One second later, PER_SECOND more.
        let refilled = (0..1000).filter(|_| limiter.allow(1000.0)).count();
        assert_eq!(refilled, RateLimiter::PER_SECOND as usize);
    }

    #[test]
    fn joins_are_limited_per_client_and_per_room() {
        let mut limits = RequestLimits::joins(0.0);
        let client_burst = CLIENT_JOIN_BURST as usize;
        let allowed = (0..100).filter(|_| limits.allow(Some("a"), 0.0)).count();
        assert_eq!(allowed, client_burst, "one client gets its burst");
        // Another address is not affected by the first one's loop...
        assert!(limits.allow(Some("b"), 0.0));
        // ...until the room's own budget is gone.
        let more = (0..100)
            .map(|i| format!("c{i}"))
            .filter(|c| limits.allow(Some(c), 0.0))
            .count();
        assert_eq!(more + client_burst + 1, ROOM_JOIN_BURST as usize);
        assert!(!limits.allow(Some("fresh"), 0.0));
        // Time refills both.
        let later = 1000.0 / CLIENT_JOINS_PER_SECOND;
        assert!(limits.allow(Some("a"), later));
        assert!(!limits.allow(Some("a"), later));
        // Clients without an address share one bucket.
        let mut limits = RequestLimits::joins(0.0);
        let anonymous = (0..100).filter(|_| limits.allow(None, 0.0)).count();
        assert_eq!(anonymous, client_burst);
    }

    fn record(created_ms: u64, last_active_ms: u64, ever_joined: bool) -> RoomRecord {
        RoomRecord {
            created_ms,
            owner_key_hash: String::new(),
            ip_salt: String::new(),
            last_active_ms,
            ever_joined,
            owner_seat: None,
        }
    }

    #[test]
    fn alarm_expires_only_idle_empty_rooms() {
        let ttl = Lifetimes {
            idle_ms: 1_000,
            unjoined_ms: 100,
        };
        let used = |last| record(0, last, true);
        assert_eq!(
            on_alarm(5_000, &used(0), 1, ttl),
            AlarmDecision::CheckAt(6_000)
        );
        assert_eq!(
            on_alarm(5_000, &used(4_500), 0, ttl),
            AlarmDecision::CheckAt(5_500)
        );
        assert_eq!(on_alarm(5_000, &used(4_000), 0, ttl), AlarmDecision::Expire);
        // Nobody ever joined: the short lifetime, from creation.
        assert_eq!(
            on_alarm(50, &record(0, 0, false), 0, ttl),
            AlarmDecision::CheckAt(100)
        );
        assert_eq!(
            on_alarm(100, &record(0, 0, false), 0, ttl),
            AlarmDecision::Expire
        );
        // A record from before the field counts as joined.
        let old: RoomRecord = serde_json::from_str(
            r#"{"created_ms":0,"owner_key_hash":"","ip_salt":"","last_active_ms":0}"#,
        )
        .unwrap();
        assert!(old.ever_joined);
    }

    #[test]
    fn reasons_fit_a_close_frame() {
        let long = "é".repeat(200);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123);
        assert!(long.starts_with(&cut));
    }
}
