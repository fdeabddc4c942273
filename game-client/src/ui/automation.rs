//! Automation for end-to-end tests of the windowed client (`--automation`): the headless
//! runner's JSON events and stdin commands, plus
//! - `layout`: prints where the avatars and the chat input are on screen (logical pixels);
//! - `drop X Y PATH`: a file drag enters the window, the cursor moves to (X, Y), the file is
//!   dropped there — the same window events a real drag-and-drop produces, through the same code;
//! - `screenshot PATH`: saves the window's next frame as a PNG.
//!
//! It only feeds input and reports state; the behaviour tested is the product's.

use std::path::PathBuf;

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured, save_to_disk};
use bevy::window::{FileDragAndDrop, PrimaryWindow};
use duet_shared::automation::{self as auto, Event};

use super::panels::PanelState;
use super::scene::RoomCamera;
use crate::frame::FrameSet;
use crate::headless::{AcceptExtraCommands, EventOut, ExtraCommand, HeadlessPlugin};
use crate::room::{Alerted, MY_SPOT, Notices, PEER_SPOT, ReceivedFiles, Screen};

/// Test automation on top of the windowed client.
pub struct AutomationPlugin;

#[derive(Resource, Default)]
struct PendingDrop(Option<(PathBuf, Vec2, u32)>);

impl Plugin for AutomationPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins(HeadlessPlugin)
            .insert_resource(AcceptExtraCommands(true))
            .init_resource::<PendingDrop>()
            .init_resource::<ReportLayoutChanges>()
            .add_systems(
                Update,
                (
                    commands.in_set(FrameSet::Input),
                    (finish_drop, report_notices, report_alerts, report_layout)
                        .in_set(FrameSet::Presentation),
                ),
            )
            .add_systems(
                OnEnter(Screen::Room),
                |room: Option<Res<crate::room::CurrentRoom>>, out: Res<EventOut>| {
                    out.emit(Event::Screen {
                        screen: auto::Screen::Room,
                        link: room.map(|r| r.link.clone()),
                    });
                },
            )
            .add_systems(
                PostStartup,
                |received: Option<Res<ReceivedFiles>>, out: Res<EventOut>| {
                    let names = received
                        .iter()
                        .flat_map(|r| r.files.iter().map(|f| f.name.clone()))
                        .collect();
                    out.emit(Event::ReceivedFiles { names });
                },
            )
            .add_systems(OnEnter(Screen::Lobby), |out: Res<EventOut>| {
                out.emit(Event::Screen {
                    screen: auto::Screen::Lobby,
                    link: None,
                });
            });
    }
}

fn commands(
    mut lines: MessageReader<ExtraCommand>,
    mut commands: Commands,
    mut windows: Query<(Entity, &mut Window), With<PrimaryWindow>>,
    camera: Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
    (panel, out): (Res<PanelState>, Res<EventOut>),
    mut drags: MessageWriter<FileDragAndDrop>,
    mut pending: ResMut<PendingDrop>,
) {
    let emit = |event| out.emit(event);
    for ExtraCommand(line) in lines.read() {
        let mut words = line.splitn(4, ' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("layout"), ..) => {
                let window = windows.single().ok().map(|(_, w)| w);
                emit(layout(window, &camera, &panel));
            }
            (Some("drop"), Some(x), Some(y), Some(path)) => {
                let (Ok(x), Ok(y)) = (x.parse::<f32>(), y.parse::<f32>()) else {
                    emit(Event::Error {
                        message: "usage: drop X Y PATH".into(),
                    });
                    continue;
                };
                let Ok((window_entity, mut window)) = windows.single_mut() else {
                    continue;
                };
                let at = Vec2::new(x, y);
                window.set_cursor_position(Some(at));
                drags.write(FileDragAndDrop::HoveredFile {
                    window: window_entity,
                    path_buf: PathBuf::from(path),
                });
                pending.0 = Some((PathBuf::from(path), at, 3));
            }
            (Some("screenshot"), Some(path), ..) => {
                let path = PathBuf::from(path);
                let reported = path.clone();
                let out = out.clone();
                commands
                    .spawn(Screenshot::primary_window())
                    .observe(save_to_disk(path))
                    .observe(move |_: On<ScreenshotCaptured>| {
                        out.emit(Event::Screenshot {
                            path: reported.display().to_string(),
                        });
                    });
            }
            _ => emit(Event::Error {
                message: format!(
                    "unknown command {line:?}; also: layout, drop X Y PATH, screenshot PATH"
                ),
            }),
        }
    }
}

/// Where the avatars and the controls tests click are, in logical window pixels.
fn layout(
    window: Option<&Window>,
    camera: &Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
    panel: &PanelState,
) -> Event {
    let screen = |p: Vec2| {
        camera
            .single()
            .ok()
            .and_then(|(c, t)| c.world_to_viewport(t, p.extend(0.0)).ok())
            .map(|v| [v.x, v.y])
    };
    let center = |r: Option<bevy_egui::egui::Rect>| r.map(|r| [r.center().x, r.center().y]);
    let centers = |rects: &[(String, bevy_egui::egui::Rect)]| {
        rects
            .iter()
            .map(|(key, rect)| (key.clone(), [rect.center().x, rect.center().y]))
            .collect()
    };
    let named = |rects: &[(&'static str, bevy_egui::egui::Rect)]| {
        rects
            .iter()
            .map(|(key, rect)| (key.to_string(), [rect.center().x, rect.center().y]))
            .collect()
    };
    Event::Layout(Box::new(auto::Layout {
        window: window.map(|w| [w.width(), w.height()]),
        scale_factor: window.map_or(1.0, Window::scale_factor),
        me: screen(MY_SPOT),
        peer: screen(PEER_SPOT),
        chat_input: center(panel.chat_input),
        chat_focused: panel.chat_focused,
        create_button: center(panel.create_button),
        recent_rooms: centers(&panel.recent_buttons),
        kick_button: center(panel.kick_button),
        copy_button: center(panel.copy_button),
        file_button: center(panel.file_button),
        file_actions: named(&panel.file_actions),
        send_button: center(panel.send_button),
        offer_buttons: named(&panel.offer_buttons),
        seat_buttons: centers(&panel.seat_buttons),
        call_buttons: named(&panel.call_buttons),
        alert_buttons: named(&panel.alert_buttons),
        more_button: center(panel.more_button),
        menu_send_button: center(panel.menu_send_button),
        focused: center(panel.focused),
        tab_buttons: named(&panel.tab_buttons),
    }))
}

/// Whether the layout is reported by itself whenever it changes (for a page under test, which
/// has no stdin to ask with); otherwise only the `layout` command reports it.
#[derive(Resource, Debug, Clone, Copy, Default)]
pub struct ReportLayoutChanges(pub bool);

/// Reports a changed layout once it has held still for a few frames (egui places a new popup
/// over two passes; a test must not click where it was for one frame).
fn report_layout(
    enabled: Res<ReportLayoutChanges>,
    windows: Query<&Window, With<PrimaryWindow>>,
    camera: Query<(&Camera, &GlobalTransform), With<RoomCamera>>,
    panel: Res<PanelState>,
    out: Res<EventOut>,
    mut seen: Local<(String, u32, String)>,
) {
    if !enabled.0 {
        return;
    }
    let now = layout(windows.single().ok(), &camera, &panel).to_line();
    let (candidate, frames, reported) = &mut *seen;
    if now != *candidate {
        *candidate = now;
        *frames = 0;
    } else if *frames < 3 {
        *frames += 1;
    } else if *candidate != *reported {
        out.emit_line(candidate);
        *reported = candidate.clone();
    }
}

/// Drops a few frames after the drag entered, like a person would, so the drop zone shows.
fn finish_drop(
    mut pending: ResMut<PendingDrop>,
    mut windows: Query<(Entity, &mut Window), With<PrimaryWindow>>,
    mut drags: MessageWriter<FileDragAndDrop>,
    out: Res<EventOut>,
) {
    let Some((path, at, frames)) = pending.0.as_mut() else {
        return;
    };
    let Ok((entity, mut window)) = windows.single_mut() else {
        return;
    };
    window.set_cursor_position(Some(*at));
    if *frames > 0 {
        *frames -= 1;
        return;
    }
    drags.write(FileDragAndDrop::DroppedFile {
        window: entity,
        path_buf: path.clone(),
    });
    out.emit(Event::Dropped { at: [at.x, at.y] });
    pending.0 = None;
}

fn report_alerts(mut alerts: MessageReader<Alerted>, out: Res<EventOut>) {
    for alerted in alerts.read() {
        out.emit(Event::Alerted {
            what: alerted.alert.kind().to_owned(),
            unseen: alerted.unseen,
            sound: alerted.sound,
            told: alerted.told,
        });
    }
}

fn report_notices(notices: Res<Notices>, out: Res<EventOut>, mut seen: Local<usize>) {
    if !notices.is_changed() {
        return;
    }
    let new = notices
        .posted
        .saturating_sub(*seen)
        .min(notices.items.len());
    for (text, _) in &notices.items[notices.items.len() - new..] {
        out.emit(Event::Notice {
            message: text.clone(),
        });
    }
    *seen = notices.posted;
}
