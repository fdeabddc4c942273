//! The authenticated hello: two peers prove their long-term keys over this very connection.
//!
//! Once the WebRTC connection is up, each side runs one [`Handshake`]:
//! 1. it sends [`Control::Greet`] with a commitment to a fresh nonce;
//! 2. on the peer's greet it sends [`Control::Proof`]: its public key, its name, its nonce and a
//!    signature over the [`Transcript`] (the room, both DTLS fingerprints as it sees them, its
//!    nonce and the peer's commitment);
//! 3. on the peer's proof it checks the nonce against the commitment and the signature against
//!    the transcript as this side sees it. Only then is the peer someone: [`Verified`].
//!
//! Someone relaying between the two sides holds other DTLS certificates than the two ends, so the
//! fingerprints in the transcript one side signs are not those the other side sees, and the check
//! fails with [`HandshakeError::Intercepted`]. A peer naming another key without its secret fails
//! the same way. The machine is pure: the caller passes the descriptions, the nonce and the key.

use crate::peer::{Control, MAX_DISPLAY_NAME_CHARS};
use crate::trust::{self, DeviceKey, NONCE_BYTES, PublicKey, Side, Sig, Transcript, commit};

/// Why a handshake ended without a verified peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A session description names no single DTLS fingerprint, so nothing can be bound to it.
    #[error("the connection's description names no single certificate")]
    NoFingerprint,
    /// The peer's proof does not verify against this connection: someone may be relaying
    /// between the two sides, or the peer claims a key it does not hold.
    #[error("the peer's proof does not match this connection")]
    Intercepted,
    /// The peer revealed a nonce other than the one it committed to.
    #[error("the peer's nonce does not match its commitment")]
    BrokenCommitment,
    /// A greet or proof out of order: a proof before the greet, a second greet or proof.
    #[error("the peer broke the order of the hello")]
    OutOfOrder,
    /// The proof's name breaks the protocol's limit.
    #[error("the peer's name is too long")]
    BadName,
    /// The peer did not prove who it is in time (an app that never answers, or one that
    /// holds the seat without proving anything).
    #[error("the peer did not finish the hello in time")]
    TimedOut,
}

/// The peer, once its proof verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its long-term key: who it is.
    pub key: PublicKey,
    /// The name it gave (unverified words, checked only for length).
    pub name: String,
    /// The code both people see when nobody is in the middle.
    pub safety_code: String,
}

/// One side's hello on one connection.
#[derive(Debug, Clone)]
pub struct Handshake {
    room: String,
    own_dtls: String,
    peer_dtls: String,
    own_nonce: [u8; NONCE_BYTES],
    own_key: PublicKey,
    peer_commitment: Option<[u8; 32]>,
    verified: Option<Verified>,
}

impl Handshake {
    /// A handshake for the connection negotiated with `local_sdp` (this side's) and
    /// `remote_sdp` (the peer's), in `room`, with a fresh random `nonce`. Also returns the greet
    /// to send at once.
    pub fn start(
        room: &str,
        local_sdp: &str,
        remote_sdp: &str,
        nonce: [u8; NONCE_BYTES],
        own_key: PublicKey,
    ) -> Result<(Self, Control), HandshakeError> {
        let fingerprint =
            |sdp: &str| trust::dtls_fingerprint(sdp).map_err(|_| HandshakeError::NoFingerprint);
        let handshake = Self {
            room: room.to_owned(),
            own_dtls: fingerprint(local_sdp)?,
            peer_dtls: fingerprint(remote_sdp)?,
            own_nonce: nonce,
            own_key,
            peer_commitment: None,
            verified: None,
        };
        let greet = Control::Greet {
            commitment: commit(&nonce),
        };
        Ok((handshake, greet))
    }

    /// The peer's greet: returns this side's proof to send. A second greet is refused.
    pub fn on_greet(
        &mut self,
        commitment: [u8; 32],
        key: &DeviceKey,
        name: &str,
    ) -> Result<Control, HandshakeError> {
        if self.peer_commitment.is_some() {
            return Err(HandshakeError::OutOfOrder);
        }
        self.peer_commitment = Some(commitment);
        let transcript = Transcript {
            room: &self.room,
            own_dtls: &self.own_dtls,
            peer_dtls: &self.peer_dtls,
            own_nonce: self.own_nonce,
            peer_commitment: commitment,
        };
        Ok(Control::Proof {
            key: key.public(),
            name: name.to_owned(),
            nonce: self.own_nonce,
            signature: key.sign_hello(&transcript),
        })
    }

    /// The peer's proof: who it is, if it verifies. A proof before the greet, or a second proof
    /// (a change of key within the session), is refused.
    pub fn on_proof(
        &mut self,
        key: PublicKey,
        name: String,
        nonce: [u8; NONCE_BYTES],
        signature: &Sig,
    ) -> Result<Verified, HandshakeError> {
        let Some(commitment) = self.peer_commitment else {
            return Err(HandshakeError::OutOfOrder);
        };
        if self.verified.is_some() {
            return Err(HandshakeError::OutOfOrder);
        }
        if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
            return Err(HandshakeError::BadName);
        }
        trust::check_commitment(&nonce, &commitment)
            .map_err(|_| HandshakeError::BrokenCommitment)?;
        let mine = Transcript {
            room: &self.room,
            own_dtls: &self.own_dtls,
            peer_dtls: &self.peer_dtls,
            own_nonce: self.own_nonce,
            peer_commitment: commitment,
        };
        let theirs = mine.as_seen_by_peer(nonce, &self.own_nonce);
        key.verify_hello(&theirs, signature)
            .map_err(|_| HandshakeError::Intercepted)?;
        let safety_code = trust::safety_code(
            Side {
                key: &self.own_key,
                dtls: &self.own_dtls,
                nonce: &self.own_nonce,
            },
            Side {
                key: &key,
                dtls: &self.peer_dtls,
                nonce: &nonce,
            },
        );
        let verified = Verified {
            key,
            name,
            safety_code,
        };
        self.verified = Some(verified.clone());
        Ok(verified)
    }

    /// The peer, once verified.
    pub fn verified(&self) -> Option<&Verified> {
        self.verified.as_ref()
    }
}

#[cfg(test)]
mod tests;
