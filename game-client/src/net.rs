//! The connection to the room: a matchbox WebRTC socket with Duet's two reliable channels.
//!
//! This plugin owns the socket and nothing else: it reports the peer arriving and leaving, decodes
//! control frames into [`ControlReceived`] messages, encodes [`SendControl`] messages, and hands
//! raw data-channel frames to whoever asks. Malformed frames from the peer are reported as
//! [`NetEvent::BadFrame`] and dropped; they never crash the client.

use bevy::prelude::*;
use duet_shared::peer::{
    CHUNKS_PER_FRAME, CONTROL_CHANNEL, Control, DATA_CHANNEL, MAX_FRAME_CHUNKS,
};
use matchbox_socket::{PeerId, PeerState, RtcIceServerConfig, WebRtcSocket};

use crate::ports::{Capabilities, Host};

/// Where to connect. Set before the app starts; the socket opens on the first update.
#[derive(Resource, Debug, Clone)]
pub struct RoomLink {
    /// Signaling WebSocket URL without the identity, e.g. `ws://127.0.0.1:8787/signal/{room}`.
    pub signal_url: String,
    /// ICE servers (STUN/TURN). Empty means host candidates only.
    pub ice_servers: Vec<crate::config::IceServer>,
}

impl RoomLink {
    /// Accepts a room link (`http(s)://host/r/{room}`) or a signaling URL (`ws(s)://host/signal/{room}`).
    pub fn parse(link: &str) -> Result<Self, NetError> {
        let (scheme, rest) = link
            .split_once("://")
            .ok_or_else(|| NetError::BadLink(link.to_owned()))?;
        let ws = match scheme {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            _ => return Err(NetError::BadLink(link.to_owned())),
        };
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| NetError::BadLink(link.to_owned()))?;
        let room = path
            .strip_prefix("r/")
            .or_else(|| path.strip_prefix("signal/"))
            .map(|r| r.split(['?', '#', '/']).next().unwrap_or_default())
            .filter(|r| duet_shared::api::is_valid_room_id(r))
            .ok_or_else(|| NetError::BadLink(link.to_owned()))?;
        Ok(Self {
            signal_url: format!("{ws}://{host}/signal/{room}"),
            ice_servers: Vec::new(),
        })
    }

    /// The room's shareable page link on the server the link names (`http(s)://host/r/{room}`).
    pub fn page_link(&self) -> String {
        self.signal_url
            .replacen("ws", "http", 1)
            .replacen("/signal/", "/r/", 1)
    }

    /// The room id in the link.
    pub fn room(&self) -> &str {
        self.signal_url.rsplit('/').next().unwrap_or_default()
    }
}

/// Who this device says it is to the signaling server (`?identity=`). The identity plugin sets
/// it once the identity is loaded; the socket waits for it, so a reload is recognised (and a
/// ban holds) from the first connection.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalingIdentity(pub uuid::Uuid);

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The link is not a Duet room link.
    #[error("not a Duet room link: {0} (expected http://host/r/ROOM)")]
    BadLink(String),
    /// Encoding an outgoing message failed (it broke a protocol limit).
    #[error("cannot send: {0}")]
    Encode(#[from] duet_shared::peer::DecodeError),
    /// There is nobody to send to.
    #[error("your peer is not in the room")]
    NoPeer,
}

/// The open socket, once connected to signaling.
#[derive(Resource)]
pub struct Socket {
    socket: WebRtcSocket,
    /// Both channels to the peer.
    pub wire: Wire,
    announced_id: bool,
}

impl Socket {
    /// The one other person in the room, when connected.
    pub fn peer(&self) -> Option<PeerId> {
        self.wire.lock().peer
    }
}

/// Duet's two channels to the peer, shared: the frame loop reads and writes them, and in the
/// browser so does the transfer pump that runs between frames (file data must not wait for the
/// next drawn frame, and a hidden tab draws none). The mutex is never held across an await.
#[derive(Clone)]
pub struct Wire(std::sync::Arc<std::sync::Mutex<WireState>>);

impl Wire {
    /// The channels' state, locked (a poisoned lock is taken over: the state stays consistent
    /// because every method leaves it so).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, WireState> {
        crate::util::lock_shared(&self.0)
    }
}

/// Everything `rx` has ready now (registering `cx` for the next), and whether it is still open.
fn drain_ready(
    rx: &mut PacketRx,
    cx: &mut std::task::Context<'_>,
) -> (Vec<(PeerId, matchbox_socket::Packet)>, bool) {
    use futures::StreamExt;
    use std::task::Poll;
    let mut ready = Vec::new();
    loop {
        match rx.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => ready.push(item),
            Poll::Ready(None) => return (ready, false),
            Poll::Pending => return (ready, true),
        }
    }
}

/// How many bytes of frames may arrive before the app has seen the peer connect: a hello, an
/// offer and a credit window's worth of chunks fit easily; a lingering connection of someone
/// removed, or a peer flooding before its connection is announced, cannot fill memory.
pub const EARLY_BYTES: usize = 4 << 20;

type PacketTx = futures::channel::mpsc::UnboundedSender<(PeerId, matchbox_socket::Packet)>;
type PacketRx = futures::channel::mpsc::UnboundedReceiver<(PeerId, matchbox_socket::Packet)>;

/// What the peer's `Hello` decided for the current connection. The first one decides: until it
/// arrives, and after an incompatible one, nothing the peer sends is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HelloGate {
    /// No hello yet.
    Awaiting,
    /// Same protocol version: everything is processed.
    Compatible,
    /// Another protocol version: only its hello was passed on (so both sides say so in words).
    Incompatible,
    /// A second hello arrived: the connection is to be ended.
    Violated,
}

/// See [`Wire`]. Arrivals are sorted as they are pulled: control messages for the app (hello,
/// chat...), control messages for transfers, and file data.
pub struct WireState {
    peer: Option<PeerId>,
    control_tx: PacketTx,
    data_tx: PacketTx,
    control_rx: PacketRx,
    data_rx: PacketRx,
    for_app: std::collections::VecDeque<Result<Control, String>>,
    for_transfers: std::collections::VecDeque<Control>,
    data: std::collections::VecDeque<matchbox_socket::Packet>,
    early: Vec<(PeerId, usize, matchbox_socket::Packet)>,
    /// Bytes held in `early`, against [`EARLY_BYTES`].
    early_bytes: usize,
    /// What the peer's first `Hello` decided for this connection.
    hello: HelloGate,
    /// Most chunks the peer takes per data frame (its `Frames` message).
    peer_frame_chunks: usize,
    /// The identity the peer's (first) hello on this connection gave.
    peer_identity: Option<uuid::Uuid>,
    /// Most chunks per data frame this side's WebRTC stack takes ([`Capabilities`]).
    local_frame_chunks: usize,
}

impl WireState {
    /// The state of a fresh socket's two channels: nobody connected yet.
    fn new(
        control: (PacketTx, PacketRx),
        data: (PacketTx, PacketRx),
        local_frame_chunks: usize,
    ) -> Self {
        Self {
            peer: None,
            control_tx: control.0,
            data_tx: data.0,
            control_rx: control.1,
            data_rx: data.1,
            for_app: Default::default(),
            for_transfers: Default::default(),
            data: Default::default(),
            early: Vec::new(),
            early_bytes: 0,
            hello: HelloGate::Awaiting,
            peer_frame_chunks: CHUNKS_PER_FRAME,
            peer_identity: None,
            local_frame_chunks,
        }
    }

    /// The one other person in the room, when connected.
    pub fn peer(&self) -> Option<PeerId> {
        self.peer
    }

    /// The identity the connected peer's hello gave, once it has.
    pub fn peer_identity(&self) -> Option<uuid::Uuid> {
        self.peer_identity
    }

    /// How many chunks one data frame to the peer may carry: what both stacks take.
    pub fn frame_chunks(&self) -> usize {
        self.peer_frame_chunks.min(self.local_frame_chunks)
    }

    /// Sends raw bytes on the data channel to the peer.
    pub fn send_data(&mut self, bytes: Vec<u8>) -> Result<(), NetError> {
        let peer = self.peer.ok_or(NetError::NoPeer)?;
        self.data_tx
            .unbounded_send((peer, bytes.into()))
            .map_err(|_| NetError::NoPeer)
    }

    /// Sends a control message to the peer.
    pub fn send_control(&mut self, message: &Control) -> Result<(), NetError> {
        let peer = self.peer.ok_or(NetError::NoPeer)?;
        let bytes = message.encode()?;
        self.control_tx
            .unbounded_send((peer, bytes.into()))
            .map_err(|_| NetError::NoPeer)
    }

    /// Takes what arrived for file transfers: control messages, then data frames (as received:
    /// no copy).
    pub fn take_transfer_arrivals(&mut self) -> (Vec<Control>, Vec<matchbox_socket::Packet>) {
        self.pull();
        (
            self.for_transfers.drain(..).collect(),
            self.data.drain(..).collect(),
        )
    }

    fn take_app_arrivals(&mut self) -> Vec<Result<Control, String>> {
        self.pull();
        self.for_app.drain(..).collect()
    }

    /// Moves everything that arrived into the queues, without waiting.
    fn pull(&mut self) {
        while let Ok((from, packet)) = self.control_rx.try_recv() {
            self.sort_control(from, packet);
        }
        while let Ok((from, packet)) = self.data_rx.try_recv() {
            self.sort_data(from, packet);
        }
    }

    /// Pulls arrivals, registering `cx` to be woken by the next one. `Ready(true)`: something
    /// arrived; `Ready(false)`: the connection is gone (both channels closed).
    pub fn poll_arrivals(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<bool> {
        use std::task::Poll;
        let (control, control_open) = drain_ready(&mut self.control_rx, cx);
        let (data, data_open) = drain_ready(&mut self.data_rx, cx);
        let arrived = !control.is_empty() || !data.is_empty();
        for (from, packet) in control {
            self.sort_control(from, packet);
        }
        for (from, packet) in data {
            self.sort_data(from, packet);
        }
        if arrived {
            Poll::Ready(true)
        } else if !control_open && !data_open {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    }

    /// The peer's connection is up (or gone, with `None`). What arrived from them before the
    /// app saw them connect (the pump may pull first) is sorted now.
    fn set_peer(&mut self, peer: Option<PeerId>) {
        self.peer = peer;
        self.peer_frame_chunks = CHUNKS_PER_FRAME;
        self.early_bytes = 0;
        self.hello = HelloGate::Awaiting;
        self.peer_identity = None;
        for (from, channel, packet) in std::mem::take(&mut self.early) {
            if channel == CONTROL_CHANNEL {
                self.sort_control(from, packet);
            } else {
                self.sort_data(from, packet);
            }
        }
    }

    /// Whether a frame from `from` counts now; frames that arrive before the app has seen
    /// any peer connect wait in `early`.
    fn admit(&mut self, from: PeerId, channel: usize, packet: &matchbox_socket::Packet) -> bool {
        match self.peer {
            // Only the person in the room speaks: a removed peer's lingering connection is
            // ignored.
            Some(peer) => peer == from,
            None => {
                // Empty frames count too: each held one costs its bookkeeping.
                let cost = packet.len() + 64;
                if self.early_bytes + cost <= EARLY_BYTES {
                    self.early_bytes += cost;
                    self.early.push((from, channel, packet.clone()));
                }
                false
            }
        }
    }

    fn sort_control(&mut self, from: PeerId, packet: matchbox_socket::Packet) {
        if !self.admit(from, CONTROL_CHANNEL, &packet) {
            return;
        }
        let message = Control::decode(&packet);
        match (&self.hello, &message) {
            (
                HelloGate::Awaiting,
                Ok(Control::Hello {
                    version, identity, ..
                }),
            ) => {
                self.peer_identity = Some(*identity);
                self.hello = if *version == duet_shared::peer::PROTOCOL_VERSION {
                    HelloGate::Compatible
                } else {
                    HelloGate::Incompatible
                };
            }
            // A connection has one hello: a second one (another identity, another version) is a
            // protocol violation, and the connection is ended.
            (HelloGate::Compatible | HelloGate::Incompatible, Ok(Control::Hello { .. })) => {
                self.hello = HelloGate::Violated;
                return;
            }
            (HelloGate::Compatible, _) => {}
            // Before the hello, after an incompatible one or a violation: nothing is processed.
            _ => return,
        }
        match message {
            Ok(Control::Frames { chunks }) => {
                self.peer_frame_chunks =
                    usize::from(chunks).clamp(CHUNKS_PER_FRAME, MAX_FRAME_CHUNKS);
            }
            Ok(message) if message.is_transfer() => {
                debug!("control from the peer: {message:?}");
                self.for_transfers.push_back(message)
            }
            Ok(message) => self.for_app.push_back(Ok(message)),
            Err(e) => self.for_app.push_back(Err(e.to_string())),
        }
    }

    fn sort_data(&mut self, from: PeerId, packet: matchbox_socket::Packet) {
        if self.admit(from, DATA_CHANNEL, &packet) && self.hello == HelloGate::Compatible {
            self.data.push_back(packet);
        }
    }
}

/// Something happened to the connection.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum NetEvent {
    /// Signaling assigned us a peer id: we are in the room.
    Connected(PeerId),
    /// The other person's WebRTC connection is up.
    PeerJoined(PeerId),
    /// The other person left (or their connection dropped).
    PeerLeft(PeerId),
    /// A connection attempt with someone in the room ended without a connection (a bad offer,
    /// a timeout...). Only that attempt ended: we are still in the room.
    PeerFailed(matchbox_socket::HandshakeFailure),
    /// The peer sent a second `Hello` on one connection (a switch of identity or version): the
    /// connection is ended (the socket rebuilt) and both sides meet again from the start.
    SecondHello,
    /// The peer sent a frame that does not decode; it was dropped.
    BadFrame(String),
    /// Signaling refused or closed the connection (room full, banned, unknown room...).
    SignalingClosed(SignalingEnd),
}

/// Close every peer connection and join the room again with a fresh socket. Used after the
/// owner removes the peer: the server drops them from signaling, but an open WebRTC connection
/// would otherwise live on (matchbox keeps peer connections when signaling goes away).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildSocket;

/// A decoded control message from the peer.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct ControlReceived(pub Control);

/// Ask the net layer to send a control message to the peer.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct SendControl(pub Control);

/// A control message could not be sent.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct SendFailed {
    /// What we tried to send.
    pub message: Control,
    /// Why it failed, in words.
    pub reason: String,
}

/// Owns the socket: connect, presence, control channel.
pub struct NetPlugin;

impl Plugin for NetPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Capabilities>()
            .add_message::<NetEvent>()
            .add_message::<ControlReceived>()
            .add_message::<SendControl>()
            .add_message::<SendFailed>()
            .add_message::<RebuildSocket>()
            .add_systems(
                PreUpdate,
                (open_socket, poll_socket)
                    .chain()
                    .run_if(resource_exists::<RoomLink>),
            )
            .add_systems(
                PostUpdate,
                (flush_outgoing, close_when_left, rebuild_socket).chain(),
            );
    }
}

/// Signaling failure reported by the message loop task.
#[derive(Resource)]
struct LoopEnded(std::sync::Mutex<std::sync::mpsc::Receiver<String>>);

fn open_socket(
    mut commands: Commands,
    link: Res<RoomLink>,
    identity: Option<Res<SignalingIdentity>>,
    socket: Option<Res<Socket>>,
    (host, capabilities): (Res<Host>, Res<Capabilities>),
) {
    if socket.is_some() {
        return;
    }
    let Some(identity) = identity else {
        return;
    };
    host.runtime.prepare_network();
    let url = format!("{}?identity={}", link.signal_url, identity.0);
    let mut builder = WebRtcSocket::builder(url)
        .ice_server(ice_config(&link.ice_servers))
        .reconnect_attempts(Some(3));
    // Fixed order on both sides: matchbox pre-negotiates channels by index.
    builder = builder.add_reliable_channel().add_reliable_channel();
    let (mut socket, message_loop) = builder.build();
    let (Ok(control), Ok(data)) = (
        socket.take_channel(CONTROL_CHANNEL),
        socket.take_channel(DATA_CHANNEL),
    ) else {
        unreachable!("the builder above added both channels");
    };
    let ((control_tx, control_rx), (data_tx, data_rx)) = (control.split(), data.split());
    let wire = Wire(std::sync::Arc::new(std::sync::Mutex::new(WireState::new(
        (control_tx, control_rx),
        (data_tx, data_rx),
        capabilities.frame_chunks,
    ))));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    host.runtime.spawn_loop(Box::pin(async move {
        let reason = match message_loop.await {
            Ok(()) => "signaling connection closed".to_owned(),
            // The inner error carries the HTTP status the worker refused with.
            Err(matchbox_socket::Error::ConnectionFailed(inner)) => {
                format!("signaling failed: {inner}")
            }
            Err(matchbox_socket::Error::Disconnected(inner)) => {
                format!("signaling connection closed: {inner}")
            }
        };
        let _ = tx.send(reason);
    }));
    commands.insert_resource(LoopEnded(std::sync::Mutex::new(rx)));
    commands.insert_resource(Socket {
        socket,
        wire,
        announced_id: false,
    });
}

/// matchbox takes one ICE server entry: all URLs, with the first credentials given (a TURN
/// deployment normally has one user for all of its URLs).
fn ice_config(servers: &[crate::config::IceServer]) -> RtcIceServerConfig {
    RtcIceServerConfig {
        urls: servers.iter().flat_map(|s| s.urls.clone()).collect(),
        username: servers.iter().find_map(|s| s.username.clone()),
        credential: servers.iter().find_map(|s| s.credential.clone()),
    }
}

fn poll_socket(
    socket: Option<ResMut<Socket>>,
    ended: Option<Res<LoopEnded>>,
    mut events: MessageWriter<NetEvent>,
    mut received: MessageWriter<ControlReceived>,
    mut rebuild: MessageWriter<RebuildSocket>,
) {
    let Some(mut socket) = socket else {
        return;
    };
    if !socket.announced_id
        && let Some(id) = socket.socket.id()
    {
        socket.announced_id = true;
        events.write(NetEvent::Connected(id));
    }
    // Checked first: once the loop has ended, the socket's channels are closed and
    // `try_update_peers` fails, so this would never be reached below it.
    if let Some(ended) = ended
        && let Ok(rx) = ended.0.lock()
        && let Ok(reason) = rx.try_recv()
    {
        events.write(NetEvent::SignalingClosed(SignalingEnd::from_loop_error(
            &reason,
        )));
    }
    let Ok(changes) = socket.socket.try_update_peers() else {
        return;
    };
    let mut wire = socket.wire.lock();
    for (peer, state) in changes {
        match state {
            PeerState::Connected => {
                wire.set_peer(Some(peer));
                events.write(NetEvent::PeerJoined(peer));
            }
            // Only the person in the room leaves: the end of a connection that never became
            // theirs (a replaced one, a stranger's failed attempt) is nobody leaving.
            PeerState::Disconnected if wire.peer == Some(peer) => {
                wire.set_peer(None);
                events.write(NetEvent::PeerLeft(peer));
            }
            PeerState::Disconnected => {}
            PeerState::Failed(why) => {
                events.write(NetEvent::PeerFailed(why));
            }
        }
    }
    let arrivals = wire.take_app_arrivals();
    if wire.hello == HelloGate::Violated {
        // Handled once: the rebuilt socket's wire starts over.
        wire.hello = HelloGate::Incompatible;
        events.write(NetEvent::SecondHello);
        rebuild.write(RebuildSocket);
    }
    for arrival in arrivals {
        match arrival {
            Ok(message) => {
                received.write(ControlReceived(message));
            }
            Err(e) => {
                events.write(NetEvent::BadFrame(e));
            }
        }
    }
}

/// Leaving the room (the link resource removed) closes the socket: dropping it ends matchbox's
/// message loop, which closes the signaling WebSocket and the peer connection.
fn close_when_left(
    mut commands: Commands,
    link: Option<Res<RoomLink>>,
    socket: Option<Res<Socket>>,
) {
    if link.is_none() && socket.is_some() {
        commands.remove_resource::<Socket>();
        commands.remove_resource::<LoopEnded>();
    }
}

fn rebuild_socket(mut commands: Commands, mut asks: MessageReader<RebuildSocket>) {
    if asks.read().count() > 0 {
        // `open_socket` opens a new one on the next frame, as the room link is still there.
        commands.remove_resource::<Socket>();
        commands.remove_resource::<LoopEnded>();
    }
}

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
    /// Reads matchbox's signaling error text. The worker refuses before the WebSocket upgrade
    /// with an HTTP status (see the README's API table), which tungstenite reports as
    /// `HTTP error: 409 Conflict` and so on.
    pub fn from_loop_error(reason: &str) -> Self {
        let has = |needle: &str| reason.contains(needle);
        if has("HTTP error: 409") {
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

fn flush_outgoing(
    mut socket: Option<ResMut<Socket>>,
    mut outgoing: MessageReader<SendControl>,
    mut failed: MessageWriter<SendFailed>,
) {
    for SendControl(message) in outgoing.read() {
        let result = match socket.as_mut() {
            Some(socket) => socket.wire.lock().send_control(message),
            None => Err(NetError::NoPeer),
        };
        if let Err(e) = result {
            failed.write(SendFailed {
                message: message.clone(),
                reason: e.to_string(),
            });
        }
    }
}

/// For logic tests of the modules above `net`: an app with the connection's messages and no
/// socket, which a test writes and reads as messages; `dir` (if any) holds its key-value store.
#[cfg(test)]
pub mod testing {
    use bevy::prelude::*;

    use super::{ControlReceived, NetEvent, SendControl};

    /// `MinimalPlugins`, the connection's messages, and a key-value store in `dir`.
    pub fn offline_app(dir: Option<&std::path::Path>) -> App {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .add_message::<NetEvent>()
            .add_message::<ControlReceived>()
            .add_message::<SendControl>();
        if let Some(dir) = dir {
            app.insert_resource(bevy_pkv::PkvStore::new_in_dir(dir));
        }
        app
    }

    /// Every message of type `M` written since the last drain.
    pub fn drain<M: Message>(app: &mut App) -> Vec<M> {
        app.world_mut()
            .resource_mut::<Messages<M>>()
            .drain()
            .collect()
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
    }

    fn new_wire() -> WireState {
        let mut wire = WireState::new(
            futures::channel::mpsc::unbounded(),
            futures::channel::mpsc::unbounded(),
            CHUNKS_PER_FRAME,
        );
        wire.hello = HelloGate::Compatible;
        wire
    }

    #[test]
    fn frames_before_the_peer_is_announced_are_held_up_to_a_byte_budget() {
        let mut wire = new_wire();
        let peer = PeerId(uuid::Uuid::new_v4());
        // Its hello, then 1 GiB of 64 KiB frames and a million empty ones, before the peer is
        // announced.
        let hello = Control::Hello {
            version: duet_shared::peer::PROTOCOL_VERSION,
            identity: uuid::Uuid::new_v4(),
            name: "Mallory".into(),
        };
        wire.sort_control(peer, hello.encode().unwrap().into());
        let big = matchbox_socket::Packet::from(vec![7u8; 64 * 1024]);
        for _ in 0..16_384 {
            wire.sort_data(peer, big.clone());
        }
        for _ in 0..1_000_000 {
            wire.sort_control(peer, matchbox_socket::Packet::new());
        }
        let held: usize = wire.early.iter().map(|(_, _, p)| p.len()).sum();
        assert!(wire.early_bytes <= EARLY_BYTES, "{}", wire.early_bytes);
        assert!((EARLY_BYTES / 2..=EARLY_BYTES).contains(&held), "{held}");
        assert!(wire.early.len() < EARLY_BYTES / 64);
        // Once the peer is announced, what was held is delivered and the budget starts over.
        let frames = wire
            .early
            .iter()
            .filter(|(_, channel, _)| *channel == DATA_CHANNEL)
            .count();
        wire.set_peer(Some(peer));
        assert_eq!(wire.data.len(), frames);
        assert_eq!(wire.early_bytes, 0);
        // Frames of someone else than the announced peer are dropped, not held.
        wire.sort_data(PeerId(uuid::Uuid::new_v4()), big);
        assert_eq!(wire.data.len(), frames);
        assert!(wire.early.is_empty());
    }

    fn hello(version: u16) -> matchbox_socket::Packet {
        Control::Hello {
            version,
            identity: uuid::Uuid::new_v4(),
            name: "Mallory".into(),
        }
        .encode()
        .unwrap()
        .into()
    }

    fn chat() -> matchbox_socket::Packet {
        Control::Chat {
            id: uuid::Uuid::new_v4(),
            sent_ms: 1,
            text: "hi".into(),
        }
        .encode()
        .unwrap()
        .into()
    }

    #[test]
    fn the_first_hello_decides_and_a_second_one_is_a_violation() {
        use duet_shared::peer::PROTOCOL_VERSION;
        let peer = PeerId(uuid::Uuid::new_v4());
        let chats = |wire: &mut WireState| {
            wire.take_app_arrivals()
                .into_iter()
                .filter(|a| matches!(a, Ok(Control::Chat { .. })))
                .count()
        };
        // Before any hello nothing is processed.
        let mut wire = new_wire();
        wire.set_peer(Some(peer));
        wire.sort_control(peer, chat());
        wire.sort_data(peer, vec![1, 2, 3].into());
        assert_eq!(chats(&mut wire), 0);
        assert!(wire.data.is_empty());
        // An incompatible hello is passed on (to be said in words), and then nothing is.
        wire.sort_control(peer, hello(PROTOCOL_VERSION + 1));
        assert!(matches!(
            wire.take_app_arrivals()[..],
            [Ok(Control::Hello { .. })]
        ));
        wire.sort_control(peer, chat());
        wire.sort_data(peer, vec![1, 2, 3].into());
        assert_eq!(chats(&mut wire), 0);
        assert!(wire.data.is_empty());
        // A compatible hello after it does not undo that: it is a second hello.
        wire.sort_control(peer, hello(PROTOCOL_VERSION));
        assert_eq!(wire.hello, HelloGate::Violated);
        assert!(wire.take_app_arrivals().is_empty());
        // A compatible connection: chat flows, until a second hello.
        let mut wire = new_wire();
        wire.set_peer(Some(peer));
        wire.sort_control(peer, hello(PROTOCOL_VERSION));
        wire.sort_control(peer, chat());
        wire.sort_data(peer, vec![1, 2, 3].into());
        assert_eq!(wire.data.len(), 1);
        assert_eq!(
            wire.take_app_arrivals()
                .into_iter()
                .filter(|a| matches!(a, Ok(Control::Chat { .. })))
                .count(),
            1
        );
        wire.sort_control(peer, hello(PROTOCOL_VERSION));
        wire.sort_control(peer, chat());
        assert_eq!(wire.hello, HelloGate::Violated);
        assert_eq!(chats(&mut wire), 0);
    }

    #[test]
    fn room_links_become_signaling_urls() {
        let room = "abcdefghijklmnopqrstuv";
        let link = RoomLink::parse(&format!("http://127.0.0.1:8787/r/{room}")).unwrap();
        assert_eq!(
            link.signal_url,
            format!("ws://127.0.0.1:8787/signal/{room}")
        );
        assert_eq!(link.room(), room);
        let link = RoomLink::parse(&format!("https://duet.example/r/{room}?x#y")).unwrap();
        assert_eq!(link.signal_url, format!("wss://duet.example/signal/{room}"));
        let link = RoomLink::parse(&format!("ws://h:1/signal/{room}")).unwrap();
        assert_eq!(link.signal_url, format!("ws://h:1/signal/{room}"));
        for bad in [
            "",
            "nonsense",
            "ftp://h/r/abc",
            "http://h/r/short",
            "http://h/x/abcdefghijklmnopqrstuv",
        ] {
            assert!(RoomLink::parse(bad).is_err(), "{bad}");
        }
    }
}
