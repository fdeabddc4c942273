//! Why a transfer ended without a file, as a type: the engine decides, the UI and the
//! automation log turn it into words (its `Display` is the sentence the person reads).

use duet_shared::peer::{CancelReason, DeclineReason};
use duet_shared::transfer::TransferError;

/// Why a transfer stopped. Most end it for good ([`super::TransferEvent::Failed`]); an
/// incoming one that stopped for a reason that may pass keeps its bytes
/// ([`super::TransferEvent::Paused`]) so the same file sent again resumes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransferEnd {
    /// Nobody to send to.
    #[error("Your peer is not in the room, so the file was not sent.")]
    NoPeer,
    /// This build has no way to read local files.
    #[error("This app cannot read files to send.")]
    NoFiles,
    /// Reading the file to send failed.
    #[error("Cannot read {path}: {error}")]
    CannotRead {
        /// The file, as the person named it.
        path: String,
        /// The system's words.
        error: String,
    },
    /// The file to send is over the limit.
    #[error("{path} is {:.1} MB; Duet sends files up to 200 MiB.", *size as f64 / 1e6)]
    TooLarge {
        /// The file.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The file changed size between the offer and its hash.
    #[error("{path} changed while it was being sent.")]
    Changed {
        /// The file.
        path: String,
    },
    /// A chunk could not be framed (cannot happen with chunks of the protocol's size).
    #[error("A chunk of the file could not be encoded.")]
    Encode,
    /// The data channel refused a frame: the peer is gone.
    #[error("The connection to your peer was lost.")]
    ConnectionLost,
    /// The person cancelled a file they were sending.
    #[error("You cancelled the transfer.")]
    CancelledSending,
    /// The person cancelled a file coming in; its bytes are kept.
    #[error("You cancelled the transfer. If it is sent again, it resumes where it stopped.")]
    CancelledReceiving,
    /// The receiver's app declined my offer.
    #[error("Your peer's app declined the file: {0}.")]
    PeerDeclined(DeclineReason),
    /// The other side cancelled.
    #[error("Your peer ended the transfer: {0}.")]
    PeerCancelled(CancelReason),
    /// The peer left while I was sending.
    #[error(
        "Your peer left before the file was complete; if they are back within 10 minutes, it \
         resumes by itself."
    )]
    PeerLeftSending,
    /// The peer left while I was receiving; the bytes are kept.
    #[error(
        "Your peer left before the file was complete; the part is kept, and it resumes when \
         they send it again (by itself if they are back within 10 minutes)."
    )]
    PeerLeftReceiving,
    /// The peer left while the person was still deciding about its offer.
    #[error("Your peer left before you answered.")]
    PeerLeftBeforeAnswer,
    /// The peer withdrew an offer the person had not answered yet.
    #[error("Your peer withdrew the file before you answered.")]
    Withdrawn,
    /// The person said no.
    #[error("You declined the file.")]
    YouDeclined,
    /// This app declined the peer's offer on its own (limits, space, a bad offer).
    #[error("A file your peer offered was declined: {0}.")]
    OfferDeclined(DeclineReason),
    /// The peer's offer cannot be taken at all.
    #[error("Your peer offered a file Duet cannot take: {0}.")]
    CannotTake(TransferError),
    /// A data frame that does not parse.
    #[error("Your peer sent a broken file chunk ({0}); it was ignored.")]
    BrokenChunk(String),
    /// Chunks for a transfer that is not running.
    #[error("Your peer sent data for a transfer that is not running; it was ignored.")]
    UnknownTransfer,
    /// The transfer protocol was broken or the hash did not match.
    #[error("{0}")]
    Protocol(TransferError),
    /// The store failed (disk full, I/O).
    #[error("{0}")]
    Store(crate::storage::StoreError),
}
