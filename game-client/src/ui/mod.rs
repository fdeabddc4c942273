//! Presentation: the window, the room drawn as a small 2D space, and the egui panels.
//!
//! Nothing here decides anything: it draws what [`crate::room`] and the core plugins hold, and
//! turns window input (drags, drops, clicks, keys) into their messages. Headless runs and tests
//! simply do not add this plugin.

mod automation;
mod input;
mod panels;
mod scene;
pub mod theme;

use bevy::prelude::*;

pub use automation::{AutomationPlugin, ReportLayoutChanges};
pub use panels::chat_lines;
pub use scene::FramePacing;

/// Width of the side panel (chat, transfers) in logical pixels; the room is centred in the rest.
pub const PANEL_WIDTH: f32 = 380.0;

/// The windowed client's look and input.
pub struct PresentationPlugin;

impl Plugin for PresentationPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins(bevy_egui::EguiPlugin::default())
            .add_plugins((theme::plugin, scene::plugin, panels::plugin, input::plugin));
    }
}
