//! Received files in a folder on disk (the desktop's store).
//!
//! Files land in the downloads folder under their sanitized, de-duplicated name; while
//! incomplete they live in `.duet-partial/{resume key}-{size}.part` inside it, so a transfer
//! interrupted by a disconnect resumes from the bytes already on disk when the same file is
//! offered again. Only after the SHA-256 matches is the part renamed (atomically) into view.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use duet_shared::names::{sanitize_file_name, unique_file_name};
use duet_shared::peer::{CHUNK_BYTES, TransferId};
use sha2::{Digest, Sha256};

use super::*;

struct Part {
    file: File,
    path: PathBuf,
    written: u32,
    size: u64,
}

impl Part {
    /// Bytes still to come.
    fn remaining(&self) -> u64 {
        self.size
            .saturating_sub(u64::from(self.written) * CHUNK_BYTES as u64)
    }
}

/// What opening a part produced, sent back from its thread.
type Opened = (TransferId, Result<(Part, u32, Sha256), StoreError>);

/// Received files in a folder on disk. Writes complete synchronously (the kernel buffers them);
/// opening a part, which re-hashes a resumed one, runs on a thread of its own. Results queue for
/// [`BlobStore::poll`].
pub struct FolderStore {
    dir: PathBuf,
    parts: HashMap<TransferId, Part>,
    done: Vec<StoreDone>,
    /// Parts being opened (and a resumed one re-hashed) on a thread of their own: re-reading
    /// 200 MB must not hold up the frame that asked.
    opening: std::sync::Mutex<std::sync::mpsc::Receiver<Opened>>,
    opened: std::sync::mpsc::Sender<Opened>,
    /// Opens closed before they finished, and whether to delete their part then.
    abandoned: HashMap<TransferId, bool>,
    /// Parts being opened, with their sizes: not to be expired meanwhile, and their bytes are
    /// promised when the next file's space is checked.
    being_opened: HashMap<TransferId, (PathBuf, u64)>,
}

impl FolderStore {
    /// A store writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join(".duet-partial"))?;
        expire_parts(
            &dir.join(".duet-partial"),
            &[],
            std::time::SystemTime::now(),
        );
        let (opened, opening) = std::sync::mpsc::channel();
        Ok(Self {
            dir,
            parts: HashMap::new(),
            done: Vec::new(),
            opening: std::sync::Mutex::new(opening),
            opened,
            abandoned: HashMap::new(),
            being_opened: HashMap::new(),
        })
    }

    /// The downloads folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (or resumes) a part file; runs on a thread of its own.
    /// `promised`: bytes still to come for the other transfers being received, which the disk
    /// must hold too.
    fn open(
        dir: &Path,
        key: &str,
        size: u64,
        promised: u64,
    ) -> Result<(Part, u32, Sha256), StoreError> {
        let path = dir.join(".duet-partial").join(format!("{key}.part"));
        // Checked before anything is created: a file that cannot fit is declined, and a partial
        // kept from an earlier attempt stays for when there is room.
        let have = std::fs::metadata(&path).map_or(0, |m| resume_plan(m.len(), size).keep_bytes);
        if let Some(free) = available_space(dir) {
            let need = (size - have)
                .saturating_add(promised)
                .saturating_add(DISK_RESERVE_BYTES);
            if free < need {
                return Err(StoreError::NoSpace);
            }
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let ResumePlan {
            chunks,
            keep_bytes: keep,
        } = resume_plan(file.metadata()?.len(), size);
        file.set_len(keep)?;
        let mut hasher = Sha256::new();
        file.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = keep;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        file.seek(SeekFrom::Start(keep))?;
        Ok((
            Part {
                file,
                path,
                written: chunks,
                size,
            },
            chunks,
            hasher,
        ))
    }

    fn finish(&mut self, transfer: TransferId, name: &str) -> Result<String, StoreError> {
        let Part { file, path, .. } = self.parts.remove(&transfer).ok_or(StoreError::NotOpen)?;
        file.sync_all()?;
        // Closed before the rename (some platforms refuse to move an open file).
        let part_path = {
            let _closed = file;
            path
        };
        // Marked before it is visible under its name (the mark moves with the rename).
        #[cfg(windows)]
        if let Err(e) = mark_of_the_web(&part_path) {
            // FAT and exFAT drives keep no such marks; the file is still the person's.
            bevy::log::warn!("could not mark {} as downloaded: {e}", part_path.display());
        }
        let safe = sanitize_file_name(name);
        let dir = self.dir.clone();
        let unique = unique_file_name(&safe, |candidate| dir.join(candidate).exists());
        let target = self.dir.join(unique);
        std::fs::rename(&part_path, &target)?;
        Ok(target.display().to_string())
    }
}

/// Windows: marks a received file as from the Internet (the `Zone.Identifier` stream browsers
/// write for downloads), so Explorer, SmartScreen and Office warn before opening or running it.
#[cfg(windows)]
fn mark_of_the_web(path: &Path) -> std::io::Result<()> {
    let mut stream = path.as_os_str().to_owned();
    stream.push(":Zone.Identifier");
    std::fs::write(PathBuf::from(stream), "[ZoneTransfer]\r\nZoneId=3\r\n")
}

impl BlobStore for FolderStore {
    fn submit(&mut self, op: StoreOp) {
        let result = match op {
            StoreOp::Open {
                transfer,
                key,
                size,
            } => {
                let (dir, done) = (self.dir.clone(), self.opened.clone());
                // Parts in use stay (the one being opened now may be resumed).
                let partial = dir.join(".duet-partial");
                let keep: Vec<PathBuf> = self
                    .parts
                    .values()
                    .map(|p| p.path.clone())
                    .chain(self.being_opened.values().map(|(path, _)| path.clone()))
                    .chain([partial.join(format!("{key}.part"))])
                    .collect();
                expire_parts(&partial, &keep, std::time::SystemTime::now());
                let promised = self.parts.values().map(Part::remaining).sum::<u64>()
                    + self
                        .being_opened
                        .values()
                        .map(|(_, size)| size)
                        .sum::<u64>();
                self.being_opened
                    .insert(transfer, (partial.join(format!("{key}.part")), size));
                let spawned = std::thread::Builder::new()
                    .name("duet-open-part".into())
                    .spawn(move || {
                        let _ = done.send((transfer, Self::open(&dir, &key, size, promised)));
                    });
                match spawned {
                    Ok(_) => return,
                    Err(e) => {
                        self.being_opened.remove(&transfer);
                        StoreDone::Failed {
                            transfer,
                            error: e.into(),
                        }
                    }
                }
            }
            StoreOp::Write {
                transfer,
                seq,
                data,
            } => match self.parts.get_mut(&transfer) {
                None => StoreDone::Failed {
                    transfer,
                    error: StoreError::NotOpen,
                },
                Some(part) => match part.file.write_all(&data) {
                    Ok(()) => {
                        part.written = seq + 1;
                        StoreDone::Persisted {
                            transfer,
                            chunks: part.written,
                        }
                    }
                    Err(e) => StoreDone::Failed {
                        transfer,
                        error: e.into(),
                    },
                },
            },
            StoreOp::Finish { transfer, name } => match self.finish(transfer, &name) {
                Ok(location) => StoreDone::Finished { transfer, location },
                Err(error) => StoreDone::Failed { transfer, error },
            },
            StoreOp::Close { transfer, delete } => {
                if self.being_opened.contains_key(&transfer) {
                    // Still opening: dealt with when the open is done.
                    self.abandoned.insert(transfer, delete);
                }
                if let Some(Part { file, path, .. }) = self.parts.remove(&transfer)
                    && delete
                {
                    {
                        // Closed before the delete (some platforms refuse to delete an open file).
                        let _closed = file;
                    }
                    let _ = std::fs::remove_file(&path);
                }
                return;
            }
        };
        // Consecutive Persisted reports for one transfer collapse into the latest.
        if let StoreDone::Persisted { transfer, chunks } = &result
            && let Some(StoreDone::Persisted {
                transfer: last_transfer,
                chunks: last,
            }) = self.done.last_mut()
            && last_transfer == transfer
        {
            *last = *chunks;
            return;
        }
        self.done.push(result);
    }

    fn poll(&mut self) -> Vec<StoreDone> {
        let arrived: Vec<Opened> = crate::util::lock_shared(&self.opening).try_iter().collect();
        for (transfer, result) in arrived {
            self.being_opened.remove(&transfer);
            if let Some(delete) = self.abandoned.remove(&transfer) {
                if let (Ok((part, ..)), true) = (result, delete) {
                    let path = part.path.clone();
                    drop(part);
                    let _ = std::fs::remove_file(path);
                }
                continue;
            }
            self.done.push(match result {
                Ok((part, existing_chunks, hasher)) => {
                    self.parts.insert(transfer, part);
                    StoreDone::Opened {
                        transfer,
                        existing_chunks,
                        hasher,
                    }
                }
                Err(error) => StoreDone::Failed { transfer, error },
            });
        }
        std::mem::take(&mut self.done)
    }
}

/// Bytes a program without special rights may still write on the file system holding `dir`;
/// `None` where that cannot be asked (the browser has no folder; its store asks the quota).
fn available_space(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stats = rustix::fs::statvfs(dir).ok()?;
        Some(stats.f_bavail.saturating_mul(stats.f_frsize))
    }
    #[cfg(windows)]
    {
        fs4::available_space(dir).ok()
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(store: &mut FolderStore, t: u64, key: &str, size: u64) -> u32 {
        store.submit(StoreOp::Open {
            transfer: TransferId(t),
            key: key.into(),
            size,
        });
        // Opened on a thread of its own: wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match store.poll().pop() {
                Some(StoreDone::Opened {
                    existing_chunks, ..
                }) => return existing_chunks,
                None if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn parts_resume_from_whole_chunks_and_finish_under_a_unique_safe_name() {
        let dir = duet_tests::temp_dir("store").unwrap();
        let mut store = FolderStore::new(&dir).unwrap();
        let size = 3 * CHUNK_BYTES as u64 + 5;
        assert_eq!(open(&mut store, 1, "k", size), 0);
        for seq in 0..2 {
            store.submit(StoreOp::Write {
                transfer: TransferId(1),
                seq,
                data: vec![seq as u8; CHUNK_BYTES],
            });
        }
        assert!(matches!(
            store.poll().as_slice(),
            [StoreDone::Persisted { chunks: 2, .. }]
        ));
        // Disconnect: keep the part. Simulate a torn write of half a chunk.
        store.submit(StoreOp::Close {
            transfer: TransferId(1),
            delete: false,
        });
        let part = dir.join(".duet-partial/k.part");
        let mut f = OpenOptions::new().append(true).open(&part).unwrap();
        f.write_all(&[9; 100]).unwrap();
        drop(f);
        assert_eq!(
            open(&mut store, 2, "k", size),
            2,
            "resumes after 2 whole chunks"
        );
        store.submit(StoreOp::Write {
            transfer: TransferId(2),
            seq: 2,
            data: vec![2; CHUNK_BYTES],
        });
        store.submit(StoreOp::Write {
            transfer: TransferId(2),
            seq: 3,
            data: vec![3; 5],
        });
        std::fs::write(dir.join("evil.txt"), b"already here").unwrap();
        store.submit(StoreOp::Finish {
            transfer: TransferId(2),
            name: "../../evil.txt".into(),
        });
        let done = store.poll();
        let Some(StoreDone::Finished { location, .. }) = done.last() else {
            panic!("{done:?}")
        };
        assert_eq!(Path::new(location), dir.join("evil (1).txt"));
        let bytes = std::fs::read(location).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(&bytes[2 * CHUNK_BYTES..2 * CHUNK_BYTES + 3], &[2, 2, 2]);
        assert!(!part.exists(), "the part was renamed into place");
        assert_eq!(
            std::fs::read(dir.join("evil.txt")).unwrap(),
            b"already here"
        );
    }

    #[test]
    fn discarded_parts_leave_nothing() {
        let dir = duet_tests::temp_dir("store-discard").unwrap();
        let mut store = FolderStore::new(&dir).unwrap();
        open(&mut store, 1, "bad", 10);
        store.submit(StoreOp::Write {
            transfer: TransferId(1),
            seq: 0,
            data: vec![1; 10],
        });
        store.submit(StoreOp::Close {
            transfer: TransferId(1),
            delete: true,
        });
        let visible: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != ".duet-partial")
            .collect();
        assert!(visible.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.join(".duet-partial"))
                .unwrap()
                .count(),
            0
        );
    }
}
