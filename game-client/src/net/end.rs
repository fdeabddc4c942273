//! Why the connection to the room's signaling ended, as a type the room logic decides on.

/// Why signaling refused or ended the connection to the room. The room logic decides on the
/// variant (retry, offer the owner the seats, ask the server why); its `Display` is the
/// sentence for the person, made where it is shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalingEnd {
    /// Both seats are taken (409).
    #[error("This room already has two people in it. Only two fit in a Duet room.")]
    RoomFull,
    /// The room's creator banned this identity or address (403).
    #[error("You cannot join this room: its creator has banned you.")]
    Banned,
    /// Joins from here came too fast (429).
    #[error("Too many attempts to join this room in a short time. Wait a minute, then join again.")]
    TooManyAttempts,
    /// No such room (404): never created, or expired.
    #[error("This room does not exist. It may have expired after a day without visitors.")]
    NoSuchRoom,
    /// Another refusal by the server, with what it said.
    #[error("The Duet server refused to let you in ({0}).")]
    Refused(String),
    /// The server cannot be reached (as opposed to one that refused): worth retrying.
    #[error(
        "Cannot reach the Duet server. Check your connection (or that `cargo xtask dev` is running)."
    )]
    Unreachable,
    /// This identity joined the room again elsewhere (another tab, another window, a reload that
    /// overtook this one): the newer connection holds the seat (close 4001).
    #[error("You opened this room somewhere else (another tab or window); this one left the room.")]
    Replaced,
    /// The room's creator removed this person (close 4003).
    #[error("The room's creator removed you from the room. You can join again with the link.")]
    Kicked,
    /// The room's creator banned this person while they were in the room (close 4004).
    #[error("The room's creator banned you from this room.")]
    BannedNow,
    /// The room's creator came back to a full room and took their seat (close 4005).
    #[error("The room's creator came back and needed their seat; you left the room.")]
    SeatReserved,
    /// The server would not take this app's proof of who it is (400): most often a device clock
    /// set far from the right time.
    #[error(
        "The Duet server did not accept this app's sign-in. Check that your device's clock is right, then join again."
    )]
    ProofRefused,
    /// The server had already taken this join's proof (412): a retry signs anew.
    #[error("The server saw this sign-in already; joining again.")]
    ProofReused,
    /// The server closed the connection (the room's creator may have removed us).
    #[error(
        "You are no longer connected to the room (the server closed the connection; the room's creator may have removed you)."
    )]
    Closed,
    /// Anything else. Browsers hide why a WebSocket was refused, so the room logic then asks
    /// the server about the room to say it properly.
    #[error("The connection to the room failed: {0}")]
    Unexplained(String),
}

impl SignalingEnd {
    /// Reads the close code the server ended an open connection with (see
    /// `duet_shared::api::close`).
    pub fn from_close(code: u16, reason: &str) -> Self {
        use duet_shared::api::close;
        match code {
            close::REPLACED => Self::Replaced,
            close::KICKED => Self::Kicked,
            close::BANNED => Self::BannedNow,
            close::SEAT_RESERVED => Self::SeatReserved,
            _ => Self::Unexplained(format!("closed with {code}: {reason}")),
        }
    }

    /// Whether this side should leave the room and stay out (rather than retry or wait).
    pub fn leaves_the_room(&self) -> bool {
        matches!(
            self,
            Self::Replaced | Self::Kicked | Self::BannedNow | Self::SeatReserved
        )
    }

    /// Reads matchbox's signaling error text. The worker refuses before the WebSocket upgrade
    /// with an HTTP status (see the README's API table), which tungstenite reports as
    /// `HTTP error: 409 Conflict` and so on.
    pub fn from_loop_error(reason: &str) -> Self {
        let has = |needle: &str| reason.contains(needle);
        if has("HTTP error: 412") {
            Self::ProofReused
        } else if has("HTTP error: 400") {
            Self::ProofRefused
        } else if has("HTTP error: 409") {
            Self::RoomFull
        } else if has("HTTP error: 403") {
            Self::Banned
        } else if has("HTTP error: 429") {
            Self::TooManyAttempts
        } else if has("HTTP error: 404") {
            Self::NoSuchRoom
        } else if has("HTTP error") {
            Self::Refused(reason.to_owned())
        } else if has("Connection refused")
            || has("IO error")
            || has("dns")
            || has("resolve")
            // The server vanished without closing the WebSocket (a crash, a restart, a lost
            // network).
            || has("without closing handshake")
        {
            Self::Unreachable
        } else if has("closed") || has("exhausted") {
            Self::Closed
        } else {
            Self::Unexplained(reason.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signaling_failures_are_read_by_their_status() {
        let full = SignalingEnd::from_loop_error(
            "signaling failed: failed to establish initial connection: socket failure communicating with signaling server: HTTP error: 409 Conflict",
        );
        assert_eq!(full, SignalingEnd::RoomFull);
        assert!(full.to_string().contains("two people"), "{full}");
        let read = |text| SignalingEnd::from_loop_error(text);
        assert_eq!(read("HTTP error: 403 Forbidden"), SignalingEnd::Banned);
        assert_eq!(read("HTTP error: 404 Not Found"), SignalingEnd::NoSuchRoom);
        assert_eq!(
            read("HTTP error: 429 Too Many Requests"),
            SignalingEnd::TooManyAttempts
        );
        assert!(matches!(
            read("HTTP error: 500 Internal"),
            SignalingEnd::Refused(_)
        ));
        assert_eq!(
            read("IO error: Connection refused (os error 111)"),
            SignalingEnd::Unreachable
        );
        assert!(
            SignalingEnd::TooManyAttempts
                .to_string()
                .contains("Wait a minute")
        );
        assert!(SignalingEnd::Banned.to_string().contains("banned"));
        assert!(
            SignalingEnd::NoSuchRoom
                .to_string()
                .contains("does not exist")
        );
        assert!(matches!(
            read("something new"),
            SignalingEnd::Unexplained(_)
        ));
        assert_eq!(
            read("HTTP error: 412 Precondition Failed"),
            SignalingEnd::ProofReused
        );
        assert_eq!(
            read("HTTP error: 400 Bad Request"),
            SignalingEnd::ProofRefused
        );
        assert_eq!(SignalingEnd::from_close(4001, "x"), SignalingEnd::Replaced);
        assert!(
            SignalingEnd::Replaced
                .to_string()
                .contains("somewhere else")
        );
        assert!(SignalingEnd::Replaced.leaves_the_room());
        assert_eq!(SignalingEnd::from_close(4003, ""), SignalingEnd::Kicked);
        assert_eq!(SignalingEnd::from_close(4004, ""), SignalingEnd::BannedNow);
        assert!(!SignalingEnd::RoomFull.leaves_the_room());
        assert!(matches!(
            SignalingEnd::from_close(1008, "flood"),
            SignalingEnd::Unexplained(_)
        ));
    }
}
