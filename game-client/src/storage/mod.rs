//! Where received files go: a blob store behind one trait, with one contract both stores keep.
//!
//! The trait is a queue, not a set of blocking calls, so that an asynchronous backend (IndexedDB
//! in the browser) fits it unchanged: the transfer plugin submits operations, and learns later what
//! is done by polling. Writes are chunk-sized; nothing ever holds a whole file in memory.
//!
//! Module map: this file holds the contract (the operations, their results, the rules both
//! stores follow: [`part_key`], [`resume_plan`], [`parts_to_expire`]); `folder` is the
//! desktop's store (`platform::web::idb` is the browser's); `contract` is the check both run.

mod contract;
mod folder;

use std::path::{Path, PathBuf};

use duet_shared::peer::{CHUNK_BYTES, TransferId};
use sha2::{Digest, Sha256};

pub use contract::check_contract;
pub use folder::FolderStore;

/// Identifies a partial file across reconnects: the same file, offered again by the same
/// sender (with the same [`duet_shared::peer::FileOffer::resume_key`]), resumes. The sender's
/// identity is part of the key, so whoever else offers a file under that resume key (another
/// person in a later session, a peer guessing keys) starts a part of their own and can
/// neither append to nor read back another sender's bytes.
pub fn part_key(sender: Option<uuid::Uuid>, resume_key: &[u8; 32], size: u64) -> String {
    let mut hash = Sha256::new();
    hash.update(sender.unwrap_or_default().as_bytes());
    hash.update(resume_key);
    hash.update(size.to_le_bytes());
    let hex: String = hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex}-{size}")
}

/// What the transfer plugin asks of the store.
#[derive(Debug)]
pub enum StoreOp {
    /// Prepare to receive `size` bytes for `transfer`; reuse a partial file with `key` if any.
    Open {
        /// The transfer.
        transfer: TransferId,
        /// Resume key ([`part_key`]).
        key: String,
        /// File size.
        size: u64,
    },
    /// Write chunk `seq` (chunks arrive in order).
    Write {
        /// The transfer.
        transfer: TransferId,
        /// Chunk number.
        seq: u32,
        /// Chunk bytes.
        data: Vec<u8>,
    },
    /// All chunks written and verified: make the file visible as (a unique variant of) `name`.
    Finish {
        /// The transfer.
        transfer: TransferId,
        /// The sender's name for the file (sanitized here).
        name: String,
    },
    /// Forget this transfer; delete its partial file if `delete`, else keep it for a resume.
    Close {
        /// The transfer.
        transfer: TransferId,
        /// Whether to delete the partial bytes (hash mismatch, declined) or keep them (disconnect).
        delete: bool,
    },
}

/// What the store reports back.
#[derive(Debug)]
pub enum StoreDone {
    /// Ready; `existing_chunks` whole chunks are already stored, hashed into `hasher`.
    Opened {
        /// The transfer.
        transfer: TransferId,
        /// Chunks already on disk from an earlier attempt.
        existing_chunks: u32,
        /// SHA-256 state over exactly those bytes.
        hasher: Sha256,
    },
    /// Every chunk below `chunks` is durably written.
    Persisted {
        /// The transfer.
        transfer: TransferId,
        /// Chunk count persisted.
        chunks: u32,
    },
    /// The file is in place.
    Finished {
        /// The transfer.
        transfer: TransferId,
        /// Where it is (a path natively, a key in the browser).
        location: String,
    },
    /// Something failed; the transfer must end.
    Failed {
        /// The transfer.
        transfer: TransferId,
        /// Why.
        error: StoreError,
    },
}

/// Storage failures, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Disk or quota full.
    #[error("There is not enough space left on this device to save the file.")]
    NoSpace,
    /// Any other I/O failure.
    #[error("cannot save the file: {0}")]
    Io(String),
    /// An operation for a transfer that was never opened.
    #[error("no open file for this transfer")]
    NotOpen,
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        // ENOSPC / EDQUOT
        if matches!(e.raw_os_error(), Some(28) | Some(122)) {
            StoreError::NoSpace
        } else {
            StoreError::Io(e.to_string())
        }
    }
}

/// A place to put received files.
pub trait BlobStore: Send + Sync + 'static {
    /// Queues an operation.
    fn submit(&mut self, op: StoreOp);
    /// Takes what completed since the last poll.
    fn poll(&mut self) -> Vec<StoreDone>;
}

/// What a store keeps of a part an earlier attempt left: the one resume rule both stores
/// follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePlan {
    /// Whole chunks kept: the transfer resumes after them.
    pub chunks: u32,
    /// Bytes kept (`chunks` whole chunks); anything stored past them is dropped.
    pub keep_bytes: u64,
}

/// What to keep of `stored` bytes found for a file of `size` bytes: whole chunks only (a torn
/// write, or the file's short last chunk, leaves a tail that is dropped and received again),
/// and nothing at all when there are more bytes than the file has (that part is not this
/// file's, and is not trusted).
pub fn resume_plan(stored: u64, size: u64) -> ResumePlan {
    if stored > size {
        return ResumePlan {
            chunks: 0,
            keep_bytes: 0,
        };
    }
    let chunks = (stored / CHUNK_BYTES as u64) as u32;
    ResumePlan {
        chunks,
        keep_bytes: u64::from(chunks) * CHUNK_BYTES as u64,
    }
}

/// Partial files nobody resumed for this long are deleted: a sender who never comes back
/// does not keep the receiver's disk.
pub const PART_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// All partial files together stay under this: past it, the least recently written go first.
pub const PARTS_BUDGET_BYTES: u64 = 1 << 30;

/// A partial file as the sweep sees it: when it was last written and how large it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartAge<K> {
    /// Where it is (a path, or the browser's part key).
    pub key: K,
    /// Last write, ms since the epoch.
    pub written_ms: u64,
    /// Bytes held.
    pub bytes: u64,
}

/// Which partials to delete: those older than [`PART_MAX_AGE`] (by their last write), then the
/// least recently written until the rest fit [`PARTS_BUDGET_BYTES`]. The caller leaves out the
/// ones in use. One rule for the desktop's part files and the browser's chunk records.
pub fn parts_to_expire<K>(mut parts: Vec<PartAge<K>>, now_ms: u64) -> Vec<K> {
    // Newest first: what survives the budget is the most recently written.
    parts.sort_by_key(|p| std::cmp::Reverse(p.written_ms));
    let max_age = PART_MAX_AGE.as_millis() as u64;
    let mut total: u64 = 0;
    let mut expired = Vec::new();
    for part in parts {
        let old = now_ms.saturating_sub(part.written_ms) > max_age;
        total = total.saturating_add(part.bytes);
        if old || total > PARTS_BUDGET_BYTES {
            total -= part.bytes;
            expired.push(part.key);
        }
    }
    expired
}

/// Deletes the partial files in `dir` that [`parts_to_expire`] picks; `keep` are in use.
/// Returns how many were deleted.
pub fn expire_parts(dir: &Path, keep: &[PathBuf], now: std::time::SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let parts: Vec<PartAge<PathBuf>> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
        .filter(|e| !keep.contains(&e.path()))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some(PartAge {
                written_ms: ms(meta.modified().ok()?),
                bytes: meta.len(),
                key: e.path(),
            })
        })
        .collect();
    parts_to_expire(parts, ms(now))
        .into_iter()
        .filter(|path| std::fs::remove_file(path).is_ok())
        .count()
}

/// Received files a browser keeps: past this many, the oldest leave its storage (the list of
/// received files shows as many). A folder on the desktop keeps everything.
pub const MAX_RECEIVED_KEPT: usize = 1000;

/// Bytes left free on the disk after every file being received has arrived: a peer's file
/// never fills the disk to the last byte (other programs, and the system, need room too).
pub const DISK_RESERVE_BYTES: u64 = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_are_kept_per_sender() {
        let (ada, mallory) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let resume = [7u8; 32];
        assert_eq!(
            part_key(Some(ada), &resume, 10),
            part_key(Some(ada), &resume, 10)
        );
        assert_ne!(
            part_key(Some(ada), &resume, 10),
            part_key(Some(mallory), &resume, 10)
        );
        assert_ne!(
            part_key(Some(ada), &resume, 10),
            part_key(Some(ada), &resume, 11)
        );
        assert_ne!(
            part_key(Some(ada), &resume, 10),
            part_key(None, &resume, 10)
        );
    }

    #[test]
    fn unclaimed_parts_expire_by_age_and_by_budget() {
        let dir = std::env::temp_dir().join(format!("duet-expire-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(24 * 3600);
        let part = |name: &str, len: u64, age: std::time::Duration| {
            let path = dir.join(format!("{name}.part"));
            let file = std::fs::File::create(&path).unwrap();
            // Sparse: the length counts, no disk is used.
            file.set_len(len).unwrap();
            file.set_modified(now - age).unwrap();
            path
        };
        let old = part("old", 10, 8 * day);
        let in_use = part("in-use", 10, 9 * day);
        let big_older = part("big-older", 600 << 20, 2 * day);
        let big_newer = part("big-newer", 600 << 20, day);
        let fresh = part("fresh", 10, std::time::Duration::ZERO);
        std::fs::write(dir.join("not-a-part.txt"), b"x").unwrap();
        let deleted = expire_parts(&dir, std::slice::from_ref(&in_use), now);
        assert_eq!(deleted, 2);
        assert!(!old.exists(), "older than a week");
        assert!(
            !big_older.exists(),
            "the least recently written past the budget"
        );
        assert!(in_use.exists() && big_newer.exists() && fresh.exists());
        assert!(dir.join("not-a-part.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
