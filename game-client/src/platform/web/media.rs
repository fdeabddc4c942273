//! The browser's call media: the microphone (and camera) through `getUserMedia`, and a peer
//! connection of its own for the call, driven by the call machine's effects
//! (`call::MediaCommand`) and answering with [`MediaReport`]s.
//!
//! One task applies the commands strictly in order (each awaited before the next), because
//! `RTCPeerConnection` refuses a remote candidate before the remote description it belongs to,
//! and the peer's offer may arrive while the microphone prompt is still open. The connection
//! always carries one audio and one video transceiver, negotiated once by the caller's offer:
//! the camera comes and goes with `replaceTrack`, never a second offer. The peer's audio plays
//! through an `<audio>` element; their video shows in a `<video>` element the room positions
//! over their avatar ([`MediaPort::show_peer_video`]).

use std::sync::{Arc, Mutex};

use duet_shared::call::{CallEnd, CallId};
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    HtmlMediaElement, MediaStream, MediaStreamConstraints, MediaStreamTrack, RtcConfiguration,
    RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcPeerConnectionState,
    RtcRtpTransceiver, RtcRtpTransceiverDirection, RtcRtpTransceiverInit, RtcSdpType,
    RtcSessionDescriptionInit, RtcTrackEvent,
};

use crate::config::IceServer;
use crate::ports::{CallStats, Media as MediaPort, MediaOp, MediaReport};

/// One effect for the media task, with the ICE servers to use if it starts a connection.
type Command = (MediaOp, Vec<IceServer>);

/// Where the media task's reports wait for the app's next frame; the task and the
/// connection's handlers each hold one.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<MediaReport>>>);

impl Reports {
    /// Keeps a report and draws a frame soon, so the app reads it without waiting for input.
    fn push(&self, what: MediaReport) {
        crate::util::lock_shared(&self.0).push(what);
        super::wake_frame();
    }
}

/// The browser's call media: voice and video.
#[derive(Default)]
pub struct BrowserMedia {
    /// The media task's queue, once started.
    queue: Mutex<Option<UnboundedSender<Command>>>,
    reports: Reports,
}

impl MediaPort for BrowserMedia {
    /// Hands one effect to the media task (started on first use).
    fn command(&self, op: MediaOp, ice_servers: &[IceServer]) {
        let mut queue = crate::util::lock_shared(&self.queue);
        let sender = queue.get_or_insert_with(|| {
            let (tx, rx) = unbounded();
            wasm_bindgen_futures::spawn_local(run(rx, self.reports.clone()));
            tx
        });
        let _ = sender.unbounded_send((op, ice_servers.to_vec()));
    }

    fn reports(&self) -> Vec<MediaReport> {
        std::mem::take(&mut *crate::util::lock_shared(&self.reports.0))
    }

    fn show_peer_video(&self, rect: Option<(f32, f32, f32)>) {
        set_peer_video_rect(rect);
    }
}

/// The running call's media.
struct Media {
    call: CallId,
    reports: Reports,
    pc: RtcPeerConnection,
    local: MediaStream,
    audio: Option<MediaStreamTrack>,
    camera: Option<MediaStreamTrack>,
    /// Keeps the connection's event handlers alive as long as it.
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Media {
    fn stop(self) {
        for track in self.local.get_tracks().iter() {
            track.unchecked_into::<MediaStreamTrack>().stop();
        }
        self.pc.set_onicecandidate(None);
        self.pc.set_ontrack(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.close();
        for id in ["duet-peer-audio", "duet-peer-video"] {
            if let Some(element) = element(id) {
                element.set_src_object(None);
            }
        }
    }

    fn transceiver(&self, kind: &str) -> Option<RtcRtpTransceiver> {
        self.pc
            .get_transceivers()
            .iter()
            .map(|t| t.unchecked_into::<RtcRtpTransceiver>())
            .find(|t| t.receiver().track().kind() == kind)
    }
}

async fn run(mut queue: UnboundedReceiver<Command>, reports: Reports) {
    let mut media: Option<Media> = None;
    while let Some((op, ice)) = queue.next().await {
        match op {
            MediaOp::Start {
                call,
                offerer,
                video,
            } => {
                if let Some(old) = media.take() {
                    old.stop();
                }
                match start(call, offerer, video, &ice, &reports).await {
                    Ok(started) => media = Some(started),
                    Err(why) => reports.push(MediaReport::Failed(call, why)),
                }
            }
            MediaOp::RemoteDescription { call, offer, sdp } => {
                let Some(m) = media.as_ref().filter(|m| m.call == call) else {
                    continue;
                };
                if let Err(e) = remote_description(m, offer, &sdp).await {
                    web_sys::console::warn_1(&e);
                    reports.push(MediaReport::Failed(call, CallEnd::MediaFailed));
                }
            }
            MediaOp::RemoteCandidate {
                call,
                candidate,
                mid,
                mline,
            } => {
                let Some(m) = media.as_ref().filter(|m| m.call == call) else {
                    continue;
                };
                let init = RtcIceCandidateInit::new(&candidate);
                init.set_sdp_mid(mid.as_deref());
                init.set_sdp_m_line_index(mline);
                let added = JsFuture::from(
                    m.pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init)),
                )
                .await;
                if let Err(e) = added {
                    // One bad candidate is not the end of the call; ICE uses the others.
                    web_sys::console::warn_1(&e);
                }
            }
            MediaOp::SetLocal { muted, camera } => {
                if let Some(m) = media.as_mut() {
                    set_local_media(m, muted, camera).await;
                }
            }
            MediaOp::Stop { call } => {
                if media.as_ref().is_some_and(|m| m.call == call)
                    && let Some(m) = media.take()
                {
                    m.stop();
                }
            }
        }
    }
}

/// The microphone (and camera), in plain words when the browser says no.
async fn user_media(audio: bool, video: bool) -> Result<MediaStream, CallEnd> {
    let devices = web_sys::window()
        .and_then(|w| w.navigator().media_devices().ok())
        .ok_or(CallEnd::NoMicrophone)?;
    let constraints = MediaStreamConstraints::new();
    if audio {
        let wanted = js_sys::Object::new();
        for key in ["echoCancellation", "noiseSuppression", "autoGainControl"] {
            let _ = js_sys::Reflect::set(&wanted, &key.into(), &JsValue::TRUE);
        }
        constraints.set_audio(&wanted);
    } else {
        constraints.set_audio_bool(false);
    }
    constraints.set_video_bool(video);
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|_| CallEnd::NoMicrophone)?;
    match JsFuture::from(promise).await {
        Ok(stream) => Ok(stream.unchecked_into()),
        Err(e) => {
            let name = js_sys::Reflect::get(&e, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .unwrap_or_default();
            web_sys::console::warn_1(&e);
            Err(match name.as_str() {
                "NotAllowedError" | "SecurityError" => CallEnd::PermissionDenied,
                "NotFoundError" | "OverconstrainedError" | "NotReadableError" => {
                    CallEnd::NoMicrophone
                }
                _ => CallEnd::MediaFailed,
            })
        }
    }
}

fn element(id: &str) -> Option<HtmlMediaElement> {
    web_sys::window()?
        .document()?
        .get_element_by_id(id)?
        .dyn_into()
        .ok()
}

/// The `<audio>`/`<video>` element with `id`, created on first use.
fn media_element(id: &str, tag: &str) -> Option<HtmlMediaElement> {
    if let Some(found) = element(id) {
        return Some(found);
    }
    let document = web_sys::window()?.document()?;
    let created = document.create_element(tag).ok()?;
    created.set_id(id);
    let _ = created.set_attribute("autoplay", "");
    let _ = created.set_attribute("playsinline", "");
    if tag == "video" {
        // The room shows it over the peer's avatar; hidden until there is a picture.
        let _ = created.set_attribute("muted", "");
        let _ = created.set_attribute(
            "style",
            "position:fixed;display:none;object-fit:cover;border-radius:50%;pointer-events:none",
        );
    }
    document.body()?.append_child(&created).ok()?;
    created.dyn_into().ok()
}

/// Where the peer's video goes, in CSS pixels of the page; `None` hides it.
fn set_peer_video_rect(rect: Option<(f32, f32, f32)>) {
    let Some(video) = element("duet-peer-video") else {
        return;
    };
    // Positions come in the canvas's logical pixels, which are CSS pixels from its corner.
    let (left, top) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("duet"))
        .map(|canvas| {
            let r = canvas.get_bounding_client_rect();
            (r.left() as f32, r.top() as f32)
        })
        .unwrap_or_default();
    let style = match rect {
        Some((x, y, size)) => format!(
            "position:fixed;display:block;left:{}px;top:{}px;width:{size}px;height:{size}px;\
             object-fit:cover;border-radius:50%;pointer-events:none",
            left + x - size / 2.0,
            top + y - size / 2.0
        ),
        None => "position:fixed;display:none".into(),
    };
    let _ = video.set_attribute("style", &style);
}

/// The room's ICE servers for a connection of the page's own (a call's, a lane's).
pub(super) fn rtc_configuration(ice: &[IceServer]) -> RtcConfiguration {
    let servers = js_sys::Array::new();
    for server in ice.iter().filter(|s| !s.urls.is_empty()) {
        let entry = web_sys::RtcIceServer::new();
        let urls: js_sys::Array = server.urls.iter().map(|u| JsValue::from_str(u)).collect();
        entry.set_urls(&urls);
        if let Some(user) = &server.username {
            entry.set_username(user);
        }
        if let Some(credential) = &server.credential {
            entry.set_credential(credential);
        }
        servers.push(&entry);
    }
    let config = RtcConfiguration::new();
    config.set_ice_servers(&servers);
    config
}

async fn start(
    call: CallId,
    offerer: bool,
    video: bool,
    ice: &[IceServer],
    reports: &Reports,
) -> Result<Media, CallEnd> {
    let local = user_media(true, video).await?;
    let tracks = |kind: &str| -> Option<MediaStreamTrack> {
        local
            .get_tracks()
            .iter()
            .map(|t| t.unchecked_into::<MediaStreamTrack>())
            .find(|t| t.kind() == kind)
    };
    let audio = tracks("audio");
    let camera = tracks("video");
    // Whatever fails from here on, the devices are released: a failed call never leaves the
    // microphone or camera open.
    let release = |local: &MediaStream| {
        for track in local.get_tracks().iter() {
            track.unchecked_into::<MediaStreamTrack>().stop();
        }
    };
    if audio.is_none() {
        release(&local);
        return Err(CallEnd::NoMicrophone);
    }
    let Ok(pc) = RtcPeerConnection::new_with_configuration(&rtc_configuration(ice)) else {
        release(&local);
        return Err(CallEnd::MediaFailed);
    };

    let handlers = watch(&pc, call, reports);
    wasm_bindgen_futures::spawn_local(watch_stats(call, pc.clone(), reports.clone()));
    let media = Media {
        call,
        reports: reports.clone(),
        pc,
        local,
        audio,
        camera,
        _handlers: handlers,
    };
    if offerer {
        add_transceivers(&media);
        if describe(&media, RtcSdpType::Offer).await.is_err() {
            media.stop();
            return Err(CallEnd::MediaFailed);
        }
    }
    Ok(media)
}

/// Reports the connection's candidates and state, and plays the peer's tracks in the page's
/// media elements. The handlers live as long as the call.
fn watch(
    pc: &RtcPeerConnection,
    call: CallId,
    reports: &Reports,
) -> Vec<Closure<dyn FnMut(JsValue)>> {
    let to_app = reports.clone();
    let on_candidate = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        let event: RtcPeerConnectionIceEvent = event.unchecked_into();
        if let Some(candidate) = event.candidate() {
            to_app.push(MediaReport::LocalCandidate {
                call,
                candidate: candidate.candidate(),
                mid: candidate.sdp_mid(),
                mline: candidate.sdp_m_line_index(),
            });
        }
    });
    pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
    let on_track = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        let event: RtcTrackEvent = event.unchecked_into();
        let track = event.track();
        let (id, tag) = if track.kind() == "audio" {
            ("duet-peer-audio", "audio")
        } else {
            ("duet-peer-video", "video")
        };
        if let Some(element) = media_element(id, tag)
            && let Ok(stream) = MediaStream::new()
        {
            stream.add_track(&track);
            element.set_src_object(Some(&stream));
            let _ = element.play();
        }
    });
    pc.set_ontrack(Some(on_track.as_ref().unchecked_ref()));
    let watched = pc.clone();
    let to_app = reports.clone();
    let on_state = Closure::<dyn FnMut(JsValue)>::new(move |_| match watched.connection_state() {
        RtcPeerConnectionState::Connected => to_app.push(MediaReport::Connected(call)),
        RtcPeerConnectionState::Failed => {
            to_app.push(MediaReport::Failed(call, CallEnd::MediaFailed));
        }
        _ => {}
    });
    pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
    vec![on_candidate, on_track, on_state]
}

/// One audio and one video transceiver, both ways, negotiated once (a side without a camera
/// still receives the peer's video).
fn add_transceivers(media: &Media) {
    for kind in ["audio", "video"] {
        let init = RtcRtpTransceiverInit::new();
        init.set_direction(RtcRtpTransceiverDirection::Sendrecv);
        let track = if kind == "audio" {
            media.audio.as_ref()
        } else {
            media.camera.as_ref()
        };
        match track {
            Some(track) => {
                init.set_streams(&js_sys::Array::of1(&media.local));
                media
                    .pc
                    .add_transceiver_with_media_stream_track_and_init(track, &init);
            }
            None => {
                media.pc.add_transceiver_with_str_and_init(kind, &init);
            }
        }
    }
}

/// Creates our offer or answer, sets it, and reports it for the peer.
async fn describe(media: &Media, kind: RtcSdpType) -> Result<(), JsValue> {
    let created = if kind == RtcSdpType::Offer {
        JsFuture::from(media.pc.create_offer()).await?
    } else {
        JsFuture::from(media.pc.create_answer()).await?
    };
    let sdp = js_sys::Reflect::get(&created, &"sdp".into())?
        .as_string()
        .unwrap_or_default();
    let init = RtcSessionDescriptionInit::new(kind);
    init.set_sdp(&sdp);
    JsFuture::from(media.pc.set_local_description(&init)).await?;
    media.reports.push(MediaReport::LocalDescription {
        call: media.call,
        sdp,
    });
    Ok(())
}

async fn remote_description(media: &Media, offer: bool, sdp: &str) -> Result<(), JsValue> {
    let init = RtcSessionDescriptionInit::new(if offer {
        RtcSdpType::Offer
    } else {
        RtcSdpType::Answer
    });
    init.set_sdp(sdp);
    JsFuture::from(media.pc.set_remote_description(&init)).await?;
    if offer {
        // The offer made the transceivers; ours go into them, both ways.
        for (kind, track) in [("audio", &media.audio), ("video", &media.camera)] {
            if let Some(transceiver) = media.transceiver(kind) {
                transceiver.set_direction(RtcRtpTransceiverDirection::Sendrecv);
                if let Some(track) = track {
                    JsFuture::from(transceiver.sender().replace_track(Some(track))).await?;
                }
            }
        }
        describe(media, RtcSdpType::Answer).await?;
    }
    Ok(())
}

/// Muting takes the microphone out of the audio transceiver (nothing is sent at all, not even
/// silence) and puts it back on unmute; the camera is asked for when first turned on and put
/// into the video transceiver (no renegotiation either way), and stopped when turned off.
async fn set_local_media(media: &mut Media, muted: bool, camera: bool) {
    if let Some(audio) = &media.audio {
        audio.set_enabled(!muted);
        if let Some(transceiver) = media.transceiver("audio") {
            let track = (!muted).then_some(audio);
            let _ = JsFuture::from(transceiver.sender().replace_track(track)).await;
        }
    }
    match (camera, media.camera.take()) {
        (true, Some(track)) => media.camera = Some(track),
        (true, None) => {
            if let Ok(stream) = user_media(false, true).await
                && let Some(track) = stream
                    .get_video_tracks()
                    .iter()
                    .next()
                    .map(|t| t.unchecked_into::<MediaStreamTrack>())
            {
                media.local.add_track(&track);
                if let Some(transceiver) = media.transceiver("video") {
                    let _ = JsFuture::from(transceiver.sender().replace_track(Some(&track))).await;
                }
                media.camera = Some(track);
            }
        }
        (false, Some(track)) => {
            if let Some(transceiver) = media.transceiver("video") {
                let _ = JsFuture::from(transceiver.sender().replace_track(None)).await;
            }
            track.stop();
            media.local.remove_track(&track);
        }
        (false, None) => {}
    }
}

/// Once a second while the connection lives: what flows, and how loud each side is (for the
/// speaking indicators and for tests, which read the same numbers as `call_stats` events).
async fn watch_stats(call: CallId, pc: RtcPeerConnection, reports: Reports) {
    loop {
        let _ = sleep_ms(1000).await;
        if pc.connection_state() == RtcPeerConnectionState::Closed {
            return;
        }
        let Ok(stats) = JsFuture::from(pc.get_stats()).await else {
            continue;
        };
        reports.push(MediaReport::Stats(call, summarize(&stats)));
    }
}

fn sleep_ms(ms: i32) -> JsFuture {
    JsFuture::from(js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    }))
}

/// Sums an `RTCStatsReport` into what Duet shows and tests check.
fn summarize(report: &JsValue) -> CallStats {
    let mut out = CallStats::default();
    let get = |o: &JsValue, key: &str| js_sys::Reflect::get(o, &key.into()).unwrap_or_default();
    let number = |o: &JsValue, key: &str| get(o, key).as_f64().unwrap_or(0.0);
    let text = |o: &JsValue, key: &str| get(o, key).as_string().unwrap_or_default();
    let values = get(report, "values")
        .dyn_into::<js_sys::Function>()
        .and_then(|values| values.call0(report));
    let Ok(Ok(Some(entries))) = values.map(|v| js_sys::try_iter(&v)) else {
        return out;
    };
    for entry in entries.flatten() {
        let kind = text(&entry, "kind");
        match (text(&entry, "type").as_str(), kind.as_str()) {
            ("inbound-rtp", "audio") => {
                out.inbound_audio_bytes += number(&entry, "bytesReceived") as u64;
                out.inbound_audio_packets += number(&entry, "packetsReceived") as u64;
                out.peer_level = out.peer_level.max(number(&entry, "audioLevel"));
                out.jitter_ms = number(&entry, "jitter") * 1000.0;
                out.packets_lost += number(&entry, "packetsLost").max(0.0) as u64;
            }
            ("inbound-rtp", "video") => {
                out.inbound_video_bytes += number(&entry, "bytesReceived") as u64;
                out.video_fps = number(&entry, "framesPerSecond");
                out.packets_lost += number(&entry, "packetsLost").max(0.0) as u64;
            }
            ("outbound-rtp", "audio") => {
                out.outbound_audio_bytes += number(&entry, "bytesSent") as u64;
            }
            ("outbound-rtp", "video") => {
                out.outbound_video_bytes += number(&entry, "bytesSent") as u64;
            }
            ("media-source", "audio") => {
                out.my_level = out.my_level.max(number(&entry, "audioLevel"));
            }
            ("candidate-pair", _) if get(&entry, "nominated").is_truthy() => {
                out.rtt_ms = number(&entry, "currentRoundTripTime") * 1000.0;
            }
            _ => {}
        }
    }
    out
}
