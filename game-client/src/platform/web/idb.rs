//! Received files in IndexedDB: the browser's [`BlobStore`].
//!
//! Object stores in the database `duet`:
//! - `chunks`: the bytes, as byte arrays keyed `[part key, first chunk number]`. Whatever chunks
//!   arrived since the last write go into one record in one transaction, so a 200 MiB file is a
//!   few hundred records, never one whole-file buffer. Chunks stay under their part key (see
//!   [`crate::storage::part_key`]) until the file is complete, which is what makes a resume
//!   possible after a disconnect or a reload.
//! - `files`: the received files people see, keyed by their (unique, sanitized) name, pointing
//!   at their part key, with when they arrived. A file appears here only after its SHA-256
//!   matched; past [`MAX_RECEIVED_KEPT`] the oldest leave, bytes and all.
//! - `finished`: part key → file name, for the part keys finished files own: no new transfer
//!   writes to or deletes them, and checking costs one lookup, not a scan of every file.
//! - `partials`: part key → when it was last written and how many bytes it holds, for the
//!   parts kept for a resume; [`parts_to_expire`] picks the ones nobody came back for.
//! - `meta`: one-time upgrades done (files and parts from before the two stores above).
//!
//! IndexedDB objects cannot leave the page's thread, so the store is a task on the event loop
//! that owns the database; the Bevy side talks to it through a channel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use duet_shared::names::{sanitize_file_name, unique_file_name};
use duet_shared::peer::{CHUNK_BYTES, TransferId};
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use js_sys::{Array, Object, Reflect, Uint8Array};
use rexie::{KeyRange, ObjectStore, Rexie, TransactionMode};
use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::ports::Wake;
use crate::storage::{
    BlobStore, MAX_RECEIVED_KEPT, PartAge, StoreDone, StoreError, StoreOp, parts_to_expire,
    resume_plan,
};

const DATABASE: &str = "duet";
const CHUNKS: &str = "chunks";
const FILES: &str = "files";
const FINISHED: &str = "finished";
const PARTIALS: &str = "partials";
const META: &str = "meta";
/// Version 2 added `finished`, `partials` and `meta`.
const VERSION: u32 = 2;
/// The `meta` key saying the version-1 files and parts were registered in the new stores.
const UPGRADED: &str = "upgraded_to_2";

/// Opens (creating or upgrading on first use) Duet's database.
async fn open_database() -> Result<Rexie, StoreError> {
    Rexie::builder(DATABASE)
        .version(VERSION)
        .add_object_store(ObjectStore::new(CHUNKS))
        .add_object_store(ObjectStore::new(FILES))
        .add_object_store(ObjectStore::new(FINISHED))
        .add_object_store(ObjectStore::new(PARTIALS))
        .add_object_store(ObjectStore::new(META))
        .build()
        .await
        .map_err(store_error)
}

/// The whole error chain: rexie's own message alone is just "idb error".
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}

fn store_error(e: impl std::error::Error) -> StoreError {
    let text = error_text(&e);
    if text.contains("Quota") || text.contains("quota") {
        StoreError::NoSpace
    } else {
        StoreError::Io(text)
    }
}

fn js_error(value: JsValue) -> StoreError {
    let text = super::js_text(&value);
    if text.contains("Quota") || text.contains("quota") {
        StoreError::NoSpace
    } else {
        StoreError::Io(text)
    }
}

/// Every chunk record of one part, in order.
fn part_range(key: &str) -> Result<KeyRange, StoreError> {
    let lower = Array::of2(&JsValue::from_str(key), &JsValue::from_f64(0.0));
    let upper = Array::of2(
        &JsValue::from_str(key),
        &JsValue::from_f64(f64::from(u32::MAX)),
    );
    KeyRange::bound(&lower, &upper, None, None).map_err(store_error)
}

/// One stored record: the bytes of consecutive chunks. Written as a `Uint8Array`; Blobs
/// (what earlier versions wrote) are read too.
enum Record {
    Bytes(Uint8Array),
    Blob(web_sys::Blob),
}

impl Record {
    fn len(&self) -> u64 {
        match self {
            Record::Bytes(bytes) => u64::from(bytes.byte_length()),
            Record::Blob(blob) => blob.size() as u64,
        }
    }

    fn value(&self) -> &JsValue {
        match self {
            Record::Bytes(bytes) => bytes,
            Record::Blob(blob) => blob,
        }
    }

    async fn bytes(&self) -> Result<Vec<u8>, StoreError> {
        match self {
            Record::Bytes(bytes) => Ok(bytes.to_vec()),
            Record::Blob(blob) => {
                let buffer = JsFuture::from(blob.array_buffer())
                    .await
                    .map_err(js_error)?;
                Ok(Uint8Array::new(&buffer).to_vec())
            }
        }
    }
}

async fn part_records(db: &Rexie, key: &str) -> Result<Vec<Record>, StoreError> {
    let tx = db
        .transaction(&[CHUNKS], TransactionMode::ReadOnly)
        .map_err(store_error)?;
    let store = tx.store(CHUNKS).map_err(store_error)?;
    let values = store
        .get_all(Some(part_range(key)?), None)
        .await
        .map_err(store_error)?;
    Ok(values
        .into_iter()
        .filter_map(|v| {
            if v.is_instance_of::<web_sys::Blob>() {
                v.dyn_into().ok().map(Record::Blob)
            } else if v.is_instance_of::<js_sys::ArrayBuffer>() {
                Some(Record::Bytes(Uint8Array::new(&v)))
            } else {
                v.dyn_into().ok().map(Record::Bytes)
            }
        })
        .collect())
}

/// Replaces the record of `key` that starts at chunk `first` with `bytes`.
async fn rewrite_record(db: &Rexie, key: &str, first: u32, bytes: &[u8]) -> Result<(), StoreError> {
    let tx = db
        .transaction(&[CHUNKS], TransactionMode::ReadWrite)
        .map_err(store_error)?;
    let id = Array::of2(
        &JsValue::from_str(key),
        &JsValue::from_f64(f64::from(first)),
    );
    tx.store(CHUNKS)
        .map_err(store_error)?
        .put(&Uint8Array::from(bytes), Some(&id))
        .await
        .map_err(store_error)?;
    tx.done().await.map_err(store_error)?;
    Ok(())
}

/// Deletes the records of `key` that start at chunk `first` or later.
async fn delete_records_from(db: &Rexie, key: &str, first: u32) -> Result<(), StoreError> {
    let lower = Array::of2(
        &JsValue::from_str(key),
        &JsValue::from_f64(f64::from(first)),
    );
    let upper = Array::of2(
        &JsValue::from_str(key),
        &JsValue::from_f64(f64::from(u32::MAX)),
    );
    let range = KeyRange::bound(&lower, &upper, None, None).map_err(store_error)?;
    let tx = db
        .transaction(&[CHUNKS], TransactionMode::ReadWrite)
        .map_err(store_error)?;
    tx.store(CHUNKS)
        .map_err(store_error)?
        .delete(range.into())
        .await
        .map_err(store_error)?;
    tx.done().await.map_err(store_error)?;
    Ok(())
}

/// Deletes a part kept for a resume: its chunks and its `partials` record.
async fn delete_part(db: &Rexie, key: &str) -> Result<(), StoreError> {
    let tx = db
        .transaction(&[CHUNKS, PARTIALS], TransactionMode::ReadWrite)
        .map_err(store_error)?;
    let store = tx.store(CHUNKS).map_err(store_error)?;
    store
        .delete(part_range(key)?.into())
        .await
        .map_err(store_error)?;
    tx.store(PARTIALS)
        .map_err(store_error)?
        .delete(JsValue::from_str(key))
        .await
        .map_err(store_error)?;
    tx.done().await.map_err(store_error)?;
    Ok(())
}

/// Deletes a received file: its listing, its `finished` record and its chunks.
async fn forget_file(db: &Rexie, name: &str) -> Result<(), StoreError> {
    let tx = db
        .transaction(&[FILES, FINISHED, CHUNKS], TransactionMode::ReadWrite)
        .map_err(store_error)?;
    let files = tx.store(FILES).map_err(store_error)?;
    let record = files
        .get(JsValue::from_str(name))
        .await
        .map_err(store_error)?;
    if let Some(part) = record.and_then(|r| Reflect::get(&r, &"part".into()).ok()?.as_string()) {
        tx.store(FINISHED)
            .map_err(store_error)?
            .delete(JsValue::from_str(&part))
            .await
            .map_err(store_error)?;
        tx.store(CHUNKS)
            .map_err(store_error)?
            .delete(part_range(&part)?.into())
            .await
            .map_err(store_error)?;
    }
    files
        .delete(JsValue::from_str(name))
        .await
        .map_err(store_error)?;
    tx.done().await.map_err(store_error)?;
    Ok(())
}

/// A record of plain fields (numbers and strings), as IndexedDB stores objects.
fn record(fields: &[(&str, JsValue)]) -> Object {
    let object = Object::new();
    for (name, value) in fields {
        let _ = Reflect::set(&object, &JsValue::from_str(name), value);
    }
    object
}

fn number(value: &JsValue, field: &str) -> Option<f64> {
    Reflect::get(value, &JsValue::from_str(field))
        .ok()?
        .as_f64()
}

/// The browser's blob store: a front for the task that owns the database.
pub struct IdbStore {
    ops: UnboundedSender<StoreOp>,
    done: Arc<Results>,
}

impl IdbStore {
    /// Starts the store's task (the database opens in the background); `wake` rings with
    /// each result, so the transfer engine takes it now rather than at the next frame.
    pub fn new(wake: Wake) -> Self {
        let (ops, queue) = unbounded();
        let done = Arc::new(Results {
            list: Mutex::default(),
            wake,
        });
        wasm_bindgen_futures::spawn_local(run(queue, done.clone()));
        Self { ops, done }
    }
}

impl BlobStore for IdbStore {
    fn submit(&mut self, op: StoreOp) {
        if let Err(e) = self.ops.unbounded_send(op) {
            let transfer = match e.into_inner() {
                StoreOp::Open { transfer, .. }
                | StoreOp::Write { transfer, .. }
                | StoreOp::Finish { transfer, .. }
                | StoreOp::Close { transfer, .. } => transfer,
            };
            report(
                &self.done,
                StoreDone::Failed {
                    transfer,
                    error: StoreError::Io("the browser storage task stopped".into()),
                },
            );
        }
    }

    fn poll(&mut self) -> Vec<StoreDone> {
        self.done
            .list
            .lock()
            .map(|mut done| std::mem::take(&mut *done))
            .unwrap_or_default()
    }
}

/// Results waiting for [`BlobStore::poll`], shared by the store and its task.
struct Results {
    list: Mutex<Vec<StoreDone>>,
    wake: Wake,
}

fn report(results: &Results, done: StoreDone) {
    if let Ok(mut all) = results.list.lock() {
        all.push(done);
    }
    results.wake.wake();
}

/// An open incoming file: where its chunks go.
struct Part {
    key: String,
    /// The file's size: its bytes are promised when the next file's space is checked.
    size: u64,
}

/// Bytes of the site's storage quota left free after every file being received has arrived
/// (chat history and settings live there too).
const QUOTA_RESERVE_BYTES: u64 = 1 << 20;

/// What the site may still store: `navigator.storage.estimate()`'s quota less its usage;
/// `None` where the browser does not say.
async fn storage_free() -> Option<u64> {
    let promise = web_sys::window()?.navigator().storage().estimate().ok()?;
    let estimate: web_sys::StorageEstimate = JsFuture::from(promise).await.ok()?.unchecked_into();
    let (quota, usage) = (estimate.get_quota()?, estimate.get_usage().unwrap_or(0.0));
    Some((quota - usage).max(0.0) as u64)
}

/// Chunks received since the last write, for one transfer: `first` and the ones after it.
struct Run {
    first: u32,
    chunks: Vec<Vec<u8>>,
}

/// Chunks per stored record (256 KiB). Full records are written through one reused buffer.
const RECORD_CHUNKS: usize = 16;

struct Task {
    db: Result<Rexie, StoreError>,
    parts: HashMap<TransferId, Part>,
    runs: Vec<(TransferId, Run)>,
    /// The names in `files` (loaded once; another tab's additions are learnt when a name
    /// turns out taken), so choosing a unique name costs no scan.
    names: HashSet<String>,
    /// The same names, oldest first, for dropping the oldest past [`MAX_RECEIVED_KEPT`].
    kept: VecDeque<String>,
    done: Arc<Results>,
    /// The buffer full records are written from: `put` copies (structured-clones) its value
    /// at once, so one buffer serves every record, and a 200 MiB file leaves no 200 MiB of
    /// buffers for the garbage collector, which lets them pile up in the tab.
    record: Uint8Array,
}

async fn run(mut queue: UnboundedReceiver<StoreOp>, done: Arc<Results>) {
    let mut task = Task {
        db: open_database().await,
        parts: HashMap::new(),
        runs: Vec::new(),
        record: Uint8Array::new_with_length((RECORD_CHUNKS * CHUNK_BYTES) as u32),
        names: HashSet::new(),
        kept: VecDeque::new(),
        done,
    };
    if let Err(e) = task.prepare().await {
        bevy::log::warn!("received files: could not prepare the browser storage: {e}");
    }
    while let Some(first) = queue.next().await {
        // Take everything queued now: consecutive chunks become one record.
        let mut batch = vec![first];
        while let Ok(op) = queue.try_recv() {
            batch.push(op);
        }
        for op in batch {
            match op {
                StoreOp::Write {
                    transfer,
                    seq,
                    data,
                } => task.queue_write(transfer, seq, data),
                other => {
                    task.flush().await;
                    task.handle(other).await;
                }
            }
        }
        task.flush().await;
    }
}

impl Task {
    fn report(&self, done: StoreDone) {
        report(&self.done, done);
    }

    fn db(&self) -> Result<&Rexie, StoreError> {
        self.db.as_ref().map_err(|e| StoreError::Io(e.to_string()))
    }

    /// At start: learns the received files, registers what version 1 left (once), drops the
    /// parts nobody came back for and the files past [`MAX_RECEIVED_KEPT`].
    async fn prepare(&mut self) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db
            .transaction(&[FILES], TransactionMode::ReadOnly)
            .map_err(store_error)?;
        let mut files: Vec<(f64, String, String)> = tx
            .store(FILES)
            .map_err(store_error)?
            .get_all(None, None)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter_map(|v| {
                let field = |f: &str| Reflect::get(&v, &JsValue::from_str(f)).ok()?.as_string();
                Some((
                    number(&v, "at").unwrap_or(0.0),
                    field("name")?,
                    field("part")?,
                ))
            })
            .collect();
        // Oldest first; files from version 1 have no time and count as the oldest.
        files.sort_by(|a, b| a.0.total_cmp(&b.0));
        let upgraded = {
            let tx = db
                .transaction(&[META], TransactionMode::ReadOnly)
                .map_err(store_error)?;
            tx.store(META)
                .map_err(store_error)?
                .key_exists(JsValue::from_str(UPGRADED))
                .await
                .map_err(store_error)?
        };
        if !upgraded {
            self.upgrade(&files).await?;
        }
        self.names = files.iter().map(|f| f.1.clone()).collect();
        self.kept = files.into_iter().map(|f| f.1).collect();
        self.sweep(None).await?;
        self.trim().await;
        Ok(())
    }

    /// Version 1 had neither `finished` nor `partials`: its files' part keys become finished
    /// ones, and every other part not registered yet is registered as written now (so it
    /// expires in a week, not never).
    async fn upgrade(&self, files: &[(f64, String, String)]) -> Result<(), StoreError> {
        let db = self.db()?;
        let finished: HashSet<&str> = files.iter().map(|f| f.2.as_str()).collect();
        // The distinct part keys among the chunks: one lookup per part, not per record.
        let mut parts: Vec<(String, u64)> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let tx = db
                .transaction(&[CHUNKS, PARTIALS], TransactionMode::ReadOnly)
                .map_err(store_error)?;
            let chunks = tx.store(CHUNKS).map_err(store_error)?;
            let range = match &after {
                None => None,
                Some(part) => Some(
                    KeyRange::lower_bound(
                        &Array::of2(
                            &JsValue::from_str(part),
                            &JsValue::from_f64(f64::from(u32::MAX)),
                        ),
                        Some(true),
                    )
                    .map_err(store_error)?,
                ),
            };
            let next = chunks
                .get_all_keys(range, Some(1))
                .await
                .map_err(store_error)?;
            let Some(part) = next
                .first()
                .and_then(|k| Reflect::get(k, &JsValue::from_f64(0.0)).ok()?.as_string())
            else {
                break;
            };
            let registered = tx
                .store(PARTIALS)
                .map_err(store_error)?
                .key_exists(JsValue::from_str(&part))
                .await
                .map_err(store_error)?;
            if !finished.contains(part.as_str()) && !registered {
                // An upper bound of its size: its last record's first chunk and a full record.
                let keys = chunks
                    .get_all_keys(Some(part_range(&part)?), None)
                    .await
                    .map_err(store_error)?;
                let last = keys
                    .last()
                    .and_then(|k| Reflect::get(k, &JsValue::from_f64(1.0)).ok()?.as_f64())
                    .unwrap_or(0.0) as u64;
                parts.push((
                    part.clone(),
                    (last + RECORD_CHUNKS as u64) * CHUNK_BYTES as u64,
                ));
            }
            after = Some(part);
        }
        let tx = db
            .transaction(&[FINISHED, PARTIALS, META], TransactionMode::ReadWrite)
            .map_err(store_error)?;
        let store = tx.store(FINISHED).map_err(store_error)?;
        for (_, name, part) in files {
            store
                .put(&JsValue::from_str(name), Some(&JsValue::from_str(part)))
                .await
                .map_err(store_error)?;
        }
        let store = tx.store(PARTIALS).map_err(store_error)?;
        let now = crate::util::now_ms() as f64;
        for (part, bytes) in &parts {
            let value = record(&[
                ("written", JsValue::from_f64(now)),
                ("bytes", JsValue::from_f64(*bytes as f64)),
            ]);
            store
                .put(&value, Some(&JsValue::from_str(part)))
                .await
                .map_err(store_error)?;
        }
        tx.store(META)
            .map_err(store_error)?
            .put(&JsValue::TRUE, Some(&JsValue::from_str(UPGRADED)))
            .await
            .map_err(store_error)?;
        tx.done().await.map_err(store_error)?;
        Ok(())
    }

    /// Deletes the parts [`parts_to_expire`] picks among those kept for a resume; the open ones
    /// and `opening` (about to be resumed) are left alone. Returns how many went.
    async fn sweep(&self, opening: Option<&str>) -> Result<usize, StoreError> {
        let db = self.db()?;
        let tx = db
            .transaction(&[PARTIALS], TransactionMode::ReadOnly)
            .map_err(store_error)?;
        let all = tx
            .store(PARTIALS)
            .map_err(store_error)?
            .scan(None, None, None, None)
            .await
            .map_err(store_error)?;
        let in_use: HashSet<&str> = self
            .parts
            .values()
            .map(|p| p.key.as_str())
            .chain(opening)
            .collect();
        let ages = all
            .into_iter()
            .filter_map(|(key, value)| {
                let key = key.as_string()?;
                Some(PartAge {
                    written_ms: number(&value, "written")? as u64,
                    bytes: number(&value, "bytes")? as u64,
                    key,
                })
            })
            .filter(|p| !in_use.contains(p.key.as_str()))
            .collect();
        let expired = parts_to_expire(ages, crate::util::now_ms());
        for key in &expired {
            delete_part(db, key).await?;
        }
        Ok(expired.len())
    }

    /// Drops the oldest received files past [`MAX_RECEIVED_KEPT`], bytes and all: the list of
    /// received files shows no more, and what it no longer shows must not hold the storage.
    async fn trim(&mut self) {
        while self.kept.len() > MAX_RECEIVED_KEPT {
            let Some(name) = self.kept.pop_front() else {
                break;
            };
            self.names.remove(&name);
            if let Ok(db) = self.db()
                && let Err(e) = forget_file(db, &name).await
            {
                bevy::log::warn!("received files: could not delete {name}: {e}");
            }
        }
    }

    fn queue_write(&mut self, transfer: TransferId, seq: u32, data: Vec<u8>) {
        if let Some((_, run)) = self.runs.iter_mut().find(|(t, _)| *t == transfer)
            && run.first + run.chunks.len() as u32 == seq
        {
            run.chunks.push(data);
            return;
        }
        self.runs.push((
            transfer,
            Run {
                first: seq,
                chunks: vec![data],
            },
        ));
    }

    /// Writes the queued runs, one Blob record each, in one transaction.
    async fn flush(&mut self) {
        if self.runs.is_empty() {
            return;
        }
        let runs = std::mem::take(&mut self.runs);
        let result = self.write_runs(&runs).await;
        for (transfer, run) in runs {
            self.report(match &result {
                Ok(()) => StoreDone::Persisted {
                    transfer,
                    chunks: run.first + run.chunks.len() as u32,
                },
                Err(e) => StoreDone::Failed {
                    transfer,
                    error: e.clone(),
                },
            });
        }
    }

    async fn write_runs(&self, runs: &[(TransferId, Run)]) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db
            .transaction(&[CHUNKS, PARTIALS], TransactionMode::ReadWrite)
            .map_err(store_error)?;
        // Each part's last write and size, for the sweep of parts nobody resumes.
        let partials = tx.store(PARTIALS).map_err(store_error)?;
        let now = crate::util::now_ms() as f64;
        for (transfer, run) in runs {
            let part = self.parts.get(transfer).ok_or(StoreError::NotOpen)?;
            let chunks = u64::from(run.first) + run.chunks.len() as u64;
            let bytes = (chunks * CHUNK_BYTES as u64).min(part.size);
            let value = record(&[
                ("written", JsValue::from_f64(now)),
                ("bytes", JsValue::from_f64(bytes as f64)),
            ]);
            partials
                .put(&value, Some(&JsValue::from_str(&part.key)))
                .await
                .map_err(store_error)?;
        }
        let store = tx.store(CHUNKS).map_err(store_error)?;
        // Records of up to RECORD_CHUNKS chunks each, keyed by their first chunk.
        let mut records = Vec::new();
        for (transfer, run) in runs {
            let part = self.parts.get(transfer).ok_or(StoreError::NotOpen)?;
            for (i, piece) in run.chunks.chunks(RECORD_CHUNKS).enumerate() {
                let first = run.first + (i * RECORD_CHUNKS) as u32;
                let key = Array::of2(
                    &JsValue::from_str(&part.key),
                    &JsValue::from_f64(f64::from(first)),
                );
                records.push((key, piece));
            }
        }
        // Bytes, not a Blob: a Blob's data stays in the browser process's memory until the
        // page's garbage collector drops the Blob object (`docs/bench/browser.md`, "Memory"),
        // while bytes are copied by the write. All puts are issued at once and each
        // record is filled just before its own put, so the shared buffer is never overwritten
        // before it was copied.
        let record = &self.record;
        let values = records.into_iter().map(|(key, piece)| {
            let total: usize = piece.iter().map(Vec::len).sum();
            let bytes = if total == record.length() as usize {
                record.clone()
            } else {
                Uint8Array::new_with_length(total as u32)
            };
            let mut at = 0u32;
            for chunk in piece {
                let end = at + chunk.len() as u32;
                bytes.subarray(at, end).copy_from(chunk);
                at = end;
            }
            (JsValue::from(bytes), Some(JsValue::from(key)))
        });
        store.put_all(values).await.map_err(store_error)?;
        let result = tx.done().await.map_err(store_error)?;
        if result.is_committed() {
            Ok(())
        } else {
            // An aborted write transaction is, in practice, the quota.
            Err(StoreError::NoSpace)
        }
    }

    async fn handle(&mut self, op: StoreOp) {
        match op {
            StoreOp::Open {
                transfer,
                key,
                size,
            } => {
                let done = match self.open(&key, size).await {
                    Ok((key, existing_chunks, hasher)) => {
                        self.parts.insert(transfer, Part { key, size });
                        StoreDone::Opened {
                            transfer,
                            existing_chunks,
                            hasher,
                        }
                    }
                    Err(error) => StoreDone::Failed { transfer, error },
                };
                self.report(done);
            }
            StoreOp::Finish { transfer, name } => {
                let done = match self.finish(transfer, &name).await {
                    Ok(location) => StoreDone::Finished { transfer, location },
                    Err(error) => StoreDone::Failed { transfer, error },
                };
                self.report(done);
            }
            StoreOp::Close { transfer, delete } => {
                if let Some(part) = self.parts.remove(&transfer)
                    && delete
                    && let Ok(db) = &self.db
                {
                    let _ = delete_part(db, &part.key).await;
                }
            }
            StoreOp::Write { .. } => {}
        }
    }

    /// Finds what an earlier attempt stored under `key` (whole chunks only, hashed) after
    /// checking the file fits. A key a finished file holds is not reused: the same file
    /// received again goes under `key~1` (`~2`...), so a repeated offer never touches (or, on
    /// a bad hash, deletes) a file the person has. Parts nobody came back for go first.
    async fn open(&self, key: &str, size: u64) -> Result<(String, u32, Sha256), StoreError> {
        let db = self.db()?;
        let key = {
            let tx = db
                .transaction(&[FINISHED], TransactionMode::ReadOnly)
                .map_err(store_error)?;
            let finished = tx.store(FINISHED).map_err(store_error)?;
            let mut n = 0u32;
            loop {
                let candidate = if n == 0 {
                    key.to_owned()
                } else {
                    format!("{key}~{n}")
                };
                if !finished
                    .key_exists(JsValue::from_str(&candidate))
                    .await
                    .map_err(store_error)?
                {
                    break candidate;
                }
                n += 1;
            }
        };
        if let Err(e) = self.sweep(Some(&key)).await {
            bevy::log::warn!("received files: could not expire old parts: {e}");
        }
        let records = part_records(db, &key).await?;
        let stored: u64 = records.iter().map(Record::len).sum();
        let plan = resume_plan(stored, size);
        let have = plan.keep_bytes;
        if let Some(free) = storage_free().await {
            let promised: u64 = self.parts.values().map(|p| p.size).sum();
            let need = (size - have)
                .saturating_add(promised)
                .saturating_add(QUOTA_RESERVE_BYTES);
            if free < need {
                return Err(StoreError::NoSpace);
            }
        }
        let mut hasher = Sha256::new();
        if plan.chunks == 0 {
            if stored > 0 {
                delete_part(db, &key).await?;
            }
            return Ok((key, 0, hasher));
        }
        // Keep the whole-chunk prefix: records hold consecutive whole chunks, so only the
        // record with the file's short last chunk can reach past it; it is cut back.
        let mut at = 0u64;
        for record in records {
            if at >= plan.keep_bytes {
                break;
            }
            let bytes = record.bytes().await?;
            let take = (plan.keep_bytes - at).min(bytes.len() as u64) as usize;
            hasher.update(&bytes[..take]);
            if take < bytes.len() {
                let first = (at / CHUNK_BYTES as u64) as u32;
                rewrite_record(db, &key, first, &bytes[..take]).await?;
            }
            at += bytes.len() as u64;
        }
        if stored > plan.keep_bytes {
            delete_records_from(db, &key, plan.chunks).await?;
        }
        Ok((key, plan.chunks, hasher))
    }

    /// Lists the verified file under a unique, safe name; its chunks stay where they are and
    /// its part key becomes a finished one. Past [`MAX_RECEIVED_KEPT`] files the oldest go.
    async fn finish(&mut self, transfer: TransferId, name: &str) -> Result<String, StoreError> {
        let part = self.parts.remove(&transfer).ok_or(StoreError::NotOpen)?;
        let db = self.db()?;
        let tx = db
            .transaction(&[FILES, FINISHED, PARTIALS], TransactionMode::ReadWrite)
            .map_err(store_error)?;
        let files = tx.store(FILES).map_err(store_error)?;
        let base = sanitize_file_name(name);
        let mut unique = unique_file_name(&base, |c| self.names.contains(c));
        if files
            .key_exists(JsValue::from_str(&unique))
            .await
            .map_err(store_error)?
        {
            // Another tab of this browser took the name: learn its names and choose again.
            let taken = files.get_all_keys(None, None).await.map_err(store_error)?;
            self.names
                .extend(taken.into_iter().filter_map(|k| k.as_string()));
            unique = unique_file_name(&base, |c| self.names.contains(c));
        }
        let value = record(&[
            ("part", JsValue::from_str(&part.key)),
            ("name", JsValue::from_str(&unique)),
            ("at", JsValue::from_f64(crate::util::now_ms() as f64)),
        ]);
        files
            .put(&value, Some(&JsValue::from_str(&unique)))
            .await
            .map_err(store_error)?;
        tx.store(FINISHED)
            .map_err(store_error)?
            .put(
                &JsValue::from_str(&unique),
                Some(&JsValue::from_str(&part.key)),
            )
            .await
            .map_err(store_error)?;
        tx.store(PARTIALS)
            .map_err(store_error)?
            .delete(JsValue::from_str(&part.key))
            .await
            .map_err(store_error)?;
        tx.done().await.map_err(store_error)?;
        self.names.insert(unique.clone());
        self.kept.push_back(unique.clone());
        self.trim().await;
        Ok(unique)
    }
}

/// Saves a received file through the browser's downloads: its records joined into one Blob
/// behind a Blob URL (revoked a minute after the download starts).
pub async fn download(name: &str) -> Result<(), StoreError> {
    let db = open_database().await?;
    let tx = db
        .transaction(&[FILES], TransactionMode::ReadOnly)
        .map_err(store_error)?;
    let record = tx
        .store(FILES)
        .map_err(store_error)?
        .get(JsValue::from_str(name))
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::Io("it is no longer in this browser's storage".into()))?;
    let key = Reflect::get(&record, &"part".into())
        .ok()
        .and_then(|k| k.as_string())
        .ok_or(StoreError::NotOpen)?;
    let pieces = Array::new();
    for record in part_records(&db, &key).await? {
        pieces.push(record.value());
    }
    let blob = web_sys::Blob::new_with_buffer_source_sequence(&pieces).map_err(js_error)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(js_error)?;
    let anchor: web_sys::HtmlAnchorElement = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.create_element("a").ok())
        .and_then(|a| a.dyn_into().ok())
        .ok_or_else(|| StoreError::Io("no document".into()))?;
    anchor.set_href(&url);
    anchor.set_download(name);
    anchor.click();
    // The download has its own reference to the Blob once started.
    let revoke = wasm_bindgen::closure::Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    });
    if let Some(window) = web_sys::window() {
        let _ = window
            .set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 60_000);
    }
    Ok(())
}
