//! A desktop session for the windowed client: an X server of its own (Xvfb; the client draws
//! with Mesa's software Vulkan) and `xdotool` to act on it.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Result;

use crate::HeadlessClient;

/// An X server on a display of its own; killed on drop.
pub struct Xvfb {
    /// `:N`.
    pub display: String,
    child: Child,
}

impl Xvfb {
    /// Xvfb picks a free display number itself (`-displayfd`) and prints it once it accepts
    /// clients: no guessing, so tests running in parallel threads never share a screen.
    pub fn start() -> Xvfb {
        Self::start_sized(1280, 720)
    }

    /// [`start`](Self::start) with a screen of `width`×`height` pixels: room for a window at a
    /// scale factor above 1 (the pointer cannot leave the screen).
    pub fn start_sized(width: u32, height: u32) -> Xvfb {
        let screen = format!("{width}x{height}x24");
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                &screen,
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (cargo xtask test installs it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read Xvfb's display number");
        let number: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb did not start (it printed {line:?})"));
        Xvfb {
            display: format!(":{number}"),
            child,
        }
    }

    /// The windowed client (`--automation`) on this display, talking to `server`, its data in
    /// `dir`; programs in `tools` (if any) come first on its `PATH`; `env` adds `NAME=VALUE`s.
    #[allow(clippy::too_many_arguments)]
    pub fn client(
        &self,
        binary: &Path,
        server: &str,
        link: &str,
        dir: &Path,
        name: &str,
        tools: Option<&Path>,
        env: &[String],
    ) -> Result<HeadlessClient> {
        let runtime = dir.join("xdg-runtime");
        std::fs::create_dir_all(&runtime)?;
        let path = std::env::var("PATH").unwrap_or_default();
        let path = match tools {
            Some(tools) => format!("PATH={}:{path}", tools.display()),
            None => format!("PATH={path}"),
        };
        let mut wrapper = vec![
            "env".to_owned(),
            format!("DISPLAY={}", self.display),
            format!("XDG_RUNTIME_DIR={}", runtime.display()),
            format!("DUET_SERVER={server}"),
            // No desktop session here: the file dialog falls back to zenity (see `tools`).
            "DBUS_SESSION_BUS_ADDRESS=disabled:".to_owned(),
            path,
        ];
        wrapper.extend(env.iter().cloned());
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        HeadlessClient::start_windowed(&wrapper, binary, link, dir, name)
    }

    /// Moves the pointer to (`x`, `y`), then, a moment later, presses and releases `button`
    /// there, as a hand does: the app sees the pointer arrive in one frame and the click in
    /// another, not all three in one batch.
    pub fn click_at(&self, x: f32, y: f32, button: u8) {
        let (x, y) = (format!("{x:.0}"), format!("{y:.0}"));
        self.xdotool(&["mousemove", &x, &y]);
        std::thread::sleep(std::time::Duration::from_millis(150));
        self.xdotool(&["click", &button.to_string()]);
    }

    /// Runs `xdotool ARGS` on this display and returns what it printed; panics if it fails.
    pub fn xdotool_output(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .unwrap();
        assert!(out.status.success(), "xdotool {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether a window named exactly `title` is on this display.
    pub fn has_window_named(&self, title: &str) -> bool {
        let pattern = format!("^{}$", regex_escape(title));
        Command::new("xdotool")
            .args(["search", "--name", &pattern])
            .env("DISPLAY", &self.display)
            .output()
            .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
    }

    /// Runs `xdotool ARGS` on this display; panics if it fails.
    pub fn xdotool(&self, args: &[&str]) {
        self.xdotool_output(args);
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` as a POSIX extended regular expression matching only itself (xdotool's `--name`).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
