//! Everything that differs between the desktop and the browser, in this one place.
//!
//! The rest of the client calls these functions and never uses `cfg(target_arch)` itself.

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    /// Kernel buffer size asked for each WebRTC UDP socket.
    ///
    /// Why: webrtc-rs's SCTP sends bursts; with the default 208 KiB receive buffer the kernel drops
    /// datagrams whenever the receiving task is late and SCTP stalls on retransmits (measured:
    /// 16-18 MB/s with ~700 drops per 200 MiB, versus ~95 MB/s and none with 4 MiB). The kernel
    /// caps it at its own maximum (`net.core.rmem_max` on Linux), which is harmless.
    pub const UDP_BUFFER_BYTES: usize = 4 << 20;

    /// Called before the socket opens.
    pub fn prepare_network() {
        matchbox_socket::set_udp_buffer_size(UDP_BUFFER_BYTES);
    }

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
    pub fn open_folder(dir: &std::path::Path) {
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
    pub fn default_data_dir() -> Option<std::path::PathBuf> {
        directories::ProjectDirs::from("app", "Duet", "Duet").map(|d| d.data_dir().to_path_buf())
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    /// The browser sizes its own sockets.
    pub fn prepare_network() {}

    /// The browser has one thread: the loop runs on its event loop.
    pub fn spawn_message_loop(future: impl std::future::Future<Output = ()> + 'static) {
        bevy::tasks::IoTaskPool::get().spawn_local(future).detach();
    }

    /// Files live in IndexedDB in the browser; there is no folder to show.
    pub fn open_folder(_dir: &std::path::Path) {}
}

pub use imp::*;
