//! The desktop's transfer lanes (`duet_shared::lane`): one webrtc-rs peer connection per lane
//! with one negotiated data channel, on the same runtime and SCTP settings as the room's own
//! connection (matchbox's, with its sized UDP sockets), driven by the lane machine's operations.
//!
//! As for calls (`media.rs`), one thread applies the operations strictly in order, so a remote
//! candidate is never applied before its description; candidates that arrive early wait, and
//! our own wait until our description is reported. Each open lane has a sending task: frames
//! queue on it without blocking the wire, and what it has not handed to SCTP yet is the lane's
//! load ([`LaneLinks::queued`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use duet_shared::lane::MAX_LANES;
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCPeerConnectionState, SettingEngineBuilder,
};
use webrtc::runtime::Runtime;

use super::audio::lock;
use super::media::{apply_remote, ice_servers, offer};
use crate::config::IceServer;
use crate::platform::lane_mailbox::LaneMailbox;
use crate::ports::{LaneId, LaneLinks, LaneOp, LaneReport, Wake};

/// One operation for the lane thread, with the ICE servers a new connection uses.
type Command = (LaneOp, Vec<IceServer>);

/// One lane's sending side, as the wire sees it.
struct Outlet {
    frames: UnboundedSender<Vec<u8>>,
    load: Arc<Load>,
}

/// A lane's state as the wire reads it.
#[derive(Default)]
struct Load {
    /// Bytes queued for the sending task.
    unsent: AtomicUsize,
    /// The data channel is open.
    open: AtomicBool,
}

/// What the lane thread, the connections' callbacks and the wire share.
struct Shared {
    mailbox: LaneMailbox,
    outlets: Mutex<[Option<Outlet>; MAX_LANES as usize]>,
}

/// The desktop's lanes (see the module docs).
pub struct DesktopLanes {
    queue: Mutex<Option<UnboundedSender<Command>>>,
    shared: Arc<Shared>,
}

impl DesktopLanes {
    /// No lanes yet; `wake` rings when something arrives.
    pub fn new(wake: Wake) -> Self {
        Self {
            queue: Mutex::new(None),
            shared: Arc::new(Shared {
                mailbox: LaneMailbox::new(wake),
                outlets: Mutex::new(Default::default()),
            }),
        }
    }
}

impl LaneLinks for DesktopLanes {
    fn command(&self, op: LaneOp, ice_servers: &[IceServer]) {
        // What the lane's last connection reported and the wire has not read yet is about a
        // connection that is going: it must not reach the machine as news of the next one.
        if let LaneOp::Close { lane } | LaneOp::Create { lane, .. } = op {
            self.shared.mailbox.forget(lane);
        }
        let mut queue = lock(&self.queue);
        let sender = queue.get_or_insert_with(|| {
            let (tx, rx) = unbounded();
            let shared = self.shared.clone();
            let started = std::thread::Builder::new()
                .name("duet-lanes".into())
                .spawn(move || futures::executor::block_on(run(rx, shared)));
            if let Err(e) = started {
                bevy::log::error!("cannot start the lane thread: {e}");
            }
            tx
        });
        let _ = sender.unbounded_send((op, ice_servers.to_vec()));
    }

    fn reports(&self) -> Vec<LaneReport> {
        self.shared.mailbox.take_reports()
    }

    fn send(&self, lane: LaneId, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        let outlets = lock(&self.shared.outlets);
        let Some(outlet) = outlets
            .get(usize::from(lane))
            .and_then(Option::as_ref)
            .filter(|o| o.load.open.load(Ordering::SeqCst))
        else {
            return Err(frame);
        };
        let bytes = frame.len();
        outlet.load.unsent.fetch_add(bytes, Ordering::SeqCst);
        outlet.frames.unbounded_send(frame).map_err(|e| {
            outlet.load.unsent.fetch_sub(bytes, Ordering::SeqCst);
            e.into_inner()
        })
    }

    fn queued(&self, lane: LaneId) -> usize {
        let outlets = lock(&self.shared.outlets);
        outlets
            .get(usize::from(lane))
            .and_then(Option::as_ref)
            .map_or(usize::MAX, |o| o.load.unsent.load(Ordering::SeqCst))
    }

    fn take_frames(&self) -> Vec<matchbox_socket::Packet> {
        self.shared.mailbox.take_frames()
    }
}

/// One lane's connection, on the lane thread.
struct Lane {
    pc: Arc<dyn PeerConnection>,
    /// Set when the machine closed it: its callbacks report nothing more.
    stopped: Arc<AtomicBool>,
    /// The peer's candidates that came before its description.
    early: Vec<RTCIceCandidateInit>,
    described: bool,
    /// Our candidates, held until our description has been reported (then `None`).
    held: Arc<Mutex<Option<Vec<LaneReport>>>>,
}

impl Lane {
    fn describe(&self, shared: &Shared, lane: LaneId, sdp: String) {
        let mut held = lock(&self.held);
        shared
            .mailbox
            .report(LaneReport::LocalDescription { lane, sdp });
        for candidate in held.take().into_iter().flatten() {
            shared.mailbox.report(candidate);
        }
    }
}

async fn run(mut queue: UnboundedReceiver<Command>, shared: Arc<Shared>) {
    let mut lanes: [Option<Lane>; MAX_LANES as usize] = Default::default();
    let runtime = matchbox_socket::webrtc_runtime();
    while let Some((op, ice)) = queue.next().await {
        let failed = |lane: LaneId, what: &str, e: webrtc::error::Error| {
            bevy::log::warn!("lane {lane}: {what}: {e}");
            shared.mailbox.report(LaneReport::Failed(lane));
        };
        match op {
            LaneOp::Create { lane, offerer } => {
                let Some(slot) = lanes.get_mut(usize::from(lane)) else {
                    continue;
                };
                if let Some(old) = slot.take() {
                    stop(old, &shared, lane).await;
                }
                match create(lane, &ice, &shared, &runtime).await {
                    Ok(created) => {
                        if offerer {
                            match offer(created.pc.as_ref()).await {
                                Ok(sdp) => created.describe(&shared, lane, sdp),
                                Err(e) => failed(lane, "offer", e),
                            }
                        }
                        *slot = Some(created);
                    }
                    Err(e) => failed(lane, "connection", e),
                }
            }
            LaneOp::RemoteDescription { lane, offer, sdp } => {
                let Some(Some(l)) = lanes.get_mut(usize::from(lane)) else {
                    continue;
                };
                if let Err(e) = remote_description(l, &shared, lane, offer, sdp).await {
                    failed(lane, "the peer's description", e);
                }
            }
            LaneOp::RemoteCandidate {
                lane,
                candidate,
                mid,
                mline,
            } => {
                let Some(Some(l)) = lanes.get_mut(usize::from(lane)) else {
                    continue;
                };
                let init = RTCIceCandidateInit {
                    candidate,
                    sdp_mid: mid,
                    sdp_mline_index: mline,
                    ..Default::default()
                };
                if !l.described {
                    l.early.push(init);
                } else if let Err(e) = l.pc.add_ice_candidate(init).await {
                    // One bad candidate is not the end of the lane; ICE uses the others.
                    bevy::log::warn!("lane {lane}: a candidate of the peer's: {e}");
                }
            }
            LaneOp::Close { lane } => {
                if let Some(old) = lanes.get_mut(usize::from(lane)).and_then(Option::take) {
                    stop(old, &shared, lane).await;
                }
            }
        }
    }
}

/// Closes a lane's connection; what it still had queued is lost.
async fn stop(lane: Lane, shared: &Shared, id: LaneId) {
    lane.stopped.store(true, Ordering::SeqCst);
    if let Some(slot) = lock(&shared.outlets).get_mut(usize::from(id)) {
        *slot = None;
    }
    let _ = lane.pc.close().await;
}

/// Reports the connection's candidates and its failure.
struct Events {
    lane: LaneId,
    shared: Arc<Shared>,
    stopped: Arc<AtomicBool>,
    held: Arc<Mutex<Option<Vec<LaneReport>>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(init) = event.candidate.to_json() {
            let report = LaneReport::LocalCandidate {
                lane: self.lane,
                candidate: init.candidate,
                mid: init.sdp_mid,
                mline: init.sdp_mline_index,
            };
            let mut held = lock(&self.held);
            match held.as_mut() {
                Some(held) => held.push(report),
                None => self.shared.mailbox.report(report),
            }
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) && !self.stopped.load(Ordering::SeqCst)
        {
            self.shared.mailbox.report(LaneReport::Failed(self.lane));
        }
    }
}

async fn create(
    lane: LaneId,
    ice: &[IceServer],
    shared: &Arc<Shared>,
    runtime: &Arc<dyn Runtime>,
) -> Result<Lane, webrtc::error::Error> {
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers(ice))
        .build();
    // The room connection's SCTP window (see `platform::native::prepare_network`).
    let mut settings = SettingEngineBuilder::new();
    let receive_buffer = matchbox_socket::sctp_receive_buffer_size();
    if receive_buffer > 0 {
        settings = settings.with_sctp_max_receive_buffer_size(receive_buffer);
    }
    let stopped = Arc::new(AtomicBool::new(false));
    let held = Arc::new(Mutex::new(Some(Vec::new())));
    let events = Events {
        lane,
        shared: shared.clone(),
        stopped: stopped.clone(),
        held: held.clone(),
    };
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(settings.build())
            .with_runtime(runtime.clone())
            .with_handler(Arc::new(events))
            .with_udp_addrs(vec!["0.0.0.0:0", "[::]:0"])
            .build()
            .await?,
    );
    let init = RTCDataChannelInit {
        ordered: true,
        negotiated: Some(0),
        ..Default::default()
    };
    let channel = match pc.create_data_channel("duet-lane", Some(init)).await {
        Ok(channel) => channel,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    let (frames, queued) = unbounded();
    let load = Arc::new(Load::default());
    lock(&shared.outlets)[usize::from(lane)] = Some(Outlet {
        frames,
        load: load.clone(),
    });
    runtime
        .spawn(Box::pin(forward(
            lane,
            channel.clone(),
            shared.clone(),
            stopped.clone(),
            load.clone(),
        )))
        .detach();
    runtime
        .spawn(Box::pin(send_frames(channel, queued, load)))
        .detach();
    Ok(Lane {
        pc,
        stopped,
        early: Vec::new(),
        described: false,
        held,
    })
}

/// Hands the channel's events to the wire until it closes: open, and frames into the inbox
/// (past [`LANE_INBOX_BYTES`] the lane is reported failed and its frames are not kept).
async fn forward(
    lane: LaneId,
    channel: Arc<dyn DataChannel>,
    shared: Arc<Shared>,
    stopped: Arc<AtomicBool>,
    load: Arc<Load>,
) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                load.open.store(true, Ordering::SeqCst);
                if !stopped.load(Ordering::SeqCst) {
                    shared.mailbox.report(LaneReport::Opened(lane));
                }
            }
            DataChannelEvent::OnMessage(message) => {
                if stopped.load(Ordering::SeqCst) {
                    continue;
                }
                if !shared.mailbox.frame(message.data.freeze()) {
                    bevy::log::warn!("lane {lane}: the peer sent more than it was granted");
                    stopped.store(true, Ordering::SeqCst);
                    shared.mailbox.report(LaneReport::Failed(lane));
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    load.open.store(false, Ordering::SeqCst);
    if !stopped.load(Ordering::SeqCst) {
        shared.mailbox.report(LaneReport::Failed(lane));
    }
}

/// Sends what the wire queued on the lane until the lane is closed (its outlet dropped).
async fn send_frames(
    channel: Arc<dyn DataChannel>,
    mut queued: UnboundedReceiver<Vec<u8>>,
    load: Arc<Load>,
) {
    while let Some(frame) = queued.next().await {
        let bytes = frame.len();
        let sent = channel.send(BytesMut::from(&frame[..])).await;
        load.unsent.fetch_sub(bytes, Ordering::SeqCst);
        if sent.is_err() {
            return;
        }
    }
}

async fn remote_description(
    lane: &mut Lane,
    shared: &Shared,
    id: LaneId,
    offer: bool,
    sdp: String,
) -> Result<(), webrtc::error::Error> {
    let early = std::mem::take(&mut lane.early);
    let answer = apply_remote(lane.pc.as_ref(), early, offer, sdp).await?;
    lane.described = true;
    if let Some(sdp) = answer {
        lane.describe(shared, id, sdp);
    }
    Ok(())
}
