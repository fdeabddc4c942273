//! The contract every [`BlobStore`] keeps, as one check both stores run: the desktop's folder
//! in a unit test here, the browser's IndexedDB in Chromium (a test page, `?store_contract`,
//! driven by `tests/e2e/store-contract.mjs`). Whatever backs a store, a file received in two
//! attempts resumes from the same place, a finished file is never reopened as a part, names
//! never collide and a discarded part leaves nothing to resume.

use std::collections::VecDeque;
use std::future::Future;

use duet_shared::peer::{CHUNK_BYTES, TransferId};
use sha2::{Digest, Sha256};

use super::{BlobStore, StoreDone, StoreOp};

/// How many times the check waits for one answer before it calls the store stuck.
const MAX_WAITS: u32 = 5_000;

/// Runs the contract against `store` (empty, or holding only what earlier runs left under
/// other keys); `wait` lets the store work between polls (a short sleep, or a timer in the
/// browser). The keys and file names it uses start with `prefix`, so runs do not meet. Returns how many
/// checks held, or the first that did not, in words.
pub async fn check_contract<W: Future<Output = ()>>(
    store: &mut dyn BlobStore,
    prefix: &str,
    mut wait: impl FnMut() -> W,
) -> Result<u32, String> {
    let mut run = Run {
        store,
        early: VecDeque::new(),
        checks: 0,
    };
    let size = 2 * CHUNK_BYTES as u64 + 100;
    let chunk = |seq: u32| -> Vec<u8> {
        let len = (size - u64::from(seq) * CHUNK_BYTES as u64).min(CHUNK_BYTES as u64);
        vec![seq as u8 + 1; len as usize]
    };
    let prefix_hash = |chunks: u32| -> [u8; 32] {
        let mut hasher = Sha256::new();
        for seq in 0..chunks {
            hasher.update(chunk(seq));
        }
        hasher.finalize().into()
    };
    let (a, b, c) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}-c"),
    );
    let (name, renamed) = (format!("{prefix}.txt"), format!("{prefix} (1).txt"));

    // A new part starts empty; two chunks written and kept are where the next attempt starts.
    run.expect_open(1, &a, size, 0, prefix_hash(0), &mut wait)
        .await?;
    run.write(1, 0, chunk(0));
    run.write(1, 1, chunk(1));
    run.expect_persisted(1, 2, &mut wait).await?;
    run.close(1, false);
    run.expect_open(2, &a, size, 2, prefix_hash(2), &mut wait)
        .await?;
    // Every byte there, the last chunk short: whole chunks are kept, the short tail comes again.
    run.write(2, 2, chunk(2));
    run.expect_persisted(2, 3, &mut wait).await?;
    run.close(2, false);
    run.expect_open(3, &a, size, 2, prefix_hash(2), &mut wait)
        .await?;
    run.write(3, 2, chunk(2));
    run.expect_persisted(3, 3, &mut wait).await?;
    let first = run.finish(3, &name, &mut wait).await?;
    run.check(first.ends_with(&name), || {
        format!("the file is listed as {first}")
    })?;

    // The same name again is made unique; the first file stays.
    run.expect_open(4, &b, size, 0, prefix_hash(0), &mut wait)
        .await?;
    for seq in 0..3 {
        run.write(4, seq, chunk(seq));
    }
    run.expect_persisted(4, 3, &mut wait).await?;
    let second = run.finish(4, &name, &mut wait).await?;
    run.check(second != first && second.ends_with(&renamed), || {
        format!("the second file is listed as {second} beside {first}")
    })?;

    // A finished file's key starts a new part: its bytes are the person's, not a resume.
    run.expect_open(5, &a, size, 0, prefix_hash(0), &mut wait)
        .await?;
    run.close(5, true);

    // A discarded part leaves nothing to resume.
    run.expect_open(6, &c, size, 0, prefix_hash(0), &mut wait)
        .await?;
    run.write(6, 0, chunk(0));
    run.expect_persisted(6, 1, &mut wait).await?;
    run.close(6, true);
    run.expect_open(7, &c, size, 0, prefix_hash(0), &mut wait)
        .await?;
    run.close(7, true);
    Ok(run.checks)
}

/// The store under test and answers that came before they were waited for.
struct Run<'s> {
    store: &'s mut dyn BlobStore,
    early: VecDeque<StoreDone>,
    checks: u32,
}

impl Run<'_> {
    fn check(&mut self, holds: bool, what: impl FnOnce() -> String) -> Result<(), String> {
        if !holds {
            return Err(what());
        }
        self.checks += 1;
        Ok(())
    }

    fn write(&mut self, transfer: u64, seq: u32, data: Vec<u8>) {
        self.store.submit(StoreOp::Write {
            transfer: TransferId(transfer),
            seq,
            data,
        });
    }

    fn close(&mut self, transfer: u64, delete: bool) {
        self.store.submit(StoreOp::Close {
            transfer: TransferId(transfer),
            delete,
        });
    }

    /// The next answer for `transfer` that `want` takes (others for it are skipped, answers
    /// for other transfers kept for later); a failure ends the check.
    async fn next<T, W: Future<Output = ()>>(
        &mut self,
        transfer: u64,
        what: &str,
        wait: &mut impl FnMut() -> W,
        mut want: impl FnMut(&StoreDone) -> Option<T>,
    ) -> Result<T, String> {
        let id = TransferId(transfer);
        for _ in 0..MAX_WAITS {
            let mut fresh: VecDeque<StoreDone> = self.store.poll().into();
            self.early.append(&mut fresh);
            while let Some(done) = self.early.pop_front() {
                let mine = match &done {
                    StoreDone::Opened { transfer, .. }
                    | StoreDone::Persisted { transfer, .. }
                    | StoreDone::Finished { transfer, .. }
                    | StoreDone::Failed { transfer, .. } => *transfer == id,
                };
                if !mine {
                    continue;
                }
                if let StoreDone::Failed { error, .. } = &done {
                    return Err(format!("{what}: the store failed: {error}"));
                }
                if let Some(found) = want(&done) {
                    return Ok(found);
                }
            }
            wait().await;
        }
        Err(format!("{what}: the store never answered"))
    }

    /// Opens `key` as `transfer` and checks where it resumes and the hash of what it kept.
    async fn expect_open<W: Future<Output = ()>>(
        &mut self,
        transfer: u64,
        key: &str,
        size: u64,
        chunks: u32,
        hash: [u8; 32],
        wait: &mut impl FnMut() -> W,
    ) -> Result<(), String> {
        self.store.submit(StoreOp::Open {
            transfer: TransferId(transfer),
            key: key.to_owned(),
            size,
        });
        let what = format!("opening {key} (attempt {transfer})");
        let (existing, kept) = self
            .next(transfer, &what, wait, |done| match done {
                StoreDone::Opened {
                    existing_chunks,
                    hasher,
                    ..
                } => {
                    let kept: [u8; 32] = hasher.clone().finalize().into();
                    Some((*existing_chunks, kept))
                }
                _ => None,
            })
            .await?;
        self.check(existing == chunks, || {
            format!("{what}: resumes after {existing} chunks, not {chunks}")
        })?;
        self.check(kept == hash, || {
            format!("{what}: the hash of the kept chunks is not theirs")
        })
    }

    /// Waits until `chunks` chunks of `transfer` are persisted.
    async fn expect_persisted<W: Future<Output = ()>>(
        &mut self,
        transfer: u64,
        chunks: u32,
        wait: &mut impl FnMut() -> W,
    ) -> Result<(), String> {
        let what = format!("writing {chunks} chunks (attempt {transfer})");
        self.next(transfer, &what, wait, |done| match done {
            StoreDone::Persisted { chunks: n, .. } if *n >= chunks => Some(()),
            _ => None,
        })
        .await?;
        self.check(true, String::new)
    }

    /// Finishes `transfer` as `name`; returns where the store lists it.
    async fn finish<W: Future<Output = ()>>(
        &mut self,
        transfer: u64,
        name: &str,
        wait: &mut impl FnMut() -> W,
    ) -> Result<String, String> {
        self.store.submit(StoreOp::Finish {
            transfer: TransferId(transfer),
            name: name.to_owned(),
        });
        let what = format!("finishing {name} (attempt {transfer})");
        self.next(transfer, &what, wait, |done| match done {
            StoreDone::Finished { location, .. } => Some(location.clone()),
            _ => None,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FolderStore;

    #[test]
    fn the_folder_store_keeps_the_contract() {
        let dir = duet_tests::temp_dir("store-contract").unwrap();
        let mut store = FolderStore::new(&dir).unwrap();
        let checks = bevy::tasks::block_on(check_contract(&mut store, "contract", || async {
            // The folder store opens parts on a thread of its own.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }))
        .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(checks, 21, "every check ran");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
