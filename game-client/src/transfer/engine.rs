//! The transfer engine, sans I/O: every transfer in flight, driven like the shared machines it
//! is made of. The caller hands it the time and a [`Link`] to the peer on each [`Engine::pump`],
//! and asks [`Engine::poll_timeout`] when to come back if nothing arrives; the engine never
//! reads a clock, never sleeps and never reaches the platform except through the
//! [`LocalFiles`] and [`BlobStore`] it was given.
//!
//! One source of truth for a transfer's end: the protocol's ends (completed, declined,
//! cancelled by either side) are transitions of the transfer's own machine, and
//! [`Engine::settle`] turns each machine with an [`Outcome`] into exactly one event and drops
//! it. Only ends the protocol cannot see (the peer left, the link refused a frame) end a
//! transfer directly.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bevy::prelude::{debug, warn};
use duet_shared::admission::{Admission, Verdict};
use duet_shared::peer::{
    CancelReason, Chunk, Control, DeclineReason, FileOffer, MAX_FILE_BYTES, TransferId,
};
use duet_shared::transfer::{
    Arrival, ChunkSpan, Outcome, Receiver, ResumePoint, Sender, TransferError, WindowConfig,
};

use super::end::TransferEnd;
use super::event::{Direction, TransferEvent};
use crate::ports::{FileRead, HashJob, LocalFiles, ReadPoll};
use crate::storage::{BlobStore, StoreDone, StoreError, StoreOp, part_key};

/// How long a receiver waits for chunks it granted before it sends the grant again.
pub const GRANT_REPEAT_MS: u64 = 2_000;
/// How often running transfers report progress.
pub const PROGRESS_EVERY_MS: u64 = 250;
/// Chunks of an incoming transfer persisted (1 MiB) before it wants lanes.
pub const LANES_AFTER_CHUNKS: u32 = 64;
/// How often in a row a receiver may report the same missing chunk before the lanes are
/// replaced: twice the chunks went again on the next lane and did not arrive.
pub const LANES_FAIL_AFTER_GAPS: u32 = 3;
/// Files the person said yes to that are remembered for a resume without asking again.
const MAX_APPROVED: usize = 64;

/// The connection to the peer, as the engine sees it during one [`Engine::pump`].
pub trait Link {
    /// The identity the peer's hello gave: partial files are kept per sender.
    fn peer_identity(&self) -> Option<uuid::Uuid>;
    /// Most chunks one data frame may carry (both sides' stacks agree on it).
    fn frame_chunks(&self) -> usize;
    /// Control messages and data frames for transfers that arrived since the last call.
    fn take_arrivals(&mut self) -> (Vec<Control>, Vec<matchbox_socket::Packet>);
    /// Sends a control message; an error means the peer is gone.
    fn send_control(&mut self, message: &Control) -> Result<(), LinkClosed>;
    /// Sends one data frame; an error means the peer is gone.
    fn send_data(&mut self, frame: Vec<u8>) -> Result<(), LinkClosed>;
}

/// The link refused to send: nobody is on the other end any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkClosed;

struct Outgoing {
    machine: Sender,
    source: Box<dyn FileRead>,
    path: PathBuf,
    /// The file's SHA-256 being computed beside the sending (a separate read of the file);
    /// `None` once it is done and the `Digest` went out.
    hash: Option<HashJob>,
    /// Chunks the machine released but whose bytes are still being read (the web reads
    /// asynchronously); sent in order as they become ready.
    waiting: VecDeque<ChunkSpan>,
    scratch: Vec<u8>,
    frame: Vec<u8>,
    /// Why this side ended it, when it did (the machine's outcome says only the protocol's
    /// reason; this is what the person reads).
    why: Option<TransferEnd>,
    /// The gap the receiver last reported, and how often in a row.
    gap: (u32, u32),
}

struct Incoming {
    machine: Receiver,
    name: String,
    opened: bool,
    /// Why this side ended it, when it did.
    why: Option<TransferEnd>,
    /// Where the store put the finished file.
    location: Option<String>,
}

/// Every transfer in flight, the store received files go to, and what happened since the
/// caller last took the events.
#[derive(Default)]
pub struct Engine {
    /// A receiver reported the same gap [`LANES_FAIL_AFTER_GAPS`] times: the lanes are to be
    /// replaced ([`Engine::take_lanes_broken`]).
    lanes_broken: bool,
    outgoing: HashMap<TransferId, Outgoing>,
    incoming: HashMap<TransferId, Incoming>,
    /// Flow-control tuning for incoming transfers.
    pub window: WindowConfig,
    last_progress_ms: u64,
    /// Something moved since the last progress report (a stalled transfer reports nothing
    /// new, so it does not wake the engine four times a second for it).
    moved: bool,
    store: Option<Box<dyn BlobStore>>,
    files: Option<Arc<dyn LocalFiles>>,
    /// Control messages for the peer, sent at the end of the next pump.
    controls: Vec<Control>,
    /// Events for the app.
    events: Vec<TransferEvent>,
    /// Fault injection for tests (`DUET_FAULT_DROP_GRANT=N` on the desktop,
    /// `?fault_drop_grant=N` in a browser): from the Nth grant on, every
    /// grant this engine sends is dropped, as lost messages would be, until it repeats one
    /// (see [`Receiver::repeat_credit`]). `Some(0)`: dropping now.
    drop_grant: Option<u32>,
    /// Which of the peer's offers are received now, held, or declined.
    admission: Admission,
    /// The identity the peer's hello gave: partial files are kept per sender.
    sender: Option<uuid::Uuid>,
    /// Part keys of files the person said yes to and that have not finished, newest last (at
    /// most [`MAX_APPROVED`]): the same file offered again to resume (the sender reconnected)
    /// is not asked about twice. Kept for the app's run, across the peer's comings and goings.
    approved: VecDeque<String>,
    /// Files whose sending the connection cut (not the person): offered again, to resume, when
    /// the same peer is back within [`RESUME_WITHIN_MS`].
    interrupted: Vec<Interrupted>,
    /// The time of the last turn (ms), for what has no clock of its own.
    now_ms: u64,
    /// The peer may stripe its sendings over several connections (lanes, see
    /// `duet_shared::lane`), so their chunks may arrive out of order; until the peer leaves.
    striped: bool,
    /// The last peer identity seen on the link, until they leave: whom cut sendings were for
    /// (`sender` may already be cleared by a turn between the wire losing the peer and the
    /// app telling the engine).
    peer_seen: Option<uuid::Uuid>,
}

/// How long after a connection was lost a cut sending resumes by itself when the same person
/// is back: covers an outage, a network change or a reload; later than that the person may
/// no longer expect their file to go out on its own, and sends it again (it still resumes).
pub const RESUME_WITHIN_MS: u64 = 10 * 60 * 1_000;

// The person reads the window in `TransferEnd`'s words ("within 10 minutes").
const _: () = assert!(RESUME_WITHIN_MS == 10 * 60 * 1_000);

/// Most cut sendings remembered for a resume.
const MAX_INTERRUPTED: usize = 16;

/// A sending the connection cut.
struct Interrupted {
    path: std::path::PathBuf,
    /// Who it was going to: it resumes only to them.
    peer: uuid::Uuid,
    at_ms: u64,
}

impl Engine {
    /// An engine reading files to send from `files` and saving received ones in `store`.
    pub fn new(
        window: WindowConfig,
        files: Option<Arc<dyn LocalFiles>>,
        store: Box<dyn BlobStore>,
    ) -> Self {
        Self {
            window,
            files,
            store: Some(store),
            ..Self::default()
        }
    }

    /// From now until the peer leaves, the peer may stripe what it sends over several
    /// connections: chunks of every incoming transfer may arrive out of order (see
    /// [`Receiver::allow_striping`]).
    pub fn allow_striping(&mut self) {
        // Called each turn while lanes are agreed; transfers that start later take it in
        // `receive`.
        if self.striped {
            return;
        }
        self.striped = true;
        for incoming in self.incoming.values_mut() {
            incoming.machine.allow_striping();
        }
    }

    /// One of the connections sendings were striped over was lost with the frames it carried:
    /// every sending starts again from the last chunk the peer confirmed persisted (see
    /// [`Sender::rewind`]).
    pub fn lane_lost(&mut self) {
        for (id, out) in &mut self.outgoing {
            let again = out.machine.rewind();
            // Released but not read yet: released again, in order, after the rewind.
            out.waiting.clear();
            if again > 0 {
                debug!("transfer {id:?}: a lane was lost; sending {again} chunks again");
            }
        }
    }

    /// Whether the lanes are to be closed and opened anew (see [`LANES_FAIL_AFTER_GAPS`]);
    /// asking clears it.
    pub fn take_lanes_broken(&mut self) -> bool {
        std::mem::take(&mut self.lanes_broken)
    }

    /// Whether a transfer worth striping runs in either direction (at least
    /// [`duet_shared::lane::MIN_STRIPED_BYTES`], accepted, not ended): lanes are opened for it
    /// when the pair stripes.
    pub fn wants_lanes(&self) -> bool {
        let big = |size: u64| size >= duet_shared::lane::MIN_STRIPED_BYTES;
        let sending = self.outgoing.values().any(|t| {
            t.machine.is_accepted() && t.machine.outcome().is_none() && big(t.machine.size())
        });
        // Receiving, only once the sender has shown it sends: a peer that offers large files
        // and sends nothing must not make this side open connections for them.
        let receiving = self.incoming.values().any(|t| {
            t.opened
                && t.machine.outcome().is_none()
                && big(t.machine.offer().size)
                && t.machine.persisted_chunks() >= LANES_AFTER_CHUNKS
        });
        sending || receiving
    }

    /// Gives the engine its store (until then it does nothing).
    pub fn set_store(&mut self, store: Box<dyn BlobStore>) {
        self.store = Some(store);
    }

    /// Whether the engine has a store and so runs.
    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// Gives the engine the files it sends from.
    pub fn set_files(&mut self, files: Option<Arc<dyn LocalFiles>>) {
        self.files = files;
    }

    /// Offers above this many bytes wait for the person's answer.
    pub fn set_ask_above(&mut self, bytes: u64) {
        self.admission = Admission::new(bytes);
    }

    /// Fault injection for tests: from the `n`th grant on, drop grants (see the field).
    pub fn set_drop_grant(&mut self, n: Option<u32>) {
        self.drop_grant = n;
    }

    /// Transfers currently running, either way.
    pub fn running(&self) -> usize {
        self.outgoing.len() + self.incoming.len()
    }

    /// Whether an incoming transfer waits for its store to open (a thread natively, IndexedDB
    /// in the browser): a driver with nothing else to do waits for that, not for the clock.
    pub fn waiting_on_store(&self) -> bool {
        self.incoming.values().any(|t| !t.opened)
    }

    /// The lanes open now changed: told as an event, beside the transfers'.
    pub fn lanes_open(&mut self, open: u8) {
        self.events.push(TransferEvent::Lanes { open });
    }

    /// What happened since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<TransferEvent> {
        std::mem::take(&mut self.events)
    }

    /// Events not taken yet (the browser's pump looks at what one turn added).
    pub fn pending_events(&self) -> &[TransferEvent] {
        &self.events
    }

    /// When the engine wants to be pumped again if nothing arrives: the next progress report
    /// while anything runs, and the earliest grant a receiver would repeat.
    pub fn poll_timeout(&self) -> Option<u64> {
        let progress =
            (self.moved && self.running() > 0).then_some(self.last_progress_ms + PROGRESS_EVERY_MS);
        let grants = self
            .incoming
            .values()
            .filter_map(|t| t.machine.credit_repeat_at(GRANT_REPEAT_MS));
        let gaps = self
            .incoming
            .values()
            .filter_map(|t| t.machine.gap_report_at());
        progress.into_iter().chain(grants).chain(gaps).min()
    }

    fn store(&mut self) -> &mut dyn BlobStore {
        self.store
            .as_deref_mut()
            .expect("the engine runs only once it has a store")
    }

    /// One turn at time `now` (ms): what arrived on `link`, the store's results, hashes that
    /// finished, chunks to send, grants to repeat, progress, and the ends this produced.
    /// Ends by sending the control messages the turn produced. With no link (I am not in a
    /// room) only local work runs.
    pub fn pump(&mut self, now: u64, mut link: Option<&mut dyn Link>) {
        if self.store.is_none() {
            return;
        }
        self.now_ms = now;
        if let Some(link) = link.as_deref_mut() {
            let (controls, frames) = link.take_arrivals();
            self.moved |= !controls.is_empty() || !frames.is_empty();
            self.sender = link.peer_identity();
            if self.sender.is_some() {
                self.peer_seen = self.sender;
            }
            self.resume_interrupted(now);
            for message in controls {
                self.on_control(message, now);
            }
            for frame in frames {
                self.on_data(&frame, now);
            }
        }
        self.drain_store(now);
        self.admit_waiting();
        self.repeat_idle_grants(now);
        self.send_digests();
        if let Some(link) = link.as_deref_mut() {
            self.pump_sends(link);
        }
        self.report_progress(now);
        self.settle();
        let controls = std::mem::take(&mut self.controls);
        if let Some(link) = link {
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
                let _ = link.send_control(message);
            }
        }
    }

    /// Offers a file at once and starts sending when the peer accepts; its SHA-256 is computed
    /// beside it meanwhile (200 MiB takes a second or more, which would otherwise delay the
    /// first byte and freeze a frame) and follows as a `Digest`.
    pub fn send(&mut self, path: &Path, peer_present: bool) -> TransferId {
        let id = TransferId(rand_id());
        if let Err(why) = self.start_send(id, path, peer_present) {
            self.events.push(failed(id, Direction::Outgoing, why));
        }
        id
    }

    fn start_send(
        &mut self,
        id: TransferId,
        path: &Path,
        peer_present: bool,
    ) -> Result<(), TransferEnd> {
        if !peer_present {
            return Err(TransferEnd::NoPeer);
        }
        let files = self.files.clone().ok_or(TransferEnd::NoFiles)?;
        let cannot_read = |e: std::io::Error| TransferEnd::CannotRead {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let size = files.size(path).map_err(cannot_read)?;
        let fingerprint = files.fingerprint(path).map_err(cannot_read)?;
        // Refuse what is too large before anything goes out.
        if size > MAX_FILE_BYTES {
            return Err(TransferEnd::TooLarge {
                path: path.display().to_string(),
                size,
            });
        }
        let source = files.open(path).map_err(cannot_read)?;
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
        let machine = Sender::new(offer).map_err(TransferEnd::Protocol)?;
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
                why: None,
                gap: (0, 0),
            },
        );
        Ok(())
    }

    /// The person stops a transfer, either way (or says no to an offer they were asked about).
    /// The receiver keeps what it has, so the same file sent again resumes.
    pub fn cancel(&mut self, id: TransferId) {
        if self.admission.holds(id) {
            return self.answer(id, false);
        }
        if let Some(out) = self.outgoing.get_mut(&id) {
            out.why = Some(TransferEnd::CancelledSending);
            self.controls.push(out.machine.cancel(CancelReason::User));
        } else if let Some(incoming) = self.incoming.get_mut(&id) {
            incoming.why = Some(TransferEnd::CancelledReceiving);
            self.controls
                .push(incoming.machine.cancel(CancelReason::User));
        }
    }

    /// The person said yes or no to an offer they were asked about.
    pub fn answer(&mut self, id: TransferId, yes: bool) {
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
            Some(Verdict::Decline(reason)) => self.decline(id, reason, TransferEnd::YouDeclined),
        }
    }

    /// Offers again what the connection cut, once the same peer is back (see
    /// [`RESUME_WITHIN_MS`]); the receiver still has the part and resumes from it.
    fn resume_interrupted(&mut self, now: u64) {
        self.interrupted
            .retain(|cut| now.saturating_sub(cut.at_ms) <= RESUME_WITHIN_MS);
        let Some(peer) = self.sender else {
            return;
        };
        let (again, kept): (Vec<Interrupted>, Vec<Interrupted>) =
            std::mem::take(&mut self.interrupted)
                .into_iter()
                .partition(|cut| cut.peer == peer);
        self.interrupted = kept;
        for cut in again {
            debug!("{} is back: sending {} again", peer, cut.path.display());
            self.send(&cut.path, true);
        }
    }

    /// The peer left (or I did): every running transfer ends; the receiver keeps its partial
    /// bytes, so the same file offered again resumes from them, and a sending that was under
    /// way is offered again by itself if the same peer is back soon.
    pub fn peer_left(&mut self) {
        if let Some(peer) = self.peer_seen.take() {
            for out in self.outgoing.values() {
                if out.why.is_none() && self.interrupted.len() < MAX_INTERRUPTED {
                    self.interrupted.push(Interrupted {
                        path: out.path.clone(),
                        peer,
                        at_ms: self.now_ms,
                    });
                }
            }
        }
        // Its held offers and open questions go, and the next session's budgets start over.
        for offer in self.admission.asking() {
            self.events.push(failed(
                offer.transfer,
                Direction::Incoming,
                TransferEnd::PeerLeftBeforeAnswer,
            ));
        }
        self.admission.reset();
        self.striped = false;
        let outgoing: Vec<TransferId> = self.outgoing.keys().copied().collect();
        for id in outgoing {
            self.abandon_outgoing(id, TransferEnd::PeerLeftSending);
        }
        let incoming: Vec<TransferId> = self.incoming.keys().copied().collect();
        for id in incoming {
            self.abandon_incoming(id, TransferEnd::PeerLeftReceiving, false);
        }
    }

    /// Declines the peer's offer `id`, telling the peer `reason` and the person `why`.
    fn decline(&mut self, id: TransferId, reason: DeclineReason, why: TransferEnd) {
        self.controls.push(Control::Decline {
            transfer: id,
            reason,
        });
        self.events.push(failed(id, Direction::Incoming, why));
    }

    /// Sends the digest of each accepted outgoing file whose hash is ready (see
    /// [`Sender::is_accepted`]); a file that could not be read, or changed size meanwhile, ends
    /// its transfer.
    fn send_digests(&mut self) {
        for (id, out) in self.outgoing.iter_mut() {
            let Some(job) = out.hash.as_mut().filter(|_| out.machine.is_accepted()) else {
                continue;
            };
            let Some(hashed) = bevy::tasks::block_on(bevy::tasks::poll_once(job)) else {
                continue;
            };
            out.hash = None;
            let path = out.path.display().to_string();
            let why = match hashed {
                Ok((sha256, size)) if size == out.machine.size() => {
                    self.controls.push(Control::Digest {
                        transfer: *id,
                        sha256,
                    });
                    continue;
                }
                Ok(_) => TransferEnd::Changed { path },
                Err(e) => TransferEnd::CannotRead {
                    path,
                    error: e.to_string(),
                },
            };
            out.why = Some(why);
            self.controls.push(out.machine.cancel(CancelReason::Io));
        }
    }

    /// Ends an incoming transfer this side stopped after `error`, telling the peer `reason`.
    fn cancel_incoming(&mut self, id: TransferId, reason: CancelReason, why: TransferEnd) {
        if let Some(incoming) = self.incoming.get_mut(&id) {
            incoming.why = Some(why);
            self.controls.push(incoming.machine.cancel(reason));
        }
    }

    /// Ends an outgoing transfer this side stopped after `error`, telling the peer why.
    fn cancel_outgoing(&mut self, id: TransferId, error: TransferError) {
        if let Some(out) = self.outgoing.get_mut(&id) {
            self.controls
                .push(out.machine.cancel(error.cancel_reason()));
            out.why = Some(TransferEnd::Protocol(error));
        }
    }

    /// Ends an outgoing transfer the protocol never heard end (the link is gone).
    fn abandon_outgoing(&mut self, id: TransferId, why: TransferEnd) {
        if self.outgoing.remove(&id).is_some() {
            self.events.push(failed(id, Direction::Outgoing, why));
        }
    }

    /// Ends an incoming transfer the protocol never heard end: `delete` drops its bytes,
    /// otherwise they are kept for a resume and the transfer shows as paused.
    fn abandon_incoming(&mut self, id: TransferId, why: TransferEnd, delete: bool) {
        if self.incoming.remove(&id).is_some() {
            self.store().submit(StoreOp::Close {
                transfer: id,
                delete,
            });
            self.events.push(if delete {
                failed(id, Direction::Incoming, why)
            } else {
                TransferEvent::Paused { id, why }
            });
        }
    }

    /// Every transfer whose machine has ended leaves, with one event that says how.
    fn settle(&mut self) {
        let ended: Vec<TransferId> = self
            .outgoing
            .iter()
            .filter(|(_, t)| t.machine.outcome().is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let Some(mut out) = self.outgoing.remove(&id) else {
                continue;
            };
            let event = match out.machine.outcome() {
                Some(Outcome::Completed) => {
                    // The last progress report (throttled) may predate the end.
                    self.events.push(TransferEvent::Progress {
                        id,
                        direction: Direction::Outgoing,
                        progress: out.machine.progress(),
                    });
                    TransferEvent::Completed {
                        id,
                        direction: Direction::Outgoing,
                        location: out.path.display().to_string(),
                    }
                }
                Some(Outcome::Declined(reason)) => failed(
                    id,
                    Direction::Outgoing,
                    out.why.take().unwrap_or(TransferEnd::PeerDeclined(reason)),
                ),
                Some(Outcome::Cancelled { reason, .. }) => failed(
                    id,
                    Direction::Outgoing,
                    out.why.take().unwrap_or(TransferEnd::PeerCancelled(reason)),
                ),
                None => continue,
            };
            self.events.push(event);
        }
        let ended: Vec<TransferId> = self
            .incoming
            .iter()
            .filter(|(_, t)| t.machine.outcome().is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let Some(incoming) = self.incoming.get_mut(&id) else {
                continue;
            };
            let (why, delete) = match incoming.machine.outcome() {
                Some(Outcome::Completed) => {
                    // Verified; it is received once the store says where the file is.
                    let Some(location) = incoming.location.take() else {
                        continue;
                    };
                    // Finished: the same file offered again is a new question.
                    let offer = incoming.machine.offer();
                    let key = part_key(self.sender, &offer.resume_key, offer.size);
                    self.approved.retain(|k| *k != key);
                    // The last progress report (throttled) may predate the end.
                    self.events.push(TransferEvent::Progress {
                        id,
                        direction: Direction::Incoming,
                        progress: incoming.machine.progress(),
                    });
                    self.events.push(TransferEvent::Completed {
                        id,
                        direction: Direction::Incoming,
                        location,
                    });
                    self.incoming.remove(&id);
                    continue;
                }
                // Kept for a resume only when a person stopped it; whatever went wrong with
                // the bytes or the protocol deletes them.
                Some(Outcome::Cancelled { by_peer, reason }) => (
                    incoming.why.take().unwrap_or(if by_peer {
                        TransferEnd::PeerCancelled(reason)
                    } else {
                        TransferEnd::Protocol(TransferError::Unexpected("cancel"))
                    }),
                    reason != CancelReason::User,
                ),
                Some(Outcome::Declined(reason)) => (
                    incoming
                        .why
                        .take()
                        .unwrap_or(TransferEnd::OfferDeclined(reason)),
                    true,
                ),
                None => continue,
            };
            self.abandon_incoming(id, why, delete);
        }
    }

    /// Starts receiving `offer`: opens its part file (or the partial one it resumes).
    fn receive(&mut self, offer: FileOffer) {
        let id = offer.transfer;
        match Receiver::new(offer.clone(), self.window) {
            Ok(mut machine) => {
                if self.striped {
                    machine.allow_striping();
                }
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
                        why: None,
                        location: None,
                    },
                );
            }
            Err(e) => {
                let reason = match e {
                    TransferError::TooLarge { .. } => DeclineReason::TooLarge,
                    _ => DeclineReason::Invalid,
                };
                self.decline(id, reason, TransferEnd::CannotTake(e));
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
            Control::Offer(offer) => self.on_offer(offer, now),
            Control::Accept { transfer, offset } => {
                if let Some(out) = self.outgoing.get_mut(&transfer) {
                    match out.machine.on_accept(offset, now) {
                        Ok(()) => self.events.push(TransferEvent::Accepted { id: transfer }),
                        Err(e) => self.cancel_outgoing(transfer, e),
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
                    self.cancel_outgoing(transfer, e);
                }
            }
            Control::Gap { transfer, seq } => {
                if let Some(out) = self.outgoing.get_mut(&transfer) {
                    debug!("transfer {transfer:?}: the peer waits for chunk {seq}; again");
                    out.gap = match out.gap {
                        (last, times) if last == seq => (seq, times + 1),
                        _ => (seq, 1),
                    };
                    if out.gap.1 >= LANES_FAIL_AFTER_GAPS {
                        // What was sent again did not arrive either: a lane carries nothing
                        // although its connection looks alive (seen after a network outage).
                        warn!("transfer {transfer:?}: chunk {seq} still missing; new lanes");
                        out.gap = (seq, 0);
                        self.lanes_broken = true;
                    } else {
                        out.machine
                            .on_gap(seq, duet_shared::peer::MAX_FRAME_CHUNKS as u32);
                    }
                }
            }
            Control::Digest { transfer, sha256 } => {
                if let Some(incoming) = self.incoming.get_mut(&transfer)
                    && let Err(e) = incoming.machine.on_digest(sha256)
                {
                    self.cancel_incoming(
                        transfer,
                        CancelReason::ProtocolViolation,
                        TransferEnd::Protocol(e),
                    );
                }
            }
            Control::Complete { transfer } => {
                if let Some(out) = self.outgoing.get_mut(&transfer)
                    && let Err(e) = out.machine.on_complete()
                {
                    self.cancel_outgoing(transfer, e);
                }
            }
            Control::Decline { transfer, reason } => {
                if let Some(out) = self.outgoing.get_mut(&transfer) {
                    out.machine.on_decline(reason);
                }
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
                    self.events.push(failed(
                        transfer,
                        Direction::Incoming,
                        TransferEnd::Withdrawn,
                    ));
                }
                if let Some(out) = self.outgoing.get_mut(&transfer) {
                    out.machine.on_cancel(reason);
                }
                if let Some(incoming) = self.incoming.get_mut(&transfer) {
                    incoming.machine.on_cancel(reason);
                }
            }
            _ => {}
        }
    }

    fn on_offer(&mut self, offer: FileOffer, now: u64) {
        let id = offer.transfer;
        if self.incoming.contains_key(&id) || self.admission.holds(id) {
            return;
        }
        let sender = self.sender;
        let key = part_key(sender, &offer.resume_key, offer.size);
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
                self.decline(id, reason, TransferEnd::OfferDeclined(reason));
            }
        }
    }

    fn on_data(&mut self, frame: &[u8], now: u64) {
        match Chunk::decode_frame(frame) {
            Ok(chunks) => {
                for chunk in chunks {
                    self.on_chunk(chunk, now);
                }
            }
            Err(e) => self.events.push(failed(
                TransferId(0),
                Direction::Incoming,
                TransferEnd::BrokenChunk(e.to_string()),
            )),
        }
    }

    fn on_chunk(&mut self, chunk: Chunk<'_>, now: u64) {
        let id = chunk.transfer;
        let Some(incoming) = self.incoming.get_mut(&id) else {
            // Chunks for a transfer we do not have: never stored anywhere.
            self.events.push(failed(
                id,
                Direction::Incoming,
                TransferEnd::UnknownTransfer,
            ));
            return;
        };
        if incoming.machine.outcome().is_some() {
            // Ended this turn (a cancel crossed these chunks): nothing more is stored.
            return;
        }
        match incoming.machine.on_chunk(chunk.seq, chunk.data, now) {
            Ok(Arrival::Next) => {
                // Chunks it unblocked; nothing to collect (and no allocation) in order.
                let unblocked: Vec<(u32, Vec<u8>)> = if incoming.machine.held() == 0 {
                    Vec::new()
                } else {
                    std::iter::from_fn(|| incoming.machine.next_held()).collect()
                };
                let store = self.store();
                let this = (chunk.seq, chunk.data.to_vec());
                for (seq, data) in std::iter::once(this).chain(unblocked) {
                    store.submit(StoreOp::Write {
                        transfer: id,
                        seq,
                        data,
                    });
                }
            }
            // Ahead of a gap (striped over several connections): the machine holds it; or
            // sent again after a lost connection, and already here.
            Ok(Arrival::Held | Arrival::Again) => {}
            Err(e) => self.cancel_incoming(id, e.cancel_reason(), TransferEnd::Protocol(e)),
        }
    }

    /// Grants again what the sender has not used for [`GRANT_REPEAT_MS`] (see
    /// [`Receiver::repeat_credit`]): a lost grant would otherwise hold the transfer still
    /// for good.
    fn repeat_idle_grants(&mut self, now: u64) {
        for incoming in self.incoming.values_mut() {
            if let Some(gap) = incoming.machine.gap_report(now) {
                debug!("held behind a gap: {gap:?}");
                self.controls.push(gap);
            }
        }
        for (id, incoming) in &mut self.incoming {
            if let Some(credit) = incoming.machine.repeat_credit(now, GRANT_REPEAT_MS) {
                // Striped, what the grant allowed may be lost on a lane that carries nothing
                // any more: the sender is told where it stopped arriving.
                if incoming.machine.is_striped() {
                    self.controls.push(Control::Gap {
                        transfer: *id,
                        seq: incoming.machine.persisted_chunks(),
                    });
                }
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
        let results = self.store().poll();
        self.moved |= !results.is_empty();
        for done in results {
            match done {
                StoreDone::Opened {
                    transfer,
                    existing_chunks,
                    hasher,
                } => {
                    let Some(incoming) = self.incoming.get_mut(&transfer) else {
                        continue;
                    };
                    incoming.opened = true;
                    if incoming.machine.outcome().is_some() {
                        continue;
                    }
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
                StoreDone::Persisted { transfer, chunks } => {
                    if let Some(incoming) = self.incoming.get_mut(&transfer)
                        && let Some(credit) = incoming.machine.on_persisted(chunks, now)
                    {
                        debug!(
                            target: "duet_window",
                            "grant: window={} rtt={:?} rate={:.0} persisted={}",
                            incoming.machine.window(),
                            incoming.machine.round_trip_ms(),
                            incoming.machine.progress().bytes_per_sec,
                            chunks
                        );
                        self.controls.push(credit);
                    }
                }
                StoreDone::Finished { transfer, location } => {
                    if let Some(incoming) = self.incoming.get_mut(&transfer) {
                        incoming.location = Some(location);
                    }
                }
                StoreDone::Failed { transfer, error } => self.on_store_failed(transfer, error),
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
                    // The machine ended itself (hash mismatch); the peer hears why.
                    incoming.why = Some(TransferEnd::Protocol(e));
                    self.controls.push(Control::Cancel {
                        transfer: id,
                        reason: CancelReason::HashMismatch,
                    });
                }
            }
        }
    }

    /// The store could not open, write or finish a file: the transfer ends and its bytes go.
    fn on_store_failed(&mut self, transfer: TransferId, error: StoreError) {
        let no_space = error == StoreError::NoSpace;
        let why = TransferEnd::Store(error);
        match self.incoming.get_mut(&transfer) {
            // Not accepted yet (the space check comes first): declined, and the sender
            // learns why.
            Some(incoming) if !incoming.opened && no_space => {
                incoming.why = Some(why);
                self.controls
                    .push(incoming.machine.decline(DeclineReason::NoSpace));
            }
            Some(incoming) if incoming.machine.outcome() == Some(Outcome::Completed) => {
                // Verified, but saving it failed: the sender was told it arrived; the
                // person here learns it did not stay.
                self.abandon_incoming(transfer, why, true);
            }
            Some(_) => {
                let reason = if no_space {
                    CancelReason::NoSpace
                } else {
                    CancelReason::Io
                };
                self.cancel_incoming(transfer, reason, why);
            }
            None => {}
        }
    }

    fn pump_sends(&mut self, link: &mut dyn Link) {
        let mut lost = Vec::new();
        let per_frame = link.frame_chunks();
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
                    ReadPoll::Failed(error) => {
                        out.why = Some(TransferEnd::CannotRead {
                            path: out.path.display().to_string(),
                            error,
                        });
                        self.controls.push(out.machine.cancel(CancelReason::Io));
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
                    out.why = Some(TransferEnd::Encode);
                    self.controls
                        .push(out.machine.cancel(CancelReason::ProtocolViolation));
                    in_frame = 0;
                    break;
                }
                in_frame += 1;
                if in_frame == per_frame {
                    in_frame = 0;
                    // The frame buffer moves into the packet (matchbox owns what it sends).
                    if link.send_data(std::mem::take(&mut out.frame)).is_err() {
                        lost.push(*id);
                        break;
                    }
                }
            }
            if in_frame > 0 && link.send_data(std::mem::take(&mut out.frame)).is_err() {
                lost.push(*id);
            }
        }
        for id in lost {
            self.abandon_outgoing(id, TransferEnd::ConnectionLost);
        }
    }

    fn report_progress(&mut self, now: u64) {
        if !self.moved || now < self.last_progress_ms + PROGRESS_EVERY_MS {
            return;
        }
        self.last_progress_ms = now;
        self.moved = false;
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
}

fn failed(id: TransferId, direction: Direction, why: TransferEnd) -> TransferEvent {
    TransferEvent::Failed { id, direction, why }
}

fn mime_for(path: &Path) -> String {
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
