//! Window input turned into room messages: file drags and drops (with where the cursor is, in
//! world space), and a right click or a long press on the peer's avatar opening its menu. Also
//! sets the window icon once the native window exists.

use bevy::prelude::*;
use bevy::window::{FileDragAndDrop, PrimaryWindow};

use super::panels::PanelState;
use super::scene::RoomCamera;
use crate::frame::FrameSet;
use crate::ports::{FileDragKind, Host};
use crate::room::{FileDropped, FileHover, Screen, Who, avatar_at};

pub(super) fn plugin(app: &mut App) {
    app.add_systems(
        PreUpdate,
        (file_drags, platform_file_drags, avatar_menu, long_press).run_if(in_state(Screen::Room)),
    )
    .add_systems(Update, set_window_icon.in_set(FrameSet::Presentation));
}

/// The cursor in world coordinates, if it is over the window.
fn cursor_world(
    window: &Window,
    camera: &Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
) -> Option<Vec2> {
    let cursor = window.cursor_position()?;
    let (camera, transform) = camera.single().ok()?;
    camera.viewport_to_world_2d(transform, cursor).ok()
}

fn file_drags(
    mut drags: MessageReader<FileDragAndDrop>,
    windows: Query<&Window, With<PrimaryWindow>>,
    camera: Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
    mut hover: MessageWriter<FileHover>,
    mut dropped: MessageWriter<FileDropped>,
    mut dragging: Local<bool>,
) {
    let Ok(window) = windows.single() else { return };
    let at = cursor_world(window, &camera);
    for drag in drags.read() {
        match drag {
            FileDragAndDrop::HoveredFile { .. } => {
                *dragging = true;
                hover.write(FileHover { active: true, at });
            }
            FileDragAndDrop::HoveredFileCanceled { .. } => {
                *dragging = false;
                hover.write(FileHover { active: false, at });
            }
            FileDragAndDrop::DroppedFile { path_buf, .. } => {
                *dragging = false;
                dropped.write(FileDropped {
                    path: path_buf.clone(),
                    at,
                });
            }
        }
    }
    if *dragging {
        // Keep the drop zone following the cursor while the drag lasts.
        hover.write(FileHover { active: true, at });
    }
}

/// File drags the window system does not report (the browser's DOM drags), taken from the
/// platform layer with their position and fed into the same room messages.
fn platform_file_drags(
    camera: Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
    mut hover: MessageWriter<FileHover>,
    mut dropped: MessageWriter<FileDropped>,
    host: Res<Host>,
) {
    for drag in host.shell.take_file_drags() {
        let at = camera
            .single()
            .ok()
            .and_then(|(camera, transform)| camera.viewport_to_world_2d(transform, drag.at).ok());
        match drag.kind {
            FileDragKind::Hover => {
                hover.write(FileHover { active: true, at });
            }
            FileDragKind::Leave => {
                hover.write(FileHover { active: false, at });
            }
            FileDragKind::Drop(path) => {
                hover.write(FileHover { active: false, at });
                dropped.write(FileDropped { path, at });
            }
        }
    }
}

fn avatar_menu(
    buttons: Res<ButtonInput<MouseButton>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    camera: Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
    mut state: ResMut<PanelState>,
) {
    // The avatars stand in the room area, never under a panel: a hit is a hit.
    if !buttons.just_pressed(MouseButton::Right) {
        return;
    }
    let Ok(window) = windows.single() else { return };
    if cursor_world(window, &camera).and_then(avatar_at) == Some(Who::Peer) {
        state.avatar_menu = window
            .cursor_position()
            .map(|p| bevy_egui::egui::pos2(p.x, p.y));
    }
}

/// How long a finger rests on the peer's avatar before its menu opens: the touch screen's
/// right click (a tap stays a tap, a scroll a scroll).
const LONG_PRESS: std::time::Duration = std::time::Duration::from_millis(450);

/// How far, in logical pixels, the finger may drift during a long press.
const LONG_PRESS_SLOP: f32 = 12.0;

/// A finger down, watched for a long press.
struct Press {
    id: u64,
    start: Vec2,
    since: std::time::Duration,
}

fn long_press(
    touches: Res<Touches>,
    time: Res<Time<Real>>,
    camera: Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
    mut state: ResMut<PanelState>,
    mut press: Local<Option<Press>>,
) {
    if let Some(touch) = touches.iter_just_pressed().last() {
        *press = Some(Press {
            id: touch.id(),
            start: touch.position(),
            since: time.elapsed(),
        });
    }
    let Some(down) = press.as_ref() else { return };
    let Some(touch) = touches.get_pressed(down.id) else {
        // Lifted or cancelled before it was long.
        *press = None;
        return;
    };
    if touch.position().distance(down.start) > LONG_PRESS_SLOP {
        *press = None;
        return;
    }
    if time.elapsed() - down.since < LONG_PRESS {
        return;
    }
    let on_peer = camera
        .single()
        .ok()
        .and_then(|(camera, at)| camera.viewport_to_world_2d(at, down.start).ok())
        .and_then(avatar_at)
        == Some(Who::Peer);
    if on_peer {
        state.avatar_menu = Some(bevy_egui::egui::pos2(down.start.x, down.start.y));
    }
    *press = None;
}

/// Gives the window the app's mark (drawn in code, see [`super::theme::icon_rgba`]), once the
/// native window exists.
fn set_window_icon(
    _main_thread: bevy::ecs::system::NonSendMarker,
    windows: Query<Entity, With<PrimaryWindow>>,
    host: Res<Host>,
    mut done: Local<bool>,
) {
    if *done {
        return;
    }
    let Ok(entity) = windows.single() else { return };
    *done = host.shell.set_window_icon(entity, super::theme::icon_rgba);
}
