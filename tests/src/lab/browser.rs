//! Chromium in a home of the lab. Its pages and signaling come from a loopback address of the
//! home's own (where the app allows its test hooks), forwarded through the home's NAT to the
//! Worker in the lab's internet; WebRTC's own packets take the home's route, as the native
//! client's do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Namespace;
use super::forward::Forward;

/// A way to start Chromium inside one home; the forward lives as long as it.
pub struct BrowserHome {
    _forward: Forward,
    /// A script that starts `/usr/bin/chromium` inside the home (Playwright's `executablePath`).
    pub chromium: PathBuf,
}

impl BrowserHome {
    /// Chromium for `home`, its wrapper script written to `work`; `server` is the Worker's
    /// address in the lab's internet.
    pub fn start(home: &Namespace, server: SocketAddr, work: &Path) -> Result<Self> {
        let root = crate::repo_root();
        if !root.join("web/pkg/duet-client_bg.wasm.gz").exists()
            && !root.join("web/pkg/duet-client_bg.wasm").exists()
        {
            bail!("the web client is not built: run `cargo xtask build-web`");
        }
        let forward = Forward::start(&home.netns(), local(server), server)?;
        std::fs::create_dir_all(work)?;
        let chromium = work.join(format!("chromium-in-{}", home.pid()));
        std::fs::write(
            &chromium,
            format!(
                "#!/bin/sh\nexec {} /usr/bin/chromium \"$@\"\n",
                home.wrapper().join(" ")
            ),
        )?;
        std::fs::set_permissions(
            &chromium,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(Self {
            _forward: forward,
            chromium,
        })
    }
}

/// The loopback address a browser in any home opens for `server` (the same port).
pub fn local(server: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

/// `link` (a room link on `server`) as a browser in a home opens it.
pub fn local_link(link: &str, server: SocketAddr) -> String {
    link.replace(&server.to_string(), &local(server).to_string())
}

/// The address of the server a link or base URL (`http://HOST:PORT/...`) names.
pub fn server_of(url: &str) -> Result<SocketAddr> {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("no server address in {url}"))
}
