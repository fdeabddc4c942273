//! The signaling service's HTTP API: request/response bodies, error codes and WebSocket close codes.
//!
//! The WebSocket frames themselves are matchbox's (`matchbox_protocol`), not ours, so that any stock
//! `matchbox_socket` client can use Duet's signaling. What lives here is everything around them:
//! creating rooms, asking who is in one, and moderation.

use matchbox_protocol::PeerId;
use serde::{Deserialize, Serialize};

/// The version of this HTTP API and of the signaling around matchbox's frames: raised whenever
/// a client of the previous version would misread an answer or be misread. A client compares it
/// with the server's (`GET /api/version`) and tells its person to update when they differ.
pub const API_VERSION: u16 = 1;

/// `GET /api/version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerVersion {
    /// The server's [`API_VERSION`].
    pub api: u16,
}

/// How many people a room holds. Duet is a room for exactly two.
pub const ROOM_CAPACITY: u32 = 2;

/// Random bytes in a room id. 128 bits makes ids unguessable; base64url keeps them link-safe.
pub const ROOM_ID_BYTES: usize = 16;

/// Length of a room id once encoded (base64url, no padding).
pub const ROOM_ID_LEN: usize = 22;

/// Random bytes in an owner key: 256 bits, because it is a bearer credential.
pub const OWNER_KEY_BYTES: usize = 32;

/// Largest signaling frame the server accepts. SDP offers are a few KiB; anything near this is abuse.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Largest SDP (offer or answer) relayed. A data-channel offer with its gathered candidates is
/// 1-3 KiB, a browser's audio+video offer under 10 KiB.
pub const MAX_SDP_BYTES: usize = 32 * 1024;

/// Largest ICE candidate relayed (the JSON of an `RTCIceCandidateInit`, typically ~200 bytes).
pub const MAX_CANDIDATE_BYTES: usize = 2 * 1024;

/// Joins one room accepts back to back, and the rate (per second) it refills at. A person
/// reloading joins once; a loop of joins makes the one waiting in the room start handshake after
/// handshake, so it is cut off with `429`.
pub const ROOM_JOIN_BURST: f64 = 20.0;
/// See [`ROOM_JOIN_BURST`]: one join every 3 s, sustained.
pub const ROOM_JOINS_PER_SECOND: f64 = 1.0 / 3.0;
/// Joins one client address may make to one room back to back (two tabs, reloads, reconnects).
pub const CLIENT_JOIN_BURST: f64 = 10.0;
/// See [`CLIENT_JOIN_BURST`]: one join every 6 s, sustained.
pub const CLIENT_JOINS_PER_SECOND: f64 = 1.0 / 6.0;

/// Requests for ICE servers one room answers back to back (each client asks once per
/// connection attempt), and the rate it refills at: a script cannot mint TURN credentials by the
/// thousand through one room.
pub const ROOM_ICE_BURST: f64 = 30.0;
/// See [`ROOM_ICE_BURST`]: one every 2 s, sustained.
pub const ROOM_ICE_PER_SECOND: f64 = 1.0 / 2.0;
/// Requests for ICE servers one client address may make to one room back to back.
pub const CLIENT_ICE_BURST: f64 = 8.0;
/// See [`CLIENT_ICE_BURST`]: one every 10 s, sustained.
pub const CLIENT_ICE_PER_SECOND: f64 = 1.0 / 10.0;
/// Longest life of TURN credentials the server hands out, in seconds.
pub const MAX_ICE_TTL_S: u32 = 3600;

/// `200` body of `GET /api/rooms/{room}/ice`: the STUN and TURN servers a client of this room
/// connects through, asked before it opens the signaling socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceConfig {
    /// In the shape of WebRTC's `RTCIceServer` list.
    pub ice_servers: Vec<IceServer>,
    /// How long the credentials in it stay valid, in seconds (at most [`MAX_ICE_TTL_S`]).
    pub ttl_s: u32,
}

/// One entry of [`IceConfig`]: STUN URLs alone, or TURN URLs with their credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServer {
    /// Whether any of its URLs is a TURN relay.
    pub fn is_turn(&self) -> bool {
        self.urls
            .iter()
            .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
    }
}

/// `201` body of `POST /api/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedRoom {
    /// The new room's id; the room link is `/r/{room}`.
    pub room: String,
    /// Secret that authorises kick/ban. Shown once: the server keeps only its hash.
    pub owner_key: String,
}

/// `200` body of `GET /api/rooms/{room}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's id, echoed.
    pub room: String,
    /// People connected right now.
    pub peers: u32,
    /// Always [`ROOM_CAPACITY`]; sent so clients need not hard-code it.
    pub capacity: u32,
}

/// `200` body of `GET /api/rooms/{room}/members` (owner key required): who holds the seats.
/// Peer ids only (what kick and ban name), never identities or addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMembers {
    /// Oldest first.
    pub members: Vec<SeatHolder>,
}

/// One seat of [`RoomMembers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatHolder {
    /// The socket's matchbox peer id.
    pub peer: PeerId,
    /// When it joined (ms since the epoch; 0 if the server did not record it).
    pub joined_ms: u64,
}

/// Body of `POST /api/rooms/{room}/kick` and `/ban`: which matchbox peer to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTarget {
    /// The peer id matchbox assigned to that socket (`IdAssigned`).
    pub peer: PeerId,
}

/// Body of `PUT /api/rooms/{room}/owner-seat` (owner key required): the room key (hex) of the
/// owner's device for this room. A join proven by that key always finds a seat: when the room is
/// full, the newest other seat makes way (closed with [`close::SEAT_RESERVED`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerSeat {
    /// The owner's room key, as in its join proofs.
    pub key: crate::trust::PublicKey,
}

/// Every error response's body: a stable code for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable reason, e.g. `room_full`.
    pub error: ErrorCode,
    /// What went wrong, in words a user can act on.
    pub message: String,
}

/// Machine-readable error reasons. Serialized in `snake_case` (`"room_full"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The room id does not name a room that exists (never created, or expired).
    UnknownRoom,
    /// Two people are already in the room.
    RoomFull,
    /// The room owner banned this identity or network address.
    Banned,
    /// `identity` query parameter missing or not a UUID.
    InvalidIdentity,
    /// A join proof (`key`, `ts`, `sig`) that is incomplete, forged, or signed at a time too
    /// far from the server's clock (see [`crate::trust::JoinProof`]).
    InvalidProof,
    /// A join proof the room has already taken, or one older than the proof the same key holds
    /// its seat with: a copy, never the person who signed it.
    ProofReused,
    /// Moderation without the right `Authorization: Bearer {owner_key}`.
    Unauthorized,
    /// The peer named in a kick/ban is not in the room.
    UnknownPeer,
    /// Body or parameters malformed.
    BadRequest,
    /// `/signal/...` requested without a WebSocket upgrade.
    UpgradeRequired,
    /// No such route.
    NotFound,
    /// Route exists, method does not.
    MethodNotAllowed,
    /// A page of another site asked for something only Duet's own page may do.
    ForeignOrigin,
    /// Too many requests from this client (or to this room) in a short time; try again later.
    RateLimited,
    /// A request body over its limit.
    TooLarge,
    /// A bug on our side; the message says what failed.
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with each reason, kept here so the server cannot drift.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::UnknownRoom | ErrorCode::NotFound | ErrorCode::UnknownPeer => 404,
            ErrorCode::RoomFull => 409,
            // Not 409: a client tells a full room from a reused proof by the status alone.
            ErrorCode::ProofReused => 412,
            ErrorCode::Banned | ErrorCode::ForeignOrigin => 403,
            ErrorCode::InvalidIdentity | ErrorCode::InvalidProof | ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::UpgradeRequired => 426,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RateLimited => 429,
            ErrorCode::TooLarge => 413,
            ErrorCode::Internal => 500,
        }
    }
}

/// WebSocket close codes the server uses. 4xxx are Duet's own (the range RFC 6455 leaves to
/// applications); the 1xxx ones are the standard meanings.
pub mod close {
    /// A newer connection with the same identity took this socket's place (page reload, ghost).
    pub const REPLACED: u16 = 4001;
    /// The room owner kicked this peer; it may come back.
    pub const KICKED: u16 = 4003;
    /// The room owner banned this peer; it may not come back.
    pub const BANNED: u16 = 4004;
    /// The room's owner came back to a full room: the newest other seat makes way for them.
    pub const SEAT_RESERVED: u16 = 4005;
    /// The frame was not a matchbox `PeerRequest` (not JSON, unknown variant, bad peer id), or
    /// its signal is not `{"Offer"|"Answer"|"IceCandidate": string}` within its size limit.
    pub const INVALID_FRAME: u16 = 1007;
    /// Binary frames are not part of the matchbox protocol.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Too many frames too fast.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame larger than [`super::MAX_FRAME_BYTES`].
    pub const TOO_BIG: u16 = 1009;
}

/// Whether `room` has the shape of an id the server mints: [`ROOM_ID_LEN`] base64url characters.
///
/// Checked before any Durable Object is addressed, so garbage ids cost nothing.
pub fn is_valid_room_id(room: &str) -> bool {
    room.len() == ROOM_ID_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_full_body_is_the_documented_shape() {
        let body = ApiError {
            error: ErrorCode::RoomFull,
            message: "full".into(),
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["error"], "room_full");
        assert_eq!(ErrorCode::RoomFull.status(), 409);
        assert_eq!(ErrorCode::Banned.status(), 403);
    }

    #[test]
    fn room_ids_are_checked_for_shape() {
        assert!(is_valid_room_id("abcdefghijklmnopqrstu_"));
        assert!(!is_valid_room_id("abcdefghijklmnopqrstu/"));
        assert!(!is_valid_room_id("short"));
        assert!(!is_valid_room_id(""));
        assert!(!is_valid_room_id("abcdefghijklmnopqrstuvw"));
    }
}
