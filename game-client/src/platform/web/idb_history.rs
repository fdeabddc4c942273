//! Chat history in IndexedDB: the browser's [`HistoryStore`].
//!
//! A database of its own, `duet-chat`, with one object store `history` holding the blocks and
//! counts of [`crate::chat::history`] as JSON strings. Separate from `localStorage` (identity, owner
//! keys, the received-files list), which a long history would fill, and from the files' database,
//! whose version it then never has to follow.
//!
//! Like [`super::IdbStore`] it is a task on the event loop that owns the database; operations
//! are answered in the order they came, and each answer draws a frame, so a receipt waiting for
//! its save goes out when the save is done, not at the next paced frame.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use rexie::{ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::JsValue;

use crate::chat::ChatEntry;
use crate::chat::history::{
    HistoryDone, HistoryError, HistoryOp, HistoryStore, block_key, count_key,
};

const DATABASE: &str = "duet-chat";
const HISTORY: &str = "history";

fn failure(e: impl std::error::Error) -> HistoryError {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    if text.contains("Quota") || text.contains("quota") {
        HistoryError::NoSpace
    } else {
        HistoryError::Backend(text)
    }
}

/// The browser's chat history store: a front for the task that owns the database.
pub struct IdbHistory {
    ops: UnboundedSender<HistoryOp>,
    done: Arc<Mutex<Vec<HistoryDone>>>,
}

impl IdbHistory {
    /// Starts the store's task (the database opens in the background).
    pub fn new() -> Self {
        let (ops, queue) = unbounded();
        let done: Arc<Mutex<Vec<HistoryDone>>> = Arc::default();
        wasm_bindgen_futures::spawn_local(run(queue, done.clone()));
        Self { ops, done }
    }
}

impl Default for IdbHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl HistoryStore for IdbHistory {
    fn submit(&mut self, op: HistoryOp) {
        if let Err(e) = self.ops.unbounded_send(op) {
            let stopped = || HistoryError::Backend("the chat storage task stopped".into());
            report(
                &self.done,
                match e.into_inner() {
                    HistoryOp::Load { room } => HistoryDone::Loaded {
                        room,
                        entries: None,
                    },
                    HistoryOp::Save { room, .. } => HistoryDone::Saved {
                        room,
                        result: Err(stopped()),
                    },
                },
            );
        }
    }

    fn poll(&mut self) -> Vec<HistoryDone> {
        crate::util::lock_shared(&self.done).drain(..).collect()
    }
}

fn report(results: &Mutex<Vec<HistoryDone>>, done: HistoryDone) {
    crate::util::lock_shared(results).push(done);
    super::wake_frame();
}

async fn run(mut queue: UnboundedReceiver<HistoryOp>, done: Arc<Mutex<Vec<HistoryDone>>>) {
    let db = Rexie::builder(DATABASE)
        .version(1)
        .add_object_store(ObjectStore::new(HISTORY))
        .build()
        .await
        .map_err(failure);
    if let Err(e) = &db {
        bevy::log::error!("chat history unavailable: {e}");
    }
    while let Some(op) = queue.next().await {
        let answer = match op {
            HistoryOp::Load { room } => {
                let entries = match &db {
                    Ok(db) => load(db, &room).await.unwrap_or_else(|e| {
                        bevy::log::error!("could not read the chat history: {e}");
                        None
                    }),
                    Err(_) => None,
                };
                HistoryDone::Loaded { room, entries }
            }
            HistoryOp::Save {
                room,
                first_block,
                blocks,
                count,
            } => {
                let result = match &db {
                    Ok(db) => save(db, &room, first_block, &blocks, count).await,
                    Err(e) => Err(e.clone()),
                };
                HistoryDone::Saved { room, result }
            }
        };
        report(&done, answer);
    }
}

async fn load(db: &Rexie, room: &str) -> Result<Option<Vec<ChatEntry>>, HistoryError> {
    let tx = db
        .transaction(&[HISTORY], TransactionMode::ReadOnly)
        .map_err(failure)?;
    let store = tx.store(HISTORY).map_err(failure)?;
    let Some(count) = store
        .get(JsValue::from_str(&count_key(room)))
        .await
        .map_err(failure)?
        .and_then(|v| v.as_f64())
    else {
        return Ok(None);
    };
    let count = count as usize;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for block in 0..count.div_ceil(crate::chat::HISTORY_BLOCK) {
        let text = store
            .get(JsValue::from_str(&block_key(room, block)))
            .await
            .map_err(failure)?
            .and_then(|v| v.as_string())
            .unwrap_or_default();
        match serde_json::from_str::<Vec<ChatEntry>>(&text) {
            Ok(part) => entries.extend(part),
            Err(e) => bevy::log::error!("part of the chat history is unreadable: {e}"),
        }
    }
    entries.truncate(count);
    Ok(Some(entries))
}

/// One transaction: the blocks and the count are stored together or not at all.
async fn save(
    db: &Rexie,
    room: &str,
    first_block: usize,
    blocks: &[Vec<ChatEntry>],
    count: usize,
) -> Result<(), HistoryError> {
    let tx = db
        .transaction(&[HISTORY], TransactionMode::ReadWrite)
        .map_err(failure)?;
    let store = tx.store(HISTORY).map_err(failure)?;
    for (i, block) in blocks.iter().enumerate() {
        let text =
            serde_json::to_string(block).map_err(|e| HistoryError::Backend(e.to_string()))?;
        store
            .put(
                &JsValue::from_str(&text),
                Some(&JsValue::from_str(&block_key(room, first_block + i))),
            )
            .await
            .map_err(failure)?;
    }
    store
        .put(
            &JsValue::from_f64(count as f64),
            Some(&JsValue::from_str(&count_key(room))),
        )
        .await
        .map_err(failure)?;
    tx.done().await.map_err(failure)?;
    Ok(())
}
