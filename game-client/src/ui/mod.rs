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

/// Below this window width (logical pixels: a phone held upright, a narrow window) the room
/// is laid out in a column: the room on top, files and chat below, what does not fit in the
/// top bar behind "More".
pub const COMPACT_BELOW: f32 = 720.0;

/// What of the room must stay in view, in world units around its origin: both avatars with
/// their names and bubbles (the floor may be cut at the sides).
pub const ROOM_VIEW: Vec2 = Vec2::new(620.0, 400.0);

/// The part of the window the panels leave for the room, in logical pixels (the panels write
/// it each frame; the camera fits the room into it).
#[derive(Resource, Default, Clone, Copy, PartialEq, Debug)]
pub struct RoomArea(pub Option<Rect>);

/// Where the camera stands and how far it zooms out so that [`ROOM_VIEW`] fits in `area` of a
/// `window` (both logical pixels, y down): the room is never drawn larger than 1:1.
pub fn fit_room(area: Rect, window: Vec2) -> (Vec2, f32) {
    let size = area.size().max(Vec2::splat(1.0));
    let scale = (ROOM_VIEW.x / size.x).max(ROOM_VIEW.y / size.y).max(1.0);
    // The world origin goes to the area's centre; the camera's own centre is the window's.
    let off = area.center() - window / 2.0;
    (Vec2::new(-off.x, off.y) * scale, scale)
}

/// The windowed client's look and input.
pub struct PresentationPlugin;

impl Plugin for PresentationPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins(bevy_egui::EguiPlugin::default())
            .add_plugins((theme::plugin, scene::plugin, panels::plugin, input::plugin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_fits_beside_the_panel_and_above_the_chat_on_a_phone() {
        // A 1280×720 window with the side panel on the right, top bar and status line: the
        // room is drawn 1:1, its origin in the middle of what the panels leave.
        let desk = Rect::new(0.0, 52.0, 1280.0 - PANEL_WIDTH, 720.0 - 36.0);
        let (at, scale) = fit_room(desk, Vec2::new(1280.0, 720.0));
        assert_eq!(scale, 1.0);
        assert_eq!(at, Vec2::new(PANEL_WIDTH / 2.0, (52.0 - 36.0) / 2.0));
        // A phone upright (393×851): the room above a chat of 420 px is zoomed out to fit
        // both avatars across 393 px, and sits in the top part of the screen.
        let phone = Rect::new(0.0, 100.0, 393.0, 851.0 - 420.0);
        let window = Vec2::new(393.0, 851.0);
        let (at, scale) = fit_room(phone, window);
        assert!((scale - 620.0 / 393.0).abs() < 1e-4, "{scale}");
        let origin_on_screen = window / 2.0 + Vec2::new(-at.x, at.y) / scale;
        assert!((origin_on_screen - phone.center()).length() < 1e-3);
        // Each avatar's disc (64 world units) still stands over 40 px wide: a fingertip.
        assert!(2.0 * crate::room::AVATAR_RADIUS / scale > 80.0);
    }
}
