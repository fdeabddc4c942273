use super::{
    HandshakeResult, PacketSendError, PeerDataSender, SignallerBuilder,
    error::JsErrorExt,
    messages::{PeerEvent, PeerRequest},
};
use crate::{
    CandidatePair, CandidateType, PeerReport, SessionDescriptions,
    webrtc_socket::{
        ChannelConfig, HandshakeFailure, HandshakeStage, MAX_REMOTE_CANDIDATES, Messenger, Packet,
        Progress, RtcIceServerConfig, Signaller,
        error::SignalingError,
        messages::PeerSignal,
        signal_peer::SignalPeer,
        socket::{
            SignaledCandidates, create_data_channels_ready_fut, record_signaled_candidate,
            signaled_type,
        },
    },
};
use async_trait::async_trait;
use futures::{Future, FutureExt, SinkExt, StreamExt};
use futures_channel::mpsc::{Receiver, UnboundedReceiver, UnboundedSender};
use futures_timer::Delay;
use futures_util::select;
use js_sys::{Function, Map, Reflect};
use log::{debug, error, info, trace, warn};
use matchbox_protocol::PeerId;
use serde::Serialize;
use std::{pin::Pin, time::Duration};
use wasm_bindgen::{JsCast, JsValue, convert::FromWasmAbi, prelude::*};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelType,
    RtcIceCandidateInit, RtcIceConnectionState, RtcPeerConnection, RtcPeerConnectionIceEvent,
    RtcSdpType, RtcSessionDescriptionInit,
};
use ws_stream_wasm::{WsEvent, WsMessage, WsMeta, WsStream};

pub(crate) struct WasmSignaller {
    websocket_stream: futures::stream::Fuse<WsStream>,
    /// Duet patch: the socket's events, for the close code once the stream ends.
    events: Option<pharos::Events<WsEvent>>,
    /// Kept so the events keep coming (dropping the meta closes the socket).
    _meta: WsMeta,
}

#[derive(Debug, Default)]
pub(crate) struct WasmSignallerBuilder;

#[async_trait(?Send)]
impl SignallerBuilder for WasmSignallerBuilder {
    async fn new_signaller(
        &self,
        mut attempts: Option<u16>,
        room_url: String,
    ) -> Result<Box<dyn Signaller>, SignalingError> {
        let (mut meta, websocket_stream) = 'signaling: loop {
            match WsMeta::connect(&room_url, None)
                .await
                .map_err(SignalingError::from)
            {
                Ok((meta, wss)) => break (meta, wss.fuse()),
                Err(e) => {
                    if let Some(attempts) = attempts.as_mut() {
                        if *attempts <= 1 {
                            return Err(SignalingError::NegotiationFailed(Box::new(e)));
                        } else {
                            *attempts -= 1;
                            warn!(
                                "connection to signaling server failed, {attempts} attempt(s) remain"
                            );
                            warn!("waiting 3 seconds to re-try connection...");
                            Delay::new(Duration::from_secs(3)).await;
                            info!("retrying connection...");
                            continue 'signaling;
                        }
                    } else {
                        continue 'signaling;
                    }
                }
            };
        };
        let events = pharos::Observable::observe(&mut meta, pharos::ObserveConfig::default())
            .await
            .ok();
        Ok(Box::new(WasmSignaller {
            websocket_stream,
            events,
            _meta: meta,
        }))
    }
}

impl WasmSignaller {
    /// Duet patch: the close code and reason the server sent, from the events already
    /// delivered (the close event comes before the stream ends).
    fn close_reason(&mut self) -> SignalingError {
        let Some(events) = self.events.as_mut() else {
            return SignalingError::StreamExhausted;
        };
        while let Some(Some(event)) = events.next().now_or_never() {
            if let WsEvent::Closed(close) = event {
                if close.code >= 4000 {
                    return SignalingError::ClosedByServer {
                        code: close.code,
                        reason: close.reason,
                    };
                }
            }
        }
        SignalingError::StreamExhausted
    }
}

#[async_trait(?Send)]
impl Signaller for WasmSignaller {
    async fn send(&mut self, request: PeerRequest) -> Result<(), SignalingError> {
        let request = serde_json::to_string(&request).expect("serializing request");
        self.websocket_stream
            .send(WsMessage::Text(request))
            .await
            .map_err(SignalingError::from)
    }

    async fn next_message(&mut self) -> Result<PeerEvent, SignalingError> {
        let message = match self.websocket_stream.next().await {
            Some(WsMessage::Text(message)) => Ok(message),
            Some(_) => Err(SignalingError::UnknownFormat),
            // Duet patch: say why the server closed the connection, when it said.
            None => Err(self.close_reason()),
        }?;
        let message = serde_json::from_str(&message).map_err(|e| {
            error!("failed to deserialize message: {e:?}");
            SignalingError::UnknownFormat
        })?;
        Ok(message)
    }
}

impl PeerDataSender for RtcDataChannel {
    fn send(&mut self, packet: Packet) -> Result<(), PacketSendError> {
        self.send_with_u8_array(&packet)
            .efix()
            .map_err(|source| PacketSendError { source })
    }
}

pub(crate) struct WasmMessenger;

/// Duet patch: closes the peer connection when dropped (a timed-out or cancelled handshake, a
/// finished peer loop). Without it an abandoned `RTCPeerConnection` keeps its ports and counts
/// against the browser's limit on peer connections until the page is garbage collected.
pub(crate) struct ClosingConnection(RtcPeerConnection);

impl std::ops::Deref for ClosingConnection {
    type Target = RtcPeerConnection;

    fn deref(&self) -> &RtcPeerConnection {
        &self.0
    }
}

impl Drop for ClosingConnection {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Duet patch: a step of our own side failed.
fn local_failure(e: impl std::fmt::Debug) -> HandshakeFailure {
    warn!("peer connection setup failed: {e:?}");
    HandshakeFailure::Local
}

/// Duet patch: the browser refused the peer's description.
fn bad_description(e: impl std::fmt::Debug) -> HandshakeFailure {
    warn!("the peer's session description was refused: {e:?}");
    HandshakeFailure::BadDescription
}

/// The SDP of a description the browser made (an offer or answer object).
fn sdp_of(description: &JsValue) -> Result<String, HandshakeFailure> {
    Reflect::get(description, &JsValue::from_str("sdp"))
        .efix()
        .map_err(local_failure)?
        .as_string()
        .ok_or(HandshakeFailure::Local)
}

/// Keeps an ICE candidate that arrived before the description it belongs to, up to the cap.
fn hold_candidate(held: &mut Vec<String>, candidate: String) {
    if held.len() < MAX_REMOTE_CANDIDATES {
        held.push(candidate);
    } else {
        warn!("ignoring an early ICE candidate: the peer sent more than {MAX_REMOTE_CANDIDATES}");
    }
}

#[async_trait(?Send)]
impl Messenger for WasmMessenger {
    type DataChannel = RtcDataChannel;
    /// The disconnect signal, the connection for its stats, the candidates the peer signaled and
    /// the signals still to come
    type HandshakeMeta = (
        Receiver<()>,
        ClosingConnection,
        SignaledCandidates,
        UnboundedReceiver<PeerSignal>,
        CandidateBudget,
    );

    async fn offer_handshake(
        signal_peer: SignalPeer,
        mut peer_signal_rx: UnboundedReceiver<PeerSignal>,
        messages_from_peers_tx: Vec<UnboundedSender<(PeerId, Packet)>>,
        ice_server_config: &RtcIceServerConfig,
        channel_configs: &[ChannelConfig],
        progress: Progress,
    ) -> Result<HandshakeResult<Self::DataChannel, Self::HandshakeMeta>, HandshakeFailure> {
        debug!("making offer");

        let conn = create_rtc_peer_connection(ice_server_config, progress.clone())?;

        let (data_channel_ready_txs, data_channels_ready_fut) =
            create_data_channels_ready_fut(channel_configs);

        let (peer_disconnected_tx, peer_disconnected_rx) = futures_channel::mpsc::channel(1);

        let data_channels = create_data_channels(
            conn.0.clone(),
            messages_from_peers_tx,
            signal_peer.id,
            peer_disconnected_tx,
            data_channel_ready_txs,
            channel_configs,
        );

        // Create offer
        let offer = JsFuture::from(conn.create_offer())
            .await
            .efix()
            .map_err(local_failure)?;
        let offer_sdp = sdp_of(&offer)?;
        let rtc_session_desc_init_dict = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        rtc_session_desc_init_dict.set_sdp(&offer_sdp);
        // Gathering starts with the local description: candidates are caught from here on.
        let trickle = Trickle::start(&conn.0, signal_peer.clone());
        JsFuture::from(conn.set_local_description(&rtc_session_desc_init_dict))
            .await
            .efix()
            .map_err(local_failure)?;
        debug!("created offer for new peer");

        // Duet patch: the offer goes at once and every local candidate is trickled after it,
        // see `Trickle`.
        let local = conn.local_description().ok_or(HandshakeFailure::Local)?;
        let local_sdp = local.sdp();
        signal_peer.send(PeerSignal::Offer(local_sdp.clone()));
        trickle.release();

        let mut received_candidates = vec![];

        // Wait for answer
        let sdp = loop {
            let signal = peer_signal_rx
                .next()
                .await
                .ok_or(HandshakeFailure::SignalingLost)?;

            match signal {
                PeerSignal::Answer(answer) => break answer,
                PeerSignal::IceCandidate(candidate) => {
                    debug!(
                        "offerer: received an ice candidate while waiting for answer: {candidate:?}"
                    );
                    hold_candidate(&mut received_candidates, candidate);
                }
                _ => {
                    warn!("ignoring unexpected signal: {signal:?}");
                }
            };
        };

        // Duet patch: kept for `WebRtcSocket::session_descriptions`.
        let descriptions = SessionDescriptions {
            local: local_sdp,
            remote: sdp.clone(),
        };
        // Set remote description
        let remote_description = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        remote_description.set_sdp(&sdp);
        debug!("setting remote description");
        JsFuture::from(conn.set_remote_description(&remote_description))
            .await
            .efix()
            .map_err(bad_description)?;
        progress.reach(HandshakeStage::Connecting);

        let signaled = SignaledCandidates::default();
        let mut budget = CandidateBudget::default();
        let peer_signal_rx = complete_handshake(
            trickle,
            conn.0.clone(),
            received_candidates,
            data_channels_ready_fut,
            peer_signal_rx,
            signaled.clone(),
            &mut budget,
        )
        .await;

        Ok(HandshakeResult {
            peer_id: signal_peer.id,
            descriptions,
            data_channels,
            metadata: (peer_disconnected_rx, conn, signaled, peer_signal_rx, budget),
        })
    }

    async fn accept_handshake(
        signal_peer: SignalPeer,
        mut peer_signal_rx: UnboundedReceiver<PeerSignal>,
        messages_from_peers_tx: Vec<UnboundedSender<(PeerId, Packet)>>,
        ice_server_config: &RtcIceServerConfig,
        channel_configs: &[ChannelConfig],
        progress: Progress,
    ) -> Result<HandshakeResult<Self::DataChannel, Self::HandshakeMeta>, HandshakeFailure> {
        debug!("handshake_accept");

        let conn = create_rtc_peer_connection(ice_server_config, progress.clone())?;

        let (data_channel_ready_txs, data_channels_ready_fut) =
            create_data_channels_ready_fut(channel_configs);

        let (peer_disconnected_tx, peer_disconnected_rx) = futures_channel::mpsc::channel(1);

        let data_channels = create_data_channels(
            conn.0.clone(),
            messages_from_peers_tx,
            signal_peer.id,
            peer_disconnected_tx,
            data_channel_ready_txs,
            channel_configs,
        );

        let mut received_candidates = vec![];

        let offer = loop {
            let signal = peer_signal_rx
                .next()
                .await
                .ok_or(HandshakeFailure::SignalingLost)?;

            match signal {
                PeerSignal::Offer(o) => {
                    break o;
                }
                PeerSignal::IceCandidate(candidate) => {
                    debug!("received IceCandidate signal: {candidate:?}");
                    hold_candidate(&mut received_candidates, candidate);
                }
                _ => {
                    warn!("ignoring unexpected signal: {signal:?}");
                }
            }
        };
        debug!("received offer");

        // Set remote description
        {
            let remote_description = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
            let sdp = offer.clone();
            remote_description.set_sdp(&sdp);
            JsFuture::from(conn.set_remote_description(&remote_description))
                .await
                .efix()
                .map_err(bad_description)?;
            debug!("set remote_description from offer");
        }

        // An offer the browser took but cannot answer is the peer's fault too.
        let answer = JsFuture::from(conn.create_answer())
            .await
            .efix()
            .map_err(bad_description)?;

        debug!("created answer");

        let session_desc_init = RtcSessionDescriptionInit::new(RtcSdpType::Answer);

        let answer_sdp = sdp_of(&answer)?;

        session_desc_init.set_sdp(&answer_sdp);

        // Gathering starts with the local description: candidates are caught from here on.
        let trickle = Trickle::start(&conn.0, signal_peer.clone());
        JsFuture::from(conn.set_local_description(&session_desc_init))
            .await
            .efix()
            .map_err(local_failure)?;

        // Duet patch: as the offer, see `Trickle`.
        let local = conn.local_description().ok_or(HandshakeFailure::Local)?;
        let local_sdp = local.sdp();
        signal_peer.send(PeerSignal::Answer(local_sdp.clone()));
        trickle.release();
        progress.reach(HandshakeStage::Connecting);
        // Duet patch: kept for `WebRtcSocket::session_descriptions`.
        let descriptions = SessionDescriptions {
            local: local_sdp,
            remote: offer,
        };

        let signaled = SignaledCandidates::default();
        let mut budget = CandidateBudget::default();
        let peer_signal_rx = complete_handshake(
            trickle,
            conn.0.clone(),
            received_candidates,
            data_channels_ready_fut,
            peer_signal_rx,
            signaled.clone(),
            &mut budget,
        )
        .await;

        Ok(HandshakeResult {
            peer_id: signal_peer.id,
            descriptions,
            data_channels,
            metadata: (peer_disconnected_rx, conn, signaled, peer_signal_rx, budget),
        })
    }

    async fn peer_loop(
        peer_uuid: PeerId,
        handshake_meta: Self::HandshakeMeta,
        candidate_pair_tx: UnboundedSender<(PeerId, PeerReport)>,
    ) -> PeerId {
        let (mut peer_loop_finished_rx, conn, signaled, mut peer_signal_rx, mut budget) =
            handshake_meta;
        let mut candidate_pairs = Box::pin(
            report_candidate_pairs(&conn, peer_uuid, candidate_pair_tx, signaled.clone()).fuse(),
        );
        loop {
            select! {
                _ = peer_loop_finished_rx.next() => break,
                _ = candidate_pairs => break,
                // Candidates keep trickling in after the channels opened
                // Never ready once signaling for this peer ended: the data channels carry on.
                signal = peer_signal_rx.select_next_some() => {
                    if let PeerSignal::IceCandidate(candidate) = signal {
                        try_add_rtc_ice_candidate(&conn, &signaled, &candidate, &mut budget).await;
                    }
                }
            }
        }
        peer_uuid
    }
}

/// Reports the candidate pair the connection uses, and again whenever it changes
async fn report_candidate_pairs(
    conn: &RtcPeerConnection,
    peer: PeerId,
    tx: UnboundedSender<(PeerId, PeerReport)>,
    signaled: SignaledCandidates,
) {
    let mut reported = None;
    loop {
        if let Some(pair) = selected_candidate_pair(conn, &signaled).await
            && reported != Some(pair)
        {
            reported = Some(pair);
            if tx.unbounded_send((peer, PeerReport::Pair(pair))).is_err() {
                // socket dropped
                return;
            }
        }
        Delay::new(Duration::from_secs(1)).await;
    }
}

/// Reads the selected candidate pair out of `getStats()`. Chrome names it on the transport
/// stats, Firefox flags the pair itself.
async fn selected_candidate_pair(
    conn: &RtcPeerConnection,
    signaled: &SignaledCandidates,
) -> Option<CandidatePair> {
    let report: Map = JsFuture::from(conn.get_stats())
        .await
        .ok()?
        .unchecked_into();
    let string = |stats: &JsValue, key: &str| Reflect::get(stats, &key.into()).ok()?.as_string();
    let flag = |stats: &JsValue, key: &str| {
        Reflect::get(stats, &key.into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    };

    let mut selected_id = None;
    let mut pairs = vec![];
    let mut candidates = std::collections::HashMap::new();
    for stats in report.values().into_iter().flatten() {
        match string(&stats, "type").as_deref() {
            Some("transport") => {
                if let Some(id) = string(&stats, "selectedCandidatePairId") {
                    selected_id = Some(id);
                }
            }
            Some("candidate-pair") => pairs.push(stats),
            Some("local-candidate") | Some("remote-candidate") => {
                if let (Some(id), Some(typ)) =
                    (string(&stats, "id"), string(&stats, "candidateType"))
                {
                    // Older stats call the address `ip`
                    let address = string(&stats, "address").or_else(|| string(&stats, "ip"));
                    let port = Reflect::get(&stats, &"port".into())
                        .ok()
                        .and_then(|port| port.as_f64())
                        .map(|port| port as u16);
                    candidates.insert(id, (typ, address, port));
                }
            }
            _ => {}
        }
    }

    let pair = pairs.iter().find(|pair| match &selected_id {
        Some(id) => string(pair, "id").as_deref() == Some(id),
        None => {
            flag(pair, "selected")
                || (flag(pair, "nominated")
                    && string(pair, "state").as_deref() == Some("succeeded"))
        }
    })?;
    let candidate_type = |key: &str| {
        let (typ, address, port) = candidates.get(&string(pair, key)?)?;
        match typ.as_str() {
            "host" => Some(CandidateType::Host),
            "srflx" => Some(CandidateType::ServerReflexive),
            "prflx" => match (address, port) {
                (Some(address), Some(port)) => {
                    signaled_type(signaled, address, *port).or(Some(CandidateType::PeerReflexive))
                }
                _ => Some(CandidateType::PeerReflexive),
            },
            "relay" => Some(CandidateType::Relay),
            _ => None,
        }
    };
    Some(CandidatePair {
        local: candidate_type("localCandidateId")?,
        remote: candidate_type("remoteCandidateId")?,
    })
}

async fn complete_handshake(
    trickle: Trickle,
    conn: RtcPeerConnection,
    received_candidates: Vec<String>,
    mut data_channels_ready_fut: Pin<Box<futures::future::Fuse<impl Future<Output = ()>>>>,
    mut peer_signal_rx: UnboundedReceiver<PeerSignal>,
    signaled: SignaledCandidates,
    budget: &mut CandidateBudget,
) -> UnboundedReceiver<PeerSignal> {
    // handle pending ICE candidates
    for candidate in received_candidates {
        debug!("adding ice candidate {candidate:?}");
        try_add_rtc_ice_candidate(&conn, &signaled, &candidate, budget).await;
    }

    // select for data channels ready or ice candidates
    debug!("waiting for data channels to open");
    loop {
        select! {
            _ = data_channels_ready_fut => {
                debug!("data channels ready");
                break;
            }
            // Never ready once signaling ended: the channels may still open on the candidates
            // we have; if not, the handshake times out.
            msg = peer_signal_rx.select_next_some() => {
                if let PeerSignal::IceCandidate(candidate) = msg {
                    try_add_rtc_ice_candidate(&conn, &signaled, &candidate, budget).await;
                }
            }
        };
    }

    // stop listening for ICE candidates
    // TODO: we should support getting new ICE candidates even after connecting,
    //       since it's possible to return to the ice gathering state
    // See: <https://developer.mozilla.org/en-US/docs/Web/API/RTCPeerConnection/iceGatheringState>
    let onicecandidate: Box<dyn FnMut(RtcPeerConnectionIceEvent)> =
        Box::new(move |_event: RtcPeerConnectionIceEvent| {
            warn!("received ice candidate event after handshake completed, ignoring");
        });
    let onicecandidate = Closure::wrap(onicecandidate);
    conn.set_onicecandidate(Some(onicecandidate.as_ref().unchecked_ref()));
    onicecandidate.forget();
    drop(trickle);

    debug!(
        "handshake completed, ice gathering state: {:?}",
        conn.ice_gathering_state()
    );
    peer_signal_rx
}

/// Duet patch: how many remote candidates a connection has taken, against
/// [`MAX_REMOTE_CANDIDATES`].
#[derive(Default)]
pub(crate) struct CandidateBudget(usize);

async fn try_add_rtc_ice_candidate(
    connection: &RtcPeerConnection,
    signaled: &SignaledCandidates,
    candidate_string: &str,
    budget: &mut CandidateBudget,
) {
    if budget.0 >= MAX_REMOTE_CANDIDATES {
        warn!("ignoring an ICE candidate: the peer sent more than {MAX_REMOTE_CANDIDATES}");
        return;
    }
    budget.0 += 1;
    let parsed_candidate = match js_sys::JSON::parse(candidate_string) {
        Ok(c) => c,
        Err(err) => {
            warn!("failed to parse ice candidate json, ignoring: {err:?}");
            return;
        }
    };

    let candidate_init = if parsed_candidate.is_null() {
        debug!("Received null ice candidate, this means there are no further ice candidates");
        None
    } else {
        if let Some(sdp) = Reflect::get(&parsed_candidate, &"candidate".into())
            .ok()
            .and_then(|sdp| sdp.as_string())
        {
            record_signaled_candidate(signaled, &sdp);
        }
        let candidate = RtcIceCandidateInit::from(parsed_candidate);
        debug!("ice candidate received: {candidate:?}");
        Some(candidate)
    };

    // Duet patch: a candidate the browser refuses costs that candidate, not the page.
    if let Err(e) = JsFuture::from(
        connection.add_ice_candidate_with_opt_rtc_ice_candidate_init(candidate_init.as_ref()),
    )
    .await
    {
        warn!("ignoring an ICE candidate the browser refused: {e:?}");
    }
}

fn create_rtc_peer_connection(
    ice_server_config: &RtcIceServerConfig,
    progress: Progress,
) -> Result<ClosingConnection, HandshakeFailure> {
    #[derive(Serialize)]
    struct IceServerConfig {
        urls: Vec<String>,
        username: String,
        credential: String,
    }

    let peer_config = RtcConfiguration::new();
    // Browsers reject an ice server entry without urls
    let ice_servers: Vec<IceServerConfig> = if ice_server_config.urls.is_empty() {
        vec![]
    } else {
        vec![IceServerConfig {
            urls: ice_server_config.urls.clone(),
            username: ice_server_config.username.clone().unwrap_or_default(),
            credential: ice_server_config.credential.clone().unwrap_or_default(),
        }]
    };
    peer_config.set_ice_servers(
        &serde_wasm_bindgen::to_value(&ice_servers).map_err(local_failure)?,
    );
    // Fails when the browser has too many connections open, or refuses the ICE servers.
    let connection = RtcPeerConnection::new_with_configuration(&peer_config)
        .efix()
        .map_err(local_failure)?;

    let connection_1 = connection.clone();
    let oniceconnectionstatechange: Box<dyn FnMut(_)> = Box::new(move |_event: JsValue| {
        let state = connection_1.ice_connection_state();
        debug!("ice connection state changed: {state:?}");
        // Duet patch: a pair of candidates answers; what is left is opening on it.
        if matches!(
            state,
            RtcIceConnectionState::Connected | RtcIceConnectionState::Completed
        ) {
            progress.reach(HandshakeStage::Opening);
        }
    });
    let oniceconnectionstatechange = Closure::wrap(oniceconnectionstatechange);
    // NOTE: Not attaching a handler on this event causes FF to disconnect after a couple of seconds
    // see: https://github.com/johanhelsing/matchbox/issues/36
    connection
        .set_oniceconnectionstatechange(Some(oniceconnectionstatechange.as_ref().unchecked_ref()));
    oniceconnectionstatechange.forget();

    Ok(ClosingConnection(connection))
}

/// Duet patch: this side's ICE candidates, sent to the peer as they are found, from the moment
/// gathering starts (the local description is set) until the handshake ends.
///
/// Stock matchbox waited for gathering to complete before it sent its description, and listened
/// for candidates only once the peer's description had come back: a candidate found in between
/// was lost. Chromium completes gathering only when every TURN allocation has ended, which took
/// longer than the whole handshake in Duet's network lab, and even where it is fast the wait
/// costs each side its TURN round trips before the other can start. Here the description goes
/// at once and every candidate follows it; the candidates that fire before the description has
/// gone are held, so the peer never reads a candidate before the description it belongs to.
struct Trickle {
    state: std::rc::Rc<std::cell::RefCell<TrickleState>>,
    signal_peer: SignalPeer,
    /// Kept alive while it is the connection's handler (replaced when the handshake ends).
    _handler: Closure<dyn FnMut(RtcPeerConnectionIceEvent)>,
}

enum TrickleState {
    /// The description has not gone yet: candidates wait (at most `MAX_REMOTE_CANDIDATES`,
    /// the most the peer takes).
    Holding(Vec<String>),
    /// Each candidate goes as it is found.
    Sending,
}

impl Trickle {
    /// Catches `conn`'s candidates from now on.
    fn start(conn: &RtcPeerConnection, signal_peer: SignalPeer) -> Self {
        let state = std::rc::Rc::new(std::cell::RefCell::new(TrickleState::Holding(Vec::new())));
        let shared = state.clone();
        let peer = signal_peer.clone();
        let handler: Box<dyn FnMut(RtcPeerConnectionIceEvent)> =
            Box::new(move |event: RtcPeerConnectionIceEvent| {
                let Some(candidate) = candidate_json(&event) else {
                    return;
                };
                match &mut *shared.borrow_mut() {
                    TrickleState::Holding(held) => {
                        if held.len() < MAX_REMOTE_CANDIDATES {
                            held.push(candidate);
                        }
                    }
                    TrickleState::Sending => {
                        debug!("sending IceCandidate signal: {candidate:?}");
                        peer.send(PeerSignal::IceCandidate(candidate));
                    }
                }
            });
        let handler = Closure::wrap(handler);
        conn.set_onicecandidate(Some(handler.as_ref().unchecked_ref()));
        Self {
            state,
            signal_peer,
            _handler: handler,
        }
    }

    /// The description has gone: what was held follows it, and the rest as it comes.
    fn release(&self) {
        let held = std::mem::replace(&mut *self.state.borrow_mut(), TrickleState::Sending);
        if let TrickleState::Holding(held) = held {
            for candidate in held {
                debug!("sending IceCandidate signal: {candidate:?}");
                self.signal_peer.send(PeerSignal::IceCandidate(candidate));
            }
        }
    }
}

/// A local candidate as the peer reads it (`"null"`: gathering is complete); `None` if it
/// cannot be serialized.
fn candidate_json(event: &RtcPeerConnectionIceEvent) -> Option<String> {
    match event.candidate() {
        Some(candidate) => {
            let json = js_sys::JSON::stringify(&candidate.to_json())
                .ok()
                .and_then(|json| json.as_string());
            if json.is_none() {
                warn!("could not serialize a local ICE candidate, not sent");
            }
            json
        }
        None => {
            debug!("ICE gathering complete: no further local candidates");
            Some("null".to_string())
        }
    }
}

fn create_data_channels(
    connection: RtcPeerConnection,
    mut incoming_tx: Vec<futures_channel::mpsc::UnboundedSender<(PeerId, Packet)>>,
    peer_id: PeerId,
    peer_disconnected_tx: futures_channel::mpsc::Sender<()>,
    mut data_channel_ready_txs: Vec<futures_channel::mpsc::Sender<()>>,
    channel_config: &[ChannelConfig],
) -> Vec<RtcDataChannel> {
    channel_config
        .iter()
        .enumerate()
        .map(|(i, channel)| {
            create_data_channel(
                connection.clone(),
                incoming_tx.get_mut(i).unwrap().clone(),
                peer_id,
                peer_disconnected_tx.clone(),
                data_channel_ready_txs.pop().unwrap(),
                channel,
                i,
            )
        })
        .collect()
}

fn create_data_channel(
    connection: RtcPeerConnection,
    incoming_tx: futures_channel::mpsc::UnboundedSender<(PeerId, Packet)>,
    peer_id: PeerId,
    peer_disconnected_tx: futures_channel::mpsc::Sender<()>,
    mut channel_open: futures_channel::mpsc::Sender<()>,
    channel_config: &ChannelConfig,
    channel_id: usize,
) -> RtcDataChannel {
    let data_channel_config = data_channel_config(channel_config);
    data_channel_config.set_id(channel_id as u16);

    let channel = connection.create_data_channel_with_data_channel_dict(
        &format!("matchbox_socket_{channel_id}"),
        &data_channel_config,
    );

    channel.set_binary_type(RtcDataChannelType::Arraybuffer);

    leaking_channel_event_handler(
        |f| channel.set_onopen(f),
        move |_: JsValue| {
            debug!("data channel open: {channel_id}");
            // Fails only once the handshake waiting for it is gone (timed out or cancelled).
            if channel_open.try_send(()).is_err() {
                debug!("data channel {channel_id} opened after its handshake ended");
            }
        },
    );

    leaking_channel_event_handler(
        |f| channel.set_onmessage(f),
        move |event: MessageEvent| {
            trace!("data channel message received {event:?}");
            if let Ok(arraybuf) = event.data().dyn_into::<js_sys::ArrayBuffer>() {
                let uarray = js_sys::Uint8Array::new(&arraybuf);
                let body = uarray.to_vec();

                if let Err(e) = incoming_tx.unbounded_send((peer_id, body.into())) {
                    // should only happen if the socket is dropped, or we are out of memory
                    warn!("failed to notify about data channel message: {e:?}");
                }
            }
        },
    );

    leaking_channel_event_handler(
        |f| channel.set_onerror(f),
        move |event: Event| {
            error!("error in data channel: {event:?}");
        },
    );

    leaking_channel_event_handler(
        |f| channel.set_onclose(f),
        move |event: Event| {
            warn!("data channel closed: {event:?}");
            if let Err(err) = peer_disconnected_tx.clone().try_send(()) {
                // should only happen if the socket is dropped, or we are out of memory
                warn!("failed to notify about data channel closing: {err:?}");
            }
        },
    );

    channel
}

/// Note that this function leaks some memory because the rust closure is dropped but still needs to
/// be accessed by javascript of the browser
///
/// See also: https://rustwasm.github.io/wasm-bindgen/api/wasm_bindgen/closure/struct.Closure.html#method.into_js_value
fn leaking_channel_event_handler<T: FromWasmAbi + 'static>(
    mut setter: impl FnMut(Option<&Function>),
    handler: impl FnMut(T) + 'static,
) {
    let closure: Closure<dyn FnMut(T)> = Closure::wrap(Box::new(handler));

    setter(Some(closure.as_ref().unchecked_ref()));

    closure.forget();
}

fn data_channel_config(channel_config: &ChannelConfig) -> RtcDataChannelInit {
    let data_channel_config = RtcDataChannelInit::new();

    data_channel_config.set_ordered(channel_config.ordered);
    data_channel_config.set_negotiated(true);

    if let Some(n) = channel_config.max_retransmits {
        data_channel_config.set_max_retransmits(n);
    }

    data_channel_config
}
