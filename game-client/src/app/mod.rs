//! The composition root: the one place that names the platform's adapters and puts the
//! plugins together. Both `main`s (the desktop binary and the page) end up in [`main`]; each
//! platform's own start (flags and a data folder, or the page's address) is in `native` or
//! `web`, behind the crate's one `cfg` split.

use bevy::prelude::*;

use crate::ports::{Capabilities, Host};
use crate::{api, call, chat, config, contacts, identity, net, room, transfer, ui};

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::main;

#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub use web::main;

/// All headless plugins, in dependency order.
pub struct DuetCorePlugins;

impl PluginGroup for DuetCorePlugins {
    fn build(self) -> bevy::app::PluginGroupBuilder {
        bevy::app::PluginGroupBuilder::start::<Self>()
            .add(identity::IdentityPlugin)
            .add(net::NetPlugin)
            .add(chat::ChatPlugin)
            .add(contacts::ContactsPlugin)
            .add(call::CallPlugin)
            .add(transfer::TransferPlugin)
    }
}

/// Puts the running platform under the app: its capabilities (with `tune` applied: the
/// desktop's measurement knobs) and its implementations of the ports. Before the core plugins,
/// which read both as they are built.
fn add_platform(app: &mut App, tune: impl FnOnce(&mut Capabilities)) {
    crate::frame::order(app);
    let mut capabilities = crate::platform::capabilities();
    tune(&mut capabilities);
    app.insert_resource(call::CallsSupported(capabilities.calls))
        .insert_resource(capabilities)
        .insert_resource::<Host>(crate::platform::host());
}

/// Adds the windowed client on top of [`DuetCorePlugins`]: the API, room logic and presentation,
/// and with `automation` the test hooks. `join` opens a room link straight away. Both
/// platforms' entry points build the window the same way through this.
fn add_windowed_client(app: &mut App, automation: bool, join: Option<String>) {
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

/// Sets the transfer engine's fault injection for tests (see `transfer::Engine::drop_grant`).
fn inject_faults(app: &mut App, drop_grant: Option<u32>) {
    if drop_grant.is_some() {
        let transfers = app.world().resource::<transfer::Transfers>();
        transfers.lock().set_drop_grant(drop_grant);
    }
}
