//! Two engines over an in-memory link on a fake clock (in the manner of quinn's `Pair` and
//! str0m's `TestRtc`): each turn pumps both sides, messages arrive after the link's one-way
//! delay, the link drops what a test tells it to, and when nothing is in flight the clock jumps
//! to the earliest [`Engine::poll_timeout`]. Received files go to real [`FolderStore`]s in
//! temporary folders; files to send come from memory.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use duet_shared::peer::{CancelReason, Control, DeclineReason, TransferId};
use duet_shared::transfer::{TransferError, WindowConfig};
use sha2::{Digest, Sha256};

use super::*;
use crate::ports::{FileRead, HashJob, LocalFiles, ReadPoll};
use crate::storage::FolderStore;

/// Files to send, held in memory.
#[derive(Default)]
struct MemFiles(HashMap<PathBuf, Arc<Vec<u8>>>);

struct MemRead(Arc<Vec<u8>>);

impl FileRead for MemRead {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> ReadPoll {
        let start = offset as usize;
        match self.0.get(start..start + buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                ReadPoll::Ready
            }
            None => ReadPoll::Failed("past the end".into()),
        }
    }
}

impl LocalFiles for MemFiles {
    fn size(&self, path: &Path) -> std::io::Result<u64> {
        Ok(self.get(path)?.len() as u64)
    }

    fn fingerprint(&self, path: &Path) -> std::io::Result<String> {
        self.get(path).map(|_| path.display().to_string())
    }

    fn hash(&self, path: PathBuf) -> HashJob {
        let bytes = self.get(&path);
        Box::pin(async move {
            let bytes = bytes?;
            Ok((Sha256::digest(&*bytes).into(), bytes.len() as u64))
        })
    }

    fn open(&self, path: &Path) -> std::io::Result<Box<dyn FileRead>> {
        Ok(Box::new(MemRead(self.get(path)?)))
    }
}

impl MemFiles {
    fn get(&self, path: &Path) -> std::io::Result<Arc<Vec<u8>>> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

/// Bytes that are the same on every run and differ chunk to chunk.
fn file_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

enum Packet {
    Control(Vec<u8>),
    Data(matchbox_socket::Packet),
}

/// What the link loses.
#[derive(Default)]
struct Loss {
    /// Drop every `n`th grant (`Credit`) either way.
    every_nth_credit: Option<u32>,
    credits_seen: u32,
    credits_dropped: u32,
    /// Drop the data frame with this index (counted from 0, one direction).
    data_frame: Option<u32>,
    data_seen: u32,
    /// Stripe data frames over two paths, the second this much slower (ms): every other frame
    /// takes it, so later frames overtake earlier ones.
    slow_lane_ms: Option<u64>,
    /// Data frames that arrived before one sent earlier.
    overtaking: u32,
    /// The slower path dies after carrying this many frames: what it is given is lost.
    slow_lane_dies_after: Option<u32>,
    /// Frames lost with the slower path.
    lost_with_lane: u32,
}

/// One direction of the link: packets and when they arrive.
type Lane = VecDeque<(u64, Packet)>;

/// One side's view of the link during its turn.
struct End<'a> {
    now: u64,
    delay_ms: u64,
    inbox: &'a mut Lane,
    outbox: &'a mut Lane,
    loss: &'a mut Loss,
    peer: uuid::Uuid,
}

impl Link for End<'_> {
    fn peer_identity(&self) -> Option<uuid::Uuid> {
        Some(self.peer)
    }

    fn frame_chunks(&self) -> usize {
        duet_shared::peer::CHUNKS_PER_FRAME
    }

    fn take_arrivals(&mut self) -> (Vec<Control>, Vec<matchbox_socket::Packet>) {
        let (mut controls, mut frames) = (Vec::new(), Vec::new());
        while self.inbox.front().is_some_and(|(at, _)| *at <= self.now) {
            match self.inbox.pop_front().map(|(_, p)| p) {
                Some(Packet::Control(bytes)) => {
                    controls.push(Control::decode(&bytes).expect("controls decode"))
                }
                Some(Packet::Data(frame)) => frames.push(frame),
                None => {}
            }
        }
        (controls, frames)
    }

    fn send_control(&mut self, message: &Control) -> Result<(), LinkClosed> {
        if let (Control::Credit { .. }, Some(n)) = (message, self.loss.every_nth_credit) {
            self.loss.credits_seen += 1;
            if self.loss.credits_seen.is_multiple_of(n) {
                self.loss.credits_dropped += 1;
                return Ok(());
            }
        }
        let bytes = message.encode().expect("controls encode");
        let at = self.now + self.delay_ms;
        // In arrival order, ahead of data frames still on a slower path.
        let place = self.outbox.partition_point(|(t, _)| *t <= at);
        self.outbox.insert(place, (at, Packet::Control(bytes)));
        Ok(())
    }

    fn send_data(&mut self, frame: Vec<u8>) -> Result<(), LinkClosed> {
        let index = self.loss.data_seen;
        self.loss.data_seen += 1;
        if self.loss.data_frame == Some(index) {
            return Ok(());
        }
        let extra = match self.loss.slow_lane_ms {
            Some(ms) if index % 2 == 1 => ms,
            _ => 0,
        };
        if extra > 0
            && self
                .loss
                .slow_lane_dies_after
                .is_some_and(|n| index / 2 >= n)
        {
            self.loss.lost_with_lane += 1;
            return Ok(());
        }
        let at = self.now + self.delay_ms + extra;
        // The inbox is read in arrival order: a frame on the faster path goes ahead of the
        // frames still on the slower one.
        let place = self.outbox.partition_point(|(t, _)| *t <= at);
        if place < self.outbox.len()
            && self
                .outbox
                .iter()
                .skip(place)
                .any(|(_, p)| matches!(p, Packet::Data(_)))
        {
            self.loss.overtaking += 1;
        }
        self.outbox.insert(
            place,
            (at, Packet::Data(matchbox_socket::Packet::from(frame))),
        );
        Ok(())
    }
}

/// One side: its engine, its downloads folder and every event it produced.
struct Side {
    engine: Engine,
    dir: PathBuf,
    id: uuid::Uuid,
    events: Vec<TransferEvent>,
}

impl Side {
    fn new(name: &str, files: MemFiles) -> Self {
        let dir = duet_tests::temp_dir(name).expect("a temporary folder");
        let store = FolderStore::new(&dir).expect("a folder store");
        let window = WindowConfig::default();
        Self {
            engine: Engine::new(window, Some(Arc::new(files)), Box::new(store)),
            dir,
            id: uuid::Uuid::new_v4(),
            events: Vec::new(),
        }
    }

    fn ends(&self) -> Vec<&TransferEvent> {
        self.events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    TransferEvent::Completed { .. }
                        | TransferEvent::Failed { .. }
                        | TransferEvent::Paused { .. }
                )
            })
            .collect()
    }

    fn visible_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .expect("the downloads folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect()
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two sides, the link between them and the fake clock.
struct Pair {
    a: Side,
    b: Side,
    a_to_b: Lane,
    b_to_a: Lane,
    loss_a: Loss,
    loss_b: Loss,
    delay_ms: u64,
    now: u64,
    /// Turns taken in which the clock jumped to a timeout.
    timeouts: u32,
    /// Whether A's lanes are replaced when its engine finds them broken (as the wire does):
    /// then the slower path is gone and both engines hear the lane was lost.
    replace_broken_lanes: bool,
    /// How often that happened.
    lanes_replaced: u32,
}

impl Pair {
    /// `a` holds `file` at `/send/file.bin`.
    fn new(file: &[u8], delay_ms: u64) -> Self {
        let mut files = MemFiles::default();
        files
            .0
            .insert(PathBuf::from("/send/file.bin"), Arc::new(file.to_vec()));
        Self {
            a: Side::new("pair-a", files),
            b: Side::new("pair-b", MemFiles::default()),
            a_to_b: Lane::new(),
            b_to_a: Lane::new(),
            loss_a: Loss::default(),
            loss_b: Loss::default(),
            delay_ms,
            now: 1_000,
            timeouts: 0,
            replace_broken_lanes: false,
            lanes_replaced: 0,
        }
    }

    /// One turn of both sides at the current time.
    fn turn(&mut self) {
        let (a_id, b_id) = (self.a.id, self.b.id);
        let mut end_a = End {
            now: self.now,
            delay_ms: self.delay_ms,
            inbox: &mut self.b_to_a,
            outbox: &mut self.a_to_b,
            loss: &mut self.loss_a,
            peer: b_id,
        };
        self.a.engine.pump(self.now, Some(&mut end_a));
        self.a.events.extend(self.a.engine.take_events());
        if self.replace_broken_lanes && self.a.engine.take_lanes_broken() {
            self.lanes_replaced += 1;
            self.loss_a.slow_lane_ms = None;
            self.loss_a.slow_lane_dies_after = None;
            self.a.engine.lane_lost();
            self.b.engine.lane_lost();
        }
        let mut end_b = End {
            now: self.now,
            delay_ms: self.delay_ms,
            inbox: &mut self.a_to_b,
            outbox: &mut self.b_to_a,
            loss: &mut self.loss_b,
            peer: a_id,
        };
        self.b.engine.pump(self.now, Some(&mut end_b));
        self.b.events.extend(self.b.engine.take_events());
    }

    /// Runs until `done` holds: each turn the clock moves to the next arrival or, when
    /// nothing is in flight, to the earliest timeout either engine asked for. Panics if
    /// neither side has anything left to wait for (a stall), or after `limit_ms` of fake time.
    fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Pair) -> bool) {
        let deadline = self.now + limit_ms;
        let mut wall_waits = 0;
        while !done(self) {
            assert!(self.now <= deadline, "not done after {limit_ms} ms");
            self.turn();
            if done(self) {
                return;
            }
            let arrival = [&self.a_to_b, &self.b_to_a]
                .iter()
                .filter_map(|lane| lane.front().map(|(at, _)| *at))
                .min();
            if self.a.engine.waiting_on_store() || self.b.engine.waiting_on_store() {
                // The folder store opens parts on a thread of its own: wait for it without
                // moving the engines' clock.
                wall_waits += 1;
                assert!(wall_waits < 5_000, "a store never opened");
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            let timeout = [self.a.engine.poll_timeout(), self.b.engine.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match (arrival, timeout) {
                (Some(at), _) if at > self.now => self.now = at,
                (Some(_), _) => {}
                (None, Some(at)) => {
                    self.timeouts += 1;
                    self.now = self.now.max(at);
                }
                (None, None) => panic!("stalled: nothing in flight and no timeout asked for"),
            }
        }
    }
}

fn completed(side: &Side, direction: Direction) -> Option<String> {
    side.events.iter().find_map(|e| match e {
        TransferEvent::Completed {
            direction: d,
            location,
            ..
        } if *d == direction => Some(location.clone()),
        _ => None,
    })
}

fn send(pair: &mut Pair) -> TransferId {
    pair.a.engine.send(Path::new("/send/file.bin"), true)
}

#[test]
fn a_file_crosses_a_link_that_loses_grants() {
    // 3 MiB and a bit, over 20 ms each way, losing every third grant.
    let data = file_bytes(3 * 1024 * 1024 + 123);
    let mut pair = Pair::new(&data, 20);
    pair.loss_b.every_nth_credit = Some(3);
    send(&mut pair);
    pair.run_until(120_000, |p| completed(&p.b, Direction::Incoming).is_some());
    pair.run_until(1_000, |p| completed(&p.a, Direction::Outgoing).is_some());
    let location = completed(&pair.b, Direction::Incoming).unwrap();
    assert_eq!(
        std::fs::read(&location).unwrap(),
        data,
        "the bytes arrived intact"
    );
    assert!(
        pair.loss_b.credits_dropped > 0,
        "the test lost grants (it proves the repeat)"
    );
    assert!(
        pair.timeouts > 0,
        "the engine's timeout, not an arrival, restarted a stalled transfer"
    );
    assert_eq!(pair.a.ends().len(), 1, "{:?}", pair.a.ends());
    assert_eq!(pair.b.ends().len(), 1, "{:?}", pair.b.ends());
    assert_eq!(pair.a.engine.running() + pair.b.engine.running(), 0);
    assert_eq!(
        pair.a.engine.poll_timeout(),
        None,
        "nothing left to wake for"
    );
}

#[test]
fn a_lossless_transfer_never_waits_for_a_timeout_but_progress() {
    let data = file_bytes(1024 * 1024);
    let mut pair = Pair::new(&data, 5);
    send(&mut pair);
    pair.run_until(60_000, |p| completed(&p.a, Direction::Outgoing).is_some());
    // With no loss, every wake-up is a progress report: the fake clock did not pass a grant
    // repeat's 2 s.
    assert!(
        pair.now < 1_000 + super::engine::GRANT_REPEAT_MS,
        "took until {} ms",
        pair.now
    );
    let location = completed(&pair.b, Direction::Incoming).unwrap();
    assert_eq!(std::fs::read(location).unwrap(), data);
}

/// A pair whose connection was lost (nothing in flight) after part of a 2 MiB file went out.
fn cut_mid_file() -> Pair {
    let data = file_bytes(2 * 1024 * 1024 + 5);
    let mut pair = Pair::new(&data, 10);
    send(&mut pair);
    pair.run_until(60_000, |p| p.loss_a.data_seen >= 16);
    pair.a.engine.peer_left();
    pair.b.engine.peer_left();
    pair.a_to_b.clear();
    pair.b_to_a.clear();
    pair
}

/// How many outgoing transfers `side` started.
fn started_out(side: &Side) -> usize {
    side.events
        .iter()
        .filter(|e| {
            matches!(
                e,
                TransferEvent::Started {
                    direction: Direction::Outgoing,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_sending_cut_by_the_connection_goes_only_to_the_same_peer() {
    let mut pair = cut_mid_file();
    // Someone else takes the other seat: nothing is offered to them.
    pair.b.id = uuid::Uuid::new_v4();
    for _ in 0..10 {
        pair.now += 100;
        pair.turn();
    }
    assert_eq!(started_out(&pair.a), 1, "offered to a stranger");
    assert!(pair.a_to_b.is_empty());
}

#[test]
fn a_sending_cut_by_the_connection_is_forgotten_after_the_resume_window() {
    let mut pair = cut_mid_file();
    pair.now += super::engine::RESUME_WITHIN_MS + 1;
    pair.turn();
    assert_eq!(started_out(&pair.a), 1, "sent again after the window");
}

#[test]
fn the_peer_leaving_pauses_and_the_same_file_resumes() {
    let data = file_bytes(2 * 1024 * 1024 + 5);
    let mut pair = Pair::new(&data, 10);
    send(&mut pair);
    // Until a part of it has gone out, and one more turn for the receiver to store that.
    pair.run_until(60_000, |p| p.loss_a.data_seen >= 16);
    let sent_frames = pair.loss_a.data_seen;
    pair.now += 10;
    pair.turn();
    pair.a.engine.peer_left();
    pair.b.engine.peer_left();
    pair.a_to_b.clear();
    pair.b_to_a.clear();
    pair.turn();
    assert!(
        matches!(
            pair.a.ends()[..],
            [TransferEvent::Failed {
                why: TransferEnd::PeerLeftSending,
                ..
            }]
        ),
        "{:?}",
        pair.a.ends()
    );
    assert!(matches!(
        pair.b.ends()[..],
        [TransferEvent::Paused {
            why: TransferEnd::PeerLeftReceiving,
            ..
        }]
    ));
    assert!(
        pair.b.visible_files().is_empty(),
        "nothing half-received shows"
    );
    // The same peer back: the cut sending is offered again by itself, and resumes from what
    // was kept.
    pair.run_until(60_000, |p| completed(&p.b, Direction::Incoming).is_some());
    let resumed_from = pair
        .b
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            TransferEvent::Started {
                direction: Direction::Incoming,
                resumed_from,
                ..
            } => Some(*resumed_from),
            _ => None,
        })
        .unwrap();
    let chunk = duet_shared::peer::CHUNK_BYTES as u64;
    assert!(
        resumed_from > 0 && resumed_from < data.len() as u64 && resumed_from % chunk == 0,
        "resumed from {resumed_from} after {sent_frames} frames"
    );
    let location = completed(&pair.b, Direction::Incoming).unwrap();
    assert_eq!(std::fs::read(location).unwrap(), data);
}

#[test]
fn a_cancel_ends_the_transfer_once_on_each_side() {
    let data = file_bytes(4 * 1024 * 1024);
    let mut pair = Pair::new(&data, 10);
    let id = send(&mut pair);
    pair.run_until(60_000, |p| {
        p.a.events
            .iter()
            .any(|e| matches!(e, TransferEvent::Accepted { .. }))
    });
    pair.a.engine.cancel(id);
    pair.run_until(10_000, |p| !p.b.ends().is_empty());
    pair.run_until(10_000, |p| p.a_to_b.is_empty() && p.b_to_a.is_empty());
    pair.turn();
    assert!(matches!(
        pair.a.ends()[..],
        [TransferEvent::Failed {
            why: TransferEnd::CancelledSending,
            ..
        }]
    ));
    // The sender's cancel keeps the receiver's bytes: the same file sent again resumes.
    assert!(
        matches!(
            pair.b.ends()[..],
            [TransferEvent::Paused {
                why: TransferEnd::PeerCancelled(CancelReason::User),
                ..
            }]
        ),
        "{:?}",
        pair.b.ends()
    );
    assert_eq!(pair.a.engine.running() + pair.b.engine.running(), 0);
}

#[test]
fn a_striped_file_arrives_out_of_order_and_is_kept_in_order() {
    let data = file_bytes(3 * 1024 * 1024 + 77);
    let mut pair = Pair::new(&data, 20);
    pair.loss_a.slow_lane_ms = Some(35);
    pair.b.engine.allow_striping();
    send(&mut pair);
    pair.run_until(120_000, |p| completed(&p.b, Direction::Incoming).is_some());
    assert!(
        pair.loss_a.overtaking > 10,
        "frames overtook each other only {} times",
        pair.loss_a.overtaking
    );
    let location = completed(&pair.b, Direction::Incoming).unwrap();
    assert_eq!(std::fs::read(location).unwrap(), data);
}

#[test]
fn a_striped_sending_that_loses_a_lane_starts_again_from_what_was_persisted() {
    let data = file_bytes(3 * 1024 * 1024 + 5);
    let mut pair = Pair::new(&data, 20);
    pair.loss_a.slow_lane_ms = Some(35);
    pair.loss_a.slow_lane_dies_after = Some(20);
    pair.b.engine.allow_striping();
    send(&mut pair);
    // The lane died with frames on it: the receiver waits for a gap that never fills.
    pair.run_until(60_000, |p| p.loss_a.lost_with_lane > 0);
    let died = pair.now;
    pair.run_until(60_000, |p| {
        p.now >= died + 3 * engine::GRANT_REPEAT_MS && p.a_to_b.is_empty() && p.b_to_a.is_empty()
    });
    assert!(completed(&pair.b, Direction::Incoming).is_none());
    // Both sides learn the lane is gone; sending goes on over what is left.
    pair.loss_a.slow_lane_ms = None;
    pair.a.engine.lane_lost();
    pair.run_until(120_000, |p| completed(&p.b, Direction::Incoming).is_some());
    pair.run_until(1_000, |p| completed(&p.a, Direction::Outgoing).is_some());
    let location = completed(&pair.b, Direction::Incoming).unwrap();
    assert_eq!(std::fs::read(location).unwrap(), data);
    assert!(pair.b.ends().len() == 1 && pair.a.ends().len() == 1);
}

#[test]
fn a_lane_that_silently_carries_nothing_is_found_by_the_receivers_gap_reports() {
    let data = file_bytes(3 * 1024 * 1024 + 5);
    let mut pair = Pair::new(&data, 20);
    pair.loss_a.slow_lane_ms = Some(35);
    pair.loss_a.slow_lane_dies_after = Some(20);
    pair.replace_broken_lanes = true;
    pair.b.engine.allow_striping();
    send(&mut pair);
    // Nobody says the lane died: the receiver's reports of the gap do, and the sender
    // replaces the lanes and sends again what they lost.
    pair.run_until(120_000, |p| completed(&p.b, Direction::Incoming).is_some());
    assert!(
        pair.loss_a.lost_with_lane > 0,
        "the lane died with frames on it"
    );
    assert_eq!(pair.lanes_replaced, 1);
    pair.run_until(1_000, |p| completed(&p.a, Direction::Outgoing).is_some());
    let location = completed(&pair.b, Direction::Incoming).unwrap();
    assert_eq!(std::fs::read(location).unwrap(), data);
    assert!(pair.b.ends().len() == 1 && pair.a.ends().len() == 1);
}

/// The side's one end is a failure on a chunk that skipped ahead.
fn assert_only_failure_is_out_of_order(side: &Side) {
    assert!(
        matches!(
            side.ends()[..],
            [TransferEvent::Failed {
                why: TransferEnd::Protocol(TransferError::OutOfOrder { .. }),
                ..
            }]
        ),
        "{:?}",
        side.ends()
    );
}

#[test]
fn out_of_order_chunks_fail_a_transfer_that_is_not_striped() {
    let data = file_bytes(1024 * 1024);
    let mut pair = Pair::new(&data, 20);
    pair.loss_a.slow_lane_ms = Some(35);
    send(&mut pair);
    pair.run_until(60_000, |p| !p.b.ends().is_empty());
    assert_only_failure_is_out_of_order(&pair.b);
}

#[test]
fn a_lost_chunk_fails_both_sides_and_leaves_no_file() {
    let data = file_bytes(1024 * 1024);
    let mut pair = Pair::new(&data, 10);
    pair.loss_a.data_frame = Some(2);
    send(&mut pair);
    pair.run_until(60_000, |p| !p.a.ends().is_empty() && !p.b.ends().is_empty());
    assert_only_failure_is_out_of_order(&pair.b);
    assert!(matches!(
        pair.a.ends()[..],
        [TransferEvent::Failed {
            why: TransferEnd::PeerCancelled(CancelReason::ProtocolViolation),
            ..
        }]
    ));
    // The store deletes the bytes of a transfer that broke.
    pair.run_until(1_000, |p| p.a_to_b.is_empty() && p.b_to_a.is_empty());
    assert!(pair.b.visible_files().is_empty());
    let parts = std::fs::read_dir(pair.b.dir.join(".duet-partial"))
        .unwrap()
        .count();
    assert_eq!(parts, 0, "the broken part is deleted");
}

#[test]
fn a_declined_offer_ends_once_on_each_side() {
    let data = file_bytes(300_000);
    let mut pair = Pair::new(&data, 10);
    pair.b.engine.set_ask_above(100_000);
    let id = send(&mut pair);
    pair.run_until(10_000, |p| {
        p.b.events
            .iter()
            .any(|e| matches!(e, TransferEvent::Asked { .. }))
    });
    pair.b.engine.answer(id, false);
    pair.run_until(10_000, |p| !p.a.ends().is_empty());
    assert!(matches!(
        pair.a.ends()[..],
        [TransferEvent::Failed {
            why: TransferEnd::PeerDeclined(DeclineReason::Refused),
            ..
        }]
    ));
    assert!(matches!(
        pair.b.ends()[..],
        [TransferEvent::Failed {
            why: TransferEnd::YouDeclined,
            ..
        }]
    ));
    assert_eq!(pair.a.engine.running() + pair.b.engine.running(), 0);
}
