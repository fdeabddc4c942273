//! The peer protocol: what two Duet clients say to each other over WebRTC data channels.
//!
//! Two reliable, ordered channels, added in this order by both peers (matchbox pre-negotiates
//! channels by index): [`CONTROL_CHANNEL`] carries hello, chat, receipts and transfer control;
//! [`DATA_CHANNEL`] carries file chunks only, so a chat message never queues behind a file.
//!
//! Frames are postcard-encoded (compact, varint integers, no schema negotiation). Decoding is
//! total: any byte string yields either a valid message or a [`DecodeError`], never a panic, and
//! every length is checked against an explicit limit before it is trusted.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::call::CallSignal;
use crate::lane::LaneSignal;
use crate::trust::{NONCE_BYTES, PublicKey, Sig};

/// Bumped on any incompatible change; peers with different versions refuse each other politely.
pub const PROTOCOL_VERSION: u16 = 8;
/// Channel index for control and chat.
pub const CONTROL_CHANNEL: usize = 0;
/// Channel index for file chunks.
pub const DATA_CHANNEL: usize = 1;
/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 10_000;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest file name accepted on the wire, in characters (it is sanitized and cut afterwards).
pub const MAX_WIRE_FILE_NAME_CHARS: usize = 10_000;
/// Largest file Duet sends: 200 MiB.
pub const MAX_FILE_BYTES: u64 = 200 * 1024 * 1024;
/// File data travels in chunks of exactly this size (the last one may be shorter).
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Largest encoded control frame. Below matchbox's native 65,536-byte message limit.
pub const MAX_CONTROL_FRAME: usize = 60 * 1024;
/// Largest encoded data frame: [`MAX_FRAME_CHUNKS`] chunks plus their headers.
pub const MAX_DATA_FRAME: usize = MAX_FRAME_CHUNKS * (CHUNK_BYTES + 32);
/// Chunks a data frame may carry, back to back, when the receiver has not said it takes more
/// (see [`Control::Hello`]). Each data-channel message has a fixed cost (in browsers it
/// dominates: 16 KiB messages move about half of what 64 KiB ones do), so several chunks share
/// one; three keep a frame (at most 49,248 bytes) under webrtc-rs's 65,536-byte message limit,
/// which every stack takes.
pub const CHUNKS_PER_FRAME: usize = 3;
/// Most chunks any data frame carries: fifteen (at most 246,240 bytes) fit the 262,144-byte
/// messages browsers take from each other, where a 256 KiB message moves more than a 64 KiB
/// one (the figures: `docs/bench/transfer.md`).
pub const MAX_FRAME_CHUNKS: usize = 15;

/// Identifies one file transfer between two peers; chosen at random by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferId(pub u64);

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A file the sender proposes to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOffer {
    /// The transfer this offer opens.
    pub transfer: TransferId,
    /// The file's name as the sender knows it; the receiver sanitizes it before use.
    pub name: String,
    /// Exact size in bytes.
    pub size: u64,
    /// Media type, e.g. `image/png`; informational.
    pub mime: String,
    /// Names the file for resuming, chosen by the sender (the same file offered again gets the
    /// same key): the receiver keeps a partial file under it, so an interrupted transfer picks
    /// up where it stopped. Not the file's hash: that would make the sender read the whole file
    /// before the first byte moves; the hash follows in [`Control::Digest`].
    pub resume_key: [u8; 32],
}

/// Why a receiver declined an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeclineReason {
    /// The user said no.
    Refused,
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// No space left to store it.
    NoSpace,
    /// The offer was malformed (empty name after sanitizing, bad size...).
    Invalid,
    /// Too many files are coming in at once; offer it again when one has finished.
    Busy,
    /// The sender offered too many files, or too many bytes, in this session.
    Limit,
}

/// Why a transfer was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelReason {
    /// The user cancelled.
    User,
    /// The received bytes did not hash to the offered SHA-256.
    HashMismatch,
    /// The peer broke the transfer protocol (sizes, sequence numbers, credit).
    ProtocolViolation,
    /// Reading the source or writing the destination failed.
    Io,
    /// The disk or storage quota is full.
    NoSpace,
}

impl std::fmt::Display for DeclineReason {
    /// Completes "Your peer's app declined the file: ...", for the person who sent it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refused => "they said no",
            Self::TooLarge => "it is larger than 200 MB",
            Self::NoSpace => "their disk or storage quota is full",
            Self::Invalid => "the offer was not valid",
            Self::Busy => "they are receiving too many files at once; send it again later",
            Self::Limit => "you sent more files than they take in one session",
        })
    }
}

impl std::fmt::Display for CancelReason {
    /// Completes "The transfer was cancelled: ...", for the person on the other side.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::User => "they cancelled it",
            Self::HashMismatch => "the received bytes did not match the file's checksum",
            Self::ProtocolViolation => "the other app broke the transfer protocol",
            Self::Io => "reading or writing the file failed",
            Self::NoSpace => "the receiving disk or storage quota is full",
        })
    }
}

/// Everything on the control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// First message each way: who I am and which protocol I speak.
    Hello {
        /// [`PROTOCOL_VERSION`] of the sender.
        version: u16,
        /// The sender's persistent identity.
        identity: Uuid,
        /// The sender's display name.
        name: String,
    },
    /// The sender's display name changed.
    Rename {
        /// The new name.
        name: String,
    },
    /// A chat message.
    Chat {
        /// Unique id, for receipts and de-duplication.
        id: Uuid,
        /// Sender's clock, ms since the Unix epoch.
        sent_ms: u64,
        /// At most [`MAX_CHAT_CHARS`] characters.
        text: String,
    },
    /// The chat message `id` arrived and was stored.
    ChatReceipt {
        /// The acknowledged message.
        id: Uuid,
    },
    /// A file offer.
    Offer(FileOffer),
    /// The receiver takes the file, starting at byte `offset` (non-zero when resuming).
    Accept {
        /// The transfer.
        transfer: TransferId,
        /// First byte wanted; a multiple of [`CHUNK_BYTES`].
        offset: u64,
    },
    /// The receiver does not take the file.
    Decline {
        /// The transfer.
        transfer: TransferId,
        /// Why.
        reason: DeclineReason,
    },
    /// Flow control: the receiver has persisted `persisted` chunks and lets the sender send every
    /// chunk with sequence number below `until`.
    Credit {
        /// The transfer.
        transfer: TransferId,
        /// Chunks safely written so far.
        persisted: u32,
        /// Exclusive upper bound on sequence numbers the sender may send.
        until: u32,
    },
    /// A striped transfer's receiver has held chunks ahead of `seq` for a while: the chunk at
    /// `seq` is stuck behind a loss on one connection (since version 8, see
    /// [`crate::transfer::Receiver::gap_report`]). The sender sends it again, on another.
    Gap {
        /// The transfer.
        transfer: TransferId,
        /// The first chunk missing.
        seq: u32,
    },
    /// The SHA-256 of the whole offered file, sent once the sender has hashed it (while the
    /// chunks already flow). The receiver verifies the received bytes against it before it
    /// shows the file, and finishes only once it has arrived.
    Digest {
        /// The transfer.
        transfer: TransferId,
        /// SHA-256 of the file.
        sha256: [u8; 32],
    },
    /// The receiver verified the hash and saved the file.
    Complete {
        /// The transfer.
        transfer: TransferId,
    },
    /// Either side abandons the transfer.
    Cancel {
        /// The transfer.
        transfer: TransferId,
        /// Why.
        reason: CancelReason,
    },
    /// Sent right after `Hello`: the most chunks per data frame the sender's WebRTC stack
    /// receives (its largest message), from [`CHUNKS_PER_FRAME`] to [`MAX_FRAME_CHUNKS`]. The
    /// peer sends frames no larger; until this arrives it sends [`CHUNKS_PER_FRAME`]. A message
    /// of its own, after the others, so a peer on an older version still reads the `Hello` and
    /// shows the version mismatch.
    Frames {
        /// Chunks per frame.
        chunks: u8,
        /// Whether this side asks for files to be striped over extra connections (see
        /// [`crate::lane`]). The pair stripes, both ways, when either side asks, and both sides
        /// then agree: lanes, chunks out of order, and the receiver's larger window. Agreement
        /// matters: a window sized for a repair on one of several connections, on the one
        /// connection, overfills the path's queue, and a stack that recovers a burst loss
        /// slowly stalls on it.
        stripes: bool,
    },
    /// Call signaling for the media connection (see [`crate::call`]): it rides this channel so
    /// the signaling server never sees it.
    Call(CallSignal),
    /// Sent right after `Hello` (since version 6): the commitment to this side's nonce for the
    /// authenticated hello (see [`crate::handshake`]).
    Greet {
        /// SHA-256 of the nonce ([`crate::trust::commit`]).
        commitment: [u8; 32],
    },
    /// Sent once the peer's `Greet` arrived: who this side is, proven over this connection
    /// (see [`crate::handshake`]). Nothing but the hello is taken from a peer before its proof
    /// verified.
    Proof {
        /// The sender's long-term public key: its identity.
        key: PublicKey,
        /// The sender's display name.
        name: String,
        /// The nonce the sender committed to in its `Greet`.
        nonce: [u8; NONCE_BYTES],
        /// Signature over the [`crate::trust::Transcript`].
        signature: Sig,
    },
    /// Liveness (since version 7, see [`crate::liveness`]): answered at once with a `Pong`
    /// carrying the same id.
    Ping {
        /// Chosen by the sender.
        id: u32,
    },
    /// The answer to `Ping { id }`.
    Pong {
        /// The ping's id.
        id: u32,
    },
    /// Negotiation of the extra connections a large transfer is striped over (since version 8,
    /// see [`crate::lane`]): like calls, it rides this channel so the signaling server never
    /// learns of them.
    Lane(LaneSignal),
}

impl Control {
    /// Whether the message belongs to a file transfer (offer, accept, decline, credit,
    /// digest, complete, cancel) rather than to the people (hello, rename, chat, receipts): the client
    /// routes the two kinds to different places.
    pub fn is_transfer(&self) -> bool {
        matches!(
            self,
            Control::Offer(_)
                | Control::Accept { .. }
                | Control::Decline { .. }
                | Control::Credit { .. }
                | Control::Gap { .. }
                | Control::Digest { .. }
                | Control::Complete { .. }
                | Control::Cancel { .. }
        )
    }
}

/// One piece of a file, on the data channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk<'a> {
    /// The transfer it belongs to.
    pub transfer: TransferId,
    /// Position: the chunk covers bytes `seq * CHUNK_BYTES ..`.
    pub seq: u32,
    /// At most [`CHUNK_BYTES`] bytes.
    #[serde(borrow, with = "serde_bytes_compat")]
    pub data: &'a [u8],
}

/// Borrowed byte slices as postcard byte strings (length + raw bytes, no per-byte varints).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'de [u8], D::Error> {
        <&[u8] as serde::Deserialize>::deserialize(d)
    }
}

/// Why a frame could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is larger than its channel allows.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Frame size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Not a valid encoding of any message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Decoded, but breaks a protocol rule (a limit on a field).
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

impl Control {
    /// Checks field limits that the type system cannot express.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let chars = |s: &str| s.chars().count();
        match self {
            Control::Hello { name, .. }
            | Control::Rename { name }
            | Control::Proof { name, .. }
                if chars(name) > MAX_DISPLAY_NAME_CHARS =>
            {
                Err(DecodeError::Invalid("display name too long"))
            }
            Control::Chat { text, .. } if chars(text) > MAX_CHAT_CHARS => Err(
                DecodeError::Invalid("chat message longer than 10,000 characters"),
            ),
            Control::Offer(offer) if chars(&offer.name) > MAX_WIRE_FILE_NAME_CHARS => Err(
                DecodeError::Invalid("file name longer than 10,000 characters"),
            ),
            Control::Offer(offer) if offer.mime.len() > 255 => {
                Err(DecodeError::Invalid("media type too long"))
            }
            Control::Call(signal) => signal.validate().map_err(DecodeError::Invalid),
            Control::Lane(signal) => signal.validate().map_err(DecodeError::Invalid),
            _ => Ok(()),
        }
    }

    /// Encodes for the control channel. Fails (rather than sending something the peer would
    /// reject) when the message breaks a limit.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        self.validate()?;
        let bytes =
            postcard::to_allocvec(self).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_CONTROL_FRAME {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_CONTROL_FRAME,
            });
        }
        Ok(bytes)
    }

    /// Decodes a control frame. Never panics; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_CONTROL_FRAME {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_CONTROL_FRAME,
            });
        }
        let (message, rest): (Control, _) =
            postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        message.validate()?;
        Ok(message)
    }
}

/// Encodes without checking limits. For tests that play a hostile peer; real senders use
/// [`Control::encode`].
pub fn encode_unchecked(message: &Control) -> Vec<u8> {
    postcard::to_allocvec(message).unwrap_or_default()
}

impl<'a> Chunk<'a> {
    /// Encodes into `out` (cleared first), reusing its allocation: the data path allocates nothing
    /// per chunk once warm.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if self.data.len() > CHUNK_BYTES {
            return Err(DecodeError::Invalid("chunk larger than 16 KiB"));
        }
        out.clear();
        let encoded = postcard::to_extend(self, std::mem::take(out))
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        *out = encoded;
        Ok(())
    }

    /// Appends this chunk to a data frame being built in `out` (see [`CHUNKS_PER_FRAME`]).
    pub fn append_to(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if self.data.len() > CHUNK_BYTES {
            return Err(DecodeError::Invalid("chunk larger than 16 KiB"));
        }
        let encoded = postcard::to_extend(self, std::mem::take(out))
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        *out = encoded;
        Ok(())
    }

    /// Decodes every chunk of a data frame, in order, without copying payloads.
    pub fn decode_frame(mut bytes: &'a [u8]) -> Result<Vec<Self>, DecodeError> {
        if bytes.len() > MAX_DATA_FRAME {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_DATA_FRAME,
            });
        }
        let mut chunks = Vec::with_capacity(MAX_FRAME_CHUNKS);
        while !bytes.is_empty() {
            if chunks.len() == MAX_FRAME_CHUNKS {
                return Err(DecodeError::Invalid("more chunks in a frame than allowed"));
            }
            let (chunk, rest): (Chunk<'a>, _) = postcard::take_from_bytes(bytes)
                .map_err(|e| DecodeError::Malformed(e.to_string()))?;
            if chunk.data.len() > CHUNK_BYTES {
                return Err(DecodeError::Invalid("chunk larger than 16 KiB"));
            }
            chunks.push(chunk);
            bytes = rest;
        }
        if chunks.is_empty() {
            return Err(DecodeError::Malformed("an empty data frame".into()));
        }
        Ok(chunks)
    }

    /// Decodes a data frame that holds exactly one chunk, without copying the payload.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_DATA_FRAME {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_DATA_FRAME,
            });
        }
        let (chunk, rest): (Chunk<'a>, _) =
            postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        if chunk.data.len() > CHUNK_BYTES {
            return Err(DecodeError::Invalid("chunk larger than 16 KiB"));
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallId;
    use proptest::prelude::*;

    fn samples() -> Vec<Control> {
        let transfer = TransferId(0xdead_beef);
        vec![
            Control::Hello {
                version: PROTOCOL_VERSION,
                identity: Uuid::from_u128(7),
                name: "Ada".into(),
            },
            Control::Frames {
                chunks: MAX_FRAME_CHUNKS as u8,
                stripes: true,
            },
            Control::Rename {
                name: "Ada L.".into(),
            },
            Control::Chat {
                id: Uuid::from_u128(9),
                sent_ms: 1_700_000_000_000,
                text: "héllo 👋".into(),
            },
            Control::ChatReceipt {
                id: Uuid::from_u128(9),
            },
            Control::Offer(FileOffer {
                transfer,
                name: "photo.png".into(),
                size: 123_456,
                mime: "image/png".into(),
                resume_key: [3; 32],
            }),
            Control::Accept {
                transfer,
                offset: 16_384,
            },
            Control::Decline {
                transfer,
                reason: DeclineReason::TooLarge,
            },
            Control::Credit {
                transfer,
                persisted: 10,
                until: 18,
            },
            Control::Digest {
                transfer,
                sha256: [4; 32],
            },
            Control::Complete { transfer },
            Control::Cancel {
                transfer,
                reason: CancelReason::HashMismatch,
            },
            Control::Call(CallSignal::Offer {
                call: CallId(9),
                sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n".into(),
            }),
            Control::Call(CallSignal::Candidate {
                call: CallId(9),
                candidate: "candidate:1 1 udp 2122260223 ::1 50000 typ host".into(),
                mid: Some("0".into()),
                mline: Some(0),
            }),
        ]
    }

    #[test]
    fn every_control_message_round_trips() {
        for message in samples() {
            let bytes = message.encode().unwrap();
            assert_eq!(Control::decode(&bytes).unwrap(), message);
        }
    }

    #[test]
    fn chunks_round_trip_with_small_overhead() {
        let data = vec![0xab; CHUNK_BYTES];
        let chunk = Chunk {
            transfer: TransferId(u64::MAX),
            seq: u32::MAX,
            data: &data,
        };
        let mut out = Vec::new();
        chunk.encode_into(&mut out).unwrap();
        assert!(out.len() <= MAX_DATA_FRAME, "{} bytes", out.len());
        assert!(
            out.len() - CHUNK_BYTES <= 20,
            "header is {} bytes",
            out.len() - CHUNK_BYTES
        );
        assert_eq!(Chunk::decode(&out).unwrap(), chunk);
    }

    /// `count` full chunks with the largest ids, and the frame that carries them.
    fn full_frame(data: &[u8], count: usize) -> (Vec<Chunk<'_>>, Vec<u8>) {
        let chunks: Vec<Chunk> = (0..count as u32)
            .map(|seq| Chunk {
                transfer: TransferId(u64::MAX),
                seq: u32::MAX - seq,
                data,
            })
            .collect();
        let mut frame = Vec::new();
        for chunk in &chunks {
            chunk.append_to(&mut frame).unwrap();
        }
        (chunks, frame)
    }

    #[test]
    fn frames_carry_up_to_fifteen_full_chunks_under_the_browser_message_limit() {
        let data = vec![0x5a; CHUNK_BYTES];
        // The default frame fits every stack's 64 KiB messages.
        let (three, frame) = full_frame(&data, CHUNKS_PER_FRAME);
        assert!(frame.len() <= 65_536);
        assert_eq!(Chunk::decode_frame(&frame).unwrap(), three);
        let (chunks, frame) = full_frame(&data, MAX_FRAME_CHUNKS);
        assert!(frame.len() <= MAX_DATA_FRAME && frame.len() <= 262_144);
        assert_eq!(Chunk::decode_frame(&frame).unwrap(), chunks);
        // A single-chunk frame is a frame too.
        let mut one = Vec::new();
        chunks[0].encode_into(&mut one).unwrap();
        assert_eq!(Chunk::decode_frame(&one).unwrap(), chunks[..1]);
        // One chunk too many, an empty frame and a cut-off chunk are refused.
        let mut sixteen = frame.clone();
        let small = Chunk {
            transfer: TransferId(1),
            seq: 0,
            data: &data[..1],
        };
        small.append_to(&mut sixteen).unwrap();
        assert!(sixteen.len() <= MAX_DATA_FRAME);
        assert!(Chunk::decode_frame(&sixteen).is_err());
        assert!(Chunk::decode_frame(&[]).is_err());
        assert!(Chunk::decode_frame(&frame[..frame.len() - 1]).is_err());
    }

    #[test]
    fn limits_are_enforced_both_ways() {
        let long_chat = Control::Chat {
            id: Uuid::nil(),
            sent_ms: 0,
            text: "x".repeat(MAX_CHAT_CHARS + 1),
        };
        assert!(matches!(long_chat.encode(), Err(DecodeError::Invalid(_))));
        // A peer that skips validation: encode raw, decode must still refuse.
        let raw = postcard::to_allocvec(&long_chat).unwrap();
        assert!(matches!(
            Control::decode(&raw),
            Err(DecodeError::Invalid(_))
        ));
        // Exactly at the limit is fine, in characters not bytes.
        let max_chat = Control::Chat {
            id: Uuid::nil(),
            sent_ms: 0,
            text: "é".repeat(MAX_CHAT_CHARS),
        };
        assert_eq!(
            Control::decode(&max_chat.encode().unwrap()).unwrap(),
            max_chat
        );

        let big = vec![0u8; CHUNK_BYTES + 1];
        let chunk = Chunk {
            transfer: TransferId(1),
            seq: 0,
            data: &big,
        };
        assert!(chunk.encode_into(&mut Vec::new()).is_err());
        let raw = postcard::to_allocvec(&chunk).unwrap();
        assert!(Chunk::decode(&raw).is_err());
        assert!(matches!(
            Control::decode(&vec![0u8; MAX_CONTROL_FRAME + 1]),
            Err(DecodeError::TooLarge { .. })
        ));

        // A call's session description is capped well below the frame limit.
        let huge_sdp = Control::Call(CallSignal::Answer {
            call: CallId(1),
            sdp: "a".repeat(crate::call::MAX_SDP_BYTES + 1),
        });
        assert!(matches!(huge_sdp.encode(), Err(DecodeError::Invalid(_))));
        let raw = postcard::to_allocvec(&huge_sdp).unwrap();
        assert!(matches!(
            Control::decode(&raw),
            Err(DecodeError::Invalid(_))
        ));

        // So is a lane's, and a lane number past the last is refused.
        for bad in [
            LaneSignal::Offer {
                lane: 0,
                sdp: "a".repeat(crate::call::MAX_SDP_BYTES + 1),
            },
            LaneSignal::Close {
                lane: crate::lane::MAX_LANES,
            },
        ] {
            let raw = postcard::to_allocvec(&Control::Lane(bad)).unwrap();
            assert!(matches!(
                Control::decode(&raw),
                Err(DecodeError::Invalid(_))
            ));
        }
        let fine = Control::Lane(LaneSignal::Candidate {
            lane: crate::lane::MAX_LANES - 1,
            candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
            mid: Some("0".into()),
            mline: Some(0),
        });
        assert_eq!(Control::decode(&fine.encode().unwrap()).unwrap(), fine);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = Control::Complete {
            transfer: TransferId(1),
        }
        .encode()
        .unwrap();
        bytes.push(0);
        assert!(matches!(
            Control::decode(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Control::decode(&bytes);
            let _ = Chunk::decode(&bytes);
            let _ = Chunk::decode_frame(&bytes);
        }

        #[test]
        fn corrupting_valid_frames_never_panics(index in 0usize..13, flip in any::<(usize, u8)>(), cut in any::<usize>()) {
            let mut bytes = samples()[index].encode().unwrap();
            let at = flip.0 % bytes.len();
            bytes[at] ^= flip.1;
            let _ = Control::decode(&bytes);
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = Control::decode(&bytes);
        }

        #[test]
        fn chat_text_round_trips(text in "\\PC{0,200}", sent_ms in any::<u64>()) {
            let message = Control::Chat { id: Uuid::from_u128(1), sent_ms, text };
            prop_assert_eq!(Control::decode(&message.encode().unwrap()).unwrap(), message);
        }
    }
}
