//! The authenticated hello, driven by the wire as messages arrive.
//!
//! The wire runs it, not a system of the frame: the browser's pump sorts arrivals between frames,
//! so the greet is answered and the proof checked the moment they arrive, and a slow or hidden
//! page does not add a frame per step. What it decides reaches the app as a [`HelloOutcome`].

use duet_shared::handshake::{Handshake, HandshakeError, Verified};
use duet_shared::peer::{Control, PROTOCOL_VERSION};
use duet_shared::trust::{DeviceKey, NONCE_BYTES};

/// Who this side is, for every connection of one socket.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The device's long-term key.
    pub key: DeviceKey,
    /// The room id the hello names.
    pub room: String,
    /// The name the proof carries (kept current on rename).
    pub name: String,
}

/// How one connection's hello ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloOutcome {
    /// The peer proved its key over this connection.
    Verified(Verified),
    /// It did not (someone in the middle, an impostor, broken order): the connection is over.
    Failed(HandshakeError),
}

/// One connection's hello in progress.
#[derive(Debug)]
pub(crate) struct HelloDriver {
    handshake: Handshake,
}

impl HelloDriver {
    /// Starts the hello of a connection negotiated with `local_sdp` and `remote_sdp`: returns the
    /// driver and what to send at once (hello, frames, greet), or why it cannot start.
    pub(crate) fn start(
        credentials: &Credentials,
        local_sdp: &str,
        remote_sdp: &str,
        frame_chunks: usize,
        stripes: bool,
    ) -> Result<(Self, Vec<Control>), HandshakeError> {
        let nonce: [u8; NONCE_BYTES] = random();
        let (handshake, greet) = Handshake::start(
            &credentials.room,
            local_sdp,
            remote_sdp,
            nonce,
            credentials.key.public(),
        )?;
        let first = vec![
            // What older versions read first: the version. Who this side is comes in its proof.
            Control::Hello {
                version: PROTOCOL_VERSION,
                identity: uuid::Uuid::nil(),
                name: String::new(),
            },
            // What this side's WebRTC stack takes; the wire reads the peer's.
            Control::Frames {
                chunks: frame_chunks.min(usize::from(u8::MAX)) as u8,
                stripes,
            },
            greet,
        ];
        Ok((Self { handshake }, first))
    }

    /// The peer's greet: this side's proof to send.
    pub(crate) fn on_greet(
        &mut self,
        commitment: [u8; 32],
        credentials: &Credentials,
    ) -> Result<Control, HandshakeError> {
        self.handshake
            .on_greet(commitment, &credentials.key, &credentials.name)
    }

    /// The peer's proof: who it is, if it verifies.
    pub(crate) fn on_proof(&mut self, proof: Control) -> Result<Verified, HandshakeError> {
        let Control::Proof {
            key,
            name,
            nonce,
            signature,
        } = proof
        else {
            return Err(HandshakeError::OutOfOrder);
        };
        self.handshake.on_proof(key, name, nonce, &signature)
    }
}

/// Fresh random bytes from the platform's generator. There is no way on without it: a
/// predictable key or nonce would be worse than stopping.
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the platform's random generator failed");
    bytes
}
