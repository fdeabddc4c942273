//! File transfer: drives `duet_shared::transfer`'s sans-IO machines with a file source, the data
//! channel and a [`BlobStore`].
//!
//! The sender reads exactly the chunk the machine asks for (never the whole file); the receiver
//! writes each chunk as it arrives and grants credit as the store reports chunks persisted. A peer
//! that leaves fails every running transfer visibly on both sides; the receiver keeps the partial
//! file, so when the same file is offered again it resumes from the last persisted chunk. Hostile
//! input (oversized offers, lies about size, unknown transfers, bad sequence numbers, hash
//! mismatches) ends the transfer with a clear error and never leaves a visible partial file.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use bevy::prelude::*;
use bevy::tasks::Task;
use duet_shared::admission::{Admission, Verdict};
use duet_shared::peer::{
    CancelReason, Chunk, Control, DeclineReason, FileOffer, MAX_FILE_BYTES, TransferId,
};
use duet_shared::transfer::{Progress, Receiver, ResumePoint, Sender, TransferError, WindowConfig};

use std::sync::{Arc, Mutex, MutexGuard};

use crate::frame::FrameSet;
use crate::net::{NetEvent, Socket, Wire, WireState};
use crate::ports::{Capabilities, FileRead, Host, ReadPoll};
use crate::storage::{BlobStore, StoreDone, StoreOp, part_key};

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

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// I send.
    Outgoing,
    /// I receive.
    Incoming,
}

/// What happened to a transfer (for the UI and the event log).
#[derive(Message, Debug, Clone, PartialEq)]
pub enum TransferEvent {
    /// A transfer began (offer sent or accepted).
    Started {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// File name (sanitized for incoming).
        name: String,
        /// Size in bytes.
        size: u64,
        /// Bytes already there from an earlier attempt (resume).
        resumed_from: u64,
    },
    /// The peer offers a file too large to take unasked: the person says yes or no
    /// ([`AnswerOffer`]). Nothing is stored before they do.
    Asked {
        /// The offer.
        id: TransferId,
        /// File name (sanitized).
        name: String,
        /// Size in bytes.
        size: u64,
    },
    /// The peer accepted my offer: bytes start moving (until then the sender waits for them).
    Accepted {
        /// The transfer.
        id: TransferId,
    },
    /// Bytes moved.
    Progress {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// Bytes, rate, ETA.
        progress: Progress,
    },
    /// Done and verified; `location` is where an incoming file was saved.
    Completed {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// Saved path (incoming) or the source (outgoing).
        location: String,
    },
    /// An incoming transfer stopped, and its bytes are kept so the same file sent again
    /// resumes (until unclaimed partials expire).
    Paused {
        /// The transfer.
        id: TransferId,
        /// Why, as a sentence.
        reason: String,
    },
    /// Ended without a file.
    Failed {
        /// The transfer.
        id: TransferId,
        /// Which way.
        direction: Direction,
        /// What went wrong, as a sentence.
        reason: String,
    },
}

/// A file's SHA-256 and size, being computed.
type HashTask = Task<std::io::Result<([u8; 32], u64)>>;

struct Outgoing {
    machine: Sender,
    source: Box<dyn FileRead>,
    path: PathBuf,
    /// The file's SHA-256 being computed beside the sending (a separate read of the file);
    /// `None` once it is done and the `Digest` went out.
    hash: Option<HashTask>,
    /// Chunks the machine released but whose bytes are still being read (the web reads
    /// asynchronously); sent in order as they become ready.
    waiting: VecDeque<duet_shared::transfer::ChunkSpan>,
    scratch: Vec<u8>,
    frame: Vec<u8>,
}

struct Incoming {
    machine: Receiver,
    name: String,
    opened: bool,
}

/// The transfer engine: every transfer in flight, the store received files go to, and what
/// happened since the app last looked. It is not a set of systems because it must also run
/// between frames (see [`pump_between_frames`]); the plugin's systems and that pump both call
/// [`Engine::pump`] on it.
#[derive(Default)]
pub struct Engine {
    outgoing: HashMap<TransferId, Outgoing>,
    incoming: HashMap<TransferId, Incoming>,
    /// Flow-control tuning for incoming transfers.
    pub window: WindowConfig,
    last_progress_ms: u64,
    store: Option<Box<dyn BlobStore>>,
    /// Control messages for the peer, sent at the end of the next pump.
    controls: Vec<Control>,
    /// Events for the app, turned into [`TransferEvent`] messages by the next frame.
    events: Vec<TransferEvent>,
    /// Fault injection for tests (`DUET_FAULT_DROP_GRANT=N` on the desktop,
    /// `?fault_drop_grant=N` in a browser): from the Nth grant on, every
    /// grant this engine sends is dropped, as lost messages would be, until it repeats one
    /// (see [`Receiver::repeat_credit`]). `Some(0)`: dropping now.
    drop_grant: Option<u32>,
    /// The platform's files and runtime: the app's [`Host`], taken when the plugin is built.
    host: Option<Host>,
    /// Which of the peer's offers are received now, held, or declined.
    admission: Admission,
    /// The identity the peer's hello gave: partial files are kept per sender.
    sender: Option<uuid::Uuid>,
    /// Part keys of files the person said yes to and that have not finished, newest last (at
    /// most [`MAX_APPROVED`]): the same file offered again to resume (the sender reconnected)
    /// is not asked about twice. Kept for the app's run, across the peer's comings and goings.
    approved: std::collections::VecDeque<String>,
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
            engine.host = app.world().get_resource::<Host>().cloned();
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

fn now_ms() -> u64 {
    crate::util::now_ms()
}

fn mime_for(path: &std::path::Path) -> String {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
    .to_owned()
}

/// Takes the "ask above" threshold from the configuration.
fn ask_threshold(transfers: Res<Transfers>, config: Option<Res<crate::config::ClientConfig>>) {
    if let Some(config) = config {
        transfers.lock().admission = Admission::new(config.ask_above_bytes);
    }
}

/// Moves the [`Store`] the entry point inserted into the engine.
fn adopt_store(world: &mut World) {
    if let Some(Store(store)) = world.remove_resource::<Store>() {
        world.resource::<Transfers>().lock().store = Some(store);
    }
}

/// Where the platform wants it (the browser), runs the engine between frames for each new
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
            redraw,
        )));
        host.runtime.keep_pump_ticking();
    }
}

/// One frame's turn: requests from the app, the peer leaving, then [`Engine::pump`], and the
/// engine's events out as messages.
fn drive(
    transfers: Res<Transfers>,
    socket: Option<Res<Socket>>,
    mut requests: MessageReader<SendFile>,
    mut cancels: MessageReader<CancelTransfer>,
    mut answers: MessageReader<AnswerOffer>,
    mut net: MessageReader<NetEvent>,
    mut events: MessageWriter<TransferEvent>,
) {
    let mut engine = transfers.lock();
    if engine.store.is_none() {
        return;
    }
    let wire = socket.as_ref().map(|s| s.wire.clone());
    let peer_present = wire.as_ref().is_some_and(|w| w.lock().peer().is_some());
    for SendFile(path) in requests.read() {
        engine.start_send(path, peer_present);
    }
    for CancelTransfer(id) in cancels.read() {
        engine.cancel(*id);
    }
    for answer in answers.read() {
        engine.answer(answer.id, answer.accept);
    }
    // The peer leaving, or me leaving the room (the socket closed), ends every running transfer.
    let left = net.read().any(|e| matches!(e, NetEvent::PeerLeft(_)));
    if left || (wire.is_none() && engine.running() > 0) {
        engine.fail_all();
    }
    let mut guard = wire.as_ref().map(|w| w.lock());
    engine.pump(guard.as_deref_mut());
    drop(guard);
    events.write_batch(engine.events.drain(..));
}

/// The engine's wake-up between frames: the web's store and file reads call [`wake_pump`]
/// when they finish, as arrivals on the wire do through its channels.
static PUMP_WAKER: futures::task::AtomicWaker = futures::task::AtomicWaker::new();
static PUMP_WOKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Something the engine waits for is ready (a store write committed, a file read finished):
/// run [`pump_between_frames`] now rather than at the next frame.
pub fn wake_pump() {
    PUMP_WOKEN.store(true, std::sync::atomic::Ordering::SeqCst);
    PUMP_WAKER.wake();
}

/// Runs [`Engine::pump`] whenever data or a control message arrives, or [`wake_pump`] is
/// called, until the connection closes. In the browser this is what keeps a transfer moving
/// at the speed of the network rather than of drawn frames (and in a hidden tab, which draws
/// none). When a turn produces news other than progress (an offer went out, a file arrived, a
/// transfer failed) it calls `redraw`, so the person sees it now rather than at the next paced
/// frame, which can be a second away while a file moves.
pub async fn pump_between_frames(
    transfers: Transfers,
    wire: Wire,
    redraw: impl Fn() + Send + 'static,
) {
    use std::task::Poll;
    loop {
        let open = futures::future::poll_fn(|cx| {
            PUMP_WAKER.register(cx.waker());
            let woken = PUMP_WOKEN.swap(false, std::sync::atomic::Ordering::SeqCst);
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
        if engine.store.is_some() {
            // Frames drain the events, so only what this turn added counts as news.
            let before = engine.events.len();
            engine.pump(Some(&mut wire.lock()));
            let news = engine.events[before..]
                .iter()
                .any(|e| !matches!(e, TransferEvent::Progress { .. }));
            if news {
                redraw();
            }
        }
    }
}

/// How long a receiver waits for chunks it granted before it sends the grant again.
const GRANT_REPEAT_MS: u64 = 2_000;

fn too_large(path: &std::path::Path, size: u64) -> String {
    format!(
        "{} is {:.1} MB; Duet sends files up to 200 MiB.",
        path.display(),
        size as f64 / 1e6
    )
}

/// Files the person said yes to that are remembered for a resume without asking again.
const MAX_APPROVED: usize = 64;

/// The key a partial file is kept under on the receiver's side ([`FileOffer::resume_key`]):
/// the same file (by the platform's fingerprint: path and modification time, or a browser
/// file's name and date) at the same size gives the same key, so sending it again resumes.
/// A file changed in place under the same fingerprint fails the final hash check and starts
/// over; nothing wrong is ever shown as received.
fn resume_key(fingerprint: &str, size: u64) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut key = Sha256::new();
    key.update(b"duet resume key v1\0");
    key.update(size.to_le_bytes());
    key.update(fingerprint.as_bytes());
    key.finalize().into()
}

fn rand_id() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
}

fn failed_out(id: TransferId, reason: impl Into<String>) -> TransferEvent {
    TransferEvent::Failed {
        id,
        direction: Direction::Outgoing,
        reason: reason.into(),
    }
}

impl Engine {
    /// Fault injection for tests: from the `n`th grant on, drop grants (see the field).
    pub fn set_drop_grant(&mut self, n: Option<u32>) {
        self.drop_grant = n;
    }

    /// Transfers currently running, either way.
    pub fn running(&self) -> usize {
        self.outgoing.len() + self.incoming.len()
    }

    fn store(&mut self) -> &mut dyn BlobStore {
        self.store
            .as_deref_mut()
            .expect("the engine runs only once it has a store")
    }

    /// One turn of everything that does not wait for the app: what arrived, the store's
    /// results, hashes that finished, chunks to send, progress. Ends by sending the control
    /// messages this produced.
    pub fn pump(&mut self, mut wire: Option<&mut WireState>) {
        let now = now_ms();
        if let Some(wire) = wire.as_deref_mut() {
            let (controls, frames) = wire.take_transfer_arrivals();
            self.sender = wire.peer_identity();
            for message in controls {
                self.on_control(message, now);
            }
            for frame in frames {
                if let Some(host) = &self.host {
                    host.runtime.received_from_peer(frame.len());
                }
                self.on_data(&frame, now);
            }
        }
        self.drain_store(now);
        self.admit_waiting();
        self.repeat_idle_grants(now);
        self.send_digests();
        if let Some(wire) = wire.as_deref_mut() {
            self.pump_sends(wire);
        }
        self.report_progress(now);
        let controls = std::mem::take(&mut self.controls);
        if let Some(wire) = wire {
            for message in &controls {
                if let Control::Credit { .. } = message
                    && let Some(n) = self.drop_grant.as_mut()
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        warn!("fault injection: dropping {message:?}");
                        continue;
                    }
                }
                debug!("control to the peer: {message:?}");
                // A control that cannot go out means the peer is gone: the disconnect fails
                // the transfer on both sides.
                let _ = wire.send_control(message);
            }
        }
    }

    /// Offers a file at once and starts sending when the peer accepts; its SHA-256 is computed
    /// on a background task meanwhile (200 MiB takes a second or more, which would otherwise
    /// delay the first byte and freeze a frame) and follows as a `Digest`.
    fn start_send(&mut self, path: &std::path::Path, peer_present: bool) {
        let id = TransferId(rand_id());
        if !peer_present {
            self.events.push(failed_out(
                id,
                "Your peer is not in the room, so the file was not sent.",
            ));
            return;
        }
        let cannot_read = |e: std::io::Error| format!("Cannot read {}: {e}", path.display());
        let Some(files) = self.host.as_ref().map(|host| host.files.clone()) else {
            return self
                .events
                .push(failed_out(id, "This app cannot read files to send."));
        };
        let opened = files
            .size(path)
            .and_then(|size| Ok((size, files.fingerprint(path)?)))
            .and_then(|found| Ok((found, files.open(path)?)));
        let ((size, fingerprint), source) = match opened {
            Ok(v) => v,
            Err(e) => return self.events.push(failed_out(id, cannot_read(e))),
        };
        // Refuse what is too large before anything goes out.
        if size > MAX_FILE_BYTES {
            return self.events.push(failed_out(id, too_large(path, size)));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let offer = FileOffer {
            transfer: id,
            name: name.clone(),
            size,
            mime: mime_for(path),
            resume_key: resume_key(&fingerprint, size),
        };
        let machine = match Sender::new(offer) {
            Ok(m) => m,
            Err(e) => return self.events.push(failed_out(id, e.to_string())),
        };
        self.controls.push(machine.offer());
        self.events.push(TransferEvent::Started {
            id,
            direction: Direction::Outgoing,
            name,
            size,
            resumed_from: 0,
        });
        self.outgoing.insert(
            id,
            Outgoing {
                machine,
                source,
                path: path.to_path_buf(),
                hash: Some(files.hash(path.to_path_buf())),
                waiting: VecDeque::new(),
                scratch: Vec::new(),
                frame: Vec::new(),
            },
        );
    }

    fn cancel(&mut self, id: TransferId) {
        if self.admission.holds(id) {
            return self.answer(id, false);
        }
        if let Some(mut out) = self.outgoing.remove(&id) {
            self.controls.push(out.machine.cancel(CancelReason::User));
            self.events
                .push(failed_out(id, "You cancelled the transfer."));
        } else if let Some(incoming) = self.incoming.get_mut(&id) {
            self.controls
                .push(incoming.machine.cancel(CancelReason::User));
            self.fail_incoming(
                id,
                "You cancelled the transfer. If it is sent again, it resumes where it stopped.",
                false,
            );
        }
    }

    /// The person said yes or no to an offer they were asked about.
    fn answer(&mut self, id: TransferId, yes: bool) {
        if yes && let Some(offer) = self.admission.asking().iter().find(|o| o.transfer == id) {
            let key = part_key(self.sender, &offer.resume_key, offer.size);
            if !self.approved.contains(&key) {
                if self.approved.len() == MAX_APPROVED {
                    self.approved.pop_front();
                }
                self.approved.push_back(key);
            }
        }
        match self.admission.answer(id, yes, self.incoming.len()) {
            Some(Verdict::Receive(offer)) => self.receive(offer),
            Some(Verdict::Wait) | Some(Verdict::Ask(_)) | None => {}
            Some(Verdict::Decline(reason)) => {
                self.decline(id, reason, "You declined the file.".into())
            }
        }
    }

    /// Declines the peer's offer `id`, telling the peer `reason` and the person `sentence`.
    fn decline(&mut self, id: TransferId, reason: DeclineReason, sentence: String) {
        self.controls.push(Control::Decline {
            transfer: id,
            reason,
        });
        self.events.push(TransferEvent::Failed {
            id,
            direction: Direction::Incoming,
            reason: sentence,
        });
    }

    /// Sends the digest of each accepted outgoing file whose hash is ready (see
    /// [`Sender::is_accepted`]); a file that could not be read, or changed size meanwhile, ends
    /// its transfer.
    fn send_digests(&mut self) {
        let mut failed = Vec::new();
        for (id, out) in self.outgoing.iter_mut() {
            let Some(task) = out.hash.as_mut().filter(|_| out.machine.is_accepted()) else {
                continue;
            };
            let Some(hashed) = bevy::tasks::block_on(bevy::tasks::poll_once(task)) else {
                continue;
            };
            out.hash = None;
            match hashed {
                Ok((sha256, size)) if size == out.machine.size() => {
                    self.controls.push(Control::Digest {
                        transfer: *id,
                        sha256,
                    });
                }
                Ok(_) => failed.push((
                    *id,
                    format!("{} changed while it was being sent.", out.path.display()),
                )),
                Err(e) => failed.push((*id, format!("Cannot read {}: {e}", out.path.display()))),
            }
        }
        for (id, reason) in failed {
            if let Some(mut out) = self.outgoing.remove(&id) {
                self.controls.push(out.machine.cancel(CancelReason::Io));
            }
            self.events.push(failed_out(id, reason));
        }
    }

    /// Ends an incoming transfer: `delete` drops its bytes, otherwise they are kept for a
    /// resume and the transfer shows as paused.
    fn fail_incoming(&mut self, id: TransferId, error: &str, delete: bool) {
        if self.incoming.remove(&id).is_some() {
            self.store().submit(StoreOp::Close {
                transfer: id,
                delete,
            });
        }
        self.events.push(if delete {
            TransferEvent::Failed {
                id,
                direction: Direction::Incoming,
                reason: error.to_owned(),
            }
        } else {
            TransferEvent::Paused {
                id,
                reason: error.to_owned(),
            }
        });
    }

    /// Ends an outgoing transfer after `e`, telling the peer why.
    fn fail_outgoing(&mut self, id: TransferId, e: TransferError) {
        if let Some(mut out) = self.outgoing.remove(&id) {
            self.controls.push(out.machine.cancel(e.cancel_reason()));
        }
        self.events.push(failed_out(id, e.to_string()));
    }

    /// Starts receiving `offer`: opens its part file (or the partial one it resumes).
    fn receive(&mut self, offer: FileOffer) {
        let id = offer.transfer;
        match Receiver::new(offer.clone(), self.window) {
            Ok(machine) => {
                let key = part_key(self.sender, &offer.resume_key, offer.size);
                self.store().submit(StoreOp::Open {
                    transfer: id,
                    key,
                    size: offer.size,
                });
                self.incoming.insert(
                    id,
                    Incoming {
                        machine,
                        name: duet_shared::names::sanitize_file_name(&offer.name),
                        opened: false,
                    },
                );
            }
            Err(e) => {
                self.controls.push(Control::Decline {
                    transfer: id,
                    reason: match e {
                        TransferError::TooLarge { .. } => DeclineReason::TooLarge,
                        _ => DeclineReason::Invalid,
                    },
                });
                self.events.push(TransferEvent::Failed {
                    id,
                    direction: Direction::Incoming,
                    reason: format!("Your peer offered a file Duet cannot take: {e}."),
                });
            }
        }
    }

    /// Starts held offers while receiving slots are free.
    fn admit_waiting(&mut self) {
        while let Some(offer) = self.admission.next(self.incoming.len()) {
            self.receive(offer);
        }
    }

    fn on_control(&mut self, message: Control, now: u64) {
        match message {
            Control::Offer(offer) => {
                let id = offer.transfer;
                if self.incoming.contains_key(&id) || self.admission.holds(id) {
                    return;
                }
                let (sender, key) = (
                    self.sender,
                    part_key(self.sender, &offer.resume_key, offer.size),
                );
                let busy_key = self.incoming.values().any(|t| {
                    let theirs = t.machine.offer();
                    part_key(sender, &theirs.resume_key, theirs.size) == key
                });
                let receiving = self.incoming.len();
                let verdict = if self.approved.contains(&key) {
                    self.admission
                        .on_resumed_offer(offer, receiving, busy_key, now)
                } else {
                    self.admission.on_offer(offer, receiving, busy_key, now)
                };
                match verdict {
                    Verdict::Receive(offer) => self.receive(offer),
                    Verdict::Wait => {}
                    Verdict::Ask(offer) => self.events.push(TransferEvent::Asked {
                        id,
                        name: duet_shared::names::sanitize_file_name(&offer.name),
                        size: offer.size,
                    }),
                    Verdict::Decline(reason) => {
                        self.decline(
                            id,
                            reason,
                            format!("A file your peer offered was declined: {reason}."),
                        );
                    }
                }
            }
            Control::Accept { transfer, offset } => {
                if let Some(out) = self.outgoing.get_mut(&transfer) {
                    match out.machine.on_accept(offset, now) {
                        Ok(()) => self.events.push(TransferEvent::Accepted { id: transfer }),
                        Err(e) => self.fail_outgoing(transfer, e),
                    }
                }
            }
            Control::Credit {
                transfer,
                persisted,
                until,
            } => {
                if let Some(out) = self.outgoing.get_mut(&transfer)
                    && let Err(e) = out.machine.on_credit(persisted, until, now)
                {
                    self.fail_outgoing(transfer, e);
                }
            }
            Control::Digest { transfer, sha256 } => {
                if let Some(incoming) = self.incoming.get_mut(&transfer)
                    && let Err(e) = incoming.machine.on_digest(sha256)
                {
                    let cancel = incoming.machine.cancel(CancelReason::ProtocolViolation);
                    self.controls.push(cancel);
                    self.fail_incoming(transfer, &e.to_string(), true);
                }
            }
            Control::Complete { transfer } => {
                if let Some(mut out) = self.outgoing.remove(&transfer) {
                    let event = match out.machine.on_complete() {
                        Ok(()) => {
                            // The last progress report (throttled) may predate the end.
                            self.events.push(TransferEvent::Progress {
                                id: transfer,
                                direction: Direction::Outgoing,
                                progress: out.machine.progress(),
                            });
                            TransferEvent::Completed {
                                id: transfer,
                                direction: Direction::Outgoing,
                                location: out.path.display().to_string(),
                            }
                        }
                        Err(e) => failed_out(transfer, e.to_string()),
                    };
                    self.events.push(event);
                }
            }
            Control::Decline { transfer, reason } if self.outgoing.remove(&transfer).is_some() => {
                self.events.push(failed_out(
                    transfer,
                    format!("Your peer's app declined the file: {reason}."),
                ));
            }
            Control::Cancel { transfer, reason } => {
                // A held offer withdrawn: nothing was opened for it. One the person was asked
                // about goes from their list.
                let asked = self
                    .admission
                    .asking()
                    .iter()
                    .any(|o| o.transfer == transfer);
                if self.admission.withdraw(transfer) && asked {
                    self.events.push(TransferEvent::Failed {
                        id: transfer,
                        direction: Direction::Incoming,
                        reason: "Your peer withdrew the file before you answered.".into(),
                    });
                }
                if self.outgoing.remove(&transfer).is_some() {
                    self.events.push(failed_out(
                        transfer,
                        format!("Your peer ended the transfer: {reason}."),
                    ));
                }
                if self.incoming.contains_key(&transfer) {
                    let delete = reason != CancelReason::User;
                    self.fail_incoming(
                        transfer,
                        &format!("Your peer ended the transfer: {reason}."),
                        delete,
                    );
                }
            }
            _ => {}
        }
    }

    fn on_data(&mut self, frame: &[u8], now: u64) {
        match Chunk::decode_frame(frame) {
            Ok(chunks) => {
                for chunk in chunks {
                    self.on_chunk(chunk, now);
                }
            }
            Err(e) => self.events.push(TransferEvent::Failed {
                id: TransferId(0),
                direction: Direction::Incoming,
                reason: format!("Your peer sent a broken file chunk ({e}); it was ignored."),
            }),
        }
    }

    fn on_chunk(&mut self, chunk: Chunk<'_>, now: u64) {
        let id = chunk.transfer;
        let Some(incoming) = self.incoming.get_mut(&id) else {
            // Chunks for a transfer we do not have: never stored anywhere.
            self.events.push(TransferEvent::Failed {
                id,
                direction: Direction::Incoming,
                reason: "Your peer sent data for a transfer that is not running; it was ignored."
                    .into(),
            });
            return;
        };
        match incoming.machine.on_chunk(chunk.seq, chunk.data, now) {
            Ok(()) => self.store().submit(StoreOp::Write {
                transfer: id,
                seq: chunk.seq,
                data: chunk.data.to_vec(),
            }),
            Err(e) => {
                let cancel = incoming.machine.cancel(e.cancel_reason());
                self.controls.push(cancel);
                self.fail_incoming(id, &e.to_string(), true);
            }
        }
    }

    /// Grants again what the sender has not used for [`GRANT_REPEAT_MS`] (see
    /// [`Receiver::repeat_credit`]): a lost grant would otherwise hold the transfer still
    /// for good.
    fn repeat_idle_grants(&mut self, now: u64) {
        for (id, incoming) in &mut self.incoming {
            if let Some(credit) = incoming.machine.repeat_credit(now, GRANT_REPEAT_MS) {
                if self.drop_grant == Some(0) {
                    self.drop_grant = None;
                }
                warn!(
                    "transfer {id:?}: no chunk for {GRANT_REPEAT_MS} ms although granted; \
                     granting again ({credit:?})"
                );
                self.controls.push(credit);
            }
        }
    }

    fn drain_store(&mut self, now: u64) {
        for done in self.store().poll() {
            match done {
                StoreDone::Opened {
                    transfer,
                    existing_chunks,
                    hasher,
                } => {
                    if let Some(incoming) = self.incoming.get_mut(&transfer) {
                        incoming.opened = true;
                        let resume = (existing_chunks > 0).then_some(ResumePoint {
                            chunks: existing_chunks,
                            hasher,
                        });
                        self.controls.extend(incoming.machine.accept(resume, now));
                        let offer = incoming.machine.offer();
                        self.events.push(TransferEvent::Started {
                            id: transfer,
                            direction: Direction::Incoming,
                            name: incoming.name.clone(),
                            size: offer.size,
                            resumed_from: incoming.machine.progress().done,
                        });
                    }
                }
                StoreDone::Persisted { transfer, chunks } => {
                    if let Some(incoming) = self.incoming.get_mut(&transfer)
                        && let Some(credit) = incoming.machine.on_persisted(chunks, now)
                    {
                        self.controls.push(credit);
                    }
                }
                StoreDone::Finished { transfer, location } => {
                    if let Some(incoming) = self.incoming.remove(&transfer) {
                        // Finished: the same file offered again is a new question.
                        let offer = incoming.machine.offer();
                        let key = part_key(self.sender, &offer.resume_key, offer.size);
                        self.approved.retain(|k| *k != key);
                        // The last progress report (throttled) may predate the end.
                        self.events.push(TransferEvent::Progress {
                            id: transfer,
                            direction: Direction::Incoming,
                            progress: incoming.machine.progress(),
                        });
                    }
                    self.events.push(TransferEvent::Completed {
                        id: transfer,
                        direction: Direction::Incoming,
                        location,
                    });
                }
                StoreDone::Failed { transfer, error } => {
                    let no_space = matches!(error, crate::storage::StoreError::NoSpace);
                    match self.incoming.get_mut(&transfer) {
                        // Not accepted yet (the space check comes first): declined, and the
                        // sender learns why.
                        Some(incoming) if !incoming.opened && no_space => {
                            self.controls.push(Control::Decline {
                                transfer,
                                reason: DeclineReason::NoSpace,
                            });
                        }
                        Some(incoming) => {
                            let reason = if no_space {
                                CancelReason::NoSpace
                            } else {
                                CancelReason::Io
                            };
                            let cancel = incoming.machine.cancel(reason);
                            self.controls.push(cancel);
                        }
                        None => {}
                    }
                    self.fail_incoming(transfer, &error.to_string(), true);
                }
            }
        }
        // Verify what is complete.
        let complete: Vec<TransferId> = self
            .incoming
            .iter()
            .filter(|(_, t)| t.opened && t.machine.is_complete())
            .map(|(id, _)| *id)
            .collect();
        for id in complete {
            let Some(incoming) = self.incoming.get_mut(&id) else {
                continue;
            };
            match incoming.machine.verify() {
                Ok(message) => {
                    self.controls.push(message);
                    let name = incoming.name.clone();
                    self.store().submit(StoreOp::Finish { transfer: id, name });
                }
                Err(e) => {
                    self.controls.push(Control::Cancel {
                        transfer: id,
                        reason: CancelReason::HashMismatch,
                    });
                    self.fail_incoming(id, &e.to_string(), true);
                }
            }
        }
    }

    fn pump_sends(&mut self, wire: &mut WireState) {
        let mut failed = Vec::new();
        let per_frame = wire.frame_chunks();
        for (id, out) in self.outgoing.iter_mut() {
            while let Some(span) = out.machine.next_chunk() {
                out.waiting.push_back(span);
            }
            // Up to `per_frame` chunks share one data-channel message.
            let mut in_frame = 0;
            out.frame.clear();
            while let Some(span) = out.waiting.front().copied() {
                out.scratch.resize(span.len, 0);
                match out.source.read(span.offset, &mut out.scratch) {
                    ReadPoll::Ready => {
                        out.waiting.pop_front();
                    }
                    ReadPoll::Pending => break,
                    ReadPoll::Failed(e) => {
                        self.controls.push(out.machine.cancel(CancelReason::Io));
                        failed.push((*id, format!("Cannot read {}: {e}", out.path.display())));
                        in_frame = 0;
                        break;
                    }
                }
                let chunk = Chunk {
                    transfer: *id,
                    seq: span.seq,
                    data: &out.scratch,
                };
                if chunk.append_to(&mut out.frame).is_err() {
                    failed.push((*id, "A chunk of the file could not be encoded.".to_owned()));
                    in_frame = 0;
                    break;
                }
                in_frame += 1;
                if in_frame == per_frame {
                    // The frame buffer moves into the packet (matchbox owns what it sends).
                    if wire.send_data(std::mem::take(&mut out.frame)).is_err() {
                        failed.push((*id, "The connection to your peer was lost.".to_owned()));
                        in_frame = 0;
                        break;
                    }
                    in_frame = 0;
                }
            }
            if in_frame > 0 && wire.send_data(std::mem::take(&mut out.frame)).is_err() {
                failed.push((*id, "The connection to your peer was lost.".to_owned()));
            }
        }
        for (id, reason) in failed {
            self.outgoing.remove(&id);
            self.events.push(failed_out(id, reason));
        }
    }

    fn report_progress(&mut self, now: u64) {
        if now < self.last_progress_ms + 250 {
            return;
        }
        self.last_progress_ms = now;
        for (id, out) in &self.outgoing {
            self.events.push(TransferEvent::Progress {
                id: *id,
                direction: Direction::Outgoing,
                progress: out.machine.progress(),
            });
        }
        for (id, incoming) in &self.incoming {
            if incoming.opened {
                self.events.push(TransferEvent::Progress {
                    id: *id,
                    direction: Direction::Incoming,
                    progress: incoming.machine.progress(),
                });
            }
        }
    }

    /// The peer left (or I did): every running transfer fails; the receiver keeps its partial
    /// bytes, so the same file offered again resumes from them.
    fn fail_all(&mut self) {
        // The peer left: its held offers and open questions go, and the next session's budgets
        // start over.
        for offer in self.admission.asking() {
            self.events.push(TransferEvent::Failed {
                id: offer.transfer,
                direction: Direction::Incoming,
                reason: "Your peer left before you answered.".into(),
            });
        }
        self.admission.reset();
        for (id, _) in self.outgoing.drain() {
            self.events.push(failed_out(
                id,
                "Your peer left before the file was complete.",
            ));
        }
        let incoming: Vec<TransferId> = self.incoming.keys().copied().collect();
        for id in incoming {
            self.fail_incoming(
                id,
                "Your peer left before the file was complete; it will resume if they send it again.",
                false,
            );
        }
    }
}
