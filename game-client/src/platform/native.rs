//! The desktop's implementation of [`crate::ports`]: files on disk, stdin/stdout automation,
//! native dialogs, voice calls through webrtc-rs and cpal ([`media`]).

mod alarm;
mod audio;
mod lanes;
mod media;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};

use bevy::log::{error, warn};
use bevy::tasks::{AsyncComputeTaskPool, IoTaskPool, Task};
use duet_shared::transfer::WindowConfig;
use sha2::{Digest, Sha256};

use crate::ports::{
    Attention, Automation, Capabilities, FileAction, FileDrag, FileRead, HashJob, Host, LocalFiles,
    LoopFuture, NotifyPermission, ReadPoll, Runtime, Shell, Sound, TextEdit, TextField, Wake,
};

/// The desktop, as the ports see it.
struct Desktop {
    /// Keeps the transfer engine's deadlines for the pump between frames.
    alarm: alarm::Alarm,
    /// Draws a frame at once (see [`Shell::set_frame_waker`]), for the stdin thread.
    frame_waker: std::sync::Arc<FrameWaker>,
}

/// The window's wake-up, once the window exists.
type FrameWaker = std::sync::Mutex<Option<Box<dyn Fn() + Send + Sync>>>;

/// What the desktop can do.
pub fn capabilities() -> Capabilities {
    Capabilities {
        frame_chunks: FRAME_CHUNKS,
        transfer_window: WindowConfig::default(),
        pump_between_frames: PUMP_BETWEEN_FRAMES,
        wants_striping: WANTS_STRIPING,
        calls: true,
        video: false,
        file_actions: &[FileAction::SaveAs, FileAction::OpenFolder],
        msaa: MSAA,
        touch: false,
    }
}

/// The desktop's implementations of the ports.
pub fn host() -> Host {
    let wake = Wake::default();
    let desktop = std::sync::Arc::new(Desktop {
        alarm: alarm::Alarm::new(wake.clone()),
        frame_waker: Default::default(),
    });
    Host {
        runtime: desktop.clone(),
        files: desktop.clone(),
        media: std::sync::Arc::new(media::DesktopMedia::default()),
        lanes: std::sync::Arc::new(lanes::DesktopLanes::new(wake.clone())),
        shell: desktop.clone(),
        attention: desktop.clone(),
        automation: desktop,
        wake,
    }
}

/// Transfers run on a thread of their own, beside the frames: a slow GPU, a busy machine or a
/// minimized window draws few frames or none, and a transfer paced by them crawled (the
/// figures: `docs/bench/transfer.md`).
const PUMP_BETWEEN_FRAMES: bool = true;

/// Two desktops keep to the room's one connection: their SCTP (the vendored `rtc-sctp`) tells
/// random loss from congestion, so one connection already carries what the path takes, and
/// striping measured slower (`city`: 5.78-9.08 MiB/s striped against 8.83 and the stock
/// reference's 7.88-9.52; `docs/bench/wan.md`). With a browser, which asks, the pair stripes
/// both ways.
const WANTS_STRIPING: bool = false;

/// Kernel buffer size asked for each WebRTC UDP socket.
///
/// Why: webrtc-rs's SCTP sends bursts; with the default 208 KiB receive buffer the kernel drops
/// datagrams whenever the receiving task is late and SCTP stalls on retransmits (the figures:
/// `docs/bench/transfer.md`). The kernel caps it at its own maximum (`net.core.rmem_max` on
/// Linux), which is harmless.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

/// SCTP's receive buffer, the window it advertises (rtc-sctp's default: 1 MiB).
///
/// Why: data behind a lost packet waits there until the retransmission arrives; at 100 ms and
/// 0.5 % loss a 1 MiB buffer kept closing the window (`docs/bench/wan.md`). It bounds the
/// memory a peer can make this side hold per connection.
pub const SCTP_RECEIVE_BUFFER_BYTES: u32 = 4 << 20;

/// Multisampling for the room's camera: smooth circle edges on a desktop GPU.
const MSAA: bevy::render::view::Msaa = bevy::render::view::Msaa::Sample4;

/// Most chunks per data frame this side's WebRTC stack takes: webrtc-rs refuses messages over
/// 65,536 bytes, so the protocol's default.
const FRAME_CHUNKS: usize = duet_shared::peer::CHUNKS_PER_FRAME;

/// Fault injection for tests: `DUET_FAULT_DROP_GRANT=N` (see `transfer::Engine::drop_grant`).
pub fn fault_drop_grant() -> Option<u32> {
    std::env::var("DUET_FAULT_DROP_GRANT").ok()?.parse().ok()
}

impl Runtime for Desktop {
    fn prepare_network(&self) {
        matchbox_socket::set_udp_buffer_size(UDP_BUFFER_BYTES);
        matchbox_socket::set_sctp_receive_buffer_size(SCTP_RECEIVE_BUFFER_BYTES);
    }

    /// A thread of its own: matchbox's message loop moves every data-channel message.
    fn spawn_loop(&self, future: LoopFuture) {
        let spawned = std::thread::Builder::new()
            .name("duet-matchbox".into())
            .spawn(move || futures::executor::block_on(future));
        if let Err(e) = spawned {
            error!("cannot start the network thread: {e}");
        }
    }

    /// Nothing to do on the desktop: received bytes are freed when handled (see the web side
    /// for why the browser needs a nudge).
    fn received_from_peer(&self, _bytes: usize) {}

    /// Nothing ticks on the desktop: [`Runtime::wake_at`] keeps each deadline the engine has.
    fn keep_pump_ticking(&self) {}

    fn wake_at(&self, at_ms: u64) {
        self.alarm.ring_at(at_ms);
    }
}

/// Shows a folder in the desktop's file manager (best effort: nothing happens without one).
fn open_folder(dir: &Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(target_os = "windows") {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(dir).spawn() {
        warn!("cannot open {}: {e}", dir.display());
    }
}

/// Where identity, history and downloads live unless a flag says otherwise.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("app", "Duet", "Duet").map(|d| d.data_dir().to_path_buf())
}

/// Events on stdout, commands from stdin.
impl Automation for Desktop {
    fn emit_line(&self, line: &str) {
        println!("{line}");
    }

    /// Stdin.
    fn takes_commands(&self) -> bool {
        true
    }

    /// Each line wakes the window, as the input it stands in for does: read only at the next
    /// paced frame, a command waited up to a second on a software renderer, and `cargo xtask
    /// bench transfer` counted that wait in the windowed pair's transfer time.
    fn command_lines(&self) -> Receiver<Option<String>> {
        let (tx, rx) = channel();
        let waker = self.frame_waker.clone();
        let wake = move || {
            if let Ok(waker) = waker.lock()
                && let Some(wake) = waker.as_ref()
            {
                wake();
            }
        };
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.send(Some(line)).is_err() {
                    return;
                }
                wake();
            }
            let _ = tx.send(None);
            wake();
        });
        rx
    }
}

impl LocalFiles for Desktop {
    fn size(&self, path: &Path) -> std::io::Result<u64> {
        std::fs::metadata(path).map(|m| m.len())
    }

    /// The absolute path and when it was last modified (a new version of the file gets a new
    /// fingerprint).
    fn fingerprint(&self, path: &Path) -> std::io::Result<String> {
        fingerprint(path)
    }

    fn hash(&self, path: PathBuf) -> HashJob {
        Box::pin(hash_file(path))
    }

    fn open(&self, path: &Path) -> std::io::Result<Box<dyn FileRead>> {
        Ok(Box::new(FileReader {
            file: File::open(path)?,
        }))
    }
}

fn fingerprint(path: &Path) -> std::io::Result<String> {
    let modified = std::fs::metadata(path)?
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let path = std::fs::canonicalize(path)?;
    Ok(format!("{}\0{}", path.display(), modified.as_nanos()))
}

/// SHA-256 and size of a local file, computed off the frame (200 MiB takes seconds).
fn hash_file(path: PathBuf) -> Task<std::io::Result<([u8; 32], u64)>> {
    AsyncComputeTaskPool::get().spawn(async move {
        let mut file = File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((hasher.finalize().into(), size))
    })
}

/// Reads pieces of a file being sent; on the desktop every read is ready at once.
struct FileReader {
    file: File,
}

impl FileRead for FileReader {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> ReadPoll {
        match self
            .file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(buf))
        {
            Ok(()) => ReadPoll::Ready,
            Err(e) => ReadPoll::Failed(e.to_string()),
        }
    }
}

impl Shell for Desktop {
    /// The native dialog, off the frame.
    fn pick_file(&self) -> Task<Option<PathBuf>> {
        IoTaskPool::get().spawn(async {
            rfd::AsyncFileDialog::new()
                .set_title("Send a file to your peer")
                .pick_file()
                .await
                .map(|f| f.path().to_path_buf())
        })
    }

    /// Dialogs run off the frame.
    fn file_action(
        &self,
        action: FileAction,
        location: &str,
        name: &str,
    ) -> Option<Task<Option<String>>> {
        match action {
            FileAction::OpenFolder => {
                if let Some(dir) = Path::new(location).parent() {
                    open_folder(dir);
                }
                None
            }
            FileAction::SaveAs | FileAction::Download => {
                let (from, name) = (location.to_owned(), name.to_owned());
                Some(IoTaskPool::get().spawn(async move {
                    let to = rfd::AsyncFileDialog::new()
                        .set_file_name(&name)
                        .save_file()
                        .await?
                        .path()
                        .to_path_buf();
                    Some(match std::fs::copy(&from, &to) {
                        Ok(_) => format!("Saved a copy as {}.", to.display()),
                        Err(e) => format!("Could not save {}: {e}", to.display()),
                    })
                }))
            }
        }
    }

    /// The desktop's window system reports file drags itself (winit).
    fn take_file_drags(&self) -> Vec<FileDrag> {
        Vec::new()
    }

    /// A desktop window has no address bar to update.
    fn show_room_link(&self, _link: Option<&str>) {}

    /// The window shows the app from its first frame.
    fn app_ready(&self) {}

    fn set_window_icon(&self, entity: bevy::ecs::entity::Entity, rgba: fn(u32) -> Vec<u8>) -> bool {
        bevy::winit::WINIT_WINDOWS.with_borrow(|winit_windows| {
            let Some(window) = winit_windows.get_window(entity) else {
                return false;
            };
            let size = 64;
            if let Ok(icon) = winit::window::Icon::from_rgba(rgba(size), size, size) {
                window.set_window_icon(Some(icon));
            }
            true
        })
    }

    /// The window system reports its own input to the frame loop; only automation commands
    /// (stdin) come from outside it.
    fn set_frame_waker(&self, wake: Box<dyn Fn() + Send + Sync>) {
        if let Ok(mut waker) = self.frame_waker.lock() {
            *waker = Some(wake);
        }
    }

    /// A desktop has no share sheet: the link is copied.
    fn can_share(&self) -> bool {
        false
    }

    fn share_link(&self, _title: &str, _link: &str) {}

    /// egui's own fields take the keyboard on a desktop.
    fn place_text_fields(&self, _fields: &[TextField]) {}

    fn take_text_edits(&self) -> Vec<TextEdit> {
        Vec::new()
    }
}

impl Attention for Desktop {
    /// The window's focus says it.
    fn in_sight(&self) -> Option<bool> {
        None
    }

    /// The window's own title is the title.
    fn show_title(&self, _title: &str) {}

    /// The desktop has no notification of Duet's own: the window asks for attention (the
    /// taskbar entry flashes or bounces until the person looks).
    fn notify(&self, entity: bevy::ecs::entity::Entity, _title: &str, _body: &str) {
        bevy::winit::WINIT_WINDOWS.with_borrow(|winit_windows| {
            if let Some(window) = winit_windows.get_window(entity) {
                window
                    .request_user_attention(Some(winit::window::UserAttentionType::Informational));
            }
        });
    }

    fn play(&self, sound: Sound) {
        audio::play_notes(sound.notes());
    }

    fn permission(&self) -> NotifyPermission {
        NotifyPermission::Unsupported
    }

    fn ask_permission(&self) {}
}
