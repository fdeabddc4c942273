//! The browser's transfer lanes (`duet_shared::lane`): one `RTCPeerConnection` per lane with
//! one negotiated data channel, driven by the lane machine's operations.
//!
//! As for calls (`media.rs`), one task applies the operations strictly in order, because a
//! connection refuses a remote candidate before the description it belongs to; early ones
//! wait. Our own candidates wait until our description is reported, so the peer never reads a
//! candidate before its description. The channels live on the page's thread (JavaScript
//! objects are not `Send`); the wire reaches them through [`CHANNELS`], on the same thread.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use duet_shared::lane::MAX_LANES;
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcDataChannel, RtcDataChannelInit, RtcDataChannelState, RtcDataChannelType,
    RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcPeerConnectionState,
    RtcSdpType, RtcSessionDescriptionInit,
};

use super::media::rtc_configuration;
use crate::config::IceServer;
use crate::platform::lane_mailbox::LaneMailbox;
use crate::ports::{LaneId, LaneLinks, LaneOp, LaneReport, Wake};
use crate::util::lock_shared as lock;

/// One operation for the lane task, with the ICE servers a new connection uses.
type Command = (LaneOp, Vec<IceServer>);

thread_local! {
    /// Each lane's data channel, for [`BrowserLanes::send`] and [`BrowserLanes::queued`].
    static CHANNELS: RefCell<[Option<RtcDataChannel>; MAX_LANES as usize]> =
        RefCell::new(Default::default());
}

/// The browser's lanes (see the module docs).
pub struct BrowserLanes {
    queue: Mutex<Option<UnboundedSender<Command>>>,
    shared: Arc<LaneMailbox>,
}

impl BrowserLanes {
    /// No lanes yet; `wake` rings when something arrives.
    pub fn new(wake: Wake) -> Self {
        Self {
            queue: Mutex::new(None),
            shared: Arc::new(LaneMailbox::new(wake)),
        }
    }
}

fn channel(lane: LaneId) -> Option<RtcDataChannel> {
    CHANNELS.with(|c| c.borrow().get(usize::from(lane)).cloned().flatten())
}

impl LaneLinks for BrowserLanes {
    fn command(&self, op: LaneOp, ice_servers: &[IceServer]) {
        // What the lane's last connection reported and the wire has not read yet is about a
        // connection that is going: it must not reach the machine as news of the next one.
        if let LaneOp::Close { lane } | LaneOp::Create { lane, .. } = op {
            self.shared.forget(lane);
        }
        let mut queue = lock(&self.queue);
        let sender = queue.get_or_insert_with(|| {
            let (tx, rx) = unbounded();
            wasm_bindgen_futures::spawn_local(run(rx, self.shared.clone()));
            tx
        });
        let _ = sender.unbounded_send((op, ice_servers.to_vec()));
    }

    fn reports(&self) -> Vec<LaneReport> {
        self.shared.take_reports()
    }

    fn send(&self, lane: LaneId, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        let sent = channel(lane).is_some_and(|c| {
            c.ready_state() == RtcDataChannelState::Open && c.send_with_u8_array(&frame).is_ok()
        });
        if sent { Ok(()) } else { Err(frame) }
    }

    fn queued(&self, lane: LaneId) -> usize {
        channel(lane).map_or(usize::MAX, |c| c.buffered_amount() as usize)
    }

    fn take_frames(&self) -> Vec<matchbox_socket::Packet> {
        self.shared.take_frames()
    }
}

/// One lane's connection, on the lane task.
struct Lane {
    pc: RtcPeerConnection,
    /// Set when the machine closed it: its handlers report nothing more.
    stopped: Rc<Cell<bool>>,
    /// The peer's candidates that came before its description.
    early: Vec<RtcIceCandidateInit>,
    described: bool,
    /// Our candidates, held until our description has been reported (then `None`).
    held: Rc<RefCell<Option<Vec<LaneReport>>>>,
    /// Keeps the handlers alive as long as the lane.
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Lane {
    fn stop(self, lane: LaneId) {
        self.stopped.set(true);
        CHANNELS.with(|c| {
            if let Some(channel) = c.borrow_mut()[usize::from(lane)].take() {
                channel.set_onmessage(None);
                channel.set_onopen(None);
                channel.set_onclose(None);
                channel.close();
            }
        });
        self.pc.set_onicecandidate(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.close();
    }

    fn describe(&self, shared: &LaneMailbox, lane: LaneId, sdp: String) {
        let held = self.held.borrow_mut().take();
        shared.report(LaneReport::LocalDescription { lane, sdp });
        for candidate in held.into_iter().flatten() {
            shared.report(candidate);
        }
    }
}

async fn run(mut queue: UnboundedReceiver<Command>, shared: Arc<LaneMailbox>) {
    let mut lanes: [Option<Lane>; MAX_LANES as usize] = Default::default();
    while let Some((op, ice)) = queue.next().await {
        let failed = |lane: LaneId, e: JsValue| {
            web_sys::console::warn_1(&e);
            shared.report(LaneReport::Failed(lane));
        };
        match op {
            LaneOp::Create { lane, offerer } => {
                let Some(slot) = lanes.get_mut(usize::from(lane)) else {
                    continue;
                };
                if let Some(old) = slot.take() {
                    old.stop(lane);
                }
                match create(lane, &ice, &shared) {
                    Ok(created) => {
                        if offerer && let Err(e) = describe(&created, &shared, lane, true).await {
                            failed(lane, e);
                        }
                        *slot = Some(created);
                    }
                    Err(e) => failed(lane, e),
                }
            }
            LaneOp::RemoteDescription { lane, offer, sdp } => {
                let Some(Some(l)) = lanes.get_mut(usize::from(lane)) else {
                    continue;
                };
                if let Err(e) = remote_description(l, &shared, lane, offer, &sdp).await {
                    failed(lane, e);
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
                let init = RtcIceCandidateInit::new(&candidate);
                init.set_sdp_mid(mid.as_deref());
                init.set_sdp_m_line_index(mline);
                if !l.described {
                    l.early.push(init);
                } else {
                    add_candidate(&l.pc, &init).await;
                }
            }
            LaneOp::Close { lane } => {
                if let Some(old) = lanes.get_mut(usize::from(lane)).and_then(Option::take) {
                    old.stop(lane);
                }
            }
        }
    }
}

/// One bad candidate is not the end of a lane; ICE uses the others.
async fn add_candidate(pc: &RtcPeerConnection, init: &RtcIceCandidateInit) {
    let added = pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(init));
    if let Err(e) = JsFuture::from(added).await {
        web_sys::console::warn_1(&e);
    }
}

/// The lane's connection and its negotiated data channel, with their handlers.
fn create(lane: LaneId, ice: &[IceServer], shared: &Arc<LaneMailbox>) -> Result<Lane, JsValue> {
    let pc = RtcPeerConnection::new_with_configuration(&rtc_configuration(ice))?;
    let init = RtcDataChannelInit::new();
    init.set_negotiated(true);
    init.set_id(0);
    init.set_ordered(true);
    let channel = pc.create_data_channel_with_data_channel_dict("duet-lane", &init);
    channel.set_binary_type(RtcDataChannelType::Arraybuffer);
    let stopped = Rc::new(Cell::new(false));
    let held: Rc<RefCell<Option<Vec<LaneReport>>>> = Rc::new(RefCell::new(Some(Vec::new())));

    let (to_app, quiet) = (shared.clone(), stopped.clone());
    let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        if !quiet.get() {
            to_app.report(LaneReport::Opened(lane));
        }
    });
    channel.set_onopen(Some(on_open.as_ref().unchecked_ref()));

    let (to_app, quiet) = (shared.clone(), stopped.clone());
    let on_message = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        if quiet.get() {
            return;
        }
        let event: MessageEvent = event.unchecked_into();
        let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() else {
            return;
        };
        let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
        if !to_app.frame(bytes.into()) {
            // More than an honest peer can have in flight: its lane goes.
            quiet.set(true);
            to_app.report(LaneReport::Failed(lane));
        }
    });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

    let (to_app, quiet) = (shared.clone(), stopped.clone());
    let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        if !quiet.get() {
            to_app.report(LaneReport::Failed(lane));
        }
    });
    channel.set_onclose(Some(on_close.as_ref().unchecked_ref()));

    let (to_app, quiet, waiting) = (shared.clone(), stopped.clone(), held.clone());
    let on_candidate = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        let event: RtcPeerConnectionIceEvent = event.unchecked_into();
        let Some(candidate) = event.candidate().filter(|_| !quiet.get()) else {
            return;
        };
        let report = LaneReport::LocalCandidate {
            lane,
            candidate: candidate.candidate(),
            mid: candidate.sdp_mid(),
            mline: candidate.sdp_m_line_index(),
        };
        match waiting.borrow_mut().as_mut() {
            Some(held) => held.push(report),
            None => to_app.report(report),
        }
    });
    pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));

    let (to_app, quiet, watched) = (shared.clone(), stopped.clone(), pc.clone());
    let on_state = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let state = watched.connection_state();
        if !quiet.get()
            && matches!(
                state,
                RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed
            )
        {
            to_app.report(LaneReport::Failed(lane));
        }
    });
    pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));

    CHANNELS.with(|c| c.borrow_mut()[usize::from(lane)] = Some(channel));
    Ok(Lane {
        pc,
        stopped,
        early: Vec::new(),
        described: false,
        held,
        _handlers: vec![on_open, on_message, on_close, on_candidate, on_state],
    })
}

/// Creates our offer or answer, sets it, and reports it for the peer.
async fn describe(
    lane: &Lane,
    shared: &LaneMailbox,
    id: LaneId,
    offer: bool,
) -> Result<(), JsValue> {
    let (created, kind) = if offer {
        (
            JsFuture::from(lane.pc.create_offer()).await?,
            RtcSdpType::Offer,
        )
    } else {
        (
            JsFuture::from(lane.pc.create_answer()).await?,
            RtcSdpType::Answer,
        )
    };
    let sdp = js_sys::Reflect::get(&created, &"sdp".into())?
        .as_string()
        .unwrap_or_default();
    let init = RtcSessionDescriptionInit::new(kind);
    init.set_sdp(&sdp);
    JsFuture::from(lane.pc.set_local_description(&init)).await?;
    lane.describe(shared, id, sdp);
    Ok(())
}

async fn remote_description(
    lane: &mut Lane,
    shared: &LaneMailbox,
    id: LaneId,
    offer: bool,
    sdp: &str,
) -> Result<(), JsValue> {
    let init = RtcSessionDescriptionInit::new(if offer {
        RtcSdpType::Offer
    } else {
        RtcSdpType::Answer
    });
    init.set_sdp(sdp);
    JsFuture::from(lane.pc.set_remote_description(&init)).await?;
    lane.described = true;
    for candidate in std::mem::take(&mut lane.early) {
        add_candidate(&lane.pc, &candidate).await;
    }
    if offer {
        describe(lane, shared, id, false).await?;
    }
    Ok(())
}
