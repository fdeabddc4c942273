//! The platform seam: what the client needs of the desktop or the browser, as traits.
//!
//! Everything above this module talks to the platform only through these traits and the two
//! resources that carry them, [`Capabilities`] (what this platform can do, as plain values) and
//! [`Host`] (what it does, as trait objects). `platform::native` and `platform::web` each
//! implement every trait once, so the compiler, not matching function names, keeps the two in
//! step; `app` inserts the running platform's implementation. Logic tests insert nothing (or
//! their own fakes): a plugin that finds no [`Host`] leaves the platform alone.
//!
//! The stores (received files, chat history) are seams too, but each belongs to the concern that
//! owns its contract: [`crate::storage::BlobStore`] and [`crate::chat::history::HistoryStore`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use bevy::ecs::entity::Entity;
use bevy::math::Vec2;
use bevy::prelude::Resource;
use bevy::tasks::Task;
use duet_shared::call::{CallEnd, CallId};
use duet_shared::transfer::WindowConfig;

use crate::config::IceServer;

/// A long-running future the platform runs beside the frame loop (matchbox's message loop, the
/// browser's transfer pump). The browser runs it on the page's one thread, so it need not be
/// `Send` there.
#[cfg(not(target_arch = "wasm32"))]
pub type LoopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// See the native definition.
#[cfg(target_arch = "wasm32")]
pub type LoopFuture = Pin<Box<dyn Future<Output = ()>>>;

/// What this platform can do, as values the core reads (a resource; the defaults are the
/// protocol's, for logic tests).
#[derive(Resource, Debug, Clone)]
pub struct Capabilities {
    /// Most chunks per data frame this side's WebRTC stack takes.
    pub frame_chunks: usize,
    /// The receiver's flow-control window.
    pub transfer_window: WindowConfig,
    /// Whether transfers also run between frames (see `transfer::pump_between_frames`).
    pub pump_between_frames: bool,
    /// Whether this side's WebRTC stack moves files faster striped over several connections
    /// (`duet_shared::lane`): a pair stripes its transfers, both ways, when either side asks.
    pub wants_striping: bool,
    /// Whether this app can take part in calls at all.
    pub calls: bool,
    /// Whether calls can carry the camera.
    pub video: bool,
    /// What the received-files list offers for a saved file.
    pub file_actions: &'static [FileAction],
    /// Multisampling for the room's camera.
    pub msaa: bevy::render::view::Msaa,
    /// Whether the screen is touched rather than pointed at: targets of at least
    /// [`TOUCH_TARGET`] pixels, a long press where a mouse right-clicks, and text typed into
    /// the page's own fields ([`Shell::place_text_fields`]), since only a focused editable
    /// element brings up a phone's keyboard.
    pub touch: bool,
}

/// The smallest a control may be on a touch screen, in logical pixels (a fingertip).
pub const TOUCH_TARGET: f32 = 44.0;

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            frame_chunks: duet_shared::peer::CHUNKS_PER_FRAME,
            transfer_window: WindowConfig::default(),
            pump_between_frames: false,
            wants_striping: true,
            calls: true,
            video: false,
            file_actions: &[],
            msaa: bevy::render::view::Msaa::Off,
            touch: false,
        }
    }
}

/// The running platform's implementations, shared (cheap to clone). Inserted by `app`.
#[derive(Resource, Clone)]
pub struct Host {
    /// Threads, tasks and the network stack's needs.
    pub runtime: Arc<dyn Runtime>,
    /// Files the person sends.
    pub files: Arc<dyn LocalFiles>,
    /// A call's media connection.
    pub media: Arc<dyn Media>,
    /// The extra connections a large transfer is striped over.
    pub lanes: Arc<dyn LaneLinks>,
    /// The window or page around the app.
    pub shell: Arc<dyn Shell>,
    /// Getting the person's attention while the app is out of sight.
    pub attention: Arc<dyn Attention>,
    /// Where automation events go and commands come from.
    pub automation: Arc<dyn Automation>,
    /// Rings when a read, a hash or a store write the platform finished asynchronously is
    /// ready, so the transfers waiting for it move now rather than at the next frame.
    pub wake: Wake,
}

/// A wake-up shared by the platform's asynchronous work and the one task that waits for it
/// (the browser's between-frames transfer pump). Cheap to clone; a wake before anyone waits
/// is kept until the next [`Wake::poll`].
#[derive(Clone, Default)]
pub struct Wake(Arc<WakeState>);

#[derive(Default)]
struct WakeState {
    waker: futures::task::AtomicWaker,
    woken: std::sync::atomic::AtomicBool,
}

impl Wake {
    /// Something the waiting task waits for is ready.
    pub fn wake(&self) {
        self.0
            .woken
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.waker.wake();
    }

    /// Whether [`Wake::wake`] was called since the last poll; registers `cx` to be woken next.
    pub fn poll(&self, cx: &mut std::task::Context<'_>) -> bool {
        self.0.waker.register(cx.waker());
        self.0
            .woken
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wake")
    }
}

/// A file's SHA-256 and size, being computed off the frame.
pub type HashJob = Pin<Box<dyn Future<Output = std::io::Result<([u8; 32], u64)>> + Send>>;

/// Threads, tasks and the network stack's needs.
pub trait Runtime: Send + Sync + 'static {
    /// Called before a socket opens (the desktop sizes its UDP buffers).
    fn prepare_network(&self);
    /// Runs `future` until it ends, beside the frame loop and never behind other work on Bevy's
    /// shared task pools.
    fn spawn_loop(&self, future: LoopFuture);
    /// `bytes` arrived from the peer and were handled (the browser lets its collector know).
    fn received_from_peer(&self, bytes: usize);
    /// Keeps the between-frames pump running when nothing arrives (a hidden tab draws nothing).
    fn keep_pump_ticking(&self);
    /// Rings [`Host::wake`] at `at_ms` (ms since the epoch) if nothing else does before: the
    /// transfer engine's next deadline, for the pump between frames.
    fn wake_at(&self, at_ms: u64);
}

/// What reading a piece of a local file gave, now: the web reads asynchronously, so a read
/// may not be ready yet and is asked again next frame.
#[derive(Debug)]
pub enum ReadPoll {
    /// The buffer holds the bytes.
    Ready,
    /// Not read yet; ask again later.
    Pending,
    /// Reading failed.
    Failed(String),
}

/// Reads pieces of one file being sent.
pub trait FileRead: Send + Sync {
    /// Fills `buf` with the bytes at `offset`, or says to ask again.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> ReadPoll;
}

/// Files the person sends. Files are named by a `PathBuf` on both platforms: a real path on the
/// desktop, and on the web a handle (`/browser-file/{n}/{name}`) to a `File` the person dropped
/// or picked, which the web side keeps and reads by slices.
pub trait LocalFiles: Send + Sync + 'static {
    /// Size of a file, without reading it.
    fn size(&self, path: &Path) -> std::io::Result<u64>;
    /// What identifies this version of the file (path and modification time, or a browser
    /// file's name and date): the resume key is made of it.
    fn fingerprint(&self, path: &Path) -> std::io::Result<String>;
    /// SHA-256 and size, computed off the frame.
    fn hash(&self, path: PathBuf) -> HashJob;
    /// Opens a file for reading pieces of it.
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn FileRead>>;
}

/// What the media layer reports back.
#[derive(bevy::prelude::Message, Debug, Clone, PartialEq)]
pub enum MediaReport {
    /// Our offer (caller) or answer (callee) is ready.
    LocalDescription {
        /// The call.
        call: CallId,
        /// The SDP.
        sdp: String,
    },
    /// Our media connection found an ICE candidate.
    LocalCandidate {
        /// The call.
        call: CallId,
        /// The candidate line.
        candidate: String,
        /// Media section id.
        mid: Option<String>,
        /// Media section index.
        mline: Option<u16>,
    },
    /// Media flows.
    Connected(CallId),
    /// No microphone, permission denied, or the connection broke.
    Failed(CallId, CallEnd),
    /// Once a second during a call: what flows and how loud.
    Stats(CallId, CallStats),
}

/// What a call's media connection reports about itself (from `getStats()` in the browser):
/// the automation protocol's type, so the report goes to tests as it is.
pub use duet_shared::automation::CallStats;

/// What the call machine asks of the media connection (the shared machine's media effects).
pub use duet_shared::call::MediaOp;

/// A call's media connection (microphone, speakers, camera, its own WebRTC connection), driven
/// by the call machine's effects.
pub trait Media: Send + Sync + 'static {
    /// Carries out one media operation.
    fn command(&self, op: MediaOp, ice_servers: &[IceServer]);
    /// What happened since the last call.
    fn reports(&self) -> Vec<MediaReport>;
    /// Where the peer's camera shows: centre and radius in window pixels, or hidden.
    fn show_peer_video(&self, rect: Option<(f32, f32, f32)>);
}

/// What the lane machine asks of the lane connections (the shared machine's effects).
pub use duet_shared::lane::{LaneId, LaneOp};

/// What the lane connections report back, for the lane machine ([`duet_shared::lane::Lanes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneReport {
    /// Our offer (opener) or answer is ready.
    LocalDescription {
        /// The lane.
        lane: LaneId,
        /// The SDP.
        sdp: String,
    },
    /// The lane's connection found an ICE candidate (never before its description).
    LocalCandidate {
        /// The lane.
        lane: LaneId,
        /// The candidate line.
        candidate: String,
        /// Media section id.
        mid: Option<String>,
        /// Media section index.
        mline: Option<u16>,
    },
    /// The lane's data channel is open: frames may go over it.
    Opened(LaneId),
    /// The lane's connection failed or closed by itself (not after [`LaneOp::Close`]).
    Failed(LaneId),
}

impl LaneReport {
    /// The lane it is about.
    pub fn lane(&self) -> LaneId {
        match self {
            LaneReport::LocalDescription { lane, .. }
            | LaneReport::LocalCandidate { lane, .. }
            | LaneReport::Opened(lane)
            | LaneReport::Failed(lane) => *lane,
        }
    }
}

/// Most bytes of frames the lanes hold for the wire before it takes them: twice the largest
/// flow-control window (8 MiB), which is all an honest peer can have in flight. A peer that
/// sends more on its lanes is sending what it was not granted; its lane is closed.
pub const LANE_INBOX_BYTES: usize = 16 << 20;

/// The extra connections a large file transfer is striped over (`duet_shared::lane`): each a
/// peer connection of its own with one negotiated data channel, driven by the lane machine's
/// effects. Reports and arrived frames ring [`Host::wake`], so the transfers move at once.
pub trait LaneLinks: Send + Sync + 'static {
    /// Carries out one of the lane machine's operations.
    fn command(&self, op: LaneOp, ice_servers: &[IceServer]);
    /// What happened since the last call, in order.
    fn reports(&self) -> Vec<LaneReport>;
    /// Queues one data frame on an open lane; gives it back if the lane is not open (any more).
    fn send(&self, lane: LaneId, frame: Vec<u8>) -> Result<(), Vec<u8>>;
    /// Bytes handed to `lane` that its stack has not sent yet: frames go to the lane with the
    /// fewest, so a lane whose connection is recovering from a loss gets less.
    fn queued(&self, lane: LaneId) -> usize;
    /// The frames every lane received since the last call, each lane's in order. At most
    /// [`LANE_INBOX_BYTES`] wait; past that the lane that overflowed is reported failed.
    fn take_frames(&self) -> Vec<matchbox_socket::Packet>;
}

/// A file drag over the app that the window system does not report itself (the web: winit
/// sees no DOM drags), with where the pointer is in logical window pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDrag {
    /// Entered/moved, left, or dropped.
    pub kind: FileDragKind,
    /// Pointer position, logical pixels from the top-left of the window (canvas).
    pub at: Vec2,
}

/// See [`FileDrag`].
#[derive(Debug, Clone, PartialEq)]
pub enum FileDragKind {
    /// A drag with files is over the window.
    Hover,
    /// The drag left without dropping.
    Leave,
    /// Files were dropped (the first one is sent).
    Drop(PathBuf),
}

/// What the received-files list offers for a saved file; each platform lists its own in
/// [`Capabilities::file_actions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// Copy the file elsewhere through a native dialog.
    SaveAs,
    /// Show the downloads folder.
    OpenFolder,
    /// Hand the file to the browser's downloads.
    Download,
}

impl FileAction {
    /// The button's label.
    pub fn label(self) -> &'static str {
        match self {
            FileAction::SaveAs => "Save as…",
            FileAction::OpenFolder => "Open folder",
            FileAction::Download => "Download",
        }
    }
}

/// The window or page around the app.
pub trait Shell: Send + Sync + 'static {
    /// Asks the person for a file to send; `None` if they cancelled.
    fn pick_file(&self) -> Task<Option<PathBuf>>;
    /// Runs `action` on the received file at `location` (named `name`); a task that yields a
    /// sentence for the notices (or `None`: cancelled), or no task when it is done at once.
    fn file_action(
        &self,
        action: FileAction,
        location: &str,
        name: &str,
    ) -> Option<Task<Option<String>>>;
    /// File drags the window system does not report itself, since the last call.
    fn take_file_drags(&self) -> Vec<FileDrag>;
    /// Shows the room's link where the platform keeps it (the browser's address bar).
    fn show_room_link(&self, link: Option<&str>);
    /// The first styled frame is drawn: reveal the app (the page hides its loading text).
    fn app_ready(&self);
    /// Sets the window's icon from `rgba(size)` pixels; false until the window exists.
    fn set_window_icon(&self, window: Entity, rgba: fn(u32) -> Vec<u8>) -> bool;
    /// How to draw a frame at once when input arrives outside the window system.
    fn set_frame_waker(&self, wake: Box<dyn Fn() + Send + Sync>);
    /// Whether the platform has a share sheet for links (the Web Share API on phones); where
    /// it has none, the room's link is copied instead.
    fn can_share(&self) -> bool;
    /// Opens the share sheet with the room's link.
    fn share_link(&self, title: &str, link: &str);
    /// The text fields drawn this frame that the platform's own editable elements stand in
    /// for (see [`Capabilities::touch`]); fields not listed are hidden. A field whose text the
    /// app changed (the chat input cleared after sending) takes the new text.
    fn place_text_fields(&self, fields: &[TextField]);
    /// What the person typed into those fields since the last call, in order.
    fn take_text_edits(&self) -> Vec<TextEdit>;
}

/// A text field the platform's own editable element stands in for, where egui drew it.
#[derive(Debug, Clone, PartialEq)]
pub struct TextField {
    /// Which field (`"chat"`, `"name"`, `"link"`): edits come back under it.
    pub id: &'static str,
    /// Where, in logical window pixels: left, top, width, height.
    pub rect: [f32; 4],
    /// Its text as the app has it.
    pub text: String,
    /// Shown while it is empty.
    pub hint: String,
    /// Most characters it takes.
    pub max_chars: usize,
    /// What the keyboard's Enter key is labelled with (`"send"`, `"done"`, `"go"`).
    pub enter: &'static str,
}

/// See [`Shell::take_text_edits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextEdit {
    /// The field's whole text is now this.
    Text(&'static str, String),
    /// Enter was pressed in it.
    Enter(&'static str),
    /// It lost the keyboard.
    Left(&'static str),
}

/// A short sound, as notes, so each platform plays the same thing its own way (the page with
/// oscillators, the desktop with samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sound {
    /// Something arrived while the app was out of sight.
    Chime,
    /// A call is ringing (played again every [`RING_EVERY_MS`] while it rings).
    Ring,
}

/// How often the ring repeats while a call rings.
pub const RING_EVERY_MS: u64 = 2_000;

/// One note of a [`Sound`]: a sine at `hz`, `at_ms` after the sound starts, for `ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    /// Pitch.
    pub hz: f32,
    /// Start, from the sound's start.
    pub at_ms: u32,
    /// Length.
    pub ms: u32,
}

impl Sound {
    /// The notes: quiet and short, so they tell without startling.
    pub fn notes(self) -> &'static [Note] {
        match self {
            Sound::Chime => &[
                Note {
                    hz: 880.0,
                    at_ms: 0,
                    ms: 90,
                },
                Note {
                    hz: 1_320.0,
                    at_ms: 110,
                    ms: 140,
                },
            ],
            Sound::Ring => &[
                Note {
                    hz: 660.0,
                    at_ms: 0,
                    ms: 180,
                },
                Note {
                    hz: 880.0,
                    at_ms: 220,
                    ms: 180,
                },
                Note {
                    hz: 660.0,
                    at_ms: 440,
                    ms: 180,
                },
                Note {
                    hz: 880.0,
                    at_ms: 660,
                    ms: 180,
                },
            ],
        }
    }
}

/// Whether the platform's system notifications may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyPermission {
    /// The person allowed them.
    Granted,
    /// The person refused them (the browser does not ask again).
    Denied,
    /// Not asked yet: ask after a click of the person's.
    Ask,
    /// This platform has none; it asks for the window's attention instead.
    Unsupported,
}

/// Getting the person's attention while the app is out of sight: the tab's title, a system
/// notification, the window's request for attention, a sound. Called from the frame loop's
/// main thread (the desktop's window may only be touched there).
pub trait Attention: Send + Sync + 'static {
    /// Whether the person can see the app, where the platform knows better than the window's
    /// focus (a page: visible and focused); `None`: the window's focus says it.
    fn in_sight(&self) -> Option<bool>;
    /// Shows `title` where the window's own title does not (the page's tab).
    fn show_title(&self, title: &str);
    /// Tells the person: a system notification where allowed (a click on it brings the app
    /// forward), and the window's request for attention.
    fn notify(&self, window: Entity, title: &str, body: &str);
    /// Plays `sound` once.
    fn play(&self, sound: Sound);
    /// Whether system notifications may be shown.
    fn permission(&self) -> NotifyPermission;
    /// Asks the person to allow notifications (right after a click of theirs: browsers ask
    /// only then).
    fn ask_permission(&self);
}

/// Where automation events go (stdout, the console) and commands come from (stdin).
pub trait Automation: Send + Sync + 'static {
    /// One event line (JSON).
    fn emit_line(&self, line: &str);
    /// Command lines as they come, then `None` at the end of input.
    fn command_lines(&self) -> Receiver<Option<String>>;
    /// Whether anything sends commands at all: where nothing does (a page, driven by input
    /// events only), the runner reports by itself what a command would have asked for.
    fn takes_commands(&self) -> bool;
}
