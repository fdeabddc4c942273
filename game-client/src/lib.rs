//! Duet's client, as Bevy plugins: a headless core plus room logic and a presentation layer.
//!
//! Map of the crate (one plugin per concern, each testable with `MinimalPlugins`):
//! - [`identity`]: who I am (UUID + display name), created on first start and kept in `bevy_pkv`.
//! - [`net`]: the WebRTC socket (matchbox) to the room, presence of the peer, and the peer
//!   protocol's control channel turned into Bevy messages.
//! - [`chat`]: chat messages with delivery state and a per-room history that survives restarts.
//! - [`history`]: where chat history is kept (a store of its own, behind a queue-shaped trait).
//! - [`call`]: voice/video calls: the shared call state machine over the control channel
//!   (signaling only so far; the media layer is the next step).
//! - [`storage`]: the blob store received files go to (a folder natively; IndexedDB later).
//! - [`transfer`]: streaming file transfer with end-to-end flow control, resume and verification.
//! - [`platform`]: the one place where desktop and browser differ.
//! - [`config`]: server URL and STUN/TURN servers from `assets/config.ron`.
//! - [`api`]: the worker's HTTP API (create a room, kick, ban) as messages.
//! - [`room`]: room logic for the windowed client: screens, presence, avatars and bubbles as
//!   entities, drop-zone hit tests, the transfer list, received files, moderation rights.
//! - [`ui`]: presentation only (window, 2D room, egui panels); headless runs do not add it.
//! - [`headless`]: a runner that prints machine-readable events and takes commands on stdin, used
//!   by tests and benchmarks (and, with `--automation`, by the windowed client's tests).
//!
//! Nothing here assumes a window. No offline delivery: a chat sent while the peer is away is
//! stored as not delivered and shown so; nothing is queued for later.
#![forbid(unsafe_code)]

pub mod api;
pub mod call;
pub mod chat;
pub mod config;
pub mod headless;
pub mod history;
pub mod identity;
pub mod net;
pub mod platform;
pub mod room;
pub mod storage;
pub mod transfer;
pub mod ui;

use bevy::prelude::*;

/// All headless plugins, in dependency order.
pub struct DuetCorePlugins;

impl PluginGroup for DuetCorePlugins {
    fn build(self) -> bevy::app::PluginGroupBuilder {
        bevy::app::PluginGroupBuilder::start::<Self>()
            .add(identity::IdentityPlugin)
            .add(net::NetPlugin)
            .add(chat::ChatPlugin)
            .add(call::CallPlugin)
            .add(transfer::TransferPlugin)
    }
}

/// Adds the windowed client on top of [`DuetCorePlugins`]: the API, room logic and presentation,
/// and with `automation` the test hooks. `join` opens a room link straight away. Both
/// platforms' entry points build the window the same way through this.
pub fn add_windowed_client(app: &mut App, automation: bool, join: Option<String>) {
    app.add_plugins((api::ApiPlugin, room::RoomPlugin, ui::PresentationPlugin));
    if automation {
        app.add_plugins(ui::AutomationPlugin);
    }
    if let Some(link) = join {
        // The person chose this link themselves (the command line, the page's address).
        if let Some(server) = config::authority(&link) {
            app.insert_resource(room::TrustedServers(vec![server]));
        }
        app.world_mut().write_message(room::JoinRoom(link));
    }
}

/// Locks state shared by the frame loop and the browser's between-frames pump. A poisoned lock
/// is taken over: every holder leaves the state consistent between statements.
pub fn lock_shared<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Milliseconds since the Unix epoch (chat timestamps).
pub fn now_ms() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Removes the finished tasks from `tasks` and returns their results, without blocking: used
/// for work that must not stall a frame (hashing a file, a native file dialog).
pub fn take_finished<T>(tasks: &mut Vec<bevy::tasks::Task<T>>) -> Vec<T> {
    take_finished_with(tasks, |task| task)
        .into_iter()
        .map(|(_, result)| result)
        .collect()
}

/// [`take_finished`] for items that carry a task among other fields (`task` picks it out): the
/// finished items are removed and returned with their results.
pub fn take_finished_with<E, T>(
    items: &mut Vec<E>,
    mut task: impl FnMut(&mut E) -> &mut bevy::tasks::Task<T>,
) -> Vec<(E, T)> {
    let mut done = Vec::new();
    let mut i = 0;
    while i < items.len() {
        match bevy::tasks::block_on(bevy::tasks::poll_once(task(&mut items[i]))) {
            Some(result) => done.push((items.remove(i), result)),
            None => i += 1,
        }
    }
    done
}
