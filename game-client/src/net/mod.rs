//! The connection to the room: a matchbox WebRTC socket with Duet's two reliable channels.
//!
//! This plugin owns the socket and nothing else: it reports the peer arriving and leaving, decodes
//! control frames into [`ControlReceived`] messages, encodes [`SendControl`] messages, and hands
//! raw data-channel frames to whoever asks. Malformed frames from the peer are reported as
//! [`NetEvent::BadFrame`] and dropped; they never crash the client.

mod end;
mod hello;
mod ice;
mod retry;
mod wire;

use bevy::prelude::*;
use duet_shared::liveness::Health;
use duet_shared::peer::{CONTROL_CHANNEL, Control, DATA_CHANNEL};
use duet_shared::trust::DeviceKey;
use matchbox_socket::{PeerId, PeerState, RtcIceServerConfig, WebRtcSocket};

pub use end::SignalingEnd;
pub use hello::{Credentials, HelloOutcome, random};
pub use ice::{ICE_FETCH_TIMEOUT_MS, IceServers, IceSource};
pub use matchbox_socket::SessionDescriptions;
pub use retry::OpeningRetry;
use wire::HelloGate;
pub use wire::{EARLY_BYTES, HELD_MESSAGES, HELLO_TIMEOUT_MS, Wire, WireState};

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

/// The key this device proves itself with to the signaling server: each join carries a fresh
/// proof by its key for the room ([`duet_shared::trust::JoinProof`]), never the key itself. The
/// identity plugin sets it once the identity is loaded; the socket waits for it, so a reload is
/// recognised (and a ban holds) from the first connection.
#[derive(Resource, Debug, Clone)]
pub struct SignalingIdentity {
    /// The device's long-term key.
    pub key: DeviceKey,
    /// The name this side's hello proofs carry.
    pub name: String,
}

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
    /// The candidate pair last reported for the peer's connection.
    path: Option<matchbox_socket::CandidatePair>,
}

impl Socket {
    /// The one other person in the room, when connected.
    pub fn peer(&self) -> Option<PeerId> {
        self.wire.lock().peer()
    }
}

/// Something happened to the connection.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum NetEvent {
    /// The socket is about to open with these STUN/TURN servers.
    IceServers(IceServers),
    /// Signaling assigned us a peer id: we are in the room.
    Connected(PeerId),
    /// The ICE candidate pair the peer's connection runs over (first known, or changed):
    /// direct, through a NAT's public address, or through a TURN relay.
    Path(matchbox_socket::CandidatePair),
    /// How the link to the trusted peer is: its round trip, or how long it has been silent
    /// (reported when it changes; at most about once a second).
    Link(Health),
    /// The other person's WebRTC connection is up.
    PeerJoined(PeerId),
    /// The other person left (or their connection dropped).
    PeerLeft(PeerId),
    /// A connection attempt with someone in the room ended without a connection (a bad offer,
    /// a timeout...). Only that attempt ended: we are still in the room.
    PeerFailed(matchbox_socket::HandshakeFailure),
    /// A connection attempt found a path but did not open in time: this side joins the room
    /// again, once, for a fresh attempt ([`OpeningRetry`]). A second such failure is a
    /// [`NetEvent::PeerFailed`].
    Retrying(matchbox_socket::HandshakeFailure),
    /// The peer sent a second `Hello` on one connection (a switch of identity or version): the
    /// connection is ended (the socket rebuilt) and both sides meet again from the start.
    SecondHello,
    /// The peer's connection was negotiated with these descriptions (right after
    /// [`NetEvent::PeerJoined`]): the authenticated hello binds itself to their certificates.
    Negotiated(SessionDescriptions),
    /// The peer proved its key over this connection: from now on everything it sends is taken.
    PeerVerified(duet_shared::handshake::Verified),
    /// The peer's authenticated hello failed: nothing more is taken from this connection.
    HelloFailed(duet_shared::handshake::HandshakeError),
    /// The peer sent a frame that does not decode; it was dropped.
    BadFrame(String),
    /// Signaling refused or closed the connection (room full, banned, unknown room...).
    SignalingClosed(SignalingEnd),
}

/// How the link to the trusted peer is now (`None`: no trusted peer). What [`NetEvent::Link`]
/// reports, kept for whoever must decide on it (chat refuses to send into an interrupted link).
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkHealth(pub Option<Health>);

impl LinkHealth {
    /// Whether a trusted peer's link has gone quiet.
    pub fn interrupted(&self) -> bool {
        self.0.is_some_and(|h| h.is_quiet())
    }
}

/// Close every peer connection and join the room again with a fresh socket. Used after the
/// owner removes the peer: the server drops them from signaling, but an open WebRTC connection
/// would otherwise live on (matchbox keeps peer connections when signaling goes away).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildSocket;

/// Leave the room and stay out until asked to rejoin ([`RebuildSocket`]): every connection is
/// closed. For when staying would be wrong: the seat was taken by this person elsewhere, or
/// someone may be in the middle of the connection.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect;

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
            .init_resource::<LinkHealth>()
            .init_resource::<OpeningRetry>()
            .add_message::<NetEvent>()
            .add_message::<ControlReceived>()
            .add_message::<SendControl>()
            .add_message::<SendFailed>()
            .add_message::<RebuildSocket>()
            .add_message::<Disconnect>()
            .add_systems(
                PreUpdate,
                (open_socket, poll_socket)
                    .chain()
                    .run_if(resource_exists::<RoomLink>),
            )
            .add_systems(
                PostUpdate,
                (
                    sync_hello_name,
                    flush_outgoing,
                    close_when_left,
                    disconnect,
                    rebuild_socket,
                )
                    .chain(),
            );
    }
}

/// Signaling failure reported by the message loop task.
#[derive(Resource)]
struct LoopEnded(std::sync::Mutex<std::sync::mpsc::Receiver<SignalingEnd>>);

/// Set while this side stays out of the room on purpose (another tab took the seat, someone
/// may be in the middle): no socket is opened until something asks to rejoin
/// ([`RebuildSocket`]).
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct StayingOut;

fn open_socket(
    mut commands: Commands,
    (link, mut retry): (Res<RoomLink>, ResMut<OpeningRetry>),
    identity: Option<Res<SignalingIdentity>>,
    socket: Option<Res<Socket>>,
    staying_out: Option<Res<StayingOut>>,
    (host, capabilities): (Res<Host>, Res<Capabilities>),
    (ice, fetch, mut events): (
        Option<Res<IceServers>>,
        Option<Res<ice::IceFetch>>,
        MessageWriter<NetEvent>,
    ),
) {
    // Another room (or the same one joined again by the person) gets its own retry.
    if link.is_changed() {
        retry.renew();
    }
    if socket.is_some() || staying_out.is_some() {
        return;
    }
    let Some(identity) = identity else {
        return;
    };
    let Some(ice) = ice::ready(
        &mut commands,
        &link.ice_servers,
        &link.signal_url,
        ice.as_deref(),
        fetch.as_deref(),
        crate::util::now_ms(),
    ) else {
        return;
    };
    events.write(NetEvent::IceServers(ice.clone()));
    host.runtime.prepare_network();
    let proof = identity
        .key
        .room_key(link.room())
        .sign_join(link.room(), crate::util::now_ms());
    let url = format!("{}?{}", link.signal_url, proof.query());
    let mut builder = WebRtcSocket::builder(url)
        .ice_server(ice_config(&ice.servers))
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
    let credentials = Credentials {
        key: identity.key.clone(),
        room: link.room().to_owned(),
        name: identity.name.clone(),
    };
    let mut wire = WireState::new(
        (control_tx, control_rx),
        (data_tx, data_rx),
        capabilities.frame_chunks,
        Some(credentials),
    );
    if let Some(connections) = socket.take_connections() {
        wire.watch_connections(connections);
    }
    wire.set_lane_links(
        host.lanes.clone(),
        ice.servers.clone(),
        capabilities.wants_striping,
    );
    let wire = Wire::new(wire);
    let (tx, rx) = std::sync::mpsc::channel::<SignalingEnd>();
    host.runtime.spawn_loop(Box::pin(async move {
        let end = match message_loop.await {
            Ok(()) => SignalingEnd::from_loop_error("signaling connection closed"),
            // The server said why it closed the connection.
            Err(matchbox_socket::Error::Disconnected(
                matchbox_socket::SignalingError::ClosedByServer { code, reason },
            )) => SignalingEnd::from_close(code, &reason),
            // The inner error carries the HTTP status the worker refused with.
            Err(matchbox_socket::Error::ConnectionFailed(inner)) => {
                SignalingEnd::from_loop_error(&format!("signaling failed: {inner}"))
            }
            Err(matchbox_socket::Error::Disconnected(inner)) => {
                SignalingEnd::from_loop_error(&format!("signaling connection closed: {inner}"))
            }
        };
        let _ = tx.send(end);
    }));
    commands.insert_resource(LoopEnded(std::sync::Mutex::new(rx)));
    commands.insert_resource(Socket {
        socket,
        wire,
        announced_id: false,
        path: None,
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

/// What the socket's turn tells the rest of the app.
#[derive(bevy::ecs::system::SystemParam)]
struct SocketNews<'w> {
    events: MessageWriter<'w, NetEvent>,
    received: MessageWriter<'w, ControlReceived>,
    rebuild: MessageWriter<'w, RebuildSocket>,
    retry: ResMut<'w, OpeningRetry>,
}

fn poll_socket(
    socket: Option<ResMut<Socket>>,
    ended: Option<Res<LoopEnded>>,
    mut news: SocketNews,
    mut link_health: ResMut<LinkHealth>,
) {
    let Some(mut socket) = socket else {
        link_health.set_if_neq(LinkHealth(None));
        return;
    };
    let events = &mut news.events;
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
        && let Ok(end) = rx.try_recv()
    {
        events.write(NetEvent::SignalingClosed(end));
    }
    let Ok(changes) = socket.socket.try_update_peers() else {
        return;
    };
    let Socket {
        socket, wire, path, ..
    } = &mut *socket;
    let mut wire = wire.lock();
    for (peer, state) in changes {
        peer_changed(peer, state, socket, &mut wire, &mut news, &link_health);
    }
    let arrivals = wire.take_app_arrivals();
    wire.check_hello_deadline(crate::util::now_ms());
    // How the peer is reached (direct, through its NAT, relayed), as matchbox last saw it.
    let now_path = wire.peer().and_then(|peer| socket.candidate_pair(peer));
    if now_path != *path {
        *path = now_path;
        if let Some(pair) = now_path {
            news.events.write(NetEvent::Path(pair));
        }
    }
    keep_alive(&mut wire, &mut news, &mut link_health);
    hello_news(&mut wire, &mut news);
    for arrival in arrivals {
        match arrival {
            Ok(message) => {
                news.received.write(ControlReceived(message));
            }
            Err(e) => {
                news.events.write(NetEvent::BadFrame(e));
            }
        }
    }
}

/// A peer connection came up, ended or failed.
fn peer_changed(
    peer: PeerId,
    state: PeerState,
    socket: &mut WebRtcSocket,
    wire: &mut WireState,
    news: &mut SocketNews,
    link_health: &LinkHealth,
) {
    match state {
        PeerState::Connected => {
            news.retry.renew();
            // The descriptions the authenticated hello binds itself to (the socket always
            // has them for a connected peer; without them the hello fails).
            let descriptions = socket.session_descriptions(peer);
            // The wire may have started on this connection already (see `watch_connections`).
            if wire.note_connected(peer) {
                wire.set_peer(Some(peer), descriptions);
            }
            news.events.write(NetEvent::PeerJoined(peer));
            if let Some(descriptions) = descriptions {
                news.events
                    .write(NetEvent::Negotiated(descriptions.clone()));
            }
        }
        // Only the person in the room leaves: the end of a connection that never became
        // theirs (a replaced one, a stranger's failed attempt) is nobody leaving.
        PeerState::Disconnected if wire.peer() == Some(peer) => {
            wire.set_peer(None, None);
            news.events.write(NetEvent::PeerLeft(peer));
            // Lost while nothing arrived from them: the network failed (ICE gave up after
            // ~30 s of silence), not the person. Signaling still counts them in the room
            // and would never introduce the two again, so join afresh: the server replaces
            // this side's old seat and sets up a new connection once both are back.
            if link_health.interrupted() {
                debug!("the connection to {peer} was lost while silent: rejoining");
                news.rebuild.write(RebuildSocket);
            }
        }
        PeerState::Disconnected => {}
        // Never while someone is connected: joining again would cut them off.
        PeerState::Failed(why) if wire.peer().is_none() && news.retry.after_failure(why) => {
            debug!("a path to {peer} worked but did not open: joining again for a fresh attempt");
            news.events.write(NetEvent::Retrying(why));
            news.rebuild.write(RebuildSocket);
        }
        PeerState::Failed(why) => {
            news.events.write(NetEvent::PeerFailed(why));
        }
    }
}

/// Pings the peer, says when the link's health changes, and gives the connection up (and
/// joins again) after too long a silence; see `REJOIN_AFTER_MS`.
fn keep_alive(wire: &mut WireState, news: &mut SocketNews, link_health: &mut ResMut<LinkHealth>) {
    let health = wire.keepalive();
    if link_health.set_if_neq(LinkHealth(health))
        && let Some(health) = health
    {
        news.events.write(NetEvent::Link(health));
    }
    // Everything that follows the peer ends as when they leave.
    if health.is_some_and(|h| h.gives_up())
        && let Some(peer) = wire.peer()
    {
        debug!("nothing from {peer} for too long: rejoining the room");
        wire.set_peer(None, None);
        news.events.write(NetEvent::PeerLeft(peer));
        news.rebuild.write(RebuildSocket);
    }
}

/// The authenticated hello's outcomes, and a second hello (which restarts the connection).
fn hello_news(wire: &mut WireState, news: &mut SocketNews) {
    for outcome in wire.take_outcomes() {
        news.events.write(match outcome {
            HelloOutcome::Verified(verified) => NetEvent::PeerVerified(verified),
            HelloOutcome::Failed(why) => NetEvent::HelloFailed(why),
        });
    }
    if wire.hello == HelloGate::Violated {
        // Handled once: the rebuilt socket's wire starts over.
        wire.hello = HelloGate::Incompatible;
        news.events.write(NetEvent::SecondHello);
        news.rebuild.write(RebuildSocket);
    }
}

/// Leaving the room (the link resource removed) closes the socket: dropping it ends matchbox's
/// message loop, which closes the signaling WebSocket and the peer connection.
fn close_when_left(
    mut commands: Commands,
    link: Option<Res<RoomLink>>,
    socket: Option<Res<Socket>>,
) {
    if link.is_none() {
        if socket.is_some() {
            commands.remove_resource::<Socket>();
            commands.remove_resource::<LoopEnded>();
        }
        commands.remove_resource::<StayingOut>();
    }
}

/// A rename reaches the proofs of the socket's next connections.
fn sync_hello_name(socket: Option<Res<Socket>>, identity: Option<Res<SignalingIdentity>>) {
    if let (Some(socket), Some(identity)) = (socket, identity)
        && identity.is_changed()
    {
        socket.wire.lock().set_name(&identity.name);
    }
}

fn disconnect(
    mut commands: Commands,
    socket: Option<Res<Socket>>,
    mut asks: MessageReader<Disconnect>,
    mut events: MessageWriter<NetEvent>,
) {
    if asks.read().count() > 0 {
        // The person in the room is gone for this side: everything that follows them (the
        // hello, transfers, the avatar) ends as when they leave.
        if let Some(peer) = socket.as_ref().and_then(|s| s.peer()) {
            events.write(NetEvent::PeerLeft(peer));
        }
        // Dropping the socket closes its connections; `StayingOut` keeps a new one from opening.
        commands.remove_resource::<Socket>();
        commands.remove_resource::<LoopEnded>();
        commands.insert_resource(StayingOut);
    }
}

fn rebuild_socket(mut commands: Commands, mut asks: MessageReader<RebuildSocket>) {
    if asks.read().count() > 0 {
        // `open_socket` opens a new one on the next frame, as the room link is still there.
        commands.remove_resource::<Socket>();
        commands.remove_resource::<LoopEnded>();
        commands.remove_resource::<StayingOut>();
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

    use super::{ControlReceived, Disconnect, NetEvent, RebuildSocket, SendControl};

    /// `MinimalPlugins`, the connection's messages, and a key-value store in `dir`.
    pub fn offline_app(dir: Option<&std::path::Path>) -> App {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .add_message::<NetEvent>()
            .add_message::<ControlReceived>()
            .add_message::<SendControl>()
            .add_message::<Disconnect>()
            .add_message::<RebuildSocket>();
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
