//! The desktop side of [`super`]: files on disk, stdin/stdout automation, native dialogs, and
//! the command-line entry point.

mod audio;
mod entry;
mod media;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};

use bevy::tasks::{AsyncComputeTaskPool, IoTaskPool, Task};
use duet_shared::transfer::WindowConfig;
use sha2::{Digest, Sha256};

pub use entry::main;
pub use media::{
    CALLS_SUPPORTED, VIDEO_SUPPORTED, media_command, media_reports, set_peer_video_rect,
};

use super::{FileAction, FileDrag, ReadPoll};

/// Kernel buffer size asked for each WebRTC UDP socket.
///
/// Why: webrtc-rs's SCTP sends bursts; with the default 208 KiB receive buffer the kernel drops
/// datagrams whenever the receiving task is late and SCTP stalls on retransmits (measured:
/// 16-18 MB/s with ~700 drops per 200 MiB, versus ~95 MB/s and none with 4 MiB). The kernel
/// caps it at its own maximum (`net.core.rmem_max` on Linux), which is harmless.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Multisampling for the room's camera: smooth circle edges on a desktop GPU.
pub const MSAA: bevy::render::view::Msaa = bevy::render::view::Msaa::Sample4;

/// Most chunks per data frame this side's WebRTC stack takes: webrtc-rs refuses messages over
/// 65,536 bytes, so the protocol's default.
pub const FRAME_CHUNKS: usize = duet_shared::peer::CHUNKS_PER_FRAME;

/// The receiver's flow-control window: see [`WindowConfig::default`]'s measurements.
pub fn transfer_window() -> WindowConfig {
    WindowConfig::default()
}

/// Bytes a program without special rights may still write on the file system holding `dir`;
/// `None` where that cannot be asked (not a Unix system yet: Windows is not checked).
pub fn available_space(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stats = rustix::fs::statvfs(dir).ok()?;
        Some(stats.f_bavail.saturating_mul(stats.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Called before the socket opens.
pub fn prepare_network() {
    matchbox_socket::set_udp_buffer_size(UDP_BUFFER_BYTES);
}

/// The desktop's frame loop runs transfers; nothing runs between frames.
pub const PUMP_BETWEEN_FRAMES: bool = false;

/// Fault injection for tests: `DUET_FAULT_DROP_GRANT=N` (see `transfer::Engine::drop_grant`).
pub fn fault_drop_grant() -> Option<u32> {
    std::env::var("DUET_FAULT_DROP_GRANT").ok()?.parse().ok()
}

/// Nothing to do on the desktop: received bytes are freed when handled (see the web side for
/// why the browser needs a nudge).
pub fn received_from_peer(_bytes: usize) {}

/// Frames never stop on the desktop, so the engine's clock runs with them.
pub fn keep_pump_ticking() {}

/// Runs matchbox's message loop (it moves every data-channel message) on a thread of its
/// own, so it never waits behind other work on Bevy's shared task pools.
pub fn spawn_message_loop(future: impl std::future::Future<Output = ()> + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("duet-matchbox".into())
        .spawn(move || futures::executor::block_on(future));
    if let Err(e) = spawned {
        eprintln!("duet: cannot start the network thread: {e}");
    }
}

/// Shows a folder in the desktop's file manager (best effort: nothing happens without one).
pub fn open_folder(dir: &Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(target_os = "windows") {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(dir).spawn() {
        eprintln!("duet: cannot open {}: {e}", dir.display());
    }
}

/// Where identity, history and downloads live unless a flag says otherwise.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("app", "Duet", "Duet").map(|d| d.data_dir().to_path_buf())
}

/// One automation event line (JSON) on stdout.
pub fn emit_line(line: &str) {
    println!("{line}");
}

/// Automation commands: stdin lines as they come, then `None` at end of input.
pub fn command_lines() -> Receiver<Option<String>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// Size of a local file, without reading it.
pub fn file_size(path: &Path) -> std::io::Result<u64> {
    std::fs::metadata(path).map(|m| m.len())
}

/// What names this file for resuming a transfer of it: its absolute path and when it was last
/// modified (a new version of the file gets a new fingerprint).
pub fn file_fingerprint(path: &Path) -> std::io::Result<String> {
    let modified = std::fs::metadata(path)?
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let path = std::fs::canonicalize(path)?;
    Ok(format!("{}\0{}", path.display(), modified.as_nanos()))
}

/// SHA-256 and size of a local file, computed off the frame (200 MiB takes seconds).
pub fn hash_file(path: PathBuf) -> Task<std::io::Result<([u8; 32], u64)>> {
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
pub struct FileReader {
    file: File,
}

impl FileReader {
    /// Opens the file for reading.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
        })
    }

    /// Fills `buf` with the bytes at `offset`.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> ReadPoll {
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

/// The desktop's window system reports its own input to the frame loop; nothing to wake.
pub fn set_frame_waker(_wake: impl Fn() + Send + Sync + 'static) {}

/// The desktop's window system reports file drags itself (winit); nothing extra to take.
pub fn take_file_drags() -> Vec<FileDrag> {
    Vec::new()
}

/// What the received-files list offers on the desktop.
pub const FILE_ACTIONS: &[FileAction] = &[FileAction::SaveAs, FileAction::OpenFolder];

/// Runs `action` on the received file at `location` (named `name`). Dialogs run off the frame:
/// the task yields a sentence for the notices, or `None` when the person cancelled.
pub fn file_action(action: FileAction, location: &str, name: &str) -> Option<Task<Option<String>>> {
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

/// Asks for a file to send through the native dialog; `None` if cancelled.
pub fn pick_file() -> Task<Option<PathBuf>> {
    IoTaskPool::get().spawn(async {
        rfd::AsyncFileDialog::new()
            .set_title("Send a file to your peer")
            .pick_file()
            .await
            .map(|f| f.path().to_path_buf())
    })
}

/// The browser shows the room's link in its address bar; a desktop window has nothing to update.
pub fn show_room_link(_link: Option<&str>) {}

/// The window shows the app from its first frame; nothing else to reveal.
pub fn app_ready() {}

/// Sets the native window's icon from `rgba(size)` pixels; false until the window exists.
pub fn set_window_icon(entity: bevy::ecs::entity::Entity, rgba: fn(u32) -> Vec<u8>) -> bool {
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
