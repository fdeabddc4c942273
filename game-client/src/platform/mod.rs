//! Everything that differs between the desktop and the browser, in this one place.
//!
//! `native` and `web` offer the same functions and types; the rest of the client calls them
//! through this module and never uses `cfg(target_arch)` itself. Files are named by a `PathBuf`
//! on both: a real path on the desktop, and on the web a handle (`/browser-file/{n}/{name}`) to
//! a `File` the person dropped or picked, which the web side keeps and reads by slices.

use std::path::PathBuf;

use bevy::math::Vec2;

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub use web::*;

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
/// [`FILE_ACTIONS`].
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
