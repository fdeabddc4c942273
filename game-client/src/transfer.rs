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
use duet_shared::peer::{
    CancelReason, Chunk, Control, DeclineReason, FileOffer, MAX_FILE_BYTES, TransferId,
};
use duet_shared::transfer::{Progress, Receiver, ResumePoint, Sender, TransferError, WindowConfig};

use crate::net::{ControlReceived, NetEvent, SendControl, Socket};
use crate::platform::{FileReader, ReadPoll};
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

struct Outgoing {
    machine: Sender,
    source: FileReader,
    path: PathBuf,
    /// Chunks the machine released but whose bytes are still being read (the web reads
    /// asynchronously); sent in order as they become ready.
    waiting: VecDeque<duet_shared::transfer::ChunkSpan>,
    scratch: Vec<u8>,
    frame: Vec<u8>,
}

/// A file being hashed before it is offered, with its id and path.
struct Preparing {
    id: TransferId,
    path: PathBuf,
    hash: Task<std::io::Result<([u8; 32], u64)>>,
}

struct Incoming {
    machine: Receiver,
    name: String,
    opened: bool,
}

/// Transfers in flight.
#[derive(Resource)]
pub struct Transfers {
    outgoing: HashMap<TransferId, Outgoing>,
    incoming: HashMap<TransferId, Incoming>,
    preparing: Vec<Preparing>,
    /// Transfers still being hashed (a cancelled one is removed and its hash ignored).
    preparing_ids: std::collections::HashSet<TransferId>,
    /// Flow-control tuning for incoming transfers.
    pub window: WindowConfig,
    last_progress_ms: u64,
}

impl Default for Transfers {
    fn default() -> Self {
        Self {
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            preparing: Vec::new(),
            preparing_ids: Default::default(),
            window: crate::platform::transfer_window(),
            last_progress_ms: 0,
        }
    }
}

impl Transfers {
    /// Transfers currently running.
    pub fn active(&self) -> usize {
        self.outgoing.len() + self.incoming.len() + self.preparing_ids.len()
    }
}

/// Drives transfers.
pub struct TransferPlugin;

impl Plugin for TransferPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<SendFile>()
            .add_message::<CancelTransfer>()
            .add_message::<TransferEvent>()
            .init_resource::<Transfers>()
            .add_systems(
                Update,
                (
                    start_sends,
                    cancel_transfers,
                    offer_prepared,
                    handle_control,
                    receive_chunks,
                    drain_store,
                    pump_sends,
                    report_progress,
                    fail_on_disconnect,
                )
                    .chain()
                    .run_if(resource_exists::<Store>),
            );
    }
}

fn now_ms() -> u64 {
    crate::now_ms()
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

/// Validates a send request and starts hashing the file on a background task: hashing 200 MiB
/// takes long enough to freeze a window if done in a frame.
fn start_sends(
    mut requests: MessageReader<SendFile>,
    mut transfers: ResMut<Transfers>,
    socket: Option<Res<Socket>>,
    mut events: MessageWriter<TransferEvent>,
) {
    for SendFile(path) in requests.read() {
        let id = TransferId(rand_id());
        let fail = |reason: String| TransferEvent::Failed {
            id,
            direction: Direction::Outgoing,
            reason,
        };
        if socket.as_ref().and_then(|s| s.peer).is_none() {
            events.write(fail(
                "Your peer is not in the room, so the file was not sent.".into(),
            ));
            continue;
        }
        // Refuse what is too large before spending time hashing it.
        match crate::platform::file_size(path) {
            Ok(size) if size > MAX_FILE_BYTES => {
                events.write(fail(too_large(path, size)));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                events.write(fail(format!("Cannot read {}: {e}", path.display())));
                continue;
            }
        }
        transfers.preparing.push(Preparing {
            id,
            path: path.clone(),
            hash: crate::platform::hash_file(path.clone()),
        });
        transfers.preparing_ids.insert(id);
    }
}

fn cancel_transfers(
    mut asks: MessageReader<CancelTransfer>,
    mut transfers: ResMut<Transfers>,
    mut store: ResMut<Store>,
    mut send: MessageWriter<SendControl>,
    mut events: MessageWriter<TransferEvent>,
) {
    for CancelTransfer(id) in asks.read() {
        let was_preparing = transfers.preparing_ids.remove(id);
        if let Some(mut out) = transfers.outgoing.remove(id) {
            send.write(SendControl(out.machine.cancel(CancelReason::User)));
        } else if let Some(incoming) = transfers.incoming.get_mut(id) {
            send.write(SendControl(incoming.machine.cancel(CancelReason::User)));
            fail_incoming(
                &mut transfers,
                &mut store,
                *id,
                "You cancelled the transfer. If it is sent again, it resumes where it stopped.",
                false,
                &mut events,
            );
            continue;
        } else if !was_preparing {
            continue;
        }
        events.write(TransferEvent::Failed {
            id: *id,
            direction: Direction::Outgoing,
            reason: "You cancelled the transfer.".into(),
        });
    }
}

fn too_large(path: &std::path::Path, size: u64) -> String {
    format!(
        "{} is {:.1} MB; Duet sends files up to 200 MiB.",
        path.display(),
        size as f64 / 1e6
    )
}

/// Offers the files whose hash is ready.
fn offer_prepared(
    mut transfers: ResMut<Transfers>,
    socket: Option<Res<Socket>>,
    mut send: MessageWriter<SendControl>,
    mut events: MessageWriter<TransferEvent>,
) {
    let ready = crate::take_finished_with(&mut transfers.preparing, |p| &mut p.hash);
    for (Preparing { id, path, .. }, hashed) in ready {
        if !transfers.preparing_ids.remove(&id) {
            continue; // cancelled while hashing
        }
        let fail = |reason: String| TransferEvent::Failed {
            id,
            direction: Direction::Outgoing,
            reason,
        };
        if socket.as_ref().and_then(|s| s.peer).is_none() {
            events.write(fail(
                "Your peer left the room, so the file was not sent.".into(),
            ));
            continue;
        }
        let (sha256, size) = match hashed {
            Ok(v) => v,
            Err(e) => {
                events.write(fail(format!("Cannot read {}: {e}", path.display())));
                continue;
            }
        };
        if size > MAX_FILE_BYTES {
            events.write(fail(too_large(&path, size)));
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let offer = FileOffer {
            transfer: id,
            name: name.clone(),
            size,
            mime: mime_for(&path),
            sha256,
        };
        let (machine, source) = match (Sender::new(offer), FileReader::open(&path)) {
            (Ok(m), Ok(f)) => (m, f),
            (Err(e), _) => {
                events.write(fail(e.to_string()));
                continue;
            }
            (_, Err(e)) => {
                events.write(fail(format!("Cannot read {}: {e}", path.display())));
                continue;
            }
        };
        send.write(SendControl(machine.offer()));
        events.write(TransferEvent::Started {
            id,
            direction: Direction::Outgoing,
            name,
            size,
            resumed_from: 0,
        });
        transfers.outgoing.insert(
            id,
            Outgoing {
                machine,
                source,
                path,
                waiting: VecDeque::new(),
                scratch: Vec::new(),
                frame: Vec::new(),
            },
        );
    }
}

fn rand_id() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
}

fn fail_incoming(
    transfers: &mut Transfers,
    store: &mut Store,
    id: TransferId,
    error: &str,
    delete: bool,
    events: &mut MessageWriter<TransferEvent>,
) {
    if transfers.incoming.remove(&id).is_some() {
        store.0.submit(StoreOp::Close {
            transfer: id,
            delete,
        });
    }
    events.write(TransferEvent::Failed {
        id,
        direction: Direction::Incoming,
        reason: error.to_owned(),
    });
}

fn handle_control(
    mut received: MessageReader<ControlReceived>,
    mut transfers: ResMut<Transfers>,
    mut store: ResMut<Store>,
    mut send: MessageWriter<SendControl>,
    mut events: MessageWriter<TransferEvent>,
) {
    let now = now_ms();
    for ControlReceived(message) in received.read() {
        match message {
            Control::Offer(offer) => {
                let id = offer.transfer;
                if transfers.incoming.contains_key(&id) {
                    continue;
                }
                match Receiver::new(offer.clone(), transfers.window) {
                    Ok(machine) => {
                        store.0.submit(StoreOp::Open {
                            transfer: id,
                            key: part_key(&offer.sha256, offer.size),
                            size: offer.size,
                        });
                        transfers.incoming.insert(
                            id,
                            Incoming {
                                machine,
                                name: duet_shared::names::sanitize_file_name(&offer.name),
                                opened: false,
                            },
                        );
                    }
                    Err(e) => {
                        send.write(SendControl(Control::Decline {
                            transfer: id,
                            reason: match e {
                                TransferError::TooLarge { .. } => DeclineReason::TooLarge,
                                _ => DeclineReason::Invalid,
                            },
                        }));
                        events.write(TransferEvent::Failed {
                            id,
                            direction: Direction::Incoming,
                            reason: format!("Your peer offered a file Duet cannot take: {e}."),
                        });
                    }
                }
            }
            Control::Accept { transfer, offset } => {
                if let Some(out) = transfers.outgoing.get_mut(transfer)
                    && let Err(e) = out.machine.on_accept(*offset, now)
                {
                    let cancel = out.machine.cancel(e.cancel_reason());
                    send.write(SendControl(cancel));
                    transfers.outgoing.remove(transfer);
                    events.write(TransferEvent::Failed {
                        id: *transfer,
                        direction: Direction::Outgoing,
                        reason: e.to_string(),
                    });
                }
            }
            Control::Credit {
                transfer,
                persisted,
                until,
            } => {
                if let Some(out) = transfers.outgoing.get_mut(transfer)
                    && let Err(e) = out.machine.on_credit(*persisted, *until, now)
                {
                    send.write(SendControl(out.machine.cancel(e.cancel_reason())));
                    transfers.outgoing.remove(transfer);
                    events.write(TransferEvent::Failed {
                        id: *transfer,
                        direction: Direction::Outgoing,
                        reason: e.to_string(),
                    });
                }
            }
            Control::Complete { transfer } => {
                if let Some(mut out) = transfers.outgoing.remove(transfer) {
                    let event = match out.machine.on_complete() {
                        Ok(()) => {
                            // The last progress report (throttled) may predate the end.
                            events.write(TransferEvent::Progress {
                                id: *transfer,
                                direction: Direction::Outgoing,
                                progress: out.machine.progress(),
                            });
                            TransferEvent::Completed {
                                id: *transfer,
                                direction: Direction::Outgoing,
                                location: out.path.display().to_string(),
                            }
                        }
                        Err(e) => TransferEvent::Failed {
                            id: *transfer,
                            direction: Direction::Outgoing,
                            reason: e.to_string(),
                        },
                    };
                    events.write(event);
                }
            }
            Control::Decline { transfer, reason }
                if transfers.outgoing.remove(transfer).is_some() =>
            {
                events.write(TransferEvent::Failed {
                    id: *transfer,
                    direction: Direction::Outgoing,
                    reason: format!("Your peer's app declined the file: {reason}."),
                });
            }
            Control::Cancel { transfer, reason } => {
                if transfers.outgoing.remove(transfer).is_some() {
                    events.write(TransferEvent::Failed {
                        id: *transfer,
                        direction: Direction::Outgoing,
                        reason: format!("Your peer ended the transfer: {reason}."),
                    });
                }
                if transfers.incoming.contains_key(transfer) {
                    let delete = *reason != CancelReason::User;
                    fail_incoming(
                        &mut transfers,
                        &mut store,
                        *transfer,
                        &format!("Your peer ended the transfer: {reason}."),
                        delete,
                        &mut events,
                    );
                }
            }
            _ => {}
        }
    }
}

fn receive_chunks(
    socket: Option<ResMut<Socket>>,
    mut transfers: ResMut<Transfers>,
    mut store: ResMut<Store>,
    mut send: MessageWriter<SendControl>,
    mut events: MessageWriter<TransferEvent>,
) {
    let Some(mut socket) = socket else { return };
    let now = now_ms();
    for frame in socket.receive_data() {
        let chunk = match Chunk::decode(&frame) {
            Ok(chunk) => chunk,
            Err(e) => {
                events.write(TransferEvent::Failed {
                    id: TransferId(0),
                    direction: Direction::Incoming,
                    reason: format!("Your peer sent a broken file chunk ({e}); it was ignored."),
                });
                continue;
            }
        };
        let id = chunk.transfer;
        let Some(incoming) = transfers.incoming.get_mut(&id) else {
            // Chunks for a transfer we do not have: never stored anywhere.
            events.write(TransferEvent::Failed {
                id,
                direction: Direction::Incoming,
                reason: "Your peer sent data for a transfer that is not running; it was ignored."
                    .into(),
            });
            continue;
        };
        match incoming.machine.on_chunk(chunk.seq, chunk.data, now) {
            Ok(()) => store.0.submit(StoreOp::Write {
                transfer: id,
                seq: chunk.seq,
                data: chunk.data.to_vec(),
            }),
            Err(e) => {
                send.write(SendControl(incoming.machine.cancel(e.cancel_reason())));
                fail_incoming(
                    &mut transfers,
                    &mut store,
                    id,
                    &e.to_string(),
                    true,
                    &mut events,
                );
            }
        }
    }
}

fn drain_store(
    mut transfers: ResMut<Transfers>,
    mut store: ResMut<Store>,
    mut send: MessageWriter<SendControl>,
    mut events: MessageWriter<TransferEvent>,
) {
    let now = now_ms();
    for done in store.0.poll() {
        match done {
            StoreDone::Opened {
                transfer,
                existing_chunks,
                hasher,
            } => {
                if let Some(incoming) = transfers.incoming.get_mut(&transfer) {
                    incoming.opened = true;
                    let resume = (existing_chunks > 0).then_some(ResumePoint {
                        chunks: existing_chunks,
                        hasher,
                    });
                    for message in incoming.machine.accept(resume, now) {
                        send.write(SendControl(message));
                    }
                    let offer = incoming.machine.offer();
                    events.write(TransferEvent::Started {
                        id: transfer,
                        direction: Direction::Incoming,
                        name: incoming.name.clone(),
                        size: offer.size,
                        resumed_from: incoming.machine.progress().done,
                    });
                }
            }
            StoreDone::Persisted { transfer, chunks } => {
                if let Some(incoming) = transfers.incoming.get_mut(&transfer)
                    && let Some(credit) = incoming.machine.on_persisted(chunks, now)
                {
                    send.write(SendControl(credit));
                }
            }
            StoreDone::Finished { transfer, location } => {
                if let Some(incoming) = transfers.incoming.remove(&transfer) {
                    // The last progress report (throttled) may predate the end.
                    events.write(TransferEvent::Progress {
                        id: transfer,
                        direction: Direction::Incoming,
                        progress: incoming.machine.progress(),
                    });
                }
                events.write(TransferEvent::Completed {
                    id: transfer,
                    direction: Direction::Incoming,
                    location,
                });
            }
            StoreDone::Failed { transfer, error } => {
                if let Some(incoming) = transfers.incoming.get_mut(&transfer) {
                    let reason = match error {
                        crate::storage::StoreError::NoSpace => CancelReason::NoSpace,
                        _ => CancelReason::Io,
                    };
                    send.write(SendControl(incoming.machine.cancel(reason)));
                }
                fail_incoming(
                    &mut transfers,
                    &mut store,
                    transfer,
                    &error.to_string(),
                    true,
                    &mut events,
                );
            }
        }
    }
    // Verify what is complete.
    let complete: Vec<TransferId> = transfers
        .incoming
        .iter()
        .filter(|(_, t)| t.opened && t.machine.is_complete())
        .map(|(id, _)| *id)
        .collect();
    for id in complete {
        let Some(incoming) = transfers.incoming.get_mut(&id) else {
            continue;
        };
        match incoming.machine.verify() {
            Ok(message) => {
                send.write(SendControl(message));
                let name = incoming.name.clone();
                store.0.submit(StoreOp::Finish { transfer: id, name });
            }
            Err(e) => {
                send.write(SendControl(Control::Cancel {
                    transfer: id,
                    reason: CancelReason::HashMismatch,
                }));
                fail_incoming(
                    &mut transfers,
                    &mut store,
                    id,
                    &e.to_string(),
                    true,
                    &mut events,
                );
            }
        }
    }
}

fn pump_sends(
    socket: Option<ResMut<Socket>>,
    mut transfers: ResMut<Transfers>,
    mut send: MessageWriter<SendControl>,
    mut events: MessageWriter<TransferEvent>,
) {
    let Some(mut socket) = socket else { return };
    let mut failed = Vec::new();
    for (id, out) in transfers.outgoing.iter_mut() {
        while let Some(span) = out.machine.next_chunk() {
            out.waiting.push_back(span);
        }
        while let Some(span) = out.waiting.front().copied() {
            out.scratch.resize(span.len, 0);
            match out.source.read(span.offset, &mut out.scratch) {
                ReadPoll::Ready => {
                    out.waiting.pop_front();
                }
                ReadPoll::Pending => break,
                ReadPoll::Failed(e) => {
                    send.write(SendControl(out.machine.cancel(CancelReason::Io)));
                    failed.push((*id, format!("Cannot read {}: {e}", out.path.display())));
                    break;
                }
            }
            let chunk = Chunk {
                transfer: *id,
                seq: span.seq,
                data: &out.scratch,
            };
            // The frame buffer moves into the packet (matchbox owns what it sends); no copy.
            if chunk.encode_into(&mut out.frame).is_err()
                || socket.send_data(std::mem::take(&mut out.frame)).is_err()
            {
                failed.push((*id, "The connection to your peer was lost.".to_owned()));
                break;
            }
        }
    }
    for (id, reason) in failed {
        transfers.outgoing.remove(&id);
        events.write(TransferEvent::Failed {
            id,
            direction: Direction::Outgoing,
            reason,
        });
    }
}

fn report_progress(mut transfers: ResMut<Transfers>, mut events: MessageWriter<TransferEvent>) {
    let now = now_ms();
    if now < transfers.last_progress_ms + 250 {
        return;
    }
    transfers.last_progress_ms = now;
    for (id, out) in &transfers.outgoing {
        events.write(TransferEvent::Progress {
            id: *id,
            direction: Direction::Outgoing,
            progress: out.machine.progress(),
        });
    }
    for (id, incoming) in &transfers.incoming {
        if incoming.opened {
            events.write(TransferEvent::Progress {
                id: *id,
                direction: Direction::Incoming,
                progress: incoming.machine.progress(),
            });
        }
    }
}

/// The peer leaving, or me leaving the room (the socket closed), ends every running transfer.
fn fail_on_disconnect(
    mut net: MessageReader<NetEvent>,
    socket: Option<Res<Socket>>,
    mut transfers: ResMut<Transfers>,
    mut store: ResMut<Store>,
    mut events: MessageWriter<TransferEvent>,
) {
    let left = net.read().any(|e| matches!(e, NetEvent::PeerLeft(_)));
    let gone =
        socket.is_none() && (!transfers.outgoing.is_empty() || !transfers.incoming.is_empty());
    if !left && !gone {
        return;
    }
    for (id, _) in transfers.outgoing.drain() {
        events.write(TransferEvent::Failed {
            id,
            direction: Direction::Outgoing,
            reason: "Your peer left before the file was complete.".into(),
        });
    }
    let incoming: Vec<TransferId> = transfers.incoming.keys().copied().collect();
    for id in incoming {
        // Keep the partial bytes: the same file offered again resumes from them.
        fail_incoming(
            &mut transfers,
            &mut store,
            id,
            "Your peer left before the file was complete; it will resume if they send it again.",
            false,
            &mut events,
        );
    }
}
