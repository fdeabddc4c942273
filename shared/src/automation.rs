//! The automation protocol: what a client reports, one JSON object per line, to whoever drives
//! it (the headless runner's stdout, the windowed client's `--automation` stdout, a page's
//! `duet-event` console lines), for tests, benchmarks and scripts.
//!
//! One type for all of it, so the client that writes a line and the test that reads it cannot
//! disagree about a name or a field: [`Event`] serializes as `{"event": "snake_case_name",
//! ...fields}`, the shape the browser tests' JavaScript reads too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A point in logical window pixels, `[x, y]`.
pub type Point = [f32; 2];

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// I send.
    Out,
    /// I receive.
    In,
}

/// Where a chat message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Sent, not confirmed yet.
    Sent,
    /// The peer confirmed it.
    Delivered,
    /// The peer was not there, or never confirmed it.
    NotDelivered,
    /// From the peer.
    Received,
}

/// A chat message as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatLine {
    /// The message's id.
    pub id: Uuid,
    /// Whether I wrote it.
    pub mine: bool,
    /// Who wrote it.
    pub author: String,
    /// What it says.
    pub text: String,
    /// Where it stands.
    pub state: Delivery,
}

/// A person this device met, as reported (the `contacts` command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactLine {
    /// Their public key, in hex.
    pub key: String,
    /// The short form of the key people compare.
    pub fingerprint: String,
    /// The name shown for them (the person's own name for them, else theirs).
    pub name: String,
    /// First met (ms since the epoch).
    pub first_seen_ms: u64,
    /// Last met (ms since the epoch).
    pub last_seen_ms: u64,
    /// The person compared the safety code with them.
    pub verified: bool,
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    /// No call.
    Idle,
    /// I am ringing the peer.
    Calling,
    /// The peer is ringing me.
    Ringing,
    /// Accepted; media connecting.
    Connecting,
    /// Media flows.
    Active,
}

/// What a call's media connection reports, once a second.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CallStats {
    /// Audio received, bytes.
    pub inbound_audio_bytes: u64,
    /// Audio received, RTP packets.
    pub inbound_audio_packets: u64,
    /// Audio sent, bytes.
    pub outbound_audio_bytes: u64,
    /// Video received, bytes.
    pub inbound_video_bytes: u64,
    /// Video sent, bytes.
    pub outbound_video_bytes: u64,
    /// The peer's audio level, 0..1.
    pub peer_level: f64,
    /// My microphone's level, 0..1.
    pub my_level: f64,
    /// Received video frames per second.
    pub video_fps: f64,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// Inbound audio jitter, ms.
    pub jitter_ms: f64,
    /// Inbound packets lost.
    pub packets_lost: u64,
}

/// Which screen the windowed client shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Screen {
    /// Create or join a room.
    Lobby,
    /// In a room.
    Room,
}

/// Where the windowed client's avatars and controls are, for tests that click them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Layout {
    /// The window's size.
    pub window: Option<Point>,
    /// Physical pixels per logical one (the system's scale factor, a browser's zoom). Every
    /// position here is logical; an X pointer moves in physical ones.
    #[serde(default = "one")]
    pub scale_factor: f32,
    /// My avatar.
    pub me: Option<Point>,
    /// The peer's avatar (its seat).
    pub peer: Option<Point>,
    /// The chat input.
    pub chat_input: Option<Point>,
    /// Whether the chat input has the keyboard.
    pub chat_focused: bool,
    /// The lobby's "Create a room".
    pub create_button: Option<Point>,
    /// The lobby's "Open" of each recent room, by room id.
    #[serde(default)]
    pub recent_rooms: BTreeMap<String, Point>,
    /// The avatar menu's "Kick", while it is open.
    pub kick_button: Option<Point>,
    /// The room's "Copy link".
    pub copy_button: Option<Point>,
    /// The newest received file's first action.
    pub file_button: Option<Point>,
    /// The newest received file's actions, by label.
    pub file_actions: BTreeMap<String, Point>,
    /// "Send a file…", while it can be pressed.
    pub send_button: Option<Point>,
    /// The newest offer question's buttons (`accept`, `decline`).
    pub offer_buttons: BTreeMap<String, Point>,
    /// The full-room window's buttons (`remove_0`, `ban_0`, ...).
    pub seat_buttons: BTreeMap<String, Point>,
    /// The call controls shown (`call`, `hangup`, ...).
    pub call_buttons: BTreeMap<String, Point>,
    /// The alert controls shown (`sound`, and `notify` while notifications can be asked for).
    #[serde(default)]
    pub alert_buttons: BTreeMap<String, Point>,
    /// The compact layout's "More" button (a narrow window, a phone).
    #[serde(default)]
    pub more_button: Option<Point>,
    /// The avatar menu's "Send a file…", while the menu is open.
    #[serde(default)]
    pub menu_send_button: Option<Point>,
    /// The control with the keyboard focus (Tab moves it, Enter presses it).
    #[serde(default)]
    pub focused: Option<Point>,
    /// The compact layout's switches between chat and files (`chat`, `files`).
    #[serde(default)]
    pub tab_buttons: BTreeMap<String, Point>,
}

fn one() -> f32 {
    1.0
}

/// One reported event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The client started: who it is.
    Ready {
        /// Its identity.
        identity: Uuid,
        /// Its display name.
        name: String,
    },
    /// A command or the start-up failed.
    Error {
        /// What went wrong, as a sentence.
        message: String,
    },
    /// Connected to the signaling server.
    Connected {
        /// My id in the room.
        peer_id: Uuid,
    },
    /// The peer's data channel opened.
    PeerJoined {
        /// Its id in the room.
        peer_id: Uuid,
    },
    /// The peer left.
    PeerLeft {
        /// Its id in the room.
        peer_id: Uuid,
    },
    /// A frame from the peer was refused.
    BadFrame {
        /// Why.
        message: String,
    },
    /// The peer sent a second hello (refused).
    SecondHello,
    /// A handshake with a would-be peer failed.
    PeerFailed {
        /// The failure, as a name.
        reason: String,
        /// The failure, as a sentence.
        message: String,
        /// This side joins the room again for one more attempt (the attempt's path worked).
        #[serde(default)]
        retrying: bool,
    },
    /// The signaling connection ended.
    SignalingClosed {
        /// Why, as a sentence.
        message: String,
    },
    /// I was renamed.
    Renamed {
        /// The new name.
        name: String,
    },
    /// The peer proved who it is (its authenticated hello verified).
    PeerHello {
        /// The UUID of its key.
        identity: Uuid,
        /// Its name.
        name: String,
        /// Its public key, in hex.
        #[serde(default)]
        key: String,
        /// The safety code both sides show.
        #[serde(default)]
        safety_code: String,
    },
    /// The peer's authenticated hello failed; this side left the room.
    HelloFailed {
        /// The failure, as a name.
        reason: String,
        /// What the person is told.
        message: String,
    },
    /// The socket is about to open with these STUN/TURN servers (credentials are not shown).
    IceServers {
        /// Every server's URLs.
        urls: Vec<String>,
        /// Whether a TURN server with credentials is among them.
        relay: bool,
        /// `configured`, `server`, or `unavailable: why`.
        source: String,
    },
    /// The candidate pair the peer's connection runs over (first known, or changed). Types
    /// are `host`, `srflx` (a NAT's public address), `prflx` (learned from the peer's packets)
    /// or `relay` (a TURN server).
    Path {
        /// This side's candidate type.
        local: String,
        /// The peer's.
        remote: String,
        /// Whether a TURN relay carries the traffic.
        relayed: bool,
    },
    /// How the link to the trusted peer is (when it changes, at most about once a second):
    /// its smoothed round trip, or how many seconds nothing arrived (`silent_s`, from 3 on:
    /// the UI says the connection is interrupted).
    Link {
        /// Smoothed round trip in ms, once measured; absent while silent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<u32>,
        /// Seconds without a frame from the peer, while interrupted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        silent_s: Option<u32>,
    },
    /// How many extra connections (lanes) striped file transfers run over now, when that
    /// changes: a browser that sends a large file opens them; two desktops never do.
    Lanes {
        /// Lanes open.
        open: u8,
    },
    /// The peer's connection was negotiated (its session descriptions are known).
    Negotiated {
        /// This side's DTLS fingerprint.
        local_fingerprint: String,
        /// The peer's, as this side sees it.
        remote_fingerprint: String,
    },
    /// The peer renamed itself.
    PeerRenamed {
        /// The new name.
        name: String,
    },
    /// The peer speaks an incompatible protocol version.
    VersionMismatch {
        /// Its version.
        theirs: u16,
        /// What to do, as a sentence.
        message: String,
    },
    /// A chat message was added or changed state.
    Chat(ChatLine),
    /// The whole chat log (the `history` command).
    History {
        /// Oldest first.
        entries: Vec<ChatLine>,
    },
    /// Stored history was loaded at start.
    HistoryLoaded {
        /// Messages loaded.
        stored: usize,
    },
    /// Stored history could not be loaded.
    HistoryFailed {
        /// Why.
        message: String,
    },
    /// A message could not be sent.
    SendFailed {
        /// Why.
        message: String,
    },
    /// A transfer began.
    TransferStarted {
        /// The transfer (16 hex digits).
        id: String,
        /// Which way.
        dir: Dir,
        /// The file's name.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// Bytes there from an earlier attempt.
        resumed_from: u64,
    },
    /// Bytes moved.
    TransferProgress {
        /// The transfer.
        id: String,
        /// Which way.
        dir: Dir,
        /// Bytes confirmed.
        done: u64,
        /// File size.
        total: u64,
        /// Smoothed rate.
        bytes_per_sec: f64,
        /// Seconds left, once known.
        eta_secs: Option<f64>,
    },
    /// A transfer finished and verified.
    TransferCompleted {
        /// The transfer.
        id: String,
        /// Which way.
        dir: Dir,
        /// Where the received file is (or the sent file's path).
        location: String,
    },
    /// A transfer ended without a file (`paused`: its bytes are kept for a resume).
    TransferFailed {
        /// The transfer.
        id: String,
        /// Which way.
        dir: Dir,
        /// Why, as a sentence.
        message: String,
        /// Kept for a resume.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        paused: bool,
    },
    /// The peer offers a file that waits for the person's answer.
    TransferAsked {
        /// The offer.
        id: String,
        /// The file's name.
        name: String,
        /// Its size.
        size: u64,
    },
    /// The peer accepted my offer.
    TransferAccepted {
        /// The transfer.
        id: String,
    },
    /// The call moved to a new phase.
    Call {
        /// Where it stands.
        phase: CallPhase,
        /// The call's id, while there is a call.
        call: Option<String>,
        /// Whether it is a video call, while it rings.
        video: Option<bool>,
    },
    /// The call ended.
    CallEnded {
        /// Why, as a name.
        reason: String,
        /// Why, as a sentence.
        message: String,
    },
    /// The peer muted or turned its camera on or off.
    PeerMedia {
        /// Its microphone is off.
        muted: bool,
        /// Its camera is on.
        camera: bool,
    },
    /// A call action was refused.
    CallRefused {
        /// Why.
        message: String,
    },
    /// Media statistics, once a second during a call.
    CallStats(CallStats),
    /// The windowed client changed screens.
    Screen {
        /// Which.
        screen: Screen,
        /// The room's link, in a room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<String>,
    },
    /// The received files listed at start.
    ReceivedFiles {
        /// Their names.
        names: Vec<String>,
    },
    /// A screenshot was written.
    Screenshot {
        /// Where.
        path: String,
    },
    /// A file was dropped onto the window (the `drop` command).
    Dropped {
        /// Where.
        at: Point,
    },
    /// Where the peer who just proved its key stands for this device.
    PeerStanding {
        /// Its key, in hex.
        key: String,
        /// Its name.
        name: String,
        /// `new`, `known` or `not_the_one_met`.
        standing: String,
        /// First met: this key (known), or the namesake met before (not the one met).
        since_ms: Option<u64>,
        /// Verified: this key (known), or the namesake (not the one met).
        verified: bool,
    },
    /// The person marked the peer verified (they compared the safety code).
    PeerVerified {
        /// Its key, in hex.
        key: String,
    },
    /// A newcomer wore the name of a verified contact; this side left the room.
    ImpostorRefused {
        /// The name it wore.
        name: String,
    },
    /// The people this device met (the `contacts` command), most recently met first.
    Contacts {
        /// Each of them.
        contacts: Vec<ContactLine>,
    },
    /// A notice was posted for the person.
    Notice {
        /// What it says.
        message: String,
    },
    /// The app was out of sight and the peer did something: how the person was told.
    Alerted {
        /// `joined`, `message`, `file` or `call`.
        what: String,
        /// The count in the title after it.
        unseen: u32,
        /// Whether the chime played.
        sound: bool,
        /// Whether a notification (or the window's request for attention) went out: not for
        /// an alert within a second of the last.
        told: bool,
    },
    /// Where things are on screen.
    Layout(Box<Layout>),
    /// A test page ran the store contract (`?store_contract`) against the browser's store.
    StoreContract {
        /// Checks that held.
        checks: u32,
        /// The first check that did not, in words.
        failure: Option<String>,
    },
    /// The page drew its first frame.
    FirstFrame {
        /// Milliseconds since the page started loading.
        ms: f64,
    },
}

impl Event {
    /// The event's name on the wire (`"chat"`, `"transfer_completed"`, ...).
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// One JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_their_wire_shape() {
        let chat = Event::Chat(ChatLine {
            id: Uuid::nil(),
            mine: true,
            author: "Ada".into(),
            text: "hi".into(),
            state: Delivery::NotDelivered,
        });
        let value: serde_json::Value = serde_json::from_str(&chat.to_line()).unwrap();
        assert_eq!(value["event"], "chat");
        assert_eq!(value["state"], "not_delivered");
        assert_eq!(value["author"], "Ada");
        assert_eq!(chat.name(), "chat");
        let failed = Event::TransferFailed {
            id: "00000000000000ff".into(),
            dir: Dir::In,
            message: "gone".into(),
            paused: false,
        };
        let line = failed.to_line();
        assert!(!line.contains("paused"), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), failed);
        let stats = Event::CallStats(CallStats {
            rtt_ms: 3.0,
            ..CallStats::default()
        });
        let value: serde_json::Value = serde_json::from_str(&stats.to_line()).unwrap();
        assert_eq!(value["event"], "call_stats");
        assert_eq!(value["rtt_ms"], 3.0);
    }

    #[test]
    fn unknown_events_do_not_parse() {
        assert!(serde_json::from_str::<Event>(r#"{"event":"nonsense"}"#).is_err());
        assert!(serde_json::from_str::<Event>(r#"{"event":"chat","id":5}"#).is_err());
    }
}
