//! Chat: messages with a delivery state, and a per-room history kept on this device.
//!
//! Nothing is queued: a message written while the peer is away is stored as
//! [`Delivery::NotDelivered`] and shown so. A message is `Sent` once handed to the data channel
//! and `Delivered` when the peer's receipt comes back. History is saved on every change, so it
//! survives a restart and a `kill -9` mid-conversation. It is stored in blocks of
//! [`HISTORY_BLOCK`] messages, and a change rewrites only the blocks it touched (in practice the
//! last one), so a message costs the same to save in a history of ten thousand as in one of ten.

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use duet_shared::peer::{Control, MAX_CHAT_CHARS};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::{Identity, PeerProfile};
use crate::net::{ControlReceived, RoomLink, SendControl};

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Handed to the connection; no receipt yet.
    Sent,
    /// The peer's client stored it.
    Delivered,
    /// The peer was not in the room: it was not sent, and will not be.
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

/// Chat, receipts and history.
pub struct ChatPlugin;

impl Plugin for ChatPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<SendChat>()
            .add_message::<ChatChanged>()
            .init_resource::<ChatLog>()
            .init_resource::<Unsaved>()
            // Each room has its own history: (re)load it whenever the room changes, before
            // anything in the frame reads or writes it.
            .add_systems(
                PreUpdate,
                load_history.run_if(resource_exists_and_changed::<RoomLink>),
            )
            .add_systems(Update, (send_chat, receive_chat).chain());
    }
}

/// The oldest entry of [`ChatLog`] changed since the last save, if any.
#[derive(Resource, Default)]
struct Unsaved(Option<usize>);

/// The chat log together with where it is persisted: under `chat/{room}/n` the number of
/// messages, under `chat/{room}/{b}` block `b` of [`HISTORY_BLOCK`] messages.
#[derive(bevy::ecs::system::SystemParam)]
struct History<'w> {
    log: ResMut<'w, ChatLog>,
    unsaved: ResMut<'w, Unsaved>,
    pkv: ResMut<'w, PkvStore>,
    link: Option<Res<'w, RoomLink>>,
}

impl History<'_> {
    fn key(&self) -> String {
        format!(
            "chat/{}",
            self.link.as_deref().map(RoomLink::room).unwrap_or("none")
        )
    }

    /// Notes that entry `index` was added or changed.
    fn touch(&mut self, index: usize) {
        self.unsaved.0 = Some(self.unsaved.0.map_or(index, |at| at.min(index)));
    }

    fn load(&mut self) {
        let key = self.key();
        if let Ok(count) = self.pkv.get::<u64>(format!("{key}/n")) {
            let count = count as usize;
            let mut entries = Vec::with_capacity(count);
            for block in 0..count.div_ceil(HISTORY_BLOCK) {
                match self.pkv.get::<Vec<ChatEntry>>(format!("{key}/{block}")) {
                    Ok(part) => entries.extend(part),
                    Err(e) => eprintln!("duet: part of the chat history is unreadable: {e}"),
                }
            }
            entries.truncate(count);
            self.log.entries = entries;
        } else if let Ok(saved) = self.pkv.get::<ChatLog>(&key) {
            // A history saved whole, by an earlier version: store it in blocks from now on.
            *self.log = saved;
            if !self.log.entries.is_empty() {
                self.touch(0);
                self.save();
            }
            let _ = self.pkv.remove(&key);
        }
    }

    /// Written on every change: redb commits each `set`, so a crash loses nothing said before.
    /// The blocks go first and the count last, so a crash in between leaves the history as it
    /// was before the change.
    ///
    /// Returns whether everything is saved (so receipts may go out).
    fn save(&mut self) -> bool {
        let Some(from) = self.unsaved.0.take() else {
            return true;
        };
        let key = self.key();
        let entries = &self.log.entries;
        let mut result = Ok(());
        for block in from / HISTORY_BLOCK..entries.len().div_ceil(HISTORY_BLOCK) {
            let part =
                &entries[block * HISTORY_BLOCK..entries.len().min((block + 1) * HISTORY_BLOCK)];
            result = result.and(self.pkv.set(format!("{key}/{block}"), &part));
        }
        let result = result.and(self.pkv.set(format!("{key}/n"), &(entries.len() as u64)));
        if let Err(e) = result {
            error!("could not save chat history: {e}");
            return false;
        }
        true
    }

    /// Drops the oldest block once the history is a block over [`MAX_HISTORY`]; everything is
    /// rewritten then (once per block of messages, not per message).
    fn trim(&mut self) {
        while self.log.entries.len() >= MAX_HISTORY + HISTORY_BLOCK {
            self.log.entries.drain(..HISTORY_BLOCK);
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
    history.log.entries.clear();
    history.unsaved.0 = None;
    history.load();
}

fn send_chat(
    mut requests: MessageReader<SendChat>,
    identity: Res<Identity>,
    profile: Res<PeerProfile>,
    mut history: History,
    mut send: MessageWriter<SendControl>,
    mut changed: MessageWriter<ChatChanged>,
) {
    for SendChat(text) in requests.read() {
        let text: String = text.chars().take(MAX_CHAT_CHARS).collect();
        if text.trim().is_empty() {
            continue;
        }
        let present = profile.hello.is_some() && profile.incompatible.is_none();
        let entry = ChatEntry {
            id: Uuid::new_v4(),
            author: identity.name.clone(),
            mine: true,
            sent_ms: crate::now_ms(),
            text,
            delivery: if present {
                Delivery::Sent
            } else {
                Delivery::NotDelivered
            },
        };
        if present {
            send.write(SendControl(Control::Chat {
                id: entry.id,
                sent_ms: entry.sent_ms,
                text: entry.text.clone(),
            }));
        }
        changed.write(ChatChanged(entry.clone()));
        history.log.entries.push(entry);
        let last = history.log.entries.len() - 1;
        history.touch(last);
    }
    history.trim();
    history.save();
}

fn receive_chat(
    mut received: MessageReader<ControlReceived>,
    profile: Res<PeerProfile>,
    mut history: History,
    mut send: MessageWriter<SendControl>,
    mut changed: MessageWriter<ChatChanged>,
    mut budget: Local<ChatBudget>,
) {
    let mut receipts = Vec::new();
    for ControlReceived(message) in received.read() {
        match message {
            Control::Chat { .. } if !budget.allow(crate::now_ms()) => {
                warn!("the peer sends chat faster than {CHATS_PER_SECOND}/s: message dropped");
            }
            Control::Chat { id, sent_ms, text } => {
                // A repeat of a recent message (a lost receipt) is only receipted again.
                let recent = history.log.entries.len().saturating_sub(HISTORY_BLOCK);
                if !history.log.entries[recent..].iter().any(|e| e.id == *id) {
                    let entry = ChatEntry {
                        id: *id,
                        author: profile
                            .hello
                            .as_ref()
                            .map_or_else(|| "Peer".to_owned(), |(_, name)| name.clone()),
                        mine: false,
                        sent_ms: *sent_ms,
                        text: text.clone(),
                        delivery: Delivery::Received,
                    };
                    changed.write(ChatChanged(entry.clone()));
                    history.log.entries.push(entry);
                    let last = history.log.entries.len() - 1;
                    history.touch(last);
                }
                receipts.push(*id);
            }
            Control::ChatReceipt { id } => {
                // Receipts come for recent messages: look from the newest back.
                if let Some(index) = history
                    .log
                    .entries
                    .iter()
                    .rposition(|e| e.id == *id && e.mine && e.delivery == Delivery::Sent)
                {
                    let entry = &mut history.log.entries[index];
                    entry.delivery = Delivery::Delivered;
                    changed.write(ChatChanged(entry.clone()));
                    history.touch(index);
                }
            }
            _ => {}
        }
    }
    history.trim();
    // Receipts only for what is on this disk: "delivered" means stored.
    if history.save() {
        for id in receipts {
            send.write(SendControl(Control::ChatReceipt { id }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityPlugin;
    use crate::net::NetEvent;

    fn app(dir: &std::path::Path) -> App {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .insert_resource(PkvStore::new_in_dir(dir))
            .insert_resource(RoomLink::parse("http://h/r/abcdefghijklmnopqrstuv").unwrap())
            .add_message::<NetEvent>()
            .add_message::<ControlReceived>()
            .add_message::<SendControl>()
            .add_plugins((IdentityPlugin, ChatPlugin));
        app
    }

    fn sent(app: &mut App) -> Vec<Control> {
        app.world_mut()
            .resource_mut::<Messages<SendControl>>()
            .drain()
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
        let pump = |from: &mut App, to: &mut App| {
            for message in sent(from) {
                to.world_mut().write_message(ControlReceived(message));
            }
            to.update();
        };
        pump(&mut a, &mut b);
        pump(&mut b, &mut a);
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
        assert!(log_b.entries[0].author.starts_with("Guest"));
        drop(a);
        let mut restarted = app(&dir_a);
        restarted.update();
        assert_eq!(*restarted.world().resource::<ChatLog>(), log_a);
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
        a.world_mut().write_message(ControlReceived(Control::Hello {
            version: duet_shared::peer::PROTOCOL_VERSION,
            identity: Uuid::new_v4(),
            name: "Bob".into(),
        }));
        a.update();
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

        // The format before blocks: the whole log under `chat/{room}`.
        let old = duet_tests::temp_dir("chat-old").unwrap();
        let mut store = PkvStore::new_in_dir(&old);
        store.set("chat/abcdefghijklmnopqrstuv", &log).unwrap();
        drop(store);
        let mut upgraded = app(&old);
        upgraded.update();
        assert_eq!(*upgraded.world().resource::<ChatLog>(), log);
        drop(upgraded);
        let store = PkvStore::new_in_dir(&old);
        assert!(store.get::<ChatLog>("chat/abcdefghijklmnopqrstuv").is_err());
        assert_eq!(
            store.get::<u64>("chat/abcdefghijklmnopqrstuv/n").unwrap(),
            count as u64
        );
        drop(store);
        let mut again = app(&old);
        again.update();
        assert_eq!(*again.world().resource::<ChatLog>(), log);
    }
}
