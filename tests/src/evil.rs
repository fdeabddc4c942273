//! The hostile peer of the hostile-peer tests and `cargo xtask bench hostile`: a raw matchbox
//! socket with Duet's two channels that encodes without Duet's limits, as an attacker would.

use std::time::{Duration, Instant};

use duet_shared::handshake::Handshake;
use duet_shared::peer::{
    CONTROL_CHANNEL, Chunk, Control, DATA_CHANNEL, PROTOCOL_VERSION, TransferId,
};
use matchbox_socket::{PeerId, PeerState, WebRtcSocket};

use crate::loopback_ice;

/// The evil peer: a raw matchbox socket with Duet's two channels.
pub struct Evil {
    /// The socket (both channels).
    pub socket: WebRtcSocket,
    /// The victim.
    pub peer: PeerId,
    /// The room id (from the signaling URL), which the authenticated hello names.
    pub room: String,
}

impl Evil {
    /// Joins the room at `url` and waits until the victim's connection is open.
    pub async fn join(url: &str) -> Evil {
        let (mut socket, message_loop) = WebRtcSocket::builder(url)
            .ice_server(loopback_ice())
            .add_reliable_channel()
            .add_reliable_channel()
            .build();
        tokio::spawn(message_loop);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "evil peer never connected");
            for (peer, state) in socket.update_peers() {
                if state == PeerState::Connected {
                    let room = url
                        .split("/signal/")
                        .nth(1)
                        .and_then(|rest| rest.split('?').next())
                        .unwrap_or_default()
                        .to_owned();
                    return Evil { socket, peer, room };
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the victim's new connection after it ended the old one.
    pub async fn reconnected(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "the victim never came back");
            for (peer, state) in self.socket.update_peers() {
                if state == PeerState::Connected && peer != self.peer {
                    self.peer = peer;
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Says hello as a Duet peer with a key of its own: the victim takes nothing from anyone
    /// before that peer has proven a key over this connection. Mallory is hostile, not an
    /// impostor: what she sends after this is what the tests are about.
    pub async fn introduce(&mut self, name: &str) {
        self.introduce_as(name, &crate::random_device()).await;
    }

    /// [`Evil::introduce`] with a key of the attacker's choosing (its UUID decides, for
    /// example, which side may open lanes).
    pub async fn introduce_as(&mut self, name: &str, key: &duet_shared::trust::DeviceKey) {
        let descriptions = self
            .socket
            .session_descriptions(self.peer)
            .expect("the connection's descriptions")
            .clone();
        let (mut handshake, greet) = Handshake::start(
            &self.room,
            &descriptions.local,
            &descriptions.remote,
            *uuid::Uuid::new_v4().as_bytes(),
            key.public(),
        )
        .expect("fingerprints in both descriptions");
        self.control(&Control::Hello {
            version: PROTOCOL_VERSION,
            identity: uuid::Uuid::nil(),
            name: String::new(),
        });
        self.control(&greet);
        let Control::Greet { commitment } = self
            .expect("the victim's greet", |m| matches!(m, Control::Greet { .. }))
            .await
        else {
            unreachable!("expect returned a greet");
        };
        let proof = handshake
            .on_greet(commitment, key, name)
            .expect("the first greet");
        self.control(&proof);
    }

    /// Sends one control frame, encoded as Duet would but without its limits.
    pub fn control(&mut self, message: &Control) {
        // Encoded without validation: a hostile peer does not respect our limits.
        let bytes = duet_shared::peer::encode_unchecked(message);
        self.socket
            .channel_mut(CONTROL_CHANNEL)
            .send(bytes.into(), self.peer);
    }

    /// Sends arbitrary bytes on a channel.
    pub fn raw(&mut self, channel: usize, bytes: Vec<u8>) {
        self.socket
            .channel_mut(channel)
            .send(bytes.into(), self.peer);
    }

    /// Sends one chunk frame of a transfer.
    pub fn chunk(&mut self, transfer: u64, seq: u32, data: &[u8]) {
        let mut frame = Vec::new();
        Chunk {
            transfer: TransferId(transfer),
            seq,
            data,
        }
        .encode_into(&mut frame)
        .unwrap();
        self.raw(DATA_CHANNEL, frame);
    }

    /// Waits for the victim's control message matching `want`.
    pub async fn expect(&mut self, what: &str, want: impl Fn(&Control) -> bool) -> Control {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no {what} from the client");
            for (_, packet) in self.socket.channel_mut(CONTROL_CHANNEL).receive() {
                if let Ok(message) = Control::decode(&packet)
                    && want(&message)
                {
                    return message;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
