//! The browser's implementation of [`crate::ports`]: DOM drag and drop, files read by
//! `File.slice`, received files in IndexedDB ([`idb`]), chat history in IndexedDB
//! ([`idb_history`]), downloads through Blob URLs, automation events on the console, calls
//! through `getUserMedia` ([`media`]).

mod attention;
mod idb;
mod idb_history;
mod lanes;
mod media;
mod text_fields;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use bevy::math::Vec2;
use bevy::tasks::{IoTaskPool, Task};
use duet_shared::transfer::WindowConfig;
use futures::channel::mpsc::TryRecvError;
use sha2::{Digest, Sha256};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

pub use idb::IdbStore;
pub use idb_history::IdbHistory;
pub use text_fields::stand_in_for_egui_text_agent;

use crate::ports::{
    Attention, Automation, Capabilities, FileAction, FileDrag, FileDragKind, FileRead, HashJob,
    Host, LocalFiles, LoopFuture, NotifyPermission, ReadPoll, Runtime, Shell, Sound, TextEdit,
    TextField, Wake,
};

/// How much of a file one `File.slice` read fetches: large enough that the promise per read
/// costs nothing next to the bytes, small enough to keep a sender's memory flat.
const READ_BLOCK: u64 = 1 << 20;

/// Prefix of the paths that name files the person dropped or picked in this page.
const FILE_PREFIX: &str = "/browser-file/";

thread_local! {
    /// Files handed to the page, by index; a path names one (see [`register_file`]).
    static FILES: RefCell<Vec<web_sys::File>> = const { RefCell::new(Vec::new()) };
    /// File drags seen by the DOM listeners since the last frame.
    static DRAGS: RefCell<Vec<FileDrag>> = const { RefCell::new(Vec::new()) };
    /// Draws a frame now (see [`set_frame_waker`]).
    static FRAME_WAKER: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
    /// Keeps the automation channel open: the page has no stdin.
    static COMMANDS: RefCell<Option<Sender<Option<String>>>> = const { RefCell::new(None) };
}

/// No multisampling in the browser: a tab without a GPU (software WebGL) spends most of its frame
/// on it, and every frame's CPU is taken from the transfers running between frames.
const MSAA: bevy::render::view::Msaa = bevy::render::view::Msaa::Off;

/// Most chunks per data frame a browser takes: browsers send and receive 256 KiB messages
/// (Chromium's and Firefox's SDP say `max-message-size` ≥ 262,144), and one 240 KiB message
/// costs a browser about what one 64 KiB message does (`docs/bench/browser.md`).
const FRAME_CHUNKS: usize = duet_shared::peer::MAX_FRAME_CHUNKS;

/// The receiver's flow-control window in a browser: credit goes back as IndexedDB commits,
/// and a tab may be busy for a while (software WebGL, a busy machine), so it grants more per
/// round trip (up to 4 MiB; Chromium's send queue holds 16 MiB) and only calls a gap of 2 s a
/// stall.
fn transfer_window() -> WindowConfig {
    WindowConfig {
        initial: 64,
        min: 16,
        max: 256,
        // The browser's bound stays 4 MiB: Chromium's data channel is the limit there.
        path_max: 256,
        stall_ms: 2000,
    }
}

/// A browser asks for striping: Chromium's SCTP halves its window on every loss, so on a lossy
/// path one connection is the ceiling, sending or receiving (`docs/bench/wan.md`).
const WANTS_STRIPING: bool = true;

/// The browser runs transfers between frames too: a frame can take 50 ms under software
/// rendering, and a hidden tab draws none.
const PUMP_BETWEEN_FRAMES: bool = true;

/// Runs the between-frames pump once a second even when nothing arrives: a hidden tab draws no
/// frames, and the engine's clock (a grant repeated after a quiet spell, see
/// `Receiver::repeat_credit`) would otherwise wait for the next message, which may never come.
/// Started once per page ([`Browser::keep_pump_ticking`]).
fn keep_pump_ticking(wake: Wake) {
    let tick = Closure::<dyn FnMut()>::new(move || wake.wake());
    if let Some(window) = web_sys::window() {
        let _ = window.set_interval_with_callback_and_timeout_and_arguments_0(
            tick.as_ref().unchecked_ref(),
            1000,
        );
    }
    // For the page's lifetime.
    tick.forget();
}

/// Bytes of peer messages after which [`received_from_peer`] nudges the garbage collector.
const COLLECT_EVERY: usize = 4 << 20;

/// Size of the nudge: at least V8's external-memory trigger (64 MiB past the last collection).
const NUDGE_BYTES: u32 = 64 << 20;

/// Counts message bytes that arrived from the peer, and every 4 MiB lets the browser free the
/// ones already handled. Each data-channel message reaches the page as its own `ArrayBuffer`,
/// which the message loop copies into wasm and drops; V8 frees such buffers only at a major
/// collection, and starts one only once 64 MiB more buffer memory than at the last one has been
/// allocated, so a receiving tab carries up to 64 MiB of handled messages. Allocating a 64 MiB
/// `ArrayBuffer` and dropping it at once moves V8's count past that trigger without using the
/// memory (its pages are never touched), so the collection comes now (the figures:
/// `docs/bench/browser.md`, "Memory").
fn received_from_peer(since_nudge: &AtomicUsize, bytes: usize) {
    let total = since_nudge.load(Ordering::Relaxed) + bytes;
    if total < COLLECT_EVERY {
        since_nudge.store(total, Ordering::Relaxed);
        return;
    }
    since_nudge.store(0, Ordering::Relaxed);
    drop(js_sys::ArrayBuffer::new(NUDGE_BYTES));
}

/// Whether this page may use its test hooks ([`crate::config::test_hooks_allowed`]); says so on
/// the console when the query asks for hooks that are off here.
pub fn test_hooks_here() -> bool {
    let Some(location) = web_sys::window().map(|w| w.location()) else {
        return false;
    };
    let host = location.hostname().unwrap_or_default();
    let allowed = crate::config::test_hooks_allowed(&host);
    let asked = location.search().is_ok_and(|q| {
        q.contains("automation") || q.contains("fault_drop_grant") || q.contains("store_contract")
    });
    if asked && !allowed {
        web_sys::console::warn_1(
            &format!(
                "Duet: test hooks are ignored on {host}; they work only on a loopback address"
            )
            .into(),
        );
    }
    allowed
}

/// A test page's run of the store contract ([`crate::storage::check_contract`]) against
/// IndexedDB, reported as a `store_contract` event; the app itself does not start.
pub fn run_store_contract() {
    wasm_bindgen_futures::spawn_local(async {
        let mut store = IdbStore::new(Wake::default());
        let prefix = format!("contract-{}", uuid::Uuid::new_v4());
        let result = crate::storage::check_contract(&mut store, &prefix, || sleep_ms(2)).await;
        let (checks, failure) = match result {
            Ok(checks) => (checks, None),
            Err(failure) => (0, Some(failure)),
        };
        emit_line(&duet_shared::automation::Event::StoreContract { checks, failure }.to_line());
    });
}

/// A future that ends after `ms` milliseconds (the page's timer).
async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Fault injection for tests: `fault_drop_grant=N` in the page's query (see
/// `transfer::Engine::drop_grant`); only where [`test_hooks_here`].
pub fn fault_drop_grant() -> Option<u32> {
    if !test_hooks_here() {
        return None;
    }
    let search = web_sys::window()?.location().search().ok()?;
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|pair| pair.strip_prefix("fault_drop_grant="))?
        .parse()
        .ok()
}

/// The browser has one thread: the loop runs on its event loop.
fn spawn_message_loop(future: LoopFuture) {
    IoTaskPool::get().spawn_local(future).detach();
}

/// One automation event on the console, prefixed so a test driver can pick it out.
fn emit_line(line: &str) {
    web_sys::console::log_1(&JsValue::from_str(&format!("duet-event {line}")));
}

/// The page takes no commands from outside: tests drive it with real input events.
fn command_lines() -> Receiver<Option<String>> {
    let (tx, rx) = channel();
    COMMANDS.with_borrow_mut(|keep| *keep = Some(tx));
    rx
}

/// Keeps a `File` the person handed to the page and names it by a path.
pub fn register_file(file: web_sys::File) -> PathBuf {
    let name = file.name().replace('/', "_");
    let index = FILES.with_borrow_mut(|files| {
        files.push(file);
        files.len() - 1
    });
    PathBuf::from(format!("{FILE_PREFIX}{index}/{name}"))
}

fn file_for(path: &Path) -> std::io::Result<web_sys::File> {
    let index = path
        .to_str()
        .and_then(|p| p.strip_prefix(FILE_PREFIX))
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.parse::<usize>().ok());
    index
        .and_then(|i| FILES.with_borrow(|files| files.get(i).cloned()))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the file is no longer available to this page",
            )
        })
}

fn js_text(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// Reads `[start, end)` of a file through `File.slice` (one promise, no whole-file buffer).
async fn read_slice(file: &web_sys::File, start: u64, end: u64) -> Result<Vec<u8>, String> {
    let blob = file
        .slice_with_f64_and_f64(start as f64, end as f64)
        .map_err(|e| js_text(&e))?;
    let buffer = JsFuture::from(blob.array_buffer())
        .await
        .map_err(|e| js_text(&e))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Size of a dropped or picked file.
fn file_size(path: &Path) -> std::io::Result<u64> {
    Ok(file_for(path)?.size() as u64)
}

/// What names a dropped or picked file for resuming a transfer of it: its name and the date
/// the browser gives for its last change (the page sees no paths), so dropping the same file
/// again resumes.
fn file_fingerprint(path: &Path) -> std::io::Result<String> {
    let file = file_for(path)?;
    Ok(format!("{}\0{}", file.name(), file.last_modified()))
}

/// SHA-256 and size of a dropped or picked file, read slice by slice on the event loop.
fn hash_file(path: PathBuf, wake: Wake) -> Task<std::io::Result<([u8; 32], u64)>> {
    IoTaskPool::get().spawn(async move {
        let file = file_for(&path)?;
        let size = file.size() as u64;
        let mut hasher = Sha256::new();
        let mut stream = ByteStream::open(&file, 0);
        let mut block = Vec::new();
        while stream.at < size {
            stream
                .read(READ_BLOCK as u32, &mut block)
                .await
                .map_err(std::io::Error::other)?;
            if block.is_empty() {
                return Err(std::io::Error::other("the file ended early"));
            }
            hasher.update(&block);
        }
        // The digest goes out on the engine's next turn: now, not at the next frame.
        wake.wake();
        Ok((hasher.finalize().into(), size))
    })
}

/// Reads a file from `start` to its end, block after block, into one JS buffer that is reused
/// for every read (a BYOB reader on `Blob.stream()`): a 200 MiB file read by
/// `slice().arrayBuffer()` leaves 200 MiB of buffers for the garbage collector, which lets
/// them pile up (`docs/bench/browser.md`, "Memory"). Browsers without
/// BYOB readers on blob streams fall back to one `slice().arrayBuffer()` per block.
struct ByteStream {
    file: web_sys::File,
    at: u64,
    reader: Option<web_sys::ReadableStreamByobReader>,
    buffer: Option<js_sys::ArrayBuffer>,
}

impl ByteStream {
    fn open(file: &web_sys::File, start: u64) -> Self {
        let reader = file
            .slice_with_f64(start as f64)
            .ok()
            .and_then(|rest| web_sys::ReadableStreamByobReader::new(&rest.stream()).ok());
        Self {
            file: file.clone(),
            at: start,
            reader,
            buffer: None,
        }
    }

    /// Replaces `out` with the next up to `max` bytes; empty at the end of the file.
    async fn read(&mut self, max: u32, out: &mut Vec<u8>) -> Result<(), String> {
        let Some(reader) = &self.reader else {
            let end = (self.at + u64::from(max)).min(self.file.size() as u64);
            *out = read_slice(&self.file, self.at, end).await?;
            self.at = end;
            return Ok(());
        };
        let mut buffer = match self.buffer.take() {
            Some(b) if b.byte_length() == max => b,
            _ => js_sys::ArrayBuffer::new(max),
        };
        let mut filled = 0;
        while filled < max {
            let view =
                js_sys::Uint8Array::new_with_byte_offset_and_length(&buffer, filled, max - filled);
            let result = JsFuture::from(reader.read_with_array_buffer_view(&view))
                .await
                .map_err(|e| js_text(&e))?;
            let value = js_sys::Reflect::get(&result, &"value".into()).map_err(|e| js_text(&e))?;
            let done = js_sys::Reflect::get(&result, &"done".into())
                .map_err(|e| js_text(&e))?
                .is_truthy();
            // The read hands the (moved) buffer back in `value`, also at the end.
            if let Ok(value) = value.dyn_into::<js_sys::Uint8Array>() {
                buffer = value.buffer();
                filled += value.byte_length();
            }
            if done {
                break;
            }
        }
        out.resize(filled as usize, 0);
        js_sys::Uint8Array::new_with_byte_offset_and_length(&buffer, 0, filled).copy_to(out);
        self.at += u64::from(filled);
        self.buffer = Some(buffer);
        Ok(())
    }
}

impl Drop for ByteStream {
    /// Lets the browser stop reading ahead for a stream nobody reads any more, now rather than
    /// when the garbage collector finds it.
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            let _ = reader.cancel();
        }
    }
}

/// A block of the file: where it starts, its bytes, or why it could not be read.
type Block = Result<(u64, Vec<u8>), String>;

/// Fills `buf` with the bytes at `offset` if `block` (its start, its bytes) holds all of them.
fn copy_from(block: &Option<(u64, Vec<u8>)>, offset: u64, buf: &mut [u8]) -> bool {
    let Some((start, data)) = block else {
        return false;
    };
    let end = offset + buf.len() as u64;
    if offset < *start || end > start + data.len() as u64 {
        return false;
    }
    let from = (offset - start) as usize;
    buf.copy_from_slice(&data[from..from + buf.len()]);
    true
}

/// Most bytes one read behind the stream takes ([`FileReader::read_behind`]): a repeat is 15
/// chunks (240 KiB).
const BEHIND_BLOCK: u64 = 256 << 10;

/// Reads pieces of a file being sent: a task on the event loop reads it block by block (1 MiB,
/// see [`ByteStream`]) from where the sending starts, one block ahead of the one being sent.
struct FileReader {
    path: PathBuf,
    block: Option<(u64, Vec<u8>)>,
    blocks: Option<futures::channel::mpsc::Receiver<Block>>,
    /// Bytes before `block`, read once for chunks sent again (see [`FileReader::read_behind`]).
    behind: Option<(u64, Vec<u8>)>,
    /// The read of `behind` in progress: where it starts and ends, and its result to come.
    behind_read: Option<(u64, u64, futures::channel::oneshot::Receiver<Block>)>,
    /// Rung as each block is read, so the engine sends it now.
    wake: Wake,
}

impl FileReader {
    /// Prepares to read a dropped or picked file.
    fn open(path: &Path, wake: Wake) -> std::io::Result<Self> {
        file_for(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            block: None,
            blocks: None,
            behind: None,
            behind_read: None,
            wake,
        })
    }

    /// Starts the reading task at `at` (a new one after a jump; the old one stops when its
    /// receiver is dropped).
    fn start_reading(&mut self, at: u64) {
        use futures::SinkExt;
        let (mut tx, rx) = futures::channel::mpsc::channel::<Block>(0);
        let (path, wake) = (self.path.clone(), self.wake.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let mut stream = match file_for(&path) {
                Ok(file) => ByteStream::open(&file, at),
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    wake.wake();
                    return;
                }
            };
            loop {
                let start = stream.at;
                let mut bytes = Vec::new();
                let read = stream.read(READ_BLOCK as u32, &mut bytes).await;
                let last = read.is_err() || bytes.is_empty();
                let sent = tx.send(read.map(|()| (start, bytes))).await;
                wake.wake();
                if last || sent.is_err() {
                    return;
                }
            }
        });
        self.blocks = Some(rx);
    }

    /// Bytes before the stream's current block: chunks sent again (a receiver's gap report,
    /// a lost lane) are read by one slice read each, and the stream reading ahead goes on.
    /// Restarting the stream for them, and again to go on after them, left a stream reading
    /// ahead behind for each repeat.
    fn read_behind(&mut self, offset: u64, buf: &mut [u8], block_start: u64) -> ReadPoll {
        let end = offset + buf.len() as u64;
        loop {
            if copy_from(&self.behind, offset, buf) {
                return ReadPoll::Ready;
            }
            let Some((start, until, pending)) = self.behind_read.as_mut() else {
                let until = (offset + BEHIND_BLOCK).min(block_start).max(end);
                let (tx, rx) = futures::channel::oneshot::channel();
                let (path, wake) = (self.path.clone(), self.wake.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let read = match file_for(&path) {
                        Ok(file) => read_slice(&file, offset, until).await,
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(read.map(|bytes| (offset, bytes)));
                    wake.wake();
                });
                self.behind_read = Some((offset, until, rx));
                return ReadPoll::Pending;
            };
            let wanted = *until - *start;
            match pending.try_recv() {
                Ok(None) => return ReadPoll::Pending,
                Ok(Some(Ok((start, data)))) if data.len() as u64 == wanted => {
                    self.behind_read = None;
                    self.behind = Some((start, data));
                }
                Ok(Some(Ok(_))) | Err(_) => {
                    return ReadPoll::Failed("the file ended before its offered size".into());
                }
                Ok(Some(Err(e))) => return ReadPoll::Failed(e),
            }
        }
    }

    /// Fills `buf` with the bytes at `offset`, or says to ask again when they are read.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> ReadPoll {
        if let Some(block_start) = self.block.as_ref().map(|(start, _)| *start)
            && offset < block_start
        {
            return self.read_behind(offset, buf, block_start);
        }
        loop {
            if copy_from(&self.block, offset, buf) {
                return ReadPoll::Ready;
            }
            let sequential = self
                .block
                .as_ref()
                .map_or(self.blocks.is_some(), |(start, data)| {
                    offset >= *start && offset <= start + data.len() as u64
                });
            let Some(blocks) = self.blocks.as_mut().filter(|_| sequential) else {
                // First read, or a jump: read from here.
                self.block = None;
                self.start_reading(offset);
                return ReadPoll::Pending;
            };
            match blocks.try_recv() {
                Ok(Ok((start, data))) if !data.is_empty() => self.block = Some((start, data)),
                Ok(Ok(_)) | Err(TryRecvError::Closed) => {
                    return ReadPoll::Failed("the file ended before its offered size".into());
                }
                Ok(Err(e)) => return ReadPoll::Failed(e),
                Err(TryRecvError::Empty) => return ReadPoll::Pending,
            }
        }
    }
}

/// How to draw a frame at once: DOM drags and file picks are not window events, so without
/// this they would wait for the next paced frame (up to a second).
fn set_frame_waker(wake: Box<dyn Fn() + Send + Sync>) {
    FRAME_WAKER.with_borrow_mut(|waker| *waker = Some(wake as Box<dyn Fn()>));
}

fn wake_frame() {
    FRAME_WAKER.with_borrow(|waker| {
        if let Some(wake) = waker {
            wake();
        }
    });
}

/// The file drags the DOM listeners saw since the last call.
fn take_file_drags() -> Vec<FileDrag> {
    DRAGS.with_borrow_mut(std::mem::take)
}

/// The moment the page is hidden, lets Bevy's loop run one more update, so the app can tell
/// its window is hidden (`app::web`'s `follow_page_visibility`) and keep running on timers.
/// Without it, nothing updates after the hide: Bevy waits for a drawn frame that never comes.
/// The one way into an update without a drawn frame is the app's suspend-and-resume, which
/// winit reports for a page kept in the back-forward cache (`pagehide`/`pageshow`, persisted);
/// the page plays both at once.
pub fn keep_running_when_hidden() {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let handler = Closure::<dyn FnMut()>::new(move || {
        let Some(window) = web_sys::window() else {
            return;
        };
        let hidden = window
            .document()
            .is_some_and(|d| d.visibility_state() != web_sys::VisibilityState::Visible);
        if !hidden {
            return;
        }
        for kind in ["pagehide", "pageshow"] {
            let init = web_sys::PageTransitionEventInit::new();
            init.set_persisted(true);
            if let Ok(event) = web_sys::PageTransitionEvent::new_with_event_init_dict(kind, &init) {
                let _ = window.dispatch_event(&event);
            }
        }
    });
    let _ = document
        .add_event_listener_with_callback("visibilitychange", handler.as_ref().unchecked_ref());
    // For the page's lifetime.
    handler.forget();
}

/// Keeps Tab inside the app: the canvas is the whole app, and egui moves its focus through the
/// controls with Tab. Left to the browser, the first Tab also moved the page's focus off the
/// canvas, egui took that as the window losing focus and dropped its own, and Enter then
/// pressed nothing.
pub fn keep_tab_in_app(canvas: &web_sys::HtmlCanvasElement) {
    let keydown = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        let key = js_sys::Reflect::get(&event, &"key".into()).ok();
        if key.and_then(|k| k.as_string()).as_deref() == Some("Tab") {
            event.prevent_default();
        }
    });
    let _ = canvas.add_event_listener_with_callback("keydown", keydown.as_ref().unchecked_ref());
    // For the page's lifetime.
    keydown.forget();
}

/// Listens for file drags on the canvas (winit does not report them on the web) and queues
/// them, with the pointer in canvas pixels, for [`take_file_drags`].
pub fn listen_for_file_drags(canvas: &web_sys::HtmlCanvasElement) {
    let target = canvas.clone();
    let at = move |event: &web_sys::DragEvent| {
        let rect = target.get_bounding_client_rect();
        Vec2::new(
            event.client_x() as f32 - rect.left() as f32,
            event.client_y() as f32 - rect.top() as f32,
        )
    };
    let over_at = at.clone();
    let over = Closure::<dyn FnMut(web_sys::DragEvent)>::new(move |event: web_sys::DragEvent| {
        // Without this the browser would open the file instead of letting the page take it.
        event.prevent_default();
        let at = over_at(&event);
        let first = DRAGS.with_borrow_mut(|drags| {
            drags.push(FileDrag {
                kind: FileDragKind::Hover,
                at,
            });
            drags.len() == 1
        });
        // The first hover since the last frame shows the drop zone now; the frames that follow
        // come at the pace of something moving.
        if first {
            wake_frame();
        }
    });
    let leave_at = at.clone();
    let leave = Closure::<dyn FnMut(web_sys::DragEvent)>::new(move |event: web_sys::DragEvent| {
        let at = leave_at(&event);
        DRAGS.with_borrow_mut(|drags| {
            drags.push(FileDrag {
                kind: FileDragKind::Leave,
                at,
            })
        });
        wake_frame();
    });
    let drop = Closure::<dyn FnMut(web_sys::DragEvent)>::new(move |event: web_sys::DragEvent| {
        event.prevent_default();
        let position = at(&event);
        let file = event
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|files| files.get(0));
        let kind = match file {
            Some(file) => FileDragKind::Drop(register_file(file)),
            None => FileDragKind::Leave,
        };
        DRAGS.with_borrow_mut(|drags| drags.push(FileDrag { kind, at: position }));
        wake_frame();
    });
    for (name, listener) in [("dragover", &over), ("dragleave", &leave), ("drop", &drop)] {
        let _ = canvas.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
    }
    // The listeners live as long as the page.
    over.forget();
    leave.forget();
    drop.forget();
}

/// What the received-files list offers in the browser.
const FILE_ACTIONS: &[FileAction] = &[FileAction::Download];

/// Hands a received file (by its name in IndexedDB) to the browser's downloads. The task yields
/// a sentence if that failed.
fn file_action(_action: FileAction, location: &str, _name: &str) -> Option<Task<Option<String>>> {
    let name = location.to_owned();
    Some(IoTaskPool::get().spawn(async move {
        idb::download(&name)
            .await
            .err()
            .map(|e| format!("Could not download {name}: {e}"))
    }))
}

/// Asks for a file to send through the browser's file chooser; `None` if cancelled.
fn pick_file() -> Task<Option<PathBuf>> {
    let (tx, rx) = futures::channel::oneshot::channel::<Option<PathBuf>>();
    let picked = (|| {
        let document = web_sys::window()?.document()?;
        let input: web_sys::HtmlInputElement =
            document.create_element("input").ok()?.dyn_into().ok()?;
        input.set_type("file");
        let tx = std::rc::Rc::new(RefCell::new(Some(tx)));
        let (chosen, cancelled) = (tx.clone(), tx);
        let source = input.clone();
        let change = Closure::<dyn FnMut()>::new(move || {
            let file = source.files().and_then(|f| f.get(0)).map(register_file);
            if let Some(tx) = chosen.borrow_mut().take() {
                let _ = tx.send(file);
            }
            wake_frame();
        });
        let cancel = Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = cancelled.borrow_mut().take() {
                let _ = tx.send(None);
            }
        });
        input.set_onchange(Some(change.as_ref().unchecked_ref()));
        let _ = input.add_event_listener_with_callback("cancel", cancel.as_ref().unchecked_ref());
        change.forget();
        cancel.forget();
        input.click();
        Some(())
    })();
    IoTaskPool::get().spawn(async move {
        picked?;
        rx.await.ok().flatten()
    })
}

/// Puts the room's link (or the lobby's) in the address bar, so a reload or a shared URL lands
/// in the same place.
fn show_room_link(link: Option<&str>) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let location = window.location();
    let path = link
        .and_then(|l| l.find("/r/").map(|i| l[i..].to_owned()))
        .unwrap_or_else(|| "/".to_owned());
    if location.pathname().ok().as_deref() == Some(path.as_str()) {
        return;
    }
    // Keep the query (`?automation` for tests).
    let url = format!("{path}{}", location.search().unwrap_or_default());
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&url));
    }
}

/// The first styled frame is on screen: hide the page's loading text and note the time (the
/// browser benchmark reads `duetFirstFrameMs`).
fn app_ready() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let now = window.performance().map(|p| p.now()).unwrap_or_default();
    let _ = js_sys::Reflect::set(&window, &"duetFirstFrameMs".into(), &now.into());
    if let Some(status) = window
        .document()
        .and_then(|d| d.get_element_by_id("status"))
    {
        let _ = status.set_attribute("hidden", "");
    }
    emit_line(&duet_shared::automation::Event::FirstFrame { ms: now }.to_line());
}

/// The page's tab shows the site's icon; a canvas has none of its own.
fn set_window_icon(_entity: bevy::ecs::entity::Entity, _rgba: fn(u32) -> Vec<u8>) -> bool {
    true
}

/// The browser, as the ports see it.
struct Browser {
    /// Rings the between-frames transfer pump when a read or a hash finished.
    wake: Wake,
    /// The pump's once-a-second tick is running.
    ticking: AtomicBool,
    /// Peer message bytes since the last nudge of the garbage collector.
    since_nudge: AtomicUsize,
}

/// What the browser can do.
pub fn capabilities() -> Capabilities {
    Capabilities {
        frame_chunks: FRAME_CHUNKS,
        transfer_window: transfer_window(),
        pump_between_frames: PUMP_BETWEEN_FRAMES,
        wants_striping: WANTS_STRIPING,
        calls: true,
        video: true,
        file_actions: FILE_ACTIONS,
        msaa: MSAA,
        touch: text_fields::touch_screen(),
    }
}

/// The browser's implementations of the ports.
pub fn host() -> Host {
    let wake = Wake::default();
    let browser = std::sync::Arc::new(Browser {
        wake: wake.clone(),
        ticking: AtomicBool::new(false),
        since_nudge: AtomicUsize::new(0),
    });
    Host {
        runtime: browser.clone(),
        files: browser.clone(),
        media: std::sync::Arc::new(media::BrowserMedia::default()),
        lanes: std::sync::Arc::new(lanes::BrowserLanes::new(wake.clone())),
        shell: browser.clone(),
        attention: browser.clone(),
        automation: browser,
        wake,
    }
}

impl Runtime for Browser {
    /// The browser sizes its own sockets.
    fn prepare_network(&self) {}

    fn spawn_loop(&self, future: LoopFuture) {
        spawn_message_loop(future);
    }

    fn received_from_peer(&self, bytes: usize) {
        received_from_peer(&self.since_nudge, bytes);
    }

    fn keep_pump_ticking(&self) {
        if !self.ticking.swap(true, Ordering::SeqCst) {
            keep_pump_ticking(self.wake.clone());
        }
    }

    /// The page's once-a-second tick stands in for exact deadlines: a hidden tab's timers run
    /// at most once a second anyway, and a timer per pump turn would cost more than it saves.
    fn wake_at(&self, _at_ms: u64) {}
}

impl FileRead for FileReader {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> ReadPoll {
        self.read_at(offset, buf)
    }
}

impl LocalFiles for Browser {
    fn size(&self, path: &Path) -> std::io::Result<u64> {
        file_size(path)
    }

    fn fingerprint(&self, path: &Path) -> std::io::Result<String> {
        file_fingerprint(path)
    }

    fn hash(&self, path: PathBuf) -> HashJob {
        Box::pin(hash_file(path, self.wake.clone()))
    }

    fn open(&self, path: &Path) -> std::io::Result<Box<dyn FileRead>> {
        Ok(Box::new(FileReader::open(path, self.wake.clone())?))
    }
}

impl Shell for Browser {
    fn pick_file(&self) -> Task<Option<PathBuf>> {
        pick_file()
    }

    fn file_action(
        &self,
        action: FileAction,
        location: &str,
        name: &str,
    ) -> Option<Task<Option<String>>> {
        file_action(action, location, name)
    }

    fn take_file_drags(&self) -> Vec<FileDrag> {
        take_file_drags()
    }

    fn show_room_link(&self, link: Option<&str>) {
        show_room_link(link);
    }

    fn app_ready(&self) {
        app_ready();
    }

    fn set_window_icon(&self, window: bevy::ecs::entity::Entity, rgba: fn(u32) -> Vec<u8>) -> bool {
        set_window_icon(window, rgba)
    }

    fn set_frame_waker(&self, wake: Box<dyn Fn() + Send + Sync>) {
        set_frame_waker(wake);
    }

    fn can_share(&self) -> bool {
        text_fields::can_share()
    }

    fn share_link(&self, title: &str, link: &str) {
        text_fields::share_link(title, link);
    }

    fn place_text_fields(&self, fields: &[TextField]) {
        text_fields::place(fields);
    }

    fn take_text_edits(&self) -> Vec<TextEdit> {
        text_fields::take_edits()
    }
}

impl Attention for Browser {
    fn in_sight(&self) -> Option<bool> {
        attention::in_sight()
    }

    fn show_title(&self, title: &str) {
        attention::show_title(title);
    }

    /// A page cannot ask for its window's attention; the notification is how it tells.
    fn notify(&self, _window: bevy::ecs::entity::Entity, title: &str, body: &str) {
        attention::notify(title, body);
    }

    fn play(&self, sound: Sound) {
        attention::play(sound);
    }

    fn permission(&self) -> NotifyPermission {
        attention::permission()
    }

    fn ask_permission(&self) {
        attention::ask_permission();
    }
}

impl Automation for Browser {
    fn emit_line(&self, line: &str) {
        emit_line(line);
    }

    fn command_lines(&self) -> Receiver<Option<String>> {
        command_lines()
    }

    /// Tests drive the page with real input events only.
    fn takes_commands(&self) -> bool {
        false
    }
}
