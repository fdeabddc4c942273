//! Duet's client, as Bevy plugins that run headless.
//!
//! Map of the crate (one plugin per concern, each testable with `MinimalPlugins`):
//! - [`identity`]: who I am (UUID + display name), created on first start and kept in `bevy_pkv`.
//! - [`net`]: the WebRTC socket (matchbox) to the room, presence of the peer, and the peer
//!   protocol's control channel turned into Bevy messages.
//! - [`chat`]: chat messages with delivery state and a per-room history that survives restarts.
//! - [`storage`]: the blob store received files go to (a folder natively; IndexedDB later).
//! - [`transfer`]: streaming file transfer with end-to-end flow control, resume and verification.
//! - [`platform`]: the one place where desktop and browser differ.
//! - [`headless`]: a runner that prints machine-readable events and takes commands on stdin, used
//!   by tests and benchmarks (the windowed client arrives with the desktop issue).
//!
//! Nothing here assumes a window. No offline delivery: a chat sent while the peer is away is
//! stored as not delivered and shown so; nothing is queued for later.
#![forbid(unsafe_code)]

pub mod chat;
pub mod headless;
pub mod identity;
pub mod net;
pub mod platform;
pub mod storage;
pub mod transfer;

use bevy::prelude::*;

/// All headless plugins, in dependency order.
pub struct DuetCorePlugins;

impl PluginGroup for DuetCorePlugins {
    fn build(self) -> bevy::app::PluginGroupBuilder {
        bevy::app::PluginGroupBuilder::start::<Self>()
            .add(identity::IdentityPlugin)
            .add(net::NetPlugin)
            .add(chat::ChatPlugin)
            .add(transfer::TransferPlugin)
    }
}

/// Milliseconds since the Unix epoch (chat timestamps).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
