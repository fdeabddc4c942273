//! The two channels to the peer and the gate in front of them: what arrives is sorted (app,
//! transfers, data), held while the peer is not yet announced or not yet authenticated, and
//! dropped when it comes from anyone but the peer.

use bevy::log::{debug, warn};
use duet_shared::peer::{
    CHUNKS_PER_FRAME, CONTROL_CHANNEL, Control, DATA_CHANNEL, MAX_FRAME_CHUNKS,
};
use matchbox_socket::PeerId;

use duet_shared::lane::{LaneEffect, LaneOp, Lanes};
use duet_shared::liveness::{Health, Liveness};

use crate::config::IceServer;
use crate::ports::{LaneLinks, LaneReport};

use super::NetError;
use super::hello::{Credentials, HelloDriver, HelloOutcome};

/// Duet's two channels to the peer, shared: the frame loop reads and writes them, and in the
/// browser so does the transfer pump that runs between frames (file data must not wait for the
/// next drawn frame, and a hidden tab draws none). The mutex is never held across an await.
#[derive(Clone)]
pub struct Wire(std::sync::Arc<std::sync::Mutex<WireState>>);

impl Wire {
    /// Shares `state` between the frame loop and the transfer pump.
    pub(crate) fn new(state: WireState) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(state)))
    }

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

pub(crate) type PacketTx =
    futures::channel::mpsc::UnboundedSender<(PeerId, matchbox_socket::Packet)>;
pub(crate) type PacketRx =
    futures::channel::mpsc::UnboundedReceiver<(PeerId, matchbox_socket::Packet)>;

/// How long a connection's authenticated hello may take, from the moment this side started it.
/// Generous: the peer's side starts its half in a frame, and a browser tab in the background
/// may draw one frame a second or fewer; a connection that has proved nothing by then is
/// ended, so a silent seat-holder cannot leave the person on "connecting" for ever.
pub const HELLO_TIMEOUT_MS: u64 = 90_000;

/// Least time between two pongs: the peer pings once a second, so 4 answers a second leave
/// room for jitter while a flood of pings gets at most that many.
pub const PONG_SPACING_MS: u64 = 250;

/// Most messages held from a peer between its hello and its verified proof (a chat or an
/// offer sent right after it verified us can overtake our verification of it).
pub const HELD_MESSAGES: usize = 64;

/// What the peer's `Hello` and `Proof` decided for the current connection. The first hello
/// decides the version: until it arrives, and after an incompatible one, nothing the peer sends
/// is processed. After a compatible one only the authenticated hello (greet, proof, frames) is
/// processed until the app has verified the peer's proof ([`WireState::trust`]); anything else
/// waits, and file data is dropped (no transfer starts before both sides verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloGate {
    /// No hello yet.
    Awaiting,
    /// Same protocol version, proof not verified yet.
    Authenticating,
    /// The peer's proof verified: everything is processed.
    Trusted,
    /// Another protocol version: only its hello was passed on (so both sides say so in words).
    Incompatible,
    /// A second hello arrived: the connection is to be ended.
    Violated,
    /// The authenticated hello failed: nothing more is processed, the connection is to be left.
    Failed,
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
    /// A frame's pull sorted something for the transfers since the pump last ran: see
    /// [`Self::poll_arrivals`].
    pulled_for_transfers: bool,
    early: Vec<(PeerId, usize, matchbox_socket::Packet)>,
    /// Bytes held in `early`, against [`EARLY_BYTES`].
    early_bytes: usize,
    /// What the peer's first `Hello` (and its proof) decided for this connection.
    pub(crate) hello: HelloGate,
    /// Messages that arrived while authenticating, delivered once the peer is trusted.
    held: std::collections::VecDeque<Result<Control, String>>,
    /// Bytes of `held`, against [`EARLY_BYTES`].
    held_bytes: usize,
    /// Most chunks the peer takes per data frame (its `Frames` message).
    peer_frame_chunks: usize,
    /// Whether the peer asks for striping (its `Frames` message).
    peer_stripes: bool,
    /// The identity the peer proved on this connection (its key's UUID).
    peer_identity: Option<uuid::Uuid>,
    /// Most chunks per data frame this side's WebRTC stack takes ([`Capabilities`]).
    local_frame_chunks: usize,
    /// Who this side is, for the authenticated hello (`None`: tests of the gate alone).
    credentials: Option<Credentials>,
    /// The current connection's hello.
    driver: Option<HelloDriver>,
    /// How hellos ended, for the app.
    outcomes: std::collections::VecDeque<HelloOutcome>,
    /// When the current connection's hello was first checked against [`HELLO_TIMEOUT_MS`].
    hello_started_ms: Option<u64>,
    /// Whether the trusted peer is still there, and its round trip (from its verified hello on).
    liveness: Option<Liveness>,
    /// The clock liveness reads (ms since the Unix epoch; replaced in tests).
    clock: fn() -> u64,
    /// When the last pong left (see [`PONG_SPACING_MS`]).
    last_pong_ms: Option<u64>,
    /// New connections as the socket's message loop reports them (see [`Self::watch_connections`]).
    connections: Option<matchbox_socket::Connections>,
    /// The peers the app has seen connect, newest last: an announcement of a connection the app
    /// already knows of (and may have seen end) is stale. Bounded by [`ANNOUNCED_PEERS`].
    announced: std::collections::VecDeque<PeerId>,
    /// A connection started here that the app has not asked about yet: news for a frame.
    started_unseen: bool,
    /// The platform's lane connections and the room's ICE servers for them (`None`: tests of
    /// the wire alone, or a platform without lanes).
    lane_links: Option<(std::sync::Arc<dyn LaneLinks>, Vec<IceServer>)>,
    /// This connection's lanes, from the peer's verified proof on.
    lanes: Option<Lanes>,
    /// News for the transfers since they last asked ([`WireState::take_lane_news`]).
    lane_news: LaneNews,
    /// The lane the last frame went on.
    last_lane: duet_shared::lane::LaneId,
    /// How many lanes were open when the transfers were last told ([`LaneNews::open`]).
    lanes_reported_open: u8,
    /// Whether this side asks for striping ([`WireState::set_lane_links`]).
    wants_striping: bool,
}

/// What the lanes did that the transfers must act on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LaneNews {
    /// A lane was negotiated on this (striped) connection: chunks may arrive out of order from
    /// now on.
    pub striping: bool,
    /// An open lane closed with what it carried.
    pub lost: bool,
    /// How many lanes are open, when that changed.
    pub open: Option<u8>,
}

/// How many peers [`WireState`] remembers the app has seen connect: more than the connections
/// one socket makes between two frames.
const ANNOUNCED_PEERS: usize = 16;

impl WireState {
    /// The state of a fresh socket's two channels: nobody connected yet.
    pub(crate) fn new(
        control: (PacketTx, PacketRx),
        data: (PacketTx, PacketRx),
        local_frame_chunks: usize,
        credentials: Option<Credentials>,
    ) -> Self {
        Self {
            peer: None,
            control_tx: control.0,
            data_tx: data.0,
            control_rx: control.1,
            data_rx: data.1,
            for_app: Default::default(),
            for_transfers: Default::default(),
            pulled_for_transfers: false,
            data: Default::default(),
            early: Vec::new(),
            early_bytes: 0,
            hello: HelloGate::Awaiting,
            held: Default::default(),
            held_bytes: 0,
            peer_frame_chunks: CHUNKS_PER_FRAME,
            peer_stripes: false,
            peer_identity: None,
            local_frame_chunks,
            credentials,
            driver: None,
            outcomes: Default::default(),
            hello_started_ms: None,
            liveness: None,
            clock: crate::util::now_ms,
            last_pong_ms: None,
            connections: None,
            announced: Default::default(),
            started_unseen: false,
            lane_links: None,
            lanes: None,
            lane_news: LaneNews::default(),
            last_lane: 0,
            lanes_reported_open: 0,
            wants_striping: false,
        }
    }

    /// Gives the wire the platform's lane connections, and the ICE servers they use.
    /// `wants_striping`: this side asks for striping ([`WireState::striped_pair`]).
    pub(crate) fn set_lane_links(
        &mut self,
        links: std::sync::Arc<dyn LaneLinks>,
        ice_servers: Vec<IceServer>,
        wants_striping: bool,
    ) {
        self.lane_links = Some((links, ice_servers));
        self.wants_striping = wants_striping;
    }

    /// Whether this connection's transfers are striped over lanes, both ways: either side
    /// asked ([`Capabilities::wants_striping`], the peer's `Frames`). Two desktops never are.
    pub fn striped_pair(&self) -> bool {
        self.wants_striping || self.peer_stripes
    }

    /// One turn of the lanes at the wire's clock: what the connections reported, then the
    /// machine's tick, and its effects carried out. `transfer`: a transfer worth striping
    /// runs; lanes are wanted for it only on a [striped pair](Self::striped_pair).
    pub fn drive_lanes(&mut self, transfer: bool) {
        let wanted = transfer && self.striped_pair();
        let Some((links, _)) = self.lane_links.clone() else {
            return;
        };
        let now = (self.clock)();
        // The round trip the pings measured; before lanes open, the path's own (a transfer
        // under way adds its queue to it).
        let rtt_ms = match self.liveness.as_ref().map(|clock| clock.health(now)) {
            Some(Health::Live { rtt_ms }) => rtt_ms,
            _ => None,
        };
        let Some(lanes) = self.lanes.as_mut() else {
            // Reports of a connection's lanes that are gone.
            links.reports();
            return;
        };
        for report in links.reports() {
            if matches!(report, LaneReport::Opened(_) | LaneReport::Failed(_)) {
                debug!("lane report: {report:?}");
            }
            match report {
                LaneReport::LocalDescription { lane, sdp } => lanes.local_description(lane, sdp),
                LaneReport::LocalCandidate {
                    lane,
                    candidate,
                    mid,
                    mline,
                } => lanes.local_candidate(lane, candidate, mid, mline),
                LaneReport::Opened(lane) => lanes.opened(lane),
                LaneReport::Failed(lane) => lanes.failed(lane),
            }
        }
        lanes.set_count(duet_shared::lane::lanes_for(rtt_ms));
        lanes.tick(wanted, now);
        self.apply_lane_effects();
    }

    /// When [`WireState::drive_lanes`] has something to do if nothing arrives (ms on the wire's
    /// clock, the epoch's).
    pub fn lanes_poll_timeout(&self) -> Option<u64> {
        self.lanes.as_ref().and_then(Lanes::poll_timeout)
    }

    /// Closes every open lane as failed (the transfers found they carry nothing); the lane
    /// machine opens new ones while a transfer wants them.
    pub fn fail_lanes(&mut self) {
        let Some(lanes) = self.lanes.as_mut() else {
            return;
        };
        let open: Vec<_> = lanes.open().collect();
        for lane in open {
            lanes.failed(lane);
        }
        self.apply_lane_effects();
    }

    /// What the lanes did since the last call (striping stays on for the connection).
    pub fn take_lane_news(&mut self) -> LaneNews {
        let open = self
            .lanes
            .as_ref()
            .map_or(0, |lanes| lanes.open().count() as u8);
        if open != self.lanes_reported_open {
            self.lanes_reported_open = open;
            self.lane_news.open = Some(open);
        }
        let news = self.lane_news;
        self.lane_news.lost = false;
        self.lane_news.open = None;
        news
    }

    /// Sends the machine's signals, hands its operations to the platform, and notes losses.
    fn apply_lane_effects(&mut self) {
        let Some(effects) = self.lanes.as_mut().map(Lanes::take_effects) else {
            return;
        };
        for effect in effects {
            match effect {
                LaneEffect::Send(signal) => {
                    let _ = self.send_control(&Control::Lane(signal));
                }
                LaneEffect::Op(op) => {
                    if matches!(op, LaneOp::Create { .. }) && self.striped_pair() {
                        self.lane_news.striping = true;
                    }
                    if let Some((links, ice)) = &self.lane_links {
                        links.command(op, ice);
                    }
                }
                LaneEffect::Lost(lane) => {
                    debug!("lane {lane} lost");
                    self.lane_news.lost |= self.striped_pair();
                }
            }
        }
    }

    /// The peer's lane signal (only a trusted peer's reaches here).
    fn on_lane_signal(&mut self, signal: duet_shared::lane::LaneSignal) {
        let now = (self.clock)();
        let Some(lanes) = self.lanes.as_mut() else {
            return;
        };
        if let Err(why) = lanes.on_signal(signal, now) {
            warn!("a lane signal of the peer's was refused: {why}");
        }
        self.apply_lane_effects();
    }

    /// The open lane with the fewest bytes waiting to be sent, if any is open; among equals,
    /// the next after the last one used. Every lane keeps getting frames: a lane left idle
    /// behind a lost packet would get no duplicate acknowledgements to repair it by, and would
    /// wait for its retransmission timer while the others' chunks are held behind the gap.
    fn lane_to_send_on(&mut self) -> Option<duet_shared::lane::LaneId> {
        if !self.striped_pair() {
            return None;
        }
        let (links, _) = self.lane_links.as_ref()?;
        let lanes = self.lanes.as_ref()?;
        let last = self.last_lane;
        // The lanes after the last one used, then the rest: no allocation per frame.
        let lane = lanes
            .open()
            .filter(|&l| l > last)
            .chain(lanes.open().filter(|&l| l <= last))
            .min_by_key(|&lane| links.queued(lane))?;
        self.last_lane = lane;
        Some(lane)
    }

    /// Ends this connection's lanes (the peer left or another connection replaced it): their
    /// connections close, and what they received is dropped.
    fn end_lanes(&mut self) {
        let effects = self
            .lanes
            .take()
            .map(|mut lanes| {
                lanes.reset();
                lanes.take_effects()
            })
            .unwrap_or_default();
        if let Some((links, ice)) = &self.lane_links {
            for effect in effects {
                if let LaneEffect::Op(op) = effect {
                    links.command(op, ice);
                }
            }
            links.take_frames();
            links.reports();
        }
        self.lane_news = LaneNews::default();
    }

    /// Lets the wire start each new connection's hello the moment the socket has it, from
    /// [`Self::poll_arrivals`]: the browser's pump runs between frames, so the hello does not
    /// wait for the next drawn frame (one to two frames on a slow page). The app still sees the
    /// peer connect in its frame; see [`Self::note_connected`].
    pub(crate) fn watch_connections(&mut self, connections: matchbox_socket::Connections) {
        self.connections = Some(connections);
    }

    /// The app saw `peer` connect (its socket said so). Returns whether the wire is to be set to
    /// it: `false` when the wire started on this very connection already.
    pub(crate) fn note_connected(&mut self, peer: PeerId) -> bool {
        if self.announced.len() == ANNOUNCED_PEERS {
            self.announced.pop_front();
        }
        self.announced.push_back(peer);
        self.peer != Some(peer)
    }

    /// Starts on the connections the socket announced: each new one replaces the current peer
    /// as when the app sees it connect. Returns whether any did.
    fn take_connections(&mut self, cx: Option<&mut std::task::Context<'_>>) -> bool {
        use futures::StreamExt;
        use std::task::Poll;
        let Some(connections) = &mut self.connections else {
            return false;
        };
        let mut fresh = Vec::new();
        match cx {
            Some(cx) => {
                while let Poll::Ready(Some(connection)) = connections.poll_next_unpin(cx) {
                    fresh.push(connection);
                }
            }
            None => {
                while let Ok(connection) = connections.try_recv() {
                    fresh.push(connection);
                }
            }
        }
        let mut started = false;
        for (peer, descriptions) in fresh {
            if self.peer != Some(peer) && !self.announced.contains(&peer) {
                debug!("starting on {peer} before the app has seen it connect");
                self.set_peer(Some(peer), Some(&descriptions));
                self.started_unseen = true;
                started = true;
            }
        }
        started
    }

    /// Pings the trusted peer when a ping is due, and says how the link is. `None` while no
    /// peer is trusted. Called every frame and by the browser's between-frames pump, so pings
    /// leave on time in a hidden tab too.
    pub fn keepalive(&mut self) -> Option<Health> {
        let now = (self.clock)();
        let clock = self.liveness.as_mut()?;
        if let Some(id) = clock.ping_due(now) {
            // A ping that cannot be sent (the channel closed) is the peer leaving, reported
            // by the socket; nothing to do here.
            let _ = self.send_control(&Control::Ping { id });
        }
        self.liveness.as_ref().map(|clock| clock.health(now))
    }

    /// The peer sent something: it is still there.
    fn heard(&mut self) {
        let now = (self.clock)();
        if let Some(clock) = self.liveness.as_mut() {
            clock.heard(now);
        }
    }

    /// Ends the current connection's hello if it has run past [`HELLO_TIMEOUT_MS`] at `now_ms`.
    /// The clock starts at the first check after the peer connected (the same frame).
    pub(crate) fn check_hello_deadline(&mut self, now_ms: u64) {
        let under_way = self.driver.is_some()
            && matches!(self.hello, HelloGate::Awaiting | HelloGate::Authenticating);
        if !under_way {
            return;
        }
        let started = *self.hello_started_ms.get_or_insert(now_ms);
        if now_ms >= started + HELLO_TIMEOUT_MS {
            self.fail(duet_shared::handshake::HandshakeError::TimedOut);
        }
    }

    /// The name this side's next proofs carry.
    pub(crate) fn set_name(&mut self, name: &str) {
        if let Some(credentials) = self.credentials.as_mut() {
            name.clone_into(&mut credentials.name);
        }
    }

    /// Whether something waits for the app (a hello's end, a chat, a call signal): the browser's
    /// pump then asks for a frame now rather than at the next paced one.
    pub fn has_app_news(&self) -> bool {
        self.started_unseen || !self.outcomes.is_empty() || !self.for_app.is_empty()
    }

    /// How the hellos since the last call ended.
    pub(crate) fn take_outcomes(&mut self) -> Vec<HelloOutcome> {
        self.outcomes.drain(..).collect()
    }

    /// The hello failed: the connection is to be left, and nothing more is taken from it.
    fn fail(&mut self, error: duet_shared::handshake::HandshakeError) {
        self.end_lanes();
        self.hello = HelloGate::Failed;
        self.driver = None;
        self.held.clear();
        self.held_bytes = 0;
        self.outcomes.push_back(HelloOutcome::Failed(error));
    }

    /// The one other person in the room, when connected.
    pub fn peer(&self) -> Option<PeerId> {
        self.peer
    }

    /// The identity the connected peer proved, once it has.
    pub fn peer_identity(&self) -> Option<uuid::Uuid> {
        self.peer_identity
    }

    /// How many chunks one data frame to the peer may carry: what both stacks take.
    pub fn frame_chunks(&self) -> usize {
        self.peer_frame_chunks.min(self.local_frame_chunks)
    }

    /// Sends raw bytes to the peer: on the open lane with the fewest bytes waiting, or, with
    /// no lane open, on the data channel. (While lanes are open the data channel carries no
    /// data: how much waits in it cannot be read, so it could not be balanced against them.)
    pub fn send_data(&mut self, bytes: Vec<u8>) -> Result<(), NetError> {
        let peer = self.peer.ok_or(NetError::NoPeer)?;
        let bytes = match (self.lane_to_send_on(), &self.lane_links) {
            // A lane that closed since its report gives the frame back: it goes the main way.
            (Some(lane), Some((links, _))) => match links.send(lane, bytes) {
                Ok(()) => return Ok(()),
                Err(bytes) => bytes,
            },
            _ => bytes,
        };
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

    /// The peer's proof verified as `identity`: what waited for it is delivered, and from now on
    /// everything the peer sends is processed.
    pub(crate) fn trust(&mut self, identity: uuid::Uuid) {
        if self.hello != HelloGate::Authenticating {
            return;
        }
        self.hello = HelloGate::Trusted;
        self.peer_identity = Some(identity);
        // Only one side opens lanes, so the two never offer at once: the one whose identity
        // sorts higher.
        if self.lane_links.is_some()
            && let Some(credentials) = &self.credentials
        {
            let opener = credentials.key.public().uuid() > identity;
            self.lanes = Some(Lanes::new(opener));
        }
        self.liveness = Some(Liveness::new((self.clock)()));
        self.held_bytes = 0;
        for message in std::mem::take(&mut self.held) {
            self.route(message);
        }
    }

    pub(crate) fn take_app_arrivals(&mut self) -> Vec<Result<Control, String>> {
        self.started_unseen = false;
        self.pull();
        self.for_app.drain(..).collect()
    }

    /// Moves everything that arrived into the queues, without waiting.
    fn pull(&mut self) {
        let before = self.for_transfers.len() + self.data.len();
        self.take_connections(None);
        while let Ok((from, packet)) = self.control_rx.try_recv() {
            self.sort_control(from, packet);
        }
        while let Ok((from, packet)) = self.data_rx.try_recv() {
            self.sort_data(from, packet);
        }
        self.take_lane_frames();
        self.pulled_for_transfers |= self.for_transfers.len() + self.data.len() > before;
    }

    /// Frames that arrived on this connection's lanes: file data of the trusted peer.
    fn take_lane_frames(&mut self) {
        let Some((links, _)) = &self.lane_links else {
            return;
        };
        let frames = links.take_frames();
        if frames.is_empty() || self.lanes.is_none() || self.hello != HelloGate::Trusted {
            return;
        }
        self.heard();
        self.data.extend(frames);
    }

    /// Pulls arrivals, registering `cx` to be woken by the next one. `Ready(true)`: something
    /// arrived; `Ready(false)`: the connection is gone (both channels closed).
    pub fn poll_arrivals(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<bool> {
        use std::task::Poll;
        // First: frames of a new connection are sorted for it, not held as early ones.
        let started = self.take_connections(Some(cx));
        let (control, control_open) = drain_ready(&mut self.control_rx, cx);
        let (data, data_open) = drain_ready(&mut self.data_rx, cx);
        let arrived = started || !control.is_empty() || !data.is_empty();
        for (from, packet) in control {
            self.sort_control(from, packet);
        }
        for (from, packet) in data {
            self.sort_data(from, packet);
        }
        // Lane frames ring the host's wake, which the pump polls beside this.
        self.take_lane_frames();
        // A frame's pull (the app's arrivals) may have taken the packets whose arrival woke
        // this pump: then the channels are empty, and the transfers' share of them would
        // wait for the next frame, up to a second on a software-rendered desktop, or for the
        // next arrival, which does not come once the window is spent. Counted once per pull,
        // so an engine that does not take them (no store yet) is not polled in a loop.
        let pulled = std::mem::take(&mut self.pulled_for_transfers);
        if arrived || pulled {
            Poll::Ready(true)
        } else if !control_open && !data_open {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    }

    /// The peer's connection is up (or gone, with `None`), negotiated with `descriptions`: this
    /// side says hello. What arrived from them before the app saw them connect (the pump may
    /// pull first) is sorted now.
    pub(crate) fn set_peer(
        &mut self,
        peer: Option<PeerId>,
        descriptions: Option<&matchbox_socket::SessionDescriptions>,
    ) {
        self.end_lanes();
        self.peer = peer;
        self.peer_frame_chunks = CHUNKS_PER_FRAME;
        self.peer_stripes = false;
        self.early_bytes = 0;
        self.hello = HelloGate::Awaiting;
        self.peer_identity = None;
        self.held.clear();
        self.held_bytes = 0;
        self.driver = None;
        self.hello_started_ms = None;
        self.liveness = None;
        debug!(
            "peer {peer:?}, negotiated: {}, {} frames held",
            descriptions.is_some(),
            self.early.len()
        );
        if peer.is_some()
            && let Some(credentials) = &self.credentials
        {
            let (local, remote) = descriptions
                .map(|d| (d.local.as_str(), d.remote.as_str()))
                .unwrap_or_default();
            match HelloDriver::start(
                credentials,
                local,
                remote,
                self.local_frame_chunks,
                self.wants_striping && self.lane_links.is_some(),
            ) {
                Ok((driver, first)) => {
                    self.driver = Some(driver);
                    for message in first {
                        if let Err(e) = self.send_control(&message) {
                            warn!("could not say hello: {e}");
                        }
                    }
                }
                Err(e) => self.fail(e),
            }
        }
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

    pub(crate) fn sort_control(&mut self, from: PeerId, packet: matchbox_socket::Packet) {
        if !self.admit(from, CONTROL_CHANNEL, &packet) {
            return;
        }
        if self.hello == HelloGate::Trusted {
            self.heard();
        }
        let message = Control::decode(&packet).map_err(|e| e.to_string());
        match (&self.hello, &message) {
            (HelloGate::Awaiting, Ok(Control::Hello { version, .. })) => {
                self.hello = if *version == duet_shared::peer::PROTOCOL_VERSION {
                    HelloGate::Authenticating
                } else {
                    HelloGate::Incompatible
                };
            }
            // A connection has one hello: a second one (another identity, another version) is a
            // protocol violation, and the connection is ended.
            (
                HelloGate::Authenticating | HelloGate::Trusted | HelloGate::Incompatible,
                Ok(Control::Hello { .. }),
            ) => {
                self.hello = HelloGate::Violated;
                return;
            }
            (HelloGate::Authenticating, Ok(Control::Greet { commitment })) => {
                let commitment = *commitment;
                self.on_greet(commitment);
                return;
            }
            (HelloGate::Authenticating, Ok(Control::Proof { .. })) => {
                if let Ok(proof) = message {
                    self.on_proof(proof);
                }
                return;
            }
            // One hello per connection: a greet or proof after it (a change of key) ends it.
            (HelloGate::Trusted, Ok(Control::Greet { .. } | Control::Proof { .. })) => {
                self.fail(duet_shared::handshake::HandshakeError::OutOfOrder);
                return;
            }
            (HelloGate::Authenticating | HelloGate::Trusted, Ok(Control::Frames { .. })) => {}
            (HelloGate::Awaiting, _) => {
                debug!("before the peer's hello, dropped: {message:?}");
                return;
            }
            (HelloGate::Authenticating, _) => {
                let cost = packet.len() + 64;
                if self.held.len() < HELD_MESSAGES && self.held_bytes + cost <= EARLY_BYTES {
                    self.held_bytes += cost;
                    self.held.push_back(message);
                }
                return;
            }
            (HelloGate::Trusted, _) => {}
            // Before the hello, after an incompatible one or a violation: nothing is processed.
            _ => return,
        }
        self.route(message);
    }

    fn on_greet(&mut self, commitment: [u8; 32]) {
        let (Some(driver), Some(credentials)) = (self.driver.as_mut(), self.credentials.as_ref())
        else {
            debug!("a greet with no hello under way");
            return;
        };
        debug!("the peer's greet: sending the proof");
        match driver.on_greet(commitment, credentials) {
            Ok(proof) => {
                if let Err(e) = self.send_control(&proof) {
                    warn!("could not send the proof: {e}");
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn on_proof(&mut self, proof: Control) {
        let Some(driver) = self.driver.as_mut() else {
            debug!("a proof with no hello under way");
            return;
        };
        let verdict = driver.on_proof(proof);
        debug!("the peer's proof: {:?}", verdict.as_ref().map(|v| v.key));
        match verdict {
            Ok(verified) => {
                self.trust(verified.key.uuid());
                self.outcomes.push_back(HelloOutcome::Verified(verified));
            }
            Err(e) => self.fail(e),
        }
    }

    /// Delivers a processed control message to whoever takes it.
    fn route(&mut self, message: Result<Control, String>) {
        match message {
            Ok(Control::Frames { chunks, stripes }) => {
                self.peer_frame_chunks =
                    usize::from(chunks).clamp(CHUNKS_PER_FRAME, MAX_FRAME_CHUNKS);
                self.peer_stripes = stripes;
            }
            // Answered here, at once, rather than after the next drawn frame: the round trip
            // the person sees is the network's.
            // At most one pong per `PONG_SPACING_MS`: a peer that floods pings (and perhaps
            // reads nothing) cannot make this side queue answers without bound.
            Ok(Control::Ping { id }) => {
                let now = (self.clock)();
                if self
                    .last_pong_ms
                    .is_none_or(|last| now >= last + PONG_SPACING_MS)
                {
                    self.last_pong_ms = Some(now);
                    let _ = self.send_control(&Control::Pong { id });
                }
            }
            Ok(Control::Pong { id }) => {
                let now = (self.clock)();
                if let Some(clock) = self.liveness.as_mut() {
                    clock.on_pong(id, now);
                }
            }
            Ok(Control::Lane(signal)) => self.on_lane_signal(signal),
            Ok(message) if message.is_transfer() => {
                debug!("control from the peer: {message:?}");
                self.for_transfers.push_back(message)
            }
            other => self.for_app.push_back(other),
        }
    }

    pub(crate) fn sort_data(&mut self, from: PeerId, packet: matchbox_socket::Packet) {
        if self.admit(from, DATA_CHANNEL, &packet) && self.hello == HelloGate::Trusted {
            self.heard();
            self.data.push_back(packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_wire() -> WireState {
        let mut wire = WireState::new(
            futures::channel::mpsc::unbounded(),
            futures::channel::mpsc::unbounded(),
            CHUNKS_PER_FRAME,
            None,
        );
        wire.hello = HelloGate::Trusted;
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
        // Once the peer is announced, what was held is sorted and the budget starts over: its
        // hello counts, its file data does not (nobody is trusted before its proof).
        wire.set_peer(Some(peer), None);
        assert_eq!(wire.hello, HelloGate::Authenticating);
        assert!(wire.data.is_empty());
        assert_eq!(wire.early_bytes, 0);
        // Frames of someone else than the announced peer are dropped, not held.
        wire.trust(uuid::Uuid::new_v4());
        wire.sort_data(PeerId(uuid::Uuid::new_v4()), big.clone());
        assert!(wire.data.is_empty());
        assert!(wire.early.is_empty());
        wire.sort_data(peer, big);
        assert_eq!(wire.data.len(), 1, "the trusted peer's data flows");
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

    /// A clock the liveness test moves by hand.
    static FAKE_NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn fake_now() -> u64 {
        FAKE_NOW.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn pings_are_answered_at_once_and_silence_is_noticed() {
        use duet_shared::liveness::Health;
        let set = |ms| FAKE_NOW.store(ms, std::sync::atomic::Ordering::SeqCst);
        set(100_000);
        let peer = PeerId(uuid::Uuid::new_v4());
        let mut wire = new_wire();
        wire.clock = fake_now;
        wire.set_peer(Some(peer), None);
        assert_eq!(
            wire.keepalive(),
            None,
            "no liveness before the peer is trusted"
        );
        wire.sort_control(peer, hello(duet_shared::peer::PROTOCOL_VERSION));
        wire.trust(uuid::Uuid::new_v4());
        assert!(matches!(
            wire.take_app_arrivals()[..],
            [Ok(Control::Hello { .. })]
        ));
        // Both channels loop back in this wire: what it sends, it reads next.
        let sent = |wire: &mut WireState| {
            std::iter::from_fn(|| wire.control_rx.try_recv().ok())
                .map(|(_, p)| Control::decode(&p).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(wire.keepalive(), Some(Health::Live { rtt_ms: None }));
        assert_eq!(sent(&mut wire), [Control::Ping { id: 0 }]);
        // The peer's ping is answered in the same call that sorts it, not at the next frame.
        wire.sort_control(peer, Control::Ping { id: 77 }.encode().unwrap().into());
        assert_eq!(sent(&mut wire), [Control::Pong { id: 77 }]);
        // Its pong for ours, 40 ms later, is the round trip; neither reaches the app.
        set(100_040);
        wire.sort_control(peer, Control::Pong { id: 0 }.encode().unwrap().into());
        assert_eq!(wire.keepalive(), Some(Health::Live { rtt_ms: Some(40) }));
        assert!(wire.take_app_arrivals().is_empty());
        // Silence: interrupted after 3 s, with a ping each second meanwhile.
        set(103_040);
        assert_eq!(wire.keepalive(), Some(Health::Quiet { silent_s: 3 }));
        assert!(matches!(sent(&mut wire)[..], [Control::Ping { .. }]));
        // Any frame ends it, a file chunk too.
        wire.sort_data(peer, vec![1, 2, 3].into());
        assert_eq!(wire.keepalive(), Some(Health::Live { rtt_ms: Some(40) }));
        // A stranger's frames prove nothing.
        set(110_000);
        wire.sort_control(
            PeerId(uuid::Uuid::new_v4()),
            Control::Pong { id: 1 }.encode().unwrap().into(),
        );
        assert!(wire.keepalive().is_some_and(|h| h.is_quiet()));
        // A flood of pings gets one pong per spacing, not one each.
        let flood = |wire: &mut WireState| {
            for id in 0..1_000 {
                wire.sort_control(peer, Control::Ping { id }.encode().unwrap().into());
            }
        };
        sent(&mut wire);
        set(120_000);
        flood(&mut wire);
        assert_eq!(sent(&mut wire), [Control::Pong { id: 0 }]);
        set(120_000 + PONG_SPACING_MS - 1);
        flood(&mut wire);
        assert!(sent(&mut wire).is_empty());
        set(120_000 + PONG_SPACING_MS);
        flood(&mut wire);
        assert_eq!(sent(&mut wire), [Control::Pong { id: 0 }]);
        // The peer gone: no liveness.
        wire.set_peer(None, None);
        assert_eq!(wire.keepalive(), None);
    }

    #[test]
    fn what_waits_for_the_proof_is_bounded() {
        let peer = PeerId(uuid::Uuid::new_v4());
        let mut wire = new_wire();
        wire.set_peer(Some(peer), None);
        wire.sort_control(peer, hello(duet_shared::peer::PROTOCOL_VERSION));
        for _ in 0..10_000 {
            wire.sort_control(peer, chat());
        }
        assert_eq!(wire.held.len(), HELD_MESSAGES);
        assert!(wire.held_bytes <= EARLY_BYTES);
        // A new connection forgets what the last one held.
        wire.set_peer(None, None);
        assert!(wire.held.is_empty());
        assert_eq!(wire.held_bytes, 0);
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
        wire.set_peer(Some(peer), None);
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
        // A compatible connection: chat waits for the peer's proof, file data before it is
        // dropped; once trusted, what waited is delivered and everything flows.
        let mut wire = new_wire();
        wire.set_peer(Some(peer), None);
        wire.sort_control(peer, hello(PROTOCOL_VERSION));
        wire.sort_control(peer, chat());
        wire.sort_data(peer, vec![1, 2, 3].into());
        assert_eq!(chats(&mut wire), 0);
        assert!(wire.data.is_empty());
        wire.trust(uuid::Uuid::from_u128(5));
        assert_eq!(wire.peer_identity(), Some(uuid::Uuid::from_u128(5)));
        assert_eq!(chats(&mut wire), 1, "the held chat, once");
        wire.sort_control(peer, chat());
        wire.sort_data(peer, vec![1, 2, 3].into());
        assert_eq!(wire.data.len(), 1);
        assert_eq!(chats(&mut wire), 1);
        wire.sort_control(peer, hello(PROTOCOL_VERSION));
        wire.sort_control(peer, chat());
        assert_eq!(wire.hello, HelloGate::Violated);
        assert_eq!(chats(&mut wire), 0);
    }

    /// A wire with credentials whose sent control messages can be read back.
    struct End {
        wire: WireState,
        sent: PacketRx,
        peer: PeerId,
    }

    fn end(seed: u8, name: &str) -> End {
        let (control_tx, sent) = futures::channel::mpsc::unbounded();
        let (_, control_rx) = futures::channel::mpsc::unbounded();
        let wire = WireState::new(
            (control_tx, control_rx),
            futures::channel::mpsc::unbounded(),
            CHUNKS_PER_FRAME,
            Some(Credentials {
                key: duet_shared::trust::DeviceKey::from_seed([seed; 32]),
                room: "AAAAAAAAAAAAAAAAAAAAAA".into(),
                name: name.into(),
            }),
        );
        End {
            wire,
            sent,
            peer: PeerId(uuid::Uuid::from_u128(u128::from(seed))),
        }
    }

    fn descriptions(local: &str, remote: &str) -> matchbox_socket::SessionDescriptions {
        let sdp = |f: &str| format!("v=0\r\na=fingerprint:sha-256 {f}\r\n");
        matchbox_socket::SessionDescriptions {
            local: sdp(local),
            remote: sdp(remote),
        }
    }

    /// Moves what `from` sent into `to`, as the channel would; returns how many.
    fn carry(from: &mut End, to: &mut End) -> usize {
        let mut count = 0;
        while let Ok((_, packet)) = from.sent.try_recv() {
            to.wire.sort_control(from.peer, packet);
            count += 1;
        }
        count
    }

    fn meet(views: [(&str, &str); 2]) -> (End, End) {
        meet_ends(end(1, "Ada"), end(2, "Bob"), views)
    }

    fn meet_ends(mut ada: End, mut bob: End, views: [(&str, &str); 2]) -> (End, End) {
        let (ada_peer, bob_peer) = (ada.peer, bob.peer);
        ada.wire
            .set_peer(Some(bob_peer), Some(&descriptions(views[0].0, views[0].1)));
        bob.wire
            .set_peer(Some(ada_peer), Some(&descriptions(views[1].0, views[1].1)));
        // Hello, frames and greet each way; each greet is answered with a proof at once.
        assert_eq!(carry(&mut ada, &mut bob), 3);
        assert_eq!(carry(&mut bob, &mut ada), 4);
        assert_eq!(carry(&mut ada, &mut bob), 1);
        (ada, bob)
    }

    #[test]
    fn an_announced_connection_starts_its_hello_between_frames_and_only_once() {
        let (mut ada, bob) = (end(1, "Ada"), end(2, "Bob"));
        let (announce, connections) = futures::channel::mpsc::unbounded();
        ada.wire.watch_connections(connections);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        announce
            .unbounded_send((bob.peer, descriptions("AA", "BB")))
            .unwrap();
        // The pump's turn: the hello starts before any frame has seen Bob connect.
        assert!(ada.wire.poll_arrivals(&mut cx).is_ready());
        assert_eq!(ada.wire.peer(), Some(bob.peer));
        assert!(ada.wire.has_app_news(), "a frame is asked for");
        let said = std::iter::from_fn(|| ada.sent.try_recv().ok()).count();
        assert_eq!(said, 3, "hello, frames and greet");
        // The frame then sees Bob connect: the wire is not set again (no second hello).
        assert!(!ada.wire.note_connected(bob.peer));
        assert!(ada.wire.take_app_arrivals().is_empty());
        assert!(!ada.wire.has_app_news());
        assert!(ada.sent.try_recv().is_err());
        // A connection the app saw come and go before its announcement was read is not
        // started again.
        let gone = PeerId(uuid::Uuid::from_u128(9));
        assert!(ada.wire.note_connected(gone));
        announce
            .unbounded_send((gone, descriptions("AA", "CC")))
            .unwrap();
        assert!(ada.wire.poll_arrivals(&mut cx).is_pending());
        assert_eq!(ada.wire.peer(), Some(bob.peer));
    }

    #[test]
    fn a_frame_pulled_by_the_app_still_runs_the_pump() {
        let (mut ada, bob) = meet([("AA", "BB"), ("BB", "AA")]);
        assert_eq!(ada.wire.hello, HelloGate::Trusted);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while ada.wire.poll_arrivals(&mut cx).is_ready() {}
        ada.wire.take_app_arrivals();
        let _ = ada.wire.take_transfer_arrivals();
        assert!(ada.wire.poll_arrivals(&mut cx).is_pending());
        ada.wire
            .data_tx
            .unbounded_send((bob.peer, vec![1u8, 2, 3].into()))
            .unwrap();
        // A frame reads the app's arrivals first: the data frame is sorted, not delivered.
        assert!(ada.wire.take_app_arrivals().is_empty());
        // The pump its arrival woke finds the channel empty, and must run all the same.
        assert!(ada.wire.poll_arrivals(&mut cx).is_ready());
        assert_eq!(ada.wire.take_transfer_arrivals().1.len(), 1);
        // Once, not again.
        assert!(ada.wire.poll_arrivals(&mut cx).is_pending());
    }

    #[test]
    fn two_wires_prove_who_they_are_as_messages_arrive() {
        let (mut ada, mut bob) = meet([("AA", "BB"), ("BB", "AA")]);
        let bob_key = duet_shared::trust::DeviceKey::from_seed([2; 32]).public();
        let [HelloOutcome::Verified(seen_by_ada)] = &ada.wire.take_outcomes()[..] else {
            panic!("Ada verified Bob");
        };
        let [HelloOutcome::Verified(seen_by_bob)] = &bob.wire.take_outcomes()[..] else {
            panic!("Bob verified Ada");
        };
        assert_eq!(seen_by_ada.key, bob_key);
        assert_eq!(seen_by_ada.name, "Bob");
        assert_eq!(seen_by_ada.safety_code, seen_by_bob.safety_code);
        assert_eq!(ada.wire.hello, HelloGate::Trusted);
        assert_eq!(ada.wire.peer_identity(), Some(bob_key.uuid()));
        // A second proof on the same connection (a change of key) ends it.
        let proof = Control::Proof {
            key: bob_key,
            name: "Bob".into(),
            nonce: [0; 16],
            signature: duet_shared::trust::Sig([0; 64]),
        };
        ada.wire
            .sort_control(bob.peer, proof.encode().unwrap().into());
        assert_eq!(ada.wire.hello, HelloGate::Failed);
        assert_eq!(
            ada.wire.take_outcomes(),
            vec![HelloOutcome::Failed(
                duet_shared::handshake::HandshakeError::OutOfOrder
            )]
        );
    }

    #[test]
    fn a_hello_that_is_never_answered_ends_at_its_deadline() {
        let mut ada = end(1, "Ada");
        let silent = PeerId(uuid::Uuid::from_u128(9));
        ada.wire
            .set_peer(Some(silent), Some(&descriptions("AA", "BB")));
        ada.wire.check_hello_deadline(1_000);
        ada.wire.check_hello_deadline(1_000 + HELLO_TIMEOUT_MS - 1);
        assert!(ada.wire.take_outcomes().is_empty());
        // Its hello alone does not count as proof.
        ada.wire
            .sort_control(silent, hello(duet_shared::peer::PROTOCOL_VERSION));
        ada.wire.check_hello_deadline(1_000 + HELLO_TIMEOUT_MS);
        assert_eq!(
            ada.wire.take_outcomes(),
            vec![HelloOutcome::Failed(
                duet_shared::handshake::HandshakeError::TimedOut
            )]
        );
        assert_eq!(ada.wire.hello, HelloGate::Failed);
        // A proved connection has no deadline; a new connection starts its own clock.
        let (mut ada, _bob) = meet([("AA", "BB"), ("BB", "AA")]);
        ada.wire.take_outcomes();
        ada.wire.check_hello_deadline(0);
        ada.wire.check_hello_deadline(10 * HELLO_TIMEOUT_MS);
        assert!(ada.wire.take_outcomes().is_empty());
        ada.wire
            .set_peer(Some(silent), Some(&descriptions("AA", "CC")));
        ada.wire.check_hello_deadline(20 * HELLO_TIMEOUT_MS);
        assert!(
            ada.wire.take_outcomes().is_empty(),
            "the clock started anew"
        );
    }

    #[test]
    fn a_relay_in_the_middle_fails_both_wires_and_nothing_is_trusted() {
        let (mut ada, mut bob) = meet([("AA", "M1"), ("BB", "M2")]);
        for end in [&mut ada, &mut bob] {
            assert_eq!(
                end.wire.take_outcomes(),
                vec![HelloOutcome::Failed(
                    duet_shared::handshake::HandshakeError::Intercepted
                )]
            );
            assert_eq!(end.wire.hello, HelloGate::Failed);
            assert_eq!(end.wire.peer_identity(), None);
        }
        // Nothing from the relay is taken any more.
        ada.wire.take_app_arrivals();
        ada.wire.sort_control(bob.peer, chat());
        assert!(ada.wire.take_app_arrivals().is_empty());
    }

    /// Lane connections that only record what the wire asks of them; the test plays the
    /// platform's part (reports, queued bytes, arrived frames).
    #[derive(Default)]
    struct FakeLanes {
        ops: std::sync::Mutex<Vec<LaneOp>>,
        reports: std::sync::Mutex<Vec<LaneReport>>,
        sent: std::sync::Mutex<Vec<(duet_shared::lane::LaneId, usize)>>,
        queued: std::sync::Mutex<[usize; duet_shared::lane::MAX_LANES as usize]>,
        frames: std::sync::Mutex<Vec<matchbox_socket::Packet>>,
    }

    impl FakeLanes {
        /// What the platform reports next.
        fn report(&self, report: LaneReport) {
            self.reports.lock().unwrap().push(report);
        }
    }

    impl LaneLinks for FakeLanes {
        fn command(&self, op: LaneOp, _: &[IceServer]) {
            self.ops.lock().unwrap().push(op);
        }
        fn reports(&self) -> Vec<LaneReport> {
            std::mem::take(&mut self.reports.lock().unwrap())
        }
        fn send(&self, lane: duet_shared::lane::LaneId, frame: Vec<u8>) -> Result<(), Vec<u8>> {
            self.sent.lock().unwrap().push((lane, frame.len()));
            Ok(())
        }
        fn queued(&self, lane: duet_shared::lane::LaneId) -> usize {
            self.queued.lock().unwrap()[usize::from(lane)]
        }
        fn take_frames(&self) -> Vec<matchbox_socket::Packet> {
            std::mem::take(&mut self.frames.lock().unwrap())
        }
    }

    fn with_lanes(end: End) -> (End, std::sync::Arc<FakeLanes>) {
        with_lanes_striping(end, true)
    }

    fn with_lanes_striping(mut end: End, stripes: bool) -> (End, std::sync::Arc<FakeLanes>) {
        let links = std::sync::Arc::new(FakeLanes::default());
        end.wire.set_lane_links(links.clone(), Vec::new(), stripes);
        (end, links)
    }

    /// Whether the first end's identity sorts higher, so that it opens the lanes.
    fn first_opens(a: u8, b: u8) -> bool {
        let key = |seed| {
            duet_shared::trust::DeviceKey::from_seed([seed; 32])
                .public()
                .uuid()
        };
        key(a) > key(b)
    }

    #[test]
    fn a_pair_stripes_when_either_side_asks_and_two_desktops_never_do() {
        // Neither side asks (two desktops): no lanes, whoever sends.
        let (ada, ada_lanes) = with_lanes_striping(end(1, "Ada"), false);
        let (bob, bob_lanes) = with_lanes_striping(end(2, "Bob"), false);
        let (mut ada, mut bob) = meet_ends(ada, bob, [("AA", "BB"), ("BB", "AA")]);
        for _ in 0..3 {
            ada.wire.drive_lanes(true);
            bob.wire.drive_lanes(true);
        }
        assert!(ada_lanes.ops.lock().unwrap().is_empty());
        assert!(bob_lanes.ops.lock().unwrap().is_empty());
        assert!(!ada.wire.striped_pair() && !bob.wire.striped_pair());
        // A browser (asks) and a desktop (does not), each side as the opener in turn: lanes for
        // a transfer either way, and both sides agree the pair is striped.
        for browser_opens in [true, false] {
            let (seed_browser, seed_desktop) = if first_opens(1, 2) == browser_opens {
                (1, 2)
            } else {
                (2, 1)
            };
            let (browser, browser_lanes) = with_lanes_striping(end(seed_browser, "Ada"), true);
            let (desktop, desktop_lanes) = with_lanes_striping(end(seed_desktop, "Bob"), false);
            let (mut browser, mut desktop) =
                meet_ends(browser, desktop, [("AA", "BB"), ("BB", "AA")]);
            assert!(browser.wire.striped_pair() && desktop.wire.striped_pair());
            let (opener_lanes, opener) = if browser_opens {
                (&browser_lanes, &mut browser)
            } else {
                (&desktop_lanes, &mut desktop)
            };
            opener.wire.drive_lanes(false);
            assert!(opener_lanes.ops.lock().unwrap().is_empty(), "nothing runs");
            opener.wire.drive_lanes(true);
            assert_eq!(
                opener_lanes.ops.lock().unwrap().len(),
                // No round trip measured yet in this model: the short-path count.
                usize::from(duet_shared::lane::SHORT_PATH_LANES),
                "browser opens: {browser_opens}"
            );
            opener_lanes.report(LaneReport::LocalDescription {
                lane: 0,
                sdp: "offer".into(),
            });
            opener.wire.drive_lanes(true);
            if browser_opens {
                carry(&mut browser, &mut desktop);
            } else {
                carry(&mut desktop, &mut browser);
            }
            assert!(desktop.wire.take_lane_news().striping);
            assert!(browser.wire.take_lane_news().striping);
            // Open, both send their frames on it; lost, both send again what it carried.
            for (end, lanes) in [
                (&mut browser, &browser_lanes),
                (&mut desktop, &desktop_lanes),
            ] {
                lanes.report(LaneReport::Opened(0));
                end.wire.drive_lanes(false);
                end.wire.send_data(vec![1; 100]).unwrap();
                assert_eq!(lanes.sent.lock().unwrap().len(), 1);
                lanes.report(LaneReport::Failed(0));
                end.wire.drive_lanes(false);
                assert!(end.wire.take_lane_news().lost);
            }
        }
    }

    #[test]
    fn lanes_are_negotiated_over_the_proved_connection_and_carry_the_data() {
        use duet_shared::lane::SHORT_PATH_LANES;
        let (ada, ada_lanes) = with_lanes(end(1, "Ada"));
        let (bob, bob_lanes) = with_lanes(end(2, "Bob"));
        // Frames on a lane before anyone is proved are not file data.
        bob_lanes.frames.lock().unwrap().push(vec![9; 10].into());
        let (ada, mut bob) = meet_ends(ada, bob, [("AA", "BB"), ("BB", "AA")]);
        assert!(bob.wire.take_transfer_arrivals().1.is_empty());
        // The side whose identity sorts higher opens; here, with these seeds:
        let key = |seed| {
            duet_shared::trust::DeviceKey::from_seed([seed; 32])
                .public()
                .uuid()
        };
        let (mut opener, mut other, opener_lanes, other_lanes) = if key(1) > key(2) {
            (ada, bob, ada_lanes, bob_lanes)
        } else {
            (bob, ada, bob_lanes, ada_lanes)
        };
        // Nothing large runs: no lane.
        opener.wire.drive_lanes(false);
        assert!(opener_lanes.ops.lock().unwrap().is_empty());
        other.wire.drive_lanes(true);
        assert!(
            other_lanes.ops.lock().unwrap().is_empty(),
            "only one side opens"
        );
        opener.wire.drive_lanes(true);
        let created = std::mem::take(&mut *opener_lanes.ops.lock().unwrap());
        assert_eq!(created.len(), usize::from(SHORT_PATH_LANES));
        assert!(opener.wire.take_lane_news().striping);
        // Lane 0: the offer goes over the control channel, the peer creates and answers.
        opener_lanes.report(LaneReport::LocalDescription {
            lane: 0,
            sdp: "offer".into(),
        });
        opener.wire.drive_lanes(true);
        assert_eq!(carry(&mut opener, &mut other), 1);
        assert!(
            other.wire.take_lane_news().striping,
            "chunks may come out of order now"
        );
        assert_eq!(
            std::mem::take(&mut *other_lanes.ops.lock().unwrap()),
            vec![
                LaneOp::Create {
                    lane: 0,
                    offerer: false
                },
                LaneOp::RemoteDescription {
                    lane: 0,
                    offer: true,
                    sdp: "offer".into()
                }
            ]
        );
        other_lanes.report(LaneReport::LocalDescription {
            lane: 0,
            sdp: "answer".into(),
        });
        other.wire.drive_lanes(true);
        assert_eq!(carry(&mut other, &mut opener), 1);
        assert!(
            opener_lanes
                .ops
                .lock()
                .unwrap()
                .contains(&LaneOp::RemoteDescription {
                    lane: 0,
                    offer: false,
                    sdp: "answer".into()
                })
        );
        // Until a lane is open, data takes the data channel.
        opener.wire.send_data(vec![1; 100]).unwrap();
        assert!(opener.wire.data_rx.try_recv().is_ok());
        // Open lanes take it, the least loaded first; the data channel none.
        for lane in [0, 1] {
            opener_lanes.report(LaneReport::Opened(lane));
        }
        opener.wire.drive_lanes(true);
        assert_eq!(opener.wire.take_lane_news().open, Some(2), "two lanes open");
        assert_eq!(opener.wire.take_lane_news().open, None, "said once");
        opener_lanes.queued.lock().unwrap()[0] = 1_000;
        opener.wire.send_data(vec![1; 100]).unwrap();
        opener_lanes.queued.lock().unwrap()[1] = 2_000;
        opener.wire.send_data(vec![1; 200]).unwrap();
        assert_eq!(*opener_lanes.sent.lock().unwrap(), vec![(1, 100), (0, 200)]);
        assert!(opener.wire.data_rx.try_recv().is_err());
        // A pair where neither side asks for striping keeps to the data channel.
        opener.wire.wants_striping = false;
        opener.wire.peer_stripes = false;
        opener.wire.send_data(vec![1; 100]).unwrap();
        assert!(opener.wire.data_rx.try_recv().is_ok());
        assert_eq!(opener_lanes.sent.lock().unwrap().len(), 2);
        opener.wire.wants_striping = true;
        opener.wire.peer_stripes = true;
        // What arrives on the lanes is file data.
        other_lanes.report(LaneReport::Opened(0));
        other.wire.drive_lanes(true);
        other_lanes.frames.lock().unwrap().push(vec![7; 300].into());
        assert_eq!(other.wire.take_transfer_arrivals().1.len(), 1);
        // A lane that fails is closed on both sides, and the frames on it count as lost.
        opener_lanes.report(LaneReport::Failed(1));
        opener.wire.drive_lanes(true);
        assert!(opener.wire.take_lane_news().lost);
        assert!(!opener.wire.take_lane_news().lost, "said once");
        assert!(
            opener_lanes
                .ops
                .lock()
                .unwrap()
                .contains(&LaneOp::Close { lane: 1 })
        );
        opener_lanes.report(LaneReport::Failed(0));
        opener.wire.drive_lanes(true);
        assert_eq!(carry(&mut opener, &mut other), 2, "two closes");
        assert!(other.wire.take_lane_news().lost, "lane 0 was open there");
        // No lane open: the data channel again.
        opener.wire.send_data(vec![1; 100]).unwrap();
        assert!(opener.wire.data_rx.try_recv().is_ok());
        // The peer gone: every lane closes, and what the lanes still hold is dropped.
        other_lanes.ops.lock().unwrap().clear();
        other_lanes.frames.lock().unwrap().push(vec![7; 300].into());
        other.wire.set_peer(None, None);
        assert!(other_lanes.frames.lock().unwrap().is_empty());
        assert!(!other.wire.take_lane_news().striping);
        other.wire.drive_lanes(true);
        assert!(
            !other_lanes
                .ops
                .lock()
                .unwrap()
                .iter()
                .any(|op| matches!(op, LaneOp::Create { .. })),
            "no lanes without a proved peer"
        );
    }

    #[test]
    fn a_stranger_cannot_open_lanes_and_the_peer_only_within_the_rules() {
        use duet_shared::lane::{LANE_OPEN_BURST, LaneSignal, MAX_LANES};
        let (ada, ada_lanes) = with_lanes(end(1, "Ada"));
        let (bob, bob_lanes) = with_lanes(end(2, "Bob"));
        let (mut ada, mut bob) = meet_ends(ada, bob, [("AA", "BB"), ("BB", "AA")]);
        let key = |seed| {
            duet_shared::trust::DeviceKey::from_seed([seed; 32])
                .public()
                .uuid()
        };
        let (opener, other, opener_lanes, other_lanes) = if key(1) > key(2) {
            (&mut ada, &mut bob, ada_lanes, bob_lanes)
        } else {
            (&mut bob, &mut ada, bob_lanes, ada_lanes)
        };
        let signal = |signal: LaneSignal| Control::Lane(signal).encode().unwrap().into();
        let offer = |lane| {
            signal(LaneSignal::Offer {
                lane,
                sdp: "offer".into(),
            })
        };
        let creates = |lanes: &FakeLanes| {
            lanes
                .ops
                .lock()
                .unwrap()
                .iter()
                .filter(|op| matches!(op, LaneOp::Create { .. }))
                .count()
        };
        // Someone else on the socket offers: nothing.
        other
            .wire
            .sort_control(PeerId(uuid::Uuid::from_u128(77)), offer(0));
        assert_eq!(creates(&other_lanes), 0);
        // The side that does not open lanes offers anyway: refused, nothing created.
        opener.wire.sort_control(other.peer, offer(0));
        assert_eq!(creates(&opener_lanes), 0);
        // The peer offering and closing in a loop gets the burst, then nothing.
        for _ in 0..4 {
            for lane in 0..MAX_LANES {
                other.wire.sort_control(opener.peer, offer(lane));
            }
            for lane in 0..MAX_LANES {
                other
                    .wire
                    .sort_control(opener.peer, signal(LaneSignal::Close { lane }));
            }
        }
        assert_eq!(creates(&other_lanes), LANE_OPEN_BURST as usize);
    }
}
