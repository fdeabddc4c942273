//! A hostile signaling server for the man-in-the-middle tests: it sits in front of the real one
//! and gives each of the two people a connection to a third peer that relays between them.
//!
//! [`Mitm`] listens on a loopback port. Every HTTP request (the page, the wasm, the API) passes
//! through to the real server untouched; the signaling WebSockets do not. The n-th one is sent to
//! room `rooms[n % 2]` of the real server, with the client's join proof replaced by a plain
//! identity (a hostile server can do whatever it likes with what it is sent). In each of those
//! rooms a [`Relay`] peer waits and passes every data-channel message on to the other room. Both
//! people think they are in the room of their link; each is connected, over real WebRTC, to
//! the relay, which holds its own DTLS certificates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use duet_shared::peer::{CONTROL_CHANNEL, Control, DATA_CHANNEL};
use matchbox_socket::{PeerId, PeerState, WebRtcSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use crate::loopback_ice;

/// The largest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;

/// The hostile signaling server and its relay. Stops when dropped.
pub struct Mitm {
    /// `http://127.0.0.1:PORT`, to put in the people's links.
    pub base: String,
    /// What the relay passed on, control messages decoded.
    pub relayed: Arc<std::sync::Mutex<Vec<Control>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Mitm {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Mitm {
    /// Starts the proxy in front of `upstream` (`http://127.0.0.1:PORT` of `wrangler dev`),
    /// splitting signaling between `rooms`, and the relay peers in both rooms.
    pub async fn start(upstream: &str, rooms: [String; 2]) -> Mitm {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let base = format!("http://{}", listener.local_addr().expect("proxy address"));
        let upstream_addr = upstream.trim_start_matches("http://").to_owned();
        let joins = Arc::new(AtomicUsize::new(0));
        let rooms = Arc::new(rooms);
        let proxy = {
            let rooms = rooms.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (upstream, rooms, joins) =
                        (upstream_addr.clone(), rooms.clone(), joins.clone());
                    tokio::spawn(async move {
                        let _ = forward(client, &upstream, &rooms, &joins).await;
                    });
                }
            })
        };
        let relayed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ws = upstream.replace("http://", "ws://");
        let urls = rooms
            .iter()
            .map(|room| format!("{ws}/signal/{room}?identity={}", Uuid::new_v4()))
            .collect::<Vec<_>>();
        let relay = tokio::spawn(relay(urls[0].clone(), urls[1].clone(), relayed.clone()));
        Mitm {
            base,
            relayed,
            tasks: vec![proxy, relay],
        }
    }

    /// The control messages the relay passed on so far.
    pub fn relayed(&self) -> Vec<Control> {
        self.relayed.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Passes one TCP connection on to `upstream`, rewriting the request line of a signaling
/// WebSocket so that it lands in one of `rooms` with no proof.
async fn forward(
    mut client: TcpStream,
    upstream: &str,
    rooms: &[String; 2],
    joins: &AtomicUsize,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let (line, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    let mut parts = line.splitn(3, ' ');
    let (method, path, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let head = if path.starts_with("/signal/") {
        let room = &rooms[joins.fetch_add(1, Ordering::SeqCst) % 2];
        format!(
            "{method} /signal/{room}?identity={} {version}\r\n{rest}",
            Uuid::new_v4()
        )
        .into_bytes()
    } else {
        head
    };
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// One relay peer: a matchbox socket in one room with Duet's two channels.
struct Side {
    socket: WebRtcSocket,
    peer: Option<PeerId>,
}

impl Side {
    fn join(url: &str) -> Side {
        let (socket, message_loop) = WebRtcSocket::builder(url)
            .ice_server(loopback_ice())
            .add_reliable_channel()
            .add_reliable_channel()
            .build();
        tokio::spawn(message_loop);
        Side { socket, peer: None }
    }

    fn update(&mut self) {
        for (peer, state) in self.socket.update_peers() {
            match state {
                PeerState::Connected => self.peer = Some(peer),
                _ if self.peer == Some(peer) => self.peer = None,
                _ => {}
            }
        }
    }
}

/// Whether `side` is connected to someone other than the last person it met (kept in `met`).
fn renewed(side: &Side, met: &mut Option<PeerId>) -> bool {
    let Some(peer) = side.peer else {
        return false;
    };
    let renewed = met.is_some_and(|before| before != peer);
    *met = Some(peer);
    renewed
}

/// Moves what arrived on `channel` from one side to the other's peer.
fn pass(from: &mut Side, to: &mut Side, channel: usize, relayed: &std::sync::Mutex<Vec<Control>>) {
    // Until both people are connected, what arrives waits in the socket, as a careful relay
    // would make it.
    let Some(target) = to.peer else {
        return;
    };
    for (_, packet) in from.socket.channel_mut(channel).receive() {
        if channel == CONTROL_CHANNEL
            && let Ok(message) = Control::decode(&packet)
            && let Ok(mut log) = relayed.lock()
        {
            log.push(message);
        }
        to.socket.channel_mut(channel).send(packet, target);
    }
}

/// Passes every message of both channels between the two rooms, as long as both people are
/// connected to it; what arrives while one is missing waits.
async fn relay(a: String, b: String, relayed: Arc<std::sync::Mutex<Vec<Control>>>) {
    let (url_a, url_b) = (a, b);
    let (mut a, mut b) = (Side::join(&url_a), Side::join(&url_b));
    let (mut met_a, mut met_b) = (None, None);
    loop {
        a.update();
        b.update();
        // A person who connected to the relay afresh (the first attempt timed out on a busy
        // machine) would never get the other's hello again, which went to the first
        // connection: the other side starts over with them, as with a real peer.
        if renewed(&a, &mut met_a) {
            b = Side::join(&url_b);
            met_b = None;
        }
        if renewed(&b, &mut met_b) {
            a = Side::join(&url_a);
            met_a = None;
        }
        for channel in [CONTROL_CHANNEL, DATA_CHANNEL] {
            pass(&mut a, &mut b, channel, &relayed);
            pass(&mut b, &mut a, channel, &relayed);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
