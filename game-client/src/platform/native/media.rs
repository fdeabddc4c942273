//! The desktop's call media: voice over a webrtc-rs peer connection of its own, Opus-encoded
//! from the microphone (or a test tone, see [`super::audio`]) and decoded to the speakers,
//! driven by the call machine's effects (`call::MediaCommand`) and answering with
//! [`MediaReport`]s, exactly like the browser's `platform/web/media.rs`.
//!
//! One task applies the commands strictly in order on a thread of its own, for the same reason
//! as in the browser: a remote candidate must not be applied before the description it
//! belongs to. Candidates that arrive early anyway wait in [`Media::early`]; our own candidates
//! wait until our description has been reported, so the peer never receives a candidate
//! before the offer or answer it belongs to.
//!
//! Voice only: the desktop sends no video, and counts (but does not show) the browser's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use duet_shared::call::{CallEnd, CallId};
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, Registry, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;
use webrtc::runtime::Runtime;

use super::audio::{self, Devices, FRAME, lock};
use crate::config::IceServer;
use crate::ports::{CallStats, Media as MediaPort, MediaOp, MediaReport};

/// One effect for the media task, with the ICE servers to use if it starts a connection.
type Command = (MediaOp, Vec<IceServer>);

/// Where the media task's reports wait for the app's next frame; the task and the
/// connection's callbacks each hold one.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<MediaReport>>>);

impl Reports {
    fn push(&self, what: MediaReport) {
        lock(&self.0).push(what);
    }
}

/// The desktop's call media: voice only (see the module docs).
#[derive(Default)]
pub struct DesktopMedia {
    /// The media task's queue, once started.
    queue: Mutex<Option<UnboundedSender<Command>>>,
    reports: Reports,
}

impl MediaPort for DesktopMedia {
    /// Hands one effect to the media task (started on first use).
    fn command(&self, op: MediaOp, ice_servers: &[IceServer]) {
        let mut queue = lock(&self.queue);
        let sender = queue.get_or_insert_with(|| {
            let (tx, rx) = unbounded();
            let reports = self.reports.clone();
            let started = std::thread::Builder::new()
                .name("duet-call".into())
                .spawn(move || futures::executor::block_on(run(rx, reports)));
            if let Err(e) = started {
                bevy::log::error!("cannot start the call thread: {e}");
            }
            tx
        });
        let _ = sender.unbounded_send((op, ice_servers.to_vec()));
    }

    fn reports(&self) -> Vec<MediaReport> {
        std::mem::take(&mut *lock(&self.reports.0))
    }

    /// The desktop shows no video.
    fn show_peer_video(&self, _rect: Option<(f32, f32, f32)>) {}
}

fn runtime() -> Option<Arc<dyn Runtime>> {
    static RUNTIME: OnceLock<Option<Arc<dyn Runtime>>> = OnceLock::new();
    RUNTIME
        .get_or_init(webrtc::runtime::default_runtime)
        .clone()
}

/// Opus as WebRTC negotiates it (RFC 7587: always "2 channels" in SDP; we send mono).
fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: audio::RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

/// What the call's tasks share: its counters, the devices, and whether it still runs.
struct Shared {
    call: CallId,
    reports: Reports,
    stopped: AtomicBool,
    muted: AtomicBool,
    sending: AtomicBool,
    devices: Mutex<Option<Devices>>,
    /// Our audio track and its sender, for the sending task.
    outgoing: OnceLock<(Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>)>,
    /// Our candidates, held until our description has been reported (then `None`).
    held_candidates: Mutex<Option<Vec<MediaReport>>>,
    counters: Mutex<Counters>,
}

/// What flowed in, summed for [`CallStats`].
#[derive(Default)]
struct Counters {
    audio_bytes: u64,
    audio_packets: u64,
    video_bytes: u64,
    /// What went out, for [`CallStats`] too.
    sent_audio_bytes: u64,
    /// Loudest the peer was since the last report.
    peer_level: f64,
    /// Loudest we were since the last report.
    my_level: f64,
    arrivals: Arrivals,
}

/// RTP sequence and timing bookkeeping: packets lost and interarrival jitter (RFC 3550,
/// section 6.4.1 and appendix A.8), as the browser's `getStats()` reports them.
#[derive(Default)]
struct Arrivals {
    /// First sequence number seen, and the highest since, both extended past wrap-around.
    first: Option<u64>,
    highest: u64,
    received: u64,
    /// Previous packet's transit time, in RTP clock units (48 kHz).
    transit: Option<f64>,
    /// Jitter in RTP clock units.
    jitter: f64,
}

impl Arrivals {
    fn packet(&mut self, sequence: u16, rtp_time: u32, arrived: Instant, epoch: Instant) {
        let extended = match self.first {
            None => {
                self.first = Some(u64::from(sequence));
                self.highest = u64::from(sequence);
                u64::from(sequence)
            }
            Some(_) => {
                // The nearest number with these low 16 bits to the highest so far.
                let delta = sequence.wrapping_sub(self.highest as u16) as i16;
                (self.highest as i64 + i64::from(delta)).max(0) as u64
            }
        };
        self.highest = self.highest.max(extended);
        self.received += 1;
        let now = arrived.duration_since(epoch).as_secs_f64() * f64::from(audio::RATE);
        let transit = now - f64::from(rtp_time);
        if let Some(previous) = self.transit {
            let d = (transit - previous).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    fn lost(&self) -> u64 {
        let expected = self.first.map_or(0, |first| self.highest - first + 1);
        expected.saturating_sub(self.received)
    }

    fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(audio::RATE)
    }
}

impl Shared {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        lock(&self.counters)
    }

    /// Reports our candidate now, or after our description if that is not out yet.
    fn local_candidate(&self, candidate: MediaReport) {
        let mut held = lock(&self.held_candidates);
        match held.as_mut() {
            Some(held) => held.push(candidate),
            None => self.reports.push(candidate),
        }
    }

    /// Reports our description, then the candidates that waited for it.
    fn local_description(&self, sdp: String) {
        let mut held = lock(&self.held_candidates);
        self.reports.push(MediaReport::LocalDescription {
            call: self.call,
            sdp,
        });
        for candidate in held.take().into_iter().flatten() {
            self.reports.push(candidate);
        }
    }
}

/// The connection's events, for one call.
struct Events {
    shared: Arc<Shared>,
    runtime: Arc<dyn Runtime>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            self.shared.local_candidate(MediaReport::LocalCandidate {
                call: self.shared.call,
                candidate: init.candidate,
                mid: init.sdp_mid,
                mline: init.sdp_mline_index,
            });
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let call = self.shared.call;
        match state {
            RTCPeerConnectionState::Connected => {
                self.shared.reports.push(MediaReport::Connected(call));
                if !self.shared.sending.swap(true, Ordering::SeqCst) {
                    let shared = self.shared.clone();
                    let runtime = self.runtime.clone();
                    self.runtime
                        .spawn(Box::pin(send_audio(shared, runtime)))
                        .detach();
                }
            }
            RTCPeerConnectionState::Failed if !self.shared.stopped.load(Ordering::SeqCst) => {
                self.shared
                    .reports
                    .push(MediaReport::Failed(call, CallEnd::MediaFailed));
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.shared.clone();
        self.runtime
            .spawn(Box::pin(receive(shared, track)))
            .detach();
    }
}

/// The running call's media.
struct Media {
    shared: Arc<Shared>,
    pc: Arc<dyn PeerConnection>,
    /// The peer's candidates that came before their description.
    early: Vec<RTCIceCandidateInit>,
    described: bool,
}

impl Media {
    async fn stop(self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Closing the devices releases the microphone at once, whatever the tasks are doing.
        drop(lock(&self.shared.devices).take());
        let _ = self.pc.close().await;
    }
}

async fn run(mut queue: UnboundedReceiver<Command>, reports: Reports) {
    let mut media: Option<Media> = None;
    while let Some((op, ice)) = queue.next().await {
        match op {
            MediaOp::Start { call, offerer, .. } => {
                if let Some(old) = media.take() {
                    old.stop().await;
                }
                match start(call, offerer, &ice, &reports).await {
                    Ok(started) => media = Some(started),
                    Err(why) => reports.push(MediaReport::Failed(call, why)),
                }
            }
            MediaOp::RemoteDescription { call, offer, sdp } => {
                let Some(m) = media.as_mut().filter(|m| m.shared.call == call) else {
                    continue;
                };
                if let Err(e) = remote_description(m, offer, sdp).await {
                    bevy::log::warn!("call {call}: the peer's description: {e}");
                    reports.push(MediaReport::Failed(call, CallEnd::MediaFailed));
                }
            }
            MediaOp::RemoteCandidate {
                call,
                candidate,
                mid,
                mline,
            } => {
                let Some(m) = media.as_mut().filter(|m| m.shared.call == call) else {
                    continue;
                };
                let init = RTCIceCandidateInit {
                    candidate,
                    sdp_mid: mid,
                    sdp_mline_index: mline,
                    ..Default::default()
                };
                if !m.described {
                    m.early.push(init);
                } else if let Err(e) = m.pc.add_ice_candidate(init).await {
                    // One bad candidate is not the end of the call; ICE uses the others.
                    bevy::log::warn!("call {call}: a candidate of the peer's: {e}");
                }
            }
            MediaOp::SetLocal { muted, .. } => {
                if let Some(m) = &media {
                    m.shared.muted.store(muted, Ordering::SeqCst);
                }
            }
            MediaOp::Stop { call } => {
                if media.as_ref().is_some_and(|m| m.shared.call == call)
                    && let Some(m) = media.take()
                {
                    m.stop().await;
                }
            }
        }
    }
}

async fn start(
    call: CallId,
    offerer: bool,
    ice: &[IceServer],
    reports: &Reports,
) -> Result<Media, CallEnd> {
    let devices = Devices::open()?;
    let runtime = runtime().ok_or(CallEnd::MediaFailed)?;
    let failed = |e: webrtc::error::Error| {
        bevy::log::warn!("call {call}: {e}");
        CallEnd::MediaFailed
    };
    let shared = Arc::new(Shared {
        call,
        reports: reports.clone(),
        stopped: AtomicBool::new(false),
        muted: AtomicBool::new(false),
        sending: AtomicBool::new(false),
        devices: Mutex::new(Some(devices)),
        outgoing: OnceLock::new(),
        held_candidates: Mutex::new(Some(Vec::new())),
        counters: Mutex::default(),
    });
    let pc = peer_connection(ice, &shared, &runtime)
        .await
        .map_err(failed)?;
    let media = Media {
        shared: shared.clone(),
        pc: pc.clone(),
        early: Vec::new(),
        described: false,
    };
    runtime
        .spawn(Box::pin(report_stats(shared.clone(), runtime.clone())))
        .detach();

    // Added before any description: the caller offers it, and the callee's answer puts it into
    // the audio section of the peer's offer.
    let track = voice_track(call).map_err(failed)?;
    let sender = match pc.add_track(track.clone() as Arc<dyn TrackLocal>).await {
        Ok(sender) => sender,
        Err(e) => {
            media.stop().await;
            return Err(failed(e));
        }
    };
    let _ = shared.outgoing.set((track, sender));

    if offerer {
        match offer(pc.as_ref()).await {
            Ok(sdp) => shared.local_description(sdp),
            Err(e) => {
                media.stop().await;
                return Err(failed(e));
            }
        }
    }
    Ok(media)
}

/// The call's own connection, through the room's ICE servers, reporting to `shared`.
async fn peer_connection(
    ice: &[IceServer],
    shared: &Arc<Shared>,
    runtime: &Arc<dyn Runtime>,
) -> Result<Arc<dyn PeerConnection>, webrtc::error::Error> {
    let mut engine = MediaEngine::default();
    // Opus for us; the browser's video codecs too, so its camera's section is accepted
    // (received and counted, not shown) rather than refused.
    engine.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers(ice))
        .build();
    let events = Events {
        shared: shared.clone(),
        runtime: runtime.clone(),
    };
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_runtime(runtime.clone())
        .with_handler(Arc::new(events))
        .with_udp_addrs(vec!["0.0.0.0:0", "[::]:0"])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

/// The microphone's track: Opus, one random SSRC.
/// The room's ICE servers as webrtc-rs takes them. Shared with the transfer lanes.
pub(super) fn ice_servers(ice: &[IceServer]) -> Vec<RTCIceServer> {
    ice.iter()
        .filter(|s| !s.urls.is_empty())
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect()
}

fn voice_track(call: CallId) -> Result<Arc<TrackLocalStaticSample>, webrtc::error::Error> {
    Ok(Arc::new(TrackLocalStaticSample::new(
        Instant::now(),
        MediaStreamTrack::new(
            format!("duet-{call}"),
            format!("duet-voice-{call}"),
            "voice".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(rand_ssrc()),
                    ..Default::default()
                },
                codec: opus_codec(),
                ..Default::default()
            }],
        ),
    )?))
}

/// Creates and sets the offer; its SDP goes to the peer.
/// Creates and sets our offer; returns its SDP. Shared with the transfer lanes.
pub(super) async fn offer(pc: &dyn PeerConnection) -> Result<String, webrtc::error::Error> {
    let offer = pc.create_offer(None).await?;
    let sdp = offer.sdp.clone();
    pc.set_local_description(offer).await?;
    Ok(sdp)
}

/// A random SSRC for our audio (RFC 3550 asks for one chosen at random).
fn rand_ssrc() -> u32 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

async fn remote_description(
    media: &mut Media,
    offer: bool,
    sdp: String,
) -> Result<(), webrtc::error::Error> {
    let early = std::mem::take(&mut media.early);
    let answer = apply_remote(media.pc.as_ref(), early, offer, sdp).await?;
    media.described = true;
    if let Some(sdp) = answer {
        media.shared.local_description(sdp);
    }
    Ok(())
}

/// Applies the peer's offer or answer to `pc`, then the candidates that came before it; to an
/// offer, sets and returns our answer. Shared with the transfer lanes.
pub(super) async fn apply_remote(
    pc: &dyn PeerConnection,
    early: Vec<RTCIceCandidateInit>,
    offer: bool,
    sdp: String,
) -> Result<Option<String>, webrtc::error::Error> {
    let description = if offer {
        RTCSessionDescription::offer(sdp)?
    } else {
        RTCSessionDescription::answer(sdp)?
    };
    pc.set_remote_description(description).await?;
    for candidate in early {
        // One bad candidate is not the end of the connection; ICE uses the others.
        if let Err(e) = pc.add_ice_candidate(candidate).await {
            bevy::log::warn!("a candidate of the peer's: {e}");
        }
    }
    if !offer {
        return Ok(None);
    }
    let answer = pc.create_answer(None).await?;
    let sdp = answer.sdp.clone();
    pc.set_local_description(answer).await?;
    Ok(Some(sdp))
}

/// Every 20 ms while the call lasts: 20 ms of our audio, Opus-encoded, onto the track.
/// Muted sends nothing at all, as in the browser.
async fn send_audio(shared: Arc<Shared>, runtime: Arc<dyn Runtime>) {
    let Some((track, sender)) = shared.outgoing.get().cloned() else {
        return;
    };
    let payload_type = match sender.get_parameters().await {
        Ok(p) => match p.rtp_parameters.codecs.first() {
            Some(codec) => codec.payload_type,
            None => return,
        },
        Err(_) => return,
    };
    let Some(ssrc) = track.ssrcs().await.first().copied() else {
        return;
    };
    let mut encoder =
        match opus::Encoder::new(audio::RATE, opus::Channels::Mono, opus::Application::Voip) {
            Ok(encoder) => encoder,
            Err(e) => {
                bevy::log::warn!("no Opus encoder: {e}");
                shared
                    .reports
                    .push(MediaReport::Failed(shared.call, CallEnd::MediaFailed));
                return;
            }
        };
    let mut ticker = runtime.interval(Duration::from_millis(20));
    let mut frame = [0.0f32; FRAME];
    let mut packet = [0u8; 1500];
    while !shared.stopped.load(Ordering::SeqCst) {
        ticker.tick().await;
        {
            let mut devices = lock(&shared.devices);
            let Some(devices) = devices.as_mut() else {
                return;
            };
            devices.next_frame(&mut frame);
        }
        let muted = shared.muted.load(Ordering::SeqCst);
        {
            let mut counters = shared.counters();
            let level = if muted { 0.0 } else { audio::level(&frame) };
            counters.my_level = counters.my_level.max(level);
        }
        if muted {
            continue;
        }
        let Ok(n) = encoder.encode_float(&frame, &mut packet) else {
            continue;
        };
        let sample = Sample {
            data: bytes::Bytes::copy_from_slice(&packet[..n]),
            duration: Duration::from_millis(20),
            ..Sample::new(Instant::now())
        };
        if track
            .sample_writer(ssrc, payload_type)
            .write_sample(&sample)
            .await
            .is_ok()
        {
            shared.counters().sent_audio_bytes += n as u64;
        }
    }
}

/// Reads one of the peer's tracks until it ends: audio is decoded, measured and played;
/// video is counted.
async fn receive(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let audio = track.kind().await == RtpCodecKind::Audio;
    let mut decoder = opus::Decoder::new(audio::RATE, opus::Channels::Mono).ok();
    // The longest Opus packet: 120 ms.
    let mut pcm = vec![0.0f32; audio::RATE as usize * 120 / 1000];
    let epoch = Instant::now();
    while let Some(event) = track.poll().await {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        if !audio {
            shared.counters().video_bytes += packet.payload.len() as u64;
            continue;
        }
        let decoded = decoder
            .as_mut()
            .and_then(|d| d.decode_float(&packet.payload, &mut pcm, false).ok())
            .unwrap_or(0);
        let level = audio::level(&pcm[..decoded]);
        {
            let mut counters = shared.counters();
            counters.audio_bytes += packet.payload.len() as u64;
            counters.audio_packets += 1;
            counters.peer_level = counters.peer_level.max(level);
            counters.arrivals.packet(
                packet.header.sequence_number,
                packet.header.timestamp,
                Instant::now(),
                epoch,
            );
        }
        if let Some(devices) = lock(&shared.devices).as_ref() {
            devices.play(&pcm[..decoded]);
        }
    }
}

/// Once a second while the call lasts: what flowed and how loud each side was.
async fn report_stats(shared: Arc<Shared>, runtime: Arc<dyn Runtime>) {
    let mut ticker = runtime.interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let stats = {
            let mut c = shared.counters();
            let stats = CallStats {
                inbound_audio_bytes: c.audio_bytes,
                inbound_audio_packets: c.audio_packets,
                outbound_audio_bytes: c.sent_audio_bytes,
                inbound_video_bytes: c.video_bytes,
                peer_level: c.peer_level,
                my_level: c.my_level,
                jitter_ms: c.arrivals.jitter_ms(),
                packets_lost: c.arrivals.lost(),
                ..Default::default()
            };
            c.peer_level = 0.0;
            c.my_level = 0.0;
            stats
        };
        shared.reports.push(MediaReport::Stats(shared.call, stats));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_count_losses_across_the_sequence_wrap() {
        let epoch = Instant::now();
        let mut a = Arrivals::default();
        // 65,530 .. 65,535, 0 .. 9, with 65,533 and 4 missing: 2 lost of 16.
        for (i, seq) in (65_530u32..65_546).enumerate() {
            let seq = (seq % 65_536) as u16;
            if seq == 65_533 || seq == 4 {
                continue;
            }
            let at = epoch + Duration::from_millis(20 * i as u64);
            a.packet(seq, 960 * i as u32, at, epoch);
        }
        assert_eq!(a.received, 14);
        assert_eq!(a.lost(), 2);
        // Perfectly paced packets: no jitter.
        assert!(a.jitter_ms() < 0.01, "{}", a.jitter_ms());
    }

    #[test]
    fn jitter_follows_late_packets() {
        let epoch = Instant::now();
        let mut a = Arrivals::default();
        for i in 0..200u64 {
            // Every other packet 10 ms late.
            let late = if i % 2 == 1 { 10 } else { 0 };
            let at = epoch + Duration::from_millis(20 * i + late);
            a.packet(i as u16, 960 * i as u32, at, epoch);
        }
        // |D| is 10 ms on every packet, so J converges to 10 ms.
        assert!((a.jitter_ms() - 10.0).abs() < 0.5, "{}", a.jitter_ms());
        assert_eq!(a.lost(), 0);
    }
}
