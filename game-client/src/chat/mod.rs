//! Chat: messages with a delivery state, and a per-room history kept on this device.
//!
//! Nothing is queued: a message written while the peer is away is stored as
//! [`Delivery::NotDelivered`] and shown so. A message is `Sent` once handed to the data channel
//! and `Delivered` when the peer's receipt comes back, which the peer sends only once its store
//! said the message is saved. History is saved on every change, so it survives a restart and a
//! `kill -9` mid-conversation. It is stored in blocks of [`HISTORY_BLOCK`] messages in a store of
//! its own ([`history`]), and a change rewrites only the blocks it touched (in practice
//! the last one), so a message costs the same to save in a history of ten thousand as in one of
//! ten.

use std::collections::{HashMap, VecDeque};

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use duet_shared::peer::{Control, MAX_CHAT_CHARS};
use duet_shared::trust::PublicKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod history;

use crate::frame::FrameSet;
use crate::identity::{Identity, PeerProfile};
use crate::net::{ControlReceived, LinkHealth, RoomLink, SendControl};
use history::{ChatArchive, HistoryDone, HistoryOp, block_key, count_key};

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Handed to the connection; no receipt yet.
    Sent,
    /// The peer's client stored it.
    Delivered,
    /// The peer was not in the room, or nothing had arrived from them for seconds (the link
    /// was interrupted): it was not sent, and will not be. Also a message sent just before an
    /// interruption whose receipt had not come: if its receipt comes later after all, it
    /// becomes `Delivered` (the peer stored it; it is never sent twice).
    NotDelivered,
    /// It came from the peer.
    Received,
}

/// One line of chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEntry {
    /// Message id (also the receipt key).
    pub id: Uuid,
    /// Author's display name at the time.
    pub author: String,
    /// Whether I wrote it.
    pub mine: bool,
    /// Author's clock, ms since the epoch.
    pub sent_ms: u64,
    /// The text.
    pub text: String,
    /// Delivery state.
    pub delivery: Delivery,
    /// The key of whoever wrote it, as proven on the connection it came over (mine for my
    /// lines). `None` for lines kept from before keys existed.
    #[serde(default)]
    pub author_key: Option<PublicKey>,
}

/// Messages per stored block of history (see the module doc).
pub const HISTORY_BLOCK: usize = 256;

/// Most messages kept per room. Past it the oldest block of [`HISTORY_BLOCK`] goes, so a flood
/// cannot grow the history (and its load time) without end.
pub const MAX_HISTORY: usize = 40 * HISTORY_BLOCK;

/// Messages the peer may send back to back, and the rate after that (per second). Beyond it
/// their messages are dropped unreceipted: their side shows them as not delivered.
pub const CHAT_BURST: f64 = 30.0;
/// See [`CHAT_BURST`].
pub const CHATS_PER_SECOND: f64 = 5.0;

/// The current room's chat history.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLog {
    /// Oldest first.
    pub entries: Vec<ChatEntry>,
}

/// Send a chat message.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct SendChat(pub String);

/// A chat entry was added or changed state (for the UI and the event log).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct ChatChanged(pub ChatEntry);

/// The room's stored history was read into [`ChatLog`] (for the event log).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct HistoryLoaded {
    /// Messages read from storage.
    pub stored: usize,
}

/// Saving the history failed: receipts for what it held were not sent (for the UI).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct HistoryFailed(pub history::HistoryError);

/// Chat, receipts and history. Needs a [`ChatArchive`] (the entry points choose it).
pub struct ChatPlugin;

impl Plugin for ChatPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<SendChat>()
            .add_message::<ChatChanged>()
            .add_message::<HistoryLoaded>()
            .add_message::<HistoryFailed>()
            .init_resource::<ChatLog>()
            .init_resource::<Persistence>()
            // Each room has its own history: (re)load it whenever the room changes, before
            // anything in the frame reads or writes it.
            .add_systems(
                PreUpdate,
                load_history.run_if(resource_exists_and_changed::<RoomLink>),
            )
            .add_systems(
                Update,
                (send_chat, receive_chat, save_history)
                    .chain()
                    .in_set(FrameSet::Core),
            );
    }
}

/// Where the history's saving stands.
#[derive(Resource, Default)]
struct Persistence {
    /// The room whose history is being read. Until it is, nothing is saved: what is said
    /// meanwhile is kept and saved after the loaded history.
    loading: Option<String>,
    /// The oldest entry of [`ChatLog`] changed since the last save, if any.
    unsaved: Option<usize>,
    /// Saves submitted and not answered yet, oldest first (stores answer in order).
    in_flight: VecDeque<Pending>,
    /// Receipts for messages not in a submitted save yet.
    waiting: Vec<Uuid>,
    /// Where each message of the log is, counted from the first message of the room's history
    /// ever kept: repeats and receipts are found without scanning the history.
    ids: HashMap<Uuid, usize>,
    /// Messages dropped from the front of the log since it was loaded ([`History::trim`]).
    dropped: usize,
}

/// A submitted save and what waits for it.
#[derive(Default)]
struct Pending {
    /// Receipts to send once it is stored.
    receipts: Vec<Uuid>,
    /// Keys of a history an earlier version kept beside the identity, to delete once this save
    /// (which holds it) is stored.
    legacy: Vec<String>,
}

/// The chat log together with where it is persisted.
#[derive(bevy::ecs::system::SystemParam)]
struct History<'w> {
    log: ResMut<'w, ChatLog>,
    state: ResMut<'w, Persistence>,
    archive: ResMut<'w, ChatArchive>,
    /// The identity's store: where earlier versions kept the history.
    pkv: ResMut<'w, PkvStore>,
    link: Option<Res<'w, RoomLink>>,
    loaded: MessageWriter<'w, HistoryLoaded>,
    failed: MessageWriter<'w, HistoryFailed>,
    send: MessageWriter<'w, SendControl>,
}

impl History<'_> {
    fn room(&self) -> String {
        self.link
            .as_deref()
            .map(RoomLink::room)
            .unwrap_or("none")
            .to_owned()
    }

    /// Notes that entry `index` was added or changed.
    fn touch(&mut self, index: usize) {
        self.state.unsaved = Some(self.state.unsaved.map_or(index, |at| at.min(index)));
    }

    fn push(&mut self, entry: ChatEntry) {
        let at = self.state.dropped + self.log.entries.len();
        self.state.ids.insert(entry.id, at);
        self.log.entries.push(entry);
        let last = self.log.entries.len() - 1;
        self.touch(last);
    }

    /// Rebuilds the id index (after a load).
    fn reindex(&mut self) {
        self.state.dropped = 0;
        self.state.ids = self
            .log
            .entries
            .iter()
            .enumerate()
            .map(|(at, e)| (e.id, at))
            .collect();
    }

    /// Marks my messages still waiting for their receipt as not delivered.
    fn give_up_on_unreceipted(&mut self, changed: &mut MessageWriter<ChatChanged>) {
        for index in 0..self.log.entries.len() {
            let entry = &mut self.log.entries[index];
            if entry.mine && entry.delivery == Delivery::Sent {
                entry.delivery = Delivery::NotDelivered;
                changed.write(ChatChanged(entry.clone()));
                self.touch(index);
            }
        }
    }

    /// Where the message `id` is in the log.
    fn index_of(&self, id: &Uuid) -> Option<usize> {
        let at = self.state.ids.get(id)?.checked_sub(self.state.dropped)?;
        (self.log.entries.get(at)?.id == *id).then_some(at)
    }

    /// Starts reading the current room's history.
    fn load(&mut self) {
        let room = self.room();
        self.log.entries.clear();
        self.reindex();
        self.state.unsaved = None;
        // Receipts of another room's messages mean nothing to this room's peer.
        self.state.waiting.clear();
        for pending in &mut self.state.in_flight {
            pending.receipts.clear();
        }
        self.state.loading = Some(room.clone());
        self.archive.0.submit(HistoryOp::Load { room });
        self.settle();
    }

    /// A history kept beside the identity by an earlier version: in blocks under
    /// `chat/{room}/…`, or before that whole under `chat/{room}`. With the keys it was under.
    fn legacy(&self, room: &str) -> Option<(Vec<ChatEntry>, Vec<String>)> {
        let key = format!("chat/{room}");
        if let Ok(count) = self.pkv.get::<u64>(count_key(&key)) {
            let count = count as usize;
            let mut entries = Vec::with_capacity(count.min(1 << 16));
            let mut keys = vec![count_key(&key)];
            for block in 0..count.div_ceil(HISTORY_BLOCK) {
                keys.push(block_key(&key, block));
                match self.pkv.get::<Vec<ChatEntry>>(block_key(&key, block)) {
                    Ok(part) => entries.extend(part),
                    Err(e) => error!("part of the chat history is unreadable: {e}"),
                }
            }
            entries.truncate(count);
            Some((entries, keys))
        } else {
            let saved = self.pkv.get::<ChatLog>(&key).ok()?;
            Some((saved.entries, vec![key]))
        }
    }

    /// Applies what the store finished: a loaded history goes before what was said meanwhile,
    /// a stored save releases its receipts.
    fn settle(&mut self) {
        for done in self.archive.0.poll() {
            match done {
                HistoryDone::Loaded { room, entries } => {
                    if self.state.loading.as_deref() != Some(room.as_str()) {
                        continue;
                    }
                    self.state.loading = None;
                    let (stored, legacy) = match entries {
                        Some(entries) => (entries, Vec::new()),
                        None => self.legacy(&room).unwrap_or_default(),
                    };
                    let count = stored.len();
                    let said = std::mem::take(&mut self.log.entries);
                    self.log.entries = stored;
                    self.log.entries.extend(said);
                    self.reindex();
                    self.state.unsaved = self.state.unsaved.map(|at| at + count);
                    if !legacy.is_empty() {
                        // Moved to the chat store by the next save, then deleted here.
                        self.touch(0);
                        self.save_with(legacy);
                    }
                    self.loaded.write(HistoryLoaded { stored: count });
                }
                HistoryDone::Saved { result, .. } => {
                    let pending = self.state.in_flight.pop_front().unwrap_or_default();
                    match result {
                        Ok(()) => {
                            for id in pending.receipts {
                                self.send.write(SendControl(Control::ChatReceipt { id }));
                            }
                            for key in pending.legacy {
                                let _ = self.pkv.remove(&key);
                            }
                        }
                        Err(e) => {
                            error!("could not save chat history: {e}");
                            self.failed.write(HistoryFailed(e));
                        }
                    }
                }
            }
        }
    }

    /// Submits what changed, with the receipts waiting for it.
    fn save(&mut self) {
        self.save_with(Vec::new());
    }

    fn save_with(&mut self, legacy: Vec<String>) {
        if self.state.loading.is_some() {
            return;
        }
        let Some(from) = self.state.unsaved.take() else {
            // Nothing new to store: receipts (repeats of stored messages) wait only for the
            // saves already under way, else go now.
            let waiting = std::mem::take(&mut self.state.waiting);
            match self.state.in_flight.back_mut() {
                Some(last) => last.receipts.extend(waiting),
                None => {
                    for id in waiting {
                        self.send.write(SendControl(Control::ChatReceipt { id }));
                    }
                }
            }
            return;
        };
        let entries = &self.log.entries;
        let first_block = from / HISTORY_BLOCK;
        let blocks = (first_block..entries.len().div_ceil(HISTORY_BLOCK))
            .map(|b| {
                entries[b * HISTORY_BLOCK..entries.len().min((b + 1) * HISTORY_BLOCK)].to_vec()
            })
            .collect();
        let count = entries.len();
        let room = self.room();
        let receipts = std::mem::take(&mut self.state.waiting);
        self.state.in_flight.push_back(Pending { receipts, legacy });
        self.archive.0.submit(HistoryOp::Save {
            room,
            first_block,
            blocks,
            count,
        });
        self.settle();
    }

    /// Drops the oldest block once the history is a block over [`MAX_HISTORY`]; everything is
    /// rewritten then (once per block of messages, not per message).
    fn trim(&mut self) {
        if self.state.loading.is_some() {
            return;
        }
        while self.log.entries.len() >= MAX_HISTORY + HISTORY_BLOCK {
            for entry in self.log.entries.drain(..HISTORY_BLOCK) {
                self.state.ids.remove(&entry.id);
            }
            self.state.dropped += HISTORY_BLOCK;
            warn!(
                "chat history over {MAX_HISTORY} messages: the oldest {HISTORY_BLOCK} were dropped"
            );
            self.touch(0);
        }
    }
}

/// The peer's chat budget (a token bucket over the app's clock).
#[derive(Default)]
struct ChatBudget {
    tokens: f64,
    last_ms: u64,
    started: bool,
}

impl ChatBudget {
    fn allow(&mut self, now_ms: u64) -> bool {
        if !self.started {
            *self = Self {
                tokens: CHAT_BURST,
                last_ms: now_ms,
                started: true,
            };
        }
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * CHATS_PER_SECOND).min(CHAT_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn load_history(mut history: History) {
    history.load();
}

fn send_chat(
    mut requests: MessageReader<SendChat>,
    identity: Res<Identity>,
    profile: Res<PeerProfile>,
    link: Option<Res<LinkHealth>>,
    mut history: History,
    mut changed: MessageWriter<ChatChanged>,
) {
    let interrupted = link.as_ref().is_some_and(|l| l.interrupted());
    if interrupted && link.as_ref().is_some_and(|l| l.is_changed()) {
        // What was handed to the connection without a receipt may be lost with it: say so
        // now rather than leave it "sent" for ever. A receipt that comes later still counts.
        history.give_up_on_unreceipted(&mut changed);
    }
    for SendChat(text) in requests.read() {
        let text: String = text.chars().take(MAX_CHAT_CHARS).collect();
        if text.trim().is_empty() {
            continue;
        }
        let present = profile.hello.is_some() && profile.incompatible.is_none() && !interrupted;
        let entry = ChatEntry {
            id: Uuid::new_v4(),
            author: identity.name.clone(),
            author_key: Some(identity.public()),
            mine: true,
            sent_ms: crate::util::now_ms(),
            text,
            delivery: if present {
                Delivery::Sent
            } else {
                Delivery::NotDelivered
            },
        };
        if present {
            history.send.write(SendControl(Control::Chat {
                id: entry.id,
                sent_ms: entry.sent_ms,
                text: entry.text.clone(),
            }));
        }
        changed.write(ChatChanged(entry.clone()));
        history.push(entry);
    }
}

fn receive_chat(
    mut received: MessageReader<ControlReceived>,
    profile: Res<PeerProfile>,
    mut history: History,
    mut changed: MessageWriter<ChatChanged>,
    mut budget: Local<ChatBudget>,
) {
    for ControlReceived(message) in received.read() {
        match message {
            Control::Chat { .. } if !budget.allow(crate::util::now_ms()) => {
                warn!("the peer sends chat faster than {CHATS_PER_SECOND}/s: message dropped");
            }
            Control::Chat { id, sent_ms, text } => {
                // A repeat (a lost receipt) is only receipted again.
                if history.index_of(id).is_none() {
                    let entry = ChatEntry {
                        id: *id,
                        author: profile
                            .hello
                            .as_ref()
                            .map_or_else(|| "Peer".to_owned(), |hello| hello.name.clone()),
                        author_key: profile.hello.as_ref().map(|hello| hello.key),
                        mine: false,
                        sent_ms: *sent_ms,
                        text: text.clone(),
                        delivery: Delivery::Received,
                    };
                    changed.write(ChatChanged(entry.clone()));
                    history.push(entry);
                }
                // Receipts only for what is stored: "delivered" means saved on this device.
                history.state.waiting.push(*id);
            }
            Control::ChatReceipt { id } => {
                if let Some(index) = history.index_of(id) {
                    let entry = &mut history.log.entries[index];
                    if entry.mine
                        && matches!(entry.delivery, Delivery::Sent | Delivery::NotDelivered)
                    {
                        entry.delivery = Delivery::Delivered;
                        changed.write(ChatChanged(entry.clone()));
                        history.touch(index);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Saves what this frame changed, and applies what the store finished.
fn save_history(mut history: History) {
    history.settle();
    history.trim();
    history.save();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityPlugin;
    use crate::identity::testing::verified_peer;
    use crate::net::NetEvent;

    fn app(dir: &std::path::Path) -> App {
        let mut app = crate::net::testing::offline_app(Some(dir));
        app.insert_resource(history::test_archive(dir))
            .insert_resource(RoomLink::parse("http://h/r/abcdefghijklmnopqrstuv").unwrap())
            .add_plugins((IdentityPlugin, ChatPlugin));
        app
    }

    fn sent(app: &mut App) -> Vec<Control> {
        crate::net::testing::drain::<SendControl>(app)
            .into_iter()
            .map(|SendControl(c)| c)
            .collect()
    }

    #[test]
    fn a_chat_flood_is_cut_off_and_only_stored_messages_are_receipted() {
        let dir = duet_tests::temp_dir("chat-flood").unwrap();
        let mut app = app(&dir);
        app.update();
        for i in 0..1_000 {
            app.world_mut()
                .write_message(ControlReceived(Control::Chat {
                    id: Uuid::new_v4(),
                    sent_ms: i,
                    text: format!("flood {i}"),
                }));
        }
        app.update();
        let receipts = sent(&mut app)
            .into_iter()
            .filter(|c| matches!(c, Control::ChatReceipt { .. }))
            .count();
        let stored = app.world().resource::<ChatLog>().entries.len();
        // The burst, and what the rate refilled while the test ran.
        assert!(
            (CHAT_BURST as usize..CHAT_BURST as usize + 10).contains(&receipts),
            "{receipts}"
        );
        assert_eq!(
            stored, receipts,
            "a receipt for each stored message, no other"
        );
    }

    #[test]
    fn history_keeps_at_most_max_history_messages() {
        let dir = duet_tests::temp_dir("chat-cap").unwrap();
        let mut first = app(&dir);
        first.update();
        for i in 0..(MAX_HISTORY + 2 * HISTORY_BLOCK) {
            first
                .world_mut()
                .write_message(SendChat(format!("mine {i}")));
            if i % 500 == 0 {
                first.update();
            }
        }
        first.update();
        let entries = &first.world().resource::<ChatLog>().entries;
        assert!(
            entries.len() < MAX_HISTORY + HISTORY_BLOCK,
            "{}",
            entries.len()
        );
        assert!(entries.len() >= MAX_HISTORY);
        let last = format!("mine {}", MAX_HISTORY + 2 * HISTORY_BLOCK - 1);
        assert_eq!(entries.last().unwrap().text, last);
        // And that is what a restart loads.
        drop(first);
        let mut again = app(&dir);
        again.update();
        let reloaded = &again.world().resource::<ChatLog>().entries;
        assert!(reloaded.len() < MAX_HISTORY + HISTORY_BLOCK);
        assert_eq!(reloaded.last().unwrap().text, last);
    }

    fn deliveries(app: &App) -> Vec<Delivery> {
        let log = app.world().resource::<ChatLog>();
        log.entries.iter().map(|e| e.delivery).collect()
    }

    #[test]
    fn an_interrupted_link_refuses_chat_and_gives_up_on_missing_receipts() {
        use duet_shared::liveness::Health;
        let dir = duet_tests::temp_dir("chat-interrupted").unwrap();
        let mut app = app(&dir);
        app.insert_resource(LinkHealth(Some(Health::Live { rtt_ms: Some(40) })));
        app.update();
        let peer = matchbox_socket::PeerId(Uuid::new_v4());
        app.world_mut().write_message(NetEvent::PeerJoined(peer));
        app.update();
        verified_peer(&mut app, "Bob");
        app.world_mut()
            .write_message(SendChat("just before".into()));
        app.update();
        let first = sent(&mut app);
        assert!(
            matches!(first.as_slice(), [Control::Chat { .. }]),
            "{first:?}"
        );
        // The link goes quiet: the unreceipted message is given up on, a new one not sent.
        app.insert_resource(LinkHealth(Some(Health::Quiet { silent_s: 3 })));
        app.world_mut().write_message(SendChat("during".into()));
        app.update();
        assert!(
            sent(&mut app).is_empty(),
            "nothing is queued into a cut link"
        );
        assert_eq!(
            deliveries(&app),
            [Delivery::NotDelivered, Delivery::NotDelivered]
        );
        // Back: the late receipt of the first proves it was stored after all.
        app.insert_resource(LinkHealth(Some(Health::Live { rtt_ms: Some(40) })));
        let Control::Chat { id, .. } = first[0] else {
            unreachable!()
        };
        app.world_mut()
            .write_message(ControlReceived(Control::ChatReceipt { id }));
        app.world_mut().write_message(SendChat("after".into()));
        app.update();
        assert_eq!(
            deliveries(&app),
            [Delivery::Delivered, Delivery::NotDelivered, Delivery::Sent]
        );
        assert_eq!(sent(&mut app).len(), 1);
    }

    /// Two apps wired back to back in memory (logic only; the real transport is tested elsewhere).
    #[test]
    fn chat_with_receipts_between_two_apps_and_history_survives_restart() {
        let (dir_a, dir_b) = (
            duet_tests::temp_dir("chat-a").unwrap(),
            duet_tests::temp_dir("chat-b").unwrap(),
        );
        let mut a = app(&dir_a);
        let mut b = app(&dir_b);
        a.update();
        b.update();
        // Alone: not delivered, nothing sent.
        a.world_mut().write_message(SendChat("anyone?".into()));
        a.update();
        assert!(sent(&mut a).is_empty());
        assert_eq!(
            a.world().resource::<ChatLog>().entries[0].delivery,
            Delivery::NotDelivered
        );
        // The peers meet.
        let peer = matchbox_socket::PeerId(Uuid::new_v4());
        a.world_mut().write_message(NetEvent::PeerJoined(peer));
        b.world_mut().write_message(NetEvent::PeerJoined(peer));
        a.update();
        b.update();
        // The net layer verified each side's proof (its own tests show how).
        verified_peer(&mut a, "Bob");
        verified_peer(&mut b, "Ada");
        let pump = |from: &mut App, to: &mut App| {
            for message in sent(from) {
                to.world_mut().write_message(ControlReceived(message));
            }
            to.update();
        };
        a.world_mut().write_message(SendChat("hello B".into()));
        a.update();
        pump(&mut a, &mut b); // chat arrives at B, B stores and sends a receipt
        pump(&mut b, &mut a); // receipt arrives at A
        let log_a = a.world().resource::<ChatLog>().clone();
        assert_eq!(log_a.entries.len(), 2);
        assert_eq!(log_a.entries[1].delivery, Delivery::Delivered);
        let log_b = b.world().resource::<ChatLog>();
        assert_eq!(log_b.entries.len(), 1, "the undelivered one was never sent");
        assert_eq!(log_b.entries[0].text, "hello B");
        assert_eq!(log_b.entries[0].delivery, Delivery::Received);
        assert_eq!(log_b.entries[0].author, "Ada");
        // Each line keeps the key of whoever wrote it, as proven on the connection.
        let ada_key = a.world().resource::<Identity>().public();
        let verified_key = b
            .world()
            .resource::<PeerProfile>()
            .hello
            .as_ref()
            .map(|h| h.key);
        assert_eq!(log_a.entries[1].author_key, Some(ada_key));
        assert_eq!(log_b.entries[0].author_key, verified_key);
        drop(a);
        let mut restarted = app(&dir_a);
        restarted.update();
        assert_eq!(*restarted.world().resource::<ChatLog>(), log_a);
    }

    /// A store that answers only when the test says so (as IndexedDB answers later), and can
    /// be made to fail.
    #[derive(Clone, Default)]
    struct Slow(std::sync::Arc<std::sync::Mutex<SlowState>>);

    #[derive(Default)]
    struct SlowState {
        queued: Vec<HistoryOp>,
        released: Vec<HistoryDone>,
        fail: bool,
        history: Vec<ChatEntry>,
    }

    impl Slow {
        /// Answers everything queued so far.
        fn release(&self) {
            let mut state = self.0.lock().unwrap();
            for op in std::mem::take(&mut state.queued) {
                let done = match op {
                    HistoryOp::Load { room } => HistoryDone::Loaded {
                        room,
                        entries: Some(state.history.clone()),
                    },
                    HistoryOp::Save { room, .. } if state.fail => HistoryDone::Saved {
                        room,
                        result: Err(history::HistoryError::NoSpace),
                    },
                    HistoryOp::Save { room, .. } => HistoryDone::Saved {
                        room,
                        result: Ok(()),
                    },
                };
                state.released.push(done);
            }
        }
    }

    impl history::HistoryStore for Slow {
        fn submit(&mut self, op: HistoryOp) {
            self.0.lock().unwrap().queued.push(op);
        }
        fn poll(&mut self) -> Vec<HistoryDone> {
            std::mem::take(&mut self.0.lock().unwrap().released)
        }
    }

    fn receipts(app: &mut App) -> usize {
        sent(app)
            .into_iter()
            .filter(|c| matches!(c, Control::ChatReceipt { .. }))
            .count()
    }

    /// With a store that answers later: what is said while the history loads comes after it,
    /// a receipt goes out only once its save was answered, and a failed save sends none.
    #[test]
    fn receipts_wait_for_a_slow_store_and_a_failed_save_sends_none() {
        let dir = duet_tests::temp_dir("chat-slow").unwrap();
        let slow = Slow::default();
        let old = ChatEntry {
            id: Uuid::new_v4(),
            author: "Ada".into(),
            mine: true,
            sent_ms: 1,
            text: "from yesterday".into(),
            delivery: Delivery::NotDelivered,
            author_key: None,
        };
        slow.0.lock().unwrap().history = vec![old.clone()];
        let mut app = app(&dir);
        app.insert_resource(history::ChatArchive(Box::new(slow.clone())));
        app.update();
        let chat = |text: &str| {
            ControlReceived(Control::Chat {
                id: Uuid::new_v4(),
                sent_ms: 2,
                text: text.into(),
            })
        };
        // The history is still loading: the message is shown, not receipted.
        app.world_mut().write_message(chat("while loading"));
        app.update();
        assert_eq!(receipts(&mut app), 0);
        slow.release();
        app.update();
        let texts: Vec<String> = app
            .world()
            .resource::<ChatLog>()
            .entries
            .iter()
            .map(|e| e.text.clone())
            .collect();
        assert_eq!(texts, ["from yesterday", "while loading"]);
        assert_eq!(receipts(&mut app), 0, "saved, not yet answered");
        slow.release();
        app.update();
        assert_eq!(receipts(&mut app), 1);
        // A save that fails: no receipt, and the failure is told.
        slow.0.lock().unwrap().fail = true;
        app.world_mut().write_message(chat("not stored"));
        app.update();
        slow.release();
        app.update();
        assert_eq!(receipts(&mut app), 0);
        let failures = app
            .world_mut()
            .resource_mut::<Messages<HistoryFailed>>()
            .drain()
            .count();
        assert_eq!(failures, 1);
    }

    /// A long history is stored in blocks: everything (including a receipt for a message in the
    /// first block) survives a restart, and a history saved whole by an earlier version is
    /// read and moved to blocks.
    #[test]
    fn a_long_history_is_kept_in_blocks_and_an_old_one_is_migrated() {
        let dir = duet_tests::temp_dir("chat-blocks").unwrap();
        let mut a = app(&dir);
        a.update();
        let peer = matchbox_socket::PeerId(Uuid::new_v4());
        a.world_mut().write_message(NetEvent::PeerJoined(peer));
        a.update();
        verified_peer(&mut a, "Bob");
        let count = 2 * HISTORY_BLOCK + 17;
        for i in 0..count {
            a.world_mut()
                .write_message(SendChat(format!("message {i}")));
            a.update();
        }
        let first = a.world().resource::<ChatLog>().entries[0].id;
        assert_eq!(
            a.world().resource::<ChatLog>().entries[0].delivery,
            Delivery::Sent
        );
        a.world_mut()
            .write_message(ControlReceived(Control::ChatReceipt { id: first }));
        a.update();
        let log = a.world().resource::<ChatLog>().clone();
        assert_eq!(log.entries.len(), count);
        assert_eq!(log.entries[0].delivery, Delivery::Delivered);
        drop(a);
        let mut restarted = app(&dir);
        restarted.update();
        assert_eq!(*restarted.world().resource::<ChatLog>(), log);
        drop(restarted);

        // Earlier versions kept it beside the identity: whole under `chat/{room}`, then in
        // blocks under `chat/{room}/…`. Either is read, moved to the chat store and deleted.
        for blocks in [false, true] {
            let old = duet_tests::temp_dir("chat-old").unwrap();
            let room = "abcdefghijklmnopqrstuv";
            let mut store = PkvStore::new_in_dir(&old);
            if blocks {
                for (b, part) in log.entries.chunks(HISTORY_BLOCK).enumerate() {
                    store.set(format!("chat/{room}/{b}"), &part).unwrap();
                }
                store
                    .set(format!("chat/{room}/n"), &(count as u64))
                    .unwrap();
            } else {
                store.set(format!("chat/{room}"), &log).unwrap();
            }
            store.set("keep", &1u8).unwrap();
            drop(store);
            let mut upgraded = app(&old);
            upgraded.update();
            assert_eq!(
                *upgraded.world().resource::<ChatLog>(),
                log,
                "blocks: {blocks}"
            );
            drop(upgraded);
            let store = PkvStore::new_in_dir(&old);
            assert!(store.get::<ChatLog>(format!("chat/{room}")).is_err());
            assert!(store.get::<u64>(format!("chat/{room}/n")).is_err());
            assert!(
                store
                    .get::<Vec<ChatEntry>>(format!("chat/{room}/0"))
                    .is_err()
            );
            assert_eq!(
                store.get::<u8>("keep").unwrap(),
                1,
                "nothing else is touched"
            );
            drop(store);
            let chat = PkvStore::new_in_dir_with_filename(&old, "chat.redb");
            assert_eq!(chat.get::<u64>(format!("{room}/n")).unwrap(), count as u64);
            drop(chat);
            let mut again = app(&old);
            again.update();
            assert_eq!(*again.world().resource::<ChatLog>(), log);
        }
    }

    /// A history written before lines carried keys still loads, in both the desktop's store
    /// (MessagePack, fields in order) and the browser's (JSON).
    #[test]
    fn lines_from_before_keys_still_load() {
        #[derive(Serialize)]
        struct Before {
            id: Uuid,
            author: String,
            mine: bool,
            sent_ms: u64,
            text: String,
            delivery: Delivery,
        }
        let before = vec![Before {
            id: Uuid::from_u128(1),
            author: "Ada".into(),
            mine: false,
            sent_ms: 5,
            text: "kept".into(),
            delivery: Delivery::Received,
        }];
        let dir = duet_tests::temp_dir("chat-before-keys").unwrap();
        let mut pkv = PkvStore::new_in_dir(&dir);
        pkv.set("old", &before).unwrap();
        let loaded: Vec<ChatEntry> = pkv.get("old").unwrap();
        assert_eq!(
            (loaded[0].text.as_str(), loaded[0].author_key),
            ("kept", None)
        );
        let json = serde_json::to_string(&before).unwrap();
        let loaded: Vec<ChatEntry> = serde_json::from_str(&json).unwrap();
        assert_eq!((loaded[0].sent_ms, loaded[0].author_key), (5, None));
    }
}
