//! The native WebRTC reference the transfer benchmarks measure Duet against: stock
//! `matchbox_socket` in a tight async loop, one 16 KiB chunk per message, a fixed number of
//! chunks in flight acknowledged one by one, no disk, no hashing, no frame loop.
//!
//! Each peer is a child process (the benchmark's own binary in a child mode): `connected` on
//! stdout once the peer connection is up; the sender waits for a line on stdin, then sends;
//! the receiver prints `done` when all bytes arrived.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use matchbox_socket::{PeerId, PeerState, RtcIceServerConfig, WebRtcSocket};

/// One chunk, as Duet's.
pub const CHUNK: usize = 16 * 1024;

/// What a reference peer does.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Signaling URL (a stock matchbox server, or the Worker's stock `?identity=` URL).
    pub url: String,
    /// Its ICE servers.
    pub ice: RtcIceServerConfig,
    /// Chunks in flight (unacknowledged) at most.
    pub window: u64,
    /// Bytes the receiver waits for.
    pub size: usize,
    /// `matchbox_socket`'s UDP buffer and SCTP receive buffer, when set (Duet asks for 4 MiB
    /// of each): the same stack as Duet's.
    pub udp_buffer: Option<usize>,
}

impl Peer {
    /// Sends `source` (when given) or receives `size` bytes; see the module.
    pub fn run(&self, source: Option<&Path>) -> Result<()> {
        if let Some(bytes) = self.udp_buffer {
            matchbox_socket::set_udp_buffer_size(bytes);
            matchbox_socket::set_sctp_receive_buffer_size(bytes as u32);
        }
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(self.run_async(source))
    }

    async fn run_async(&self, source: Option<&Path>) -> Result<()> {
        let (mut socket, peer) = connect(&self.url, self.ice.clone()).await;
        let mut channel = socket.take_channel(0).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(source) = source {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let mut file = std::fs::File::open(source)?;
            let mut buf = vec![0u8; CHUNK];
            let (mut sent, mut acked) = (0u64, 0u64);
            loop {
                while sent - acked < self.window {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    channel.send(buf[..n].to_vec().into(), peer);
                    sent += 1;
                }
                if sent == acked {
                    break;
                }
                let (_, ack) = channel.next().await.context("receiver gone")?;
                acked = u64::from_le_bytes(ack[..8].try_into()?);
            }
            // Keep the channel (and socket) alive until the parent kills us.
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = socket.update_peers();
                let _ = channel.receive();
            }
        }
        let (mut received, mut count) = (0usize, 0u64);
        while received < self.size {
            let (_, chunk) = channel.next().await.context("sender gone")?;
            received += chunk.len();
            count += 1;
            channel.send(count.to_le_bytes().to_vec().into(), peer);
        }
        println!("done");
        Ok(())
    }
}

/// A stock socket with one reliable channel at `url`, once a peer is connected (the message
/// loop runs on the current tokio runtime); prints `connected`.
pub async fn connect(url: &str, ice: RtcIceServerConfig) -> (WebRtcSocket, PeerId) {
    let (mut socket, message_loop) = WebRtcSocket::builder(url)
        .ice_server(ice)
        .add_reliable_channel()
        .build();
    tokio::spawn(message_loop);
    let peer = loop {
        if let Some((peer, _)) = socket
            .update_peers()
            .into_iter()
            .find(|(_, s)| *s == PeerState::Connected)
        {
            break peer;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!("connected");
    (socket, peer)
}
