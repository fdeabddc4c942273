//! What the engine tells the app: a transfer's life as events.

use bevy::prelude::Message;
use duet_shared::peer::TransferId;
use duet_shared::transfer::Progress;

use super::end::TransferEnd;

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// I send.
    Outgoing,
    /// I receive.
    Incoming,
}

/// What happened to a transfer (for the UI and the event log).
#[derive(Message, Debug, Clone, PartialEq)]
pub enum TransferEvent {
    /// A transfer began (offer sent or accepted).
    Started {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// File name (sanitized for incoming).
        name: String,
        /// Size in bytes.
        size: u64,
        /// Bytes already there from an earlier attempt (resume).
        resumed_from: u64,
    },
    /// The peer offers a file too large to take unasked: the person says yes or no
    /// (`AnswerOffer`). Nothing is stored before they do.
    Asked {
        /// The offer.
        id: TransferId,
        /// File name (sanitized).
        name: String,
        /// Size in bytes.
        size: u64,
    },
    /// The peer accepted my offer: bytes start moving (until then the sender waits for them).
    Accepted {
        /// The transfer.
        id: TransferId,
    },
    /// Bytes moved.
    Progress {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// Bytes, rate, ETA.
        progress: Progress,
    },
    /// Done and verified; `location` is where an incoming file was saved.
    Completed {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// Saved path (incoming) or the source (outgoing).
        location: String,
    },
    /// An incoming transfer stopped, and its bytes are kept so the same file sent again
    /// resumes (until unclaimed partials expire).
    Paused {
        /// The transfer.
        id: TransferId,
        /// Why.
        why: TransferEnd,
    },
    /// Ended without a file.
    Failed {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// Why.
        why: TransferEnd,
    },
    /// How many extra connections (lanes) striped transfers run over now, when that changes.
    Lanes {
        /// Lanes open.
        open: u8,
    },
}
