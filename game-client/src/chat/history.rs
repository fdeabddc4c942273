//! Where chat history is kept: a store of its own, behind one queue-shaped trait.
//!
//! Chat has a store of its own so that a flood of long messages can fill only it: on the web it
//! lived in `localStorage` beside the identity, the owner keys and the received-files list, where
//! ~500 messages of 10,000 characters used up the ~5 MiB and every later save of anything failed.
//! The browser keeps it in IndexedDB now (its own database, `duet-chat`), the desktop in a key-value
//! file of its own (`chat.redb`).
//!
//! Like [`crate::storage::BlobStore`] the trait is a queue: the chat plugin submits loads and saves
//! and learns later, by polling, what is done. IndexedDB answers asynchronously; a receipt (which
//! tells the sender "stored") goes out only after the save that holds its message was answered.
//!
//! A room's history is stored in blocks of [`super::HISTORY_BLOCK`] messages: under
//! `{room}/{b}` block `b`, under `{room}/n` the number of messages. A save writes the blocks it
//! touched and the count last, so a crash in between leaves the history as before the change.

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use thiserror::Error;

use super::ChatEntry;

/// Why the history store failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HistoryError {
    /// The storage is full (browser quota, disk).
    #[error("the storage is full")]
    NoSpace,
    /// Anything else the backend reported.
    #[error("{0}")]
    Backend(String),
}

/// What the chat plugin asks of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryOp {
    /// Read a room's history.
    Load {
        /// The room id.
        room: String,
    },
    /// Write blocks `first_block..` of a room's history, then its message count.
    Save {
        /// The room id.
        room: String,
        /// Index of the first block in `blocks`.
        first_block: usize,
        /// The blocks' messages, oldest first.
        blocks: Vec<Vec<ChatEntry>>,
        /// Messages in the whole history.
        count: usize,
    },
}

/// What the store reports back, in the order the operations were submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryDone {
    /// A room's history as stored: `None` if this store holds none for it.
    Loaded {
        /// The room id.
        room: String,
        /// Oldest first.
        entries: Option<Vec<ChatEntry>>,
    },
    /// A save finished.
    Saved {
        /// The room id.
        room: String,
        /// Whether everything was written.
        result: Result<(), HistoryError>,
    },
}

/// A chat history store (see the module doc).
pub trait HistoryStore: Send + Sync {
    /// Queues an operation.
    fn submit(&mut self, op: HistoryOp);
    /// What finished since the last call.
    fn poll(&mut self) -> Vec<HistoryDone>;
}

/// The history store the entry point chose, taken by the chat plugin.
#[derive(Resource)]
pub struct ChatArchive(pub Box<dyn HistoryStore>);

/// The block key of a room's history.
pub fn block_key(room: &str, block: usize) -> String {
    format!("{room}/{block}")
}

/// The key of a room's message count.
pub fn count_key(room: &str) -> String {
    format!("{room}/n")
}

/// A history in a `bevy_pkv` store of its own (the desktop's `chat.redb`; tests). Answers at once.
pub struct PkvHistory {
    pkv: PkvStore,
    done: Vec<HistoryDone>,
}

impl PkvHistory {
    /// A store for chat alone (not the one the identity is kept in).
    pub fn new(pkv: PkvStore) -> Self {
        Self {
            pkv,
            done: Vec::new(),
        }
    }

    fn load(&self, room: &str) -> Option<Vec<ChatEntry>> {
        let count = self.pkv.get::<u64>(count_key(room)).ok()? as usize;
        let mut entries = Vec::with_capacity(count.min(1 << 16));
        for block in 0..count.div_ceil(super::HISTORY_BLOCK) {
            match self.pkv.get::<Vec<ChatEntry>>(block_key(room, block)) {
                Ok(part) => entries.extend(part),
                Err(e) => error!("part of the chat history is unreadable: {e}"),
            }
        }
        entries.truncate(count);
        Some(entries)
    }

    fn save(
        &mut self,
        room: &str,
        first_block: usize,
        blocks: &[Vec<ChatEntry>],
        count: usize,
    ) -> Result<(), HistoryError> {
        let failed = |e: bevy_pkv::SetError| HistoryError::Backend(e.to_string());
        for (i, block) in blocks.iter().enumerate() {
            self.pkv
                .set(block_key(room, first_block + i), block)
                .map_err(failed)?;
        }
        self.pkv
            .set(count_key(room), &(count as u64))
            .map_err(failed)
    }
}

impl HistoryStore for PkvHistory {
    fn submit(&mut self, op: HistoryOp) {
        let done = match op {
            HistoryOp::Load { room } => HistoryDone::Loaded {
                entries: self.load(&room),
                room,
            },
            HistoryOp::Save {
                room,
                first_block,
                blocks,
                count,
            } => HistoryDone::Saved {
                result: self.save(&room, first_block, &blocks, count),
                room,
            },
        };
        self.done.push(done);
    }

    fn poll(&mut self) -> Vec<HistoryDone> {
        std::mem::take(&mut self.done)
    }
}

/// The desktop's arrangement in `dir`, for tests: `chat.redb` beside the identity's store.
#[cfg(test)]
pub(crate) fn test_archive(dir: &std::path::Path) -> ChatArchive {
    ChatArchive(Box::new(PkvHistory::new(
        PkvStore::new_in_dir_with_filename(dir, "chat.redb"),
    )))
}
