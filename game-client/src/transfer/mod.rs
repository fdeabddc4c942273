//! File transfer: the [`Engine`] (sans I/O, in `engine`) over the room's data channel, driven by
//! the app's frames and, between them, by a pump of its own (a task on the page's event loop in
//! the browser, a thread on the desktop), so that files move at the network's pace, not the
//! screen's.
//!
//! The sender reads exactly the chunk the machine asks for (never the whole file); the receiver
//! writes each chunk as it arrives and grants credit as the store reports chunks persisted. A peer
//! that leaves fails every running transfer visibly on both sides; the receiver keeps the partial
//! file, so when the same file is offered again it resumes from the last persisted chunk. Hostile
//! input (oversized offers, lies about size, unknown transfers, bad sequence numbers, hash
//! mismatches) ends the transfer with a clear error and never leaves a visible partial file.
//!
//! Module map: `end` (why a transfer ended, typed) ← `event` (what the engine reports) ←
//! `engine` (the sans-IO engine and its [`Link`] to the peer) ← this file (the Bevy plugin:
//! messages in, events out, the clock and the wire plugged in).

mod end;
mod engine;
mod event;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bevy::prelude::*;
use duet_shared::peer::{Control, TransferId};

pub use end::TransferEnd;
pub use engine::{Engine, Link, LinkClosed};
pub use event::{Direction, TransferEvent};

use crate::frame::FrameSet;
use crate::net::{NetEvent, Socket, Wire, WireState};
use crate::ports::{Capabilities, Host, Runtime, Wake};
use crate::storage::BlobStore;

/// The store received files go to.
#[derive(Resource)]
pub struct Store(pub Box<dyn BlobStore>);

/// Send a file to the peer.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct SendFile(pub PathBuf);

/// Stop a running transfer (either direction). The receiver keeps what it has, so sending the
/// same file again resumes.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelTransfer(pub TransferId);

/// The person's answer to an offer they were asked about ([`TransferEvent::Asked`]).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerOffer {
    /// The offer.
    pub id: TransferId,
    /// Take the file (true) or decline it.
    pub accept: bool,
}

/// The engine, shared by the frame loop and the pump between frames.
#[derive(Resource, Clone, Default)]
pub struct Transfers(Arc<Mutex<Engine>>);

impl Transfers {
    /// The engine, locked (never held across an await; a poisoned lock is taken over).
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        crate::util::lock_shared(&self.0)
    }
}

/// Drives transfers.
pub struct TransferPlugin;

impl Plugin for TransferPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Capabilities>();
        // The app puts the platform under the plugins before adding them: the engine takes its
        // window and its files once, here, rather than looking each frame.
        let transfers = Transfers::default();
        {
            let mut engine = transfers.lock();
            engine.window = app.world().resource::<Capabilities>().transfer_window;
            let host = app.world().get_resource::<Host>();
            engine.set_files(host.map(|host| host.files.clone()));
        }
        app.add_message::<SendFile>()
            .add_message::<CancelTransfer>()
            .add_message::<AnswerOffer>()
            .add_message::<TransferEvent>()
            .insert_resource(transfers)
            .add_systems(Startup, ask_threshold)
            .add_systems(
                Update,
                (adopt_store, start_pump, drive)
                    .chain()
                    .in_set(FrameSet::Core),
            );
    }
}

/// The room's wire as the engine's [`Link`]; counts what arrived for the platform's runtime.
struct WireLink<'a> {
    wire: &'a mut WireState,
    runtime: Option<&'a dyn Runtime>,
}

impl Link for WireLink<'_> {
    fn peer_identity(&self) -> Option<uuid::Uuid> {
        self.wire.peer_identity()
    }

    fn frame_chunks(&self) -> usize {
        self.wire.frame_chunks()
    }

    fn take_arrivals(&mut self) -> (Vec<Control>, Vec<matchbox_socket::Packet>) {
        let (controls, frames) = self.wire.take_transfer_arrivals();
        if let Some(runtime) = self.runtime {
            for frame in &frames {
                runtime.received_from_peer(frame.len());
            }
        }
        (controls, frames)
    }

    fn send_control(&mut self, message: &Control) -> Result<(), LinkClosed> {
        self.wire.send_control(message).map_err(|_| LinkClosed)
    }

    fn send_data(&mut self, frame: Vec<u8>) -> Result<(), LinkClosed> {
        self.wire.send_data(frame).map_err(|_| LinkClosed)
    }
}

/// One engine turn on the wire (if any) at the wall clock's time.
fn pump_on(engine: &mut Engine, mut wire: Option<&mut WireState>, runtime: Option<&dyn Runtime>) {
    if let Some(wire) = wire.as_deref_mut() {
        wire.drive_lanes(engine.wants_lanes());
        let news = wire.take_lane_news();
        if news.striping {
            engine.allow_striping();
        }
        if news.lost {
            engine.lane_lost();
        }
        if let Some(open) = news.open {
            engine.lanes_open(open);
        }
    }
    let mut link = wire.map(|wire| WireLink { wire, runtime });
    engine.pump(
        crate::util::now_ms(),
        link.as_mut().map(|l| l as &mut dyn Link),
    );
    if engine.take_lanes_broken()
        && let Some(link) = link
    {
        link.wire.fail_lanes();
    }
}

/// Takes the "ask above" threshold from the configuration.
fn ask_threshold(transfers: Res<Transfers>, config: Option<Res<crate::config::ClientConfig>>) {
    if let Some(config) = config {
        transfers.lock().set_ask_above(config.ask_above_bytes);
    }
}

/// Moves the [`Store`] the entry point inserted into the engine.
fn adopt_store(world: &mut World) {
    if let Some(Store(store)) = world.remove_resource::<Store>() {
        world.resource::<Transfers>().lock().set_store(store);
    }
}

/// Where the platform wants it (both do today), runs the engine between frames for each new
/// connection to the room.
fn start_pump(
    socket: Option<Res<Socket>>,
    transfers: Res<Transfers>,
    (capabilities, host): (Res<Capabilities>, Option<Res<Host>>),
    event_loop: Option<Res<bevy::winit::EventLoopProxyWrapper>>,
) {
    if capabilities.pump_between_frames
        && let Some(host) = host
        && let Some(socket) = socket
        && socket.is_added()
    {
        let proxy = event_loop.map(|p| (**p).clone());
        let redraw = move || {
            if let Some(proxy) = &proxy {
                let _ = proxy.send_event(bevy::winit::WinitUserEvent::WakeUp);
            }
        };
        host.runtime.spawn_loop(Box::pin(pump_between_frames(
            transfers.clone(),
            socket.wire.clone(),
            host.clone(),
            redraw,
        )));
        host.runtime.keep_pump_ticking();
    }
}

/// What the app asked of the transfers this frame.
#[derive(bevy::ecs::system::SystemParam)]
struct Requests<'w, 's> {
    send: MessageReader<'w, 's, SendFile>,
    cancel: MessageReader<'w, 's, CancelTransfer>,
    answer: MessageReader<'w, 's, AnswerOffer>,
}

/// One frame's turn: requests from the app, the peer leaving, then [`Engine::pump`], and the
/// engine's events out as messages.
fn drive(
    transfers: Res<Transfers>,
    socket: Option<Res<Socket>>,
    host: Option<Res<Host>>,
    mut asked: Requests,
    mut net: MessageReader<NetEvent>,
    mut events: MessageWriter<TransferEvent>,
) {
    let mut engine = transfers.lock();
    if !engine.has_store() {
        return;
    }
    let wire = socket.as_ref().map(|s| s.wire.clone());
    let peer_present = wire.as_ref().is_some_and(|w| w.lock().peer().is_some());
    for SendFile(path) in asked.send.read() {
        engine.send(path, peer_present);
    }
    for CancelTransfer(id) in asked.cancel.read() {
        engine.cancel(*id);
    }
    for answer in asked.answer.read() {
        engine.answer(answer.id, answer.accept);
    }
    // The peer leaving, or me leaving the room (the socket closed), ends every running transfer.
    let left = net.read().any(|e| matches!(e, NetEvent::PeerLeft(_)));
    if left || (wire.is_none() && engine.running() > 0) {
        engine.peer_left();
    }
    let mut guard = wire.as_ref().map(|w| w.lock());
    pump_on(
        &mut engine,
        guard.as_deref_mut(),
        host.as_ref().map(|h| &*h.runtime),
    );
    drop(guard);
    events.write_batch(engine.take_events());
}

/// Runs [`Engine::pump`] whenever data or a control message arrives, or the platform's
/// [`Wake`] rings (a read or a hash finished, or the engine's next deadline came: see
/// [`Runtime::wake_at`]), until the connection closes. This is what keeps a transfer moving at
/// the speed of the network rather than of drawn frames: a software-rendered page or window
/// draws a frame in 50 ms or more, a hidden tab or a minimized window none. The wire's sorting
/// also runs the authenticated hello here. When a turn produces
/// news other than progress (an offer went out, a file arrived, a transfer failed, the hello
/// ended, a chat came in) it calls `redraw`, so the person sees it now rather than at the next
/// paced frame, which can be a second away while a file moves.
pub async fn pump_between_frames(
    transfers: Transfers,
    wire: Wire,
    host: Host,
    redraw: impl Fn() + Send + 'static,
) {
    use std::task::Poll;
    let wake: Wake = host.wake.clone();
    loop {
        let open = futures::future::poll_fn(|cx| {
            let woken = wake.poll(cx);
            match wire.lock().poll_arrivals(cx) {
                Poll::Pending if woken => Poll::Ready(true),
                other => other,
            }
        })
        .await;
        if !open {
            return;
        }
        let mut engine = transfers.lock();
        // Frames take the events, so only what this turn added counts as news.
        let before = engine.pending_events().len();
        let lanes_at = {
            let mut wire = wire.lock();
            pump_on(&mut engine, Some(&mut wire), Some(&*host.runtime));
            wire.lanes_poll_timeout()
        };
        if let Some(at) = engine.poll_timeout().into_iter().chain(lanes_at).min() {
            host.runtime.wake_at(at);
        }
        // Pings leave on time even when no frame is drawn (the socket reports the health).
        wire.lock().keepalive();
        let news = engine.pending_events()[before..]
            .iter()
            .any(|e| !matches!(e, TransferEvent::Progress { .. }));
        // Also what the wire holds for the app: the hello's end, a chat, a call signal.
        if news || wire.lock().has_app_news() {
            redraw();
        }
    }
}
