//! The egui parts: the lobby, and in the room the top bar, the side panel (transfers, received
//! files, chat) and the status line.

use bevy::prelude::*;
use bevy::tasks::Task;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::PANEL_WIDTH;
use super::theme::{ecolor, palette};
use crate::api::Moderation;
use crate::call::{CallAction, CallState, CallsSupported};
use crate::chat::{ChatEntry, ChatLog, Delivery, SendChat};
use crate::frame::FrameSet;
use crate::identity::{Identity, Rename};
use crate::ports::{Capabilities, Host};
use crate::room::{
    AnswerForeignLink, CreateRoom, CurrentRoom, ForeignLink, FreeSeat, JoinRoom, LeaveRoom,
    Moderate, Notices, Presence, ReceivedFiles, RecentRooms, RowState, Screen, SeatHolders,
    TransferList,
};
use crate::transfer::{AnswerOffer, CancelTransfer, Direction, SendFile};
use duet_shared::call::CallPhase;

/// How many chat lines are laid out at first; older ones load on demand, so a history of
/// thousands of messages costs the same per frame as a short one.
const CHAT_PAGE: usize = 200;

/// Text the user is typing, and other egui-side state.
#[derive(Resource, Default)]
pub struct PanelState {
    /// The chat input.
    pub draft: String,
    /// The lobby's room-link field.
    pub link: String,
    /// The rename field.
    pub name: String,
    /// How many of the newest chat lines are shown.
    pub shown: usize,
    /// Where the chat input is on screen (logical pixels), for automation.
    pub chat_input: Option<egui::Rect>,
    /// Whether the chat input has the keyboard, for automation (type only once it has).
    pub chat_focused: bool,
    /// Where the room's "Copy link" button is, for automation.
    pub copy_button: Option<egui::Rect>,
    /// Where the lobby's "Create a room" button is, for automation.
    pub create_button: Option<egui::Rect>,
    /// Where the avatar menu's "Kick" button is while the menu is open, for automation.
    pub kick_button: Option<egui::Rect>,
    /// Where the newest received file's first action button ("Save as…", "Download") is, for
    /// automation.
    pub file_button: Option<egui::Rect>,
    /// Where each of the newest received file's action buttons is, by label, for automation.
    pub file_actions: Vec<(&'static str, egui::Rect)>,
    /// Where the newest offer question's "Accept" and "Decline" buttons are (`accept`,
    /// `decline`), for automation.
    pub offer_buttons: Vec<(&'static str, egui::Rect)>,
    /// Where the "Send a file…" button is while it can be pressed, for automation.
    pub send_button: Option<egui::Rect>,
    /// Where each call control is (`call`, `video_call`, `accept`, `accept_video`, `decline`,
    /// `hangup`, `mute`, `camera`) while shown, for automation.
    pub call_buttons: Vec<(&'static str, egui::Rect)>,
    /// Where the full-room window's buttons are (`remove_0`, `ban_0`, `remove_1`, ...), for
    /// automation.
    pub seat_buttons: Vec<(String, egui::Rect)>,
    /// Open avatar menu, at this screen position.
    pub avatar_menu: Option<egui::Pos2>,
    /// The "link copied" hint until this time (seconds).
    pub copied_until: f64,
}

/// File dialogs run off the frame; their answers arrive here: files picked to send, and
/// sentences from file actions (a saved copy) for the notices.
#[derive(Resource, Default)]
struct Dialogs {
    picks: Vec<Task<Option<std::path::PathBuf>>>,
    actions: Vec<Task<Option<String>>>,
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<PanelState>()
        .init_resource::<Dialogs>()
        .add_systems(
            EguiPrimaryContextPass,
            (
                lobby.run_if(in_state(Screen::Lobby)),
                room.run_if(in_state(Screen::Room)),
            )
                .run_if(resource_exists::<super::theme::Styled>),
        )
        .add_systems(Update, finish_dialogs.in_set(FrameSet::Input));
}

/// "40 s", "5 min", "3 h", "2 days": how long ago a seat was taken.
fn duration_words(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

fn human_bytes(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} kB", n / 1e3)
    } else {
        format!("{n:.0} B")
    }
}

#[allow(clippy::too_many_arguments)]
fn lobby(
    mut contexts: EguiContexts,
    mut state: ResMut<PanelState>,
    identity: Option<Res<Identity>>,
    recent: Option<Res<RecentRooms>>,
    notices: Res<Notices>,
    mut create: MessageWriter<CreateRoom>,
    mut join: MessageWriter<JoinRoom>,
    mut rename: MessageWriter<Rename>,
    (foreign, mut answer): (Res<ForeignLink>, MessageWriter<AnswerForeignLink>),
) -> Result {
    let ctx = contexts.ctx_mut()?;
    let Some(identity) = identity else {
        return Ok(());
    };
    let mut root = root_ui(ctx);
    if state.name.is_empty() {
        state.name = identity.name.clone();
    }
    egui::CentralPanel::default()
        .frame(egui::Frame::NONE.fill(ecolor(palette::NIGHT)))
        .show(&mut root, |ui| {
            ui.vertical_centered(|ui| {
                ui.add_space(56.0);
                ui.label(
                    egui::RichText::new("Duet")
                        .size(54.0)
                        .family(egui::FontFamily::Name("bold".into()))
                        .color(ecolor(palette::ACCENT)),
                );
                ui.label(
                    egui::RichText::new(
                        "A room for two. Chat and files go straight between you — no accounts, no server in the middle.",
                    )
                    .color(ecolor(palette::MUTED)),
                );
                ui.add_space(28.0);
                egui::Frame::new()
                    .fill(ecolor(palette::PANEL))
                    .corner_radius(14)
                    .inner_margin(24)
                    .show(ui, |ui| {
                        ui.set_width(460.0);
                        ui.horizontal(|ui| {
                            ui.label("Your name");
                            let field = ui.add(
                                egui::TextEdit::singleline(&mut state.name)
                                    .desired_width(220.0)
                                    .char_limit(duet_shared::peer::MAX_DISPLAY_NAME_CHARS),
                            );
                            let enter = field.lost_focus()
                                && ui.input(|i| i.key_pressed(egui::Key::Enter));
                            let changed = state.name.trim() != identity.name;
                            if (ui.add_enabled(changed, egui::Button::new("Save")).clicked()
                                || enter)
                                && changed
                            {
                                rename.write(Rename(state.name.clone()));
                            }
                        });
                        ui.add_space(14.0);
                        let big = egui::Button::new(
                            egui::RichText::new("Create a room").size(18.0).color(ecolor(palette::NIGHT)),
                        )
                        .fill(ecolor(palette::ACCENT))
                        .min_size(egui::vec2(460.0, 44.0));
                        let button = ui.add(big);
                        state.create_button = Some(button.rect);
                        if button.clicked() {
                            create.write(CreateRoom);
                        }
                        ui.add_space(14.0);
                        ui.label(egui::RichText::new("or join one with its link").color(ecolor(palette::MUTED)));
                        ui.horizontal(|ui| {
                            let field = ui.add(
                                egui::TextEdit::singleline(&mut state.link)
                                    .hint_text("http://127.0.0.1:8787/r/…")
                                    .desired_width(350.0),
                            );
                            let enter = field.lost_focus()
                                && ui.input(|i| i.key_pressed(egui::Key::Enter));
                            if ui.button("Join").clicked() || (enter && !state.link.is_empty()) {
                                join.write(JoinRoom(state.link.trim().to_owned()));
                            }
                        });
                        if let Some(asked) = &foreign.0 {
                            ui.add_space(10.0);
                            ui.label(
                                egui::RichText::new(format!(
                                    "This link is for another server, {}, not yours. That server \
                                     would see your address and name and could pretend to be the \
                                     room. Open it only if you trust whoever sent it.",
                                    asked.server
                                ))
                                .color(ecolor(palette::BAD)),
                            );
                            ui.horizontal(|ui| {
                                if ui.button("Open it anyway").clicked() {
                                    answer.write(AnswerForeignLink(true));
                                }
                                if ui.button("Don't open").clicked() {
                                    answer.write(AnswerForeignLink(false));
                                }
                            });
                        }
                        if let Some(recent) = recent.as_ref().filter(|r| !r.rooms.is_empty()) {
                            ui.add_space(14.0);
                            ui.label(egui::RichText::new("Recent rooms").color(ecolor(palette::MUTED)));
                            for room in &recent.rooms {
                                ui.horizontal(|ui| {
                                    ui.monospace(&room.room);
                                    if room.owner_key.is_some() {
                                        ui.label(
                                            egui::RichText::new("yours")
                                                .small()
                                                .color(ecolor(palette::ACCENT)),
                                        );
                                    }
                                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                                        if ui.button("Open").clicked() {
                                            join.write(JoinRoom(room.link.clone()));
                                        }
                                    });
                                });
                            }
                        }
                    });
                if let Some(notice) = notices.latest(12_000) {
                    ui.add_space(16.0);
                    ui.label(egui::RichText::new(notice).color(ecolor(palette::BAD)));
                }
            });
        });
    Ok(())
}

/// Everything the room screen can ask for.
type RoomOutputs<'w> = (
    MessageWriter<'w, SendChat>,
    MessageWriter<'w, LeaveRoom>,
    (
        MessageWriter<'w, CancelTransfer>,
        MessageWriter<'w, AnswerOffer>,
    ),
    (MessageWriter<'w, Moderate>, MessageWriter<'w, FreeSeat>),
    MessageWriter<'w, Rename>,
    MessageWriter<'w, CallAction>,
);

#[allow(clippy::too_many_arguments)]
fn room(
    mut contexts: EguiContexts,
    mut state: ResMut<PanelState>,
    mut dialogs: ResMut<Dialogs>,
    identity: Option<Res<Identity>>,
    current: Option<Res<CurrentRoom>>,
    presence: Res<Presence>,
    chat: Res<ChatLog>,
    transfers: Res<TransferList>,
    received: Res<ReceivedFiles>,
    (notices, seats): (Res<Notices>, Res<SeatHolders>),
    time: Res<Time>,
    call: Res<CallState>,
    (supported, capabilities, host): (Res<CallsSupported>, Res<Capabilities>, Res<Host>),
    mut out: RoomOutputs,
) -> Result {
    let ctx = contexts.ctx_mut()?;
    let (Some(identity), Some(current)) = (identity, current) else {
        return Ok(());
    };
    let (send_chat, leave, (cancel, answer), (moderate, free_seat), rename, calls) = &mut out;
    let peer_name = presence.peer_name().unwrap_or("your peer").to_owned();
    let mut root = root_ui(ctx);
    let now = time.elapsed_secs_f64();

    egui::Panel::top("top")
        .exact_size(52.0)
        .frame(
            egui::Frame::new()
                .fill(ecolor(palette::PANEL))
                .inner_margin(egui::Margin::symmetric(16, 10)),
        )
        .show(&mut root, |ui| {
            ui.horizontal_centered(|ui| {
                ui.label(
                    egui::RichText::new("Duet")
                        .size(22.0)
                        .family(egui::FontFamily::Name("bold".into()))
                        .color(ecolor(palette::ACCENT)),
                );
                ui.add_space(12.0);
                ui.label(
                    egui::RichText::new(&current.link)
                        .monospace()
                        .color(ecolor(palette::MUTED)),
                );
                let copy = ui.button("Copy link");
                state.copy_button = Some(copy.rect);
                if copy.clicked() {
                    ctx_copy(ui, &current.link);
                    state.copied_until = now + 2.0;
                }
                if state.copied_until > now {
                    ui.label(egui::RichText::new("Copied").color(ecolor(palette::GOOD)));
                }
                ui.add_space(16.0);
                call_bar(
                    ui,
                    &mut state,
                    &call,
                    (supported.0, capabilities.video),
                    presence.peer_name(),
                    calls,
                );
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui.button("Leave").clicked() {
                        leave.write(LeaveRoom);
                    }
                    if current.is_owner() {
                        ui.label(
                            egui::RichText::new("your room")
                                .small()
                                .color(ecolor(palette::ACCENT)),
                        );
                    }
                    if state.name.is_empty() {
                        state.name = identity.name.clone();
                    }
                    let field = ui.add(
                        egui::TextEdit::singleline(&mut state.name)
                            .desired_width(140.0)
                            .char_limit(duet_shared::peer::MAX_DISPLAY_NAME_CHARS),
                    );
                    if field.lost_focus() && state.name.trim() != identity.name {
                        rename.write(Rename(state.name.clone()));
                    }
                    ui.label(egui::RichText::new("you are").color(ecolor(palette::MUTED)));
                });
            });
        });

    egui::Panel::bottom("status")
        .exact_size(36.0)
        .frame(
            egui::Frame::new()
                .fill(ecolor(palette::PANEL))
                .inner_margin(egui::Margin::symmetric(16, 8)),
        )
        .show(&mut root, |ui| {
            let (text, tint) = match notices.latest(8_000) {
                Some(notice) => (notice.to_owned(), palette::ACCENT),
                None => (presence.status(), palette::MUTED),
            };
            ui.label(egui::RichText::new(text).color(ecolor(tint)));
        });

    egui::Panel::right("side")
        .exact_size(PANEL_WIDTH)
        .resizable(false)
        .frame(
            egui::Frame::new()
                .fill(ecolor(palette::PANEL))
                .inner_margin(14),
        )
        .show(&mut root, |ui| {
            let peer_here = presence.peer_name().is_some();
            ui.horizontal(|ui| {
                ui.heading("Files");
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let send = ui
                        .add_enabled(peer_here, egui::Button::new("Send a file…"))
                        .on_disabled_hover_text("Your peer is not in the room.");
                    state.send_button = peer_here.then_some(send.rect);
                    if send.clicked() {
                        dialogs.picks.push(host.shell.pick_file());
                    }
                });
            });
            if transfers.rows.is_empty() && received.files.is_empty() {
                ui.label(
                    egui::RichText::new("Drag a file onto your peer's avatar to send it.")
                        .color(ecolor(palette::MUTED)),
                );
            }
            egui::ScrollArea::vertical()
                .id_salt("files")
                .max_height(230.0)
                .show(ui, |ui| {
                    state.offer_buttons.clear();
                    for row in transfers.rows.iter().rev() {
                        egui::Frame::new()
                            .fill(ecolor(palette::RAISED))
                            .corner_radius(8)
                            .inner_margin(8)
                            .show(ui, |ui| {
                                ui.set_width(ui.available_width());
                                let arrow = if row.direction == Direction::Outgoing {
                                    "↑"
                                } else {
                                    "↓"
                                };
                                ui.horizontal(|ui| {
                                    ui.label(format!("{arrow} {}", row.name));
                                    if matches!(
                                        row.state,
                                        RowState::Running | RowState::AwaitingPeer
                                    ) {
                                        ui.with_layout(
                                            egui::Layout::right_to_left(egui::Align::Center),
                                            |ui| {
                                                if ui.small_button("Cancel").clicked() {
                                                    cancel.write(CancelTransfer(row.id));
                                                }
                                            },
                                        );
                                    }
                                });
                                let muted = |text: String| {
                                    egui::RichText::new(text)
                                        .small()
                                        .color(ecolor(palette::MUTED))
                                };
                                match &row.state {
                                    RowState::Asking => {
                                        ui.label(muted(format!(
                                            "{} · {} wants to send you this file",
                                            human_bytes(row.size as f64),
                                            peer_name
                                        )));
                                        ui.horizontal(|ui| {
                                            let yes = ui.button("Accept");
                                            let no = ui.button("Decline");
                                            if state.offer_buttons.is_empty() {
                                                // The list is newest first: the newest question's.
                                                state.offer_buttons = vec![
                                                    ("accept", yes.rect),
                                                    ("decline", no.rect),
                                                ];
                                            }
                                            if yes.clicked() {
                                                answer.write(AnswerOffer {
                                                    id: row.id,
                                                    accept: true,
                                                });
                                            }
                                            if no.clicked() {
                                                answer.write(AnswerOffer {
                                                    id: row.id,
                                                    accept: false,
                                                });
                                            }
                                        });
                                    }
                                    RowState::AwaitingPeer => {
                                        ui.label(muted(format!(
                                            "{} · waiting for {} to accept",
                                            human_bytes(row.size as f64),
                                            peer_name
                                        )));
                                    }
                                    RowState::Paused(why) => {
                                        ui.add(
                                            egui::ProgressBar::new(row.fraction())
                                                .fill(ecolor(palette::MUTED))
                                                .desired_height(8.0),
                                        );
                                        ui.label(muted(format!(
                                            "paused, {:.0} % · {why}",
                                            row.fraction() * 100.0
                                        )));
                                    }
                                    RowState::Running => {
                                        ui.add(
                                            egui::ProgressBar::new(row.fraction())
                                                .fill(ecolor(palette::ACCENT))
                                                .desired_height(8.0),
                                        );
                                        let eta = row
                                            .eta
                                            .map(|s| format!(", {s:.0} s left"))
                                            .unwrap_or_default();
                                        ui.label(
                                            egui::RichText::new(format!(
                                                "{} of {} · {}/s{eta}",
                                                human_bytes(row.done as f64),
                                                human_bytes(row.size as f64),
                                                human_bytes(row.rate)
                                            ))
                                            .small()
                                            .color(ecolor(palette::MUTED)),
                                        );
                                    }
                                    RowState::Done(_) => {
                                        ui.label(
                                            egui::RichText::new(format!(
                                                "{} · done, checksum verified",
                                                human_bytes(row.size as f64)
                                            ))
                                            .small()
                                            .color(ecolor(palette::GOOD)),
                                        );
                                    }
                                    RowState::Failed(why) => {
                                        ui.label(
                                            egui::RichText::new(why.to_string())
                                                .small()
                                                .color(ecolor(palette::BAD)),
                                        );
                                    }
                                }
                            });
                    }
                    if !received.files.is_empty() {
                        ui.label(egui::RichText::new("Received").color(ecolor(palette::MUTED)));
                    }
                    state.file_button = None;
                    state.file_actions.clear();
                    for file in received.files.iter().rev().take(50) {
                        ui.add(
                            egui::Label::new(format!(
                                "↓ {} · {} · from {}",
                                file.name,
                                human_bytes(file.size as f64),
                                file.from
                            ))
                            .truncate(),
                        )
                        .on_hover_text(&file.location);
                        ui.horizontal(|ui| {
                            ui.with_layout(
                                egui::Layout::right_to_left(egui::Align::Center),
                                |ui| {
                                    for &action in capabilities.file_actions.iter().rev() {
                                        let button = ui.small_button(action.label());
                                        // The list is newest first: its first row's buttons.
                                        if state.file_actions.len()
                                            < capabilities.file_actions.len()
                                        {
                                            state.file_actions.push((action.label(), button.rect));
                                        }
                                        if Some(&action) == capabilities.file_actions.first()
                                            && state.file_button.is_none()
                                        {
                                            state.file_button = Some(button.rect);
                                        }
                                        if button.clicked()
                                            && let Some(task) = host.shell.file_action(
                                                action,
                                                &file.location,
                                                &file.name,
                                            )
                                        {
                                            dialogs.actions.push(task);
                                        }
                                    }
                                },
                            );
                        });
                    }
                });
            ui.separator();
            ui.heading("Chat");
            let input_height = 44.0;
            egui::ScrollArea::vertical()
                .id_salt("chat")
                .stick_to_bottom(true)
                .auto_shrink([false, false])
                .max_height(ui.available_height() - input_height)
                .show(ui, |ui| chat_lines(ui, &chat.entries, &mut state.shown));
            ui.horizontal(|ui| {
                let field = ui.add(
                    egui::TextEdit::singleline(&mut state.draft)
                        .id_salt("chat-input")
                        .hint_text(if peer_here {
                            "Write a message"
                        } else {
                            "Your peer is away: messages will not be delivered"
                        })
                        .char_limit(duet_shared::peer::MAX_CHAT_CHARS)
                        .desired_width(PANEL_WIDTH - 100.0),
                );
                state.chat_input = Some(field.rect);
                state.chat_focused = field.has_focus();
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if (ui.button("Send").clicked() || enter) && !state.draft.trim().is_empty() {
                    send_chat.write(SendChat(std::mem::take(&mut state.draft)));
                    field.request_focus();
                }
            });
        });

    // My own room is full: who holds the seats, and a way to free one.
    state.seat_buttons.clear();
    if !seats.members.is_empty() {
        egui::Window::new("Your room is full")
            .anchor(
                egui::Align2::CENTER_CENTER,
                egui::vec2(-PANEL_WIDTH / 2.0, 0.0),
            )
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label(
                    "Both seats of this room are taken. You created it, so you can free one: \
                     remove whoever should not be there (they can come back with the link), \
                     or ban them.",
                );
                ui.add_space(6.0);
                let now_ms = crate::util::now_ms();
                for (i, seat) in seats.members.iter().enumerate() {
                    ui.horizontal(|ui| {
                        let age = if seat.joined_ms == 0 {
                            "joined earlier".to_owned()
                        } else {
                            format!(
                                "joined {} ago",
                                duration_words(now_ms.saturating_sub(seat.joined_ms) / 1000)
                            )
                        };
                        ui.label(format!("Seat {}: {age}", i + 1));
                        let remove = ui.button("Remove");
                        state
                            .seat_buttons
                            .push((format!("remove_{i}"), remove.rect));
                        if remove.clicked() {
                            free_seat.write(FreeSeat {
                                peer: seat.peer,
                                action: Moderation::Kick,
                            });
                        }
                        let ban = ui.button("Ban");
                        state.seat_buttons.push((format!("ban_{i}"), ban.rect));
                        if ban.clicked() {
                            free_seat.write(FreeSeat {
                                peer: seat.peer,
                                action: Moderation::Ban,
                            });
                        }
                    });
                }
            });
    }

    // The peer avatar's context menu (opened by a right click on it).
    if let Some(at) = state.avatar_menu {
        let mut close = false;
        egui::Area::new(egui::Id::new("avatar-menu"))
            .fixed_pos(at)
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    let name = presence.peer_name().unwrap_or("your peer").to_owned();
                    if current.is_owner() {
                        let kick = ui.button(format!("Kick {name}"));
                        state.kick_button = Some(kick.rect);
                        if kick.clicked() {
                            moderate.write(Moderate(Moderation::Kick));
                            close = true;
                        }
                        if ui.button(format!("Ban {name}")).clicked() {
                            moderate.write(Moderate(Moderation::Ban));
                            close = true;
                        }
                    } else {
                        ui.label(
                            egui::RichText::new("Only the room's creator can remove people.")
                                .color(ecolor(palette::MUTED)),
                        );
                    }
                    if ui.button("Close").clicked() {
                        close = true;
                    }
                });
            });
        if close || ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
            state.avatar_menu = None;
            state.kick_button = None;
        }
    }
    Ok(())
}

/// Call controls in the top bar: call or video call when the peer is here, the incoming-call
/// prompt, and during a call mute, camera and hang up. Only where the platform has call media.
fn call_bar(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    call: &CallState,
    (supported, video): (bool, bool),
    peer: Option<&str>,
    actions: &mut MessageWriter<CallAction>,
) {
    state.call_buttons.clear();
    if !supported {
        return;
    }
    let mut button = |ui: &mut egui::Ui, key: &'static str, label: &str| {
        let response = ui.button(label);
        state.call_buttons.push((key, response.rect));
        response.clicked()
    };
    let (muted, camera) = (call.call.muted(), call.call.camera());
    match call.call.phase() {
        CallPhase::Idle => {
            if peer.is_some() {
                if button(ui, "call", "📞 Call") {
                    actions.write(CallAction::Start { video: false });
                }
                if video && button(ui, "video_call", "Video call") {
                    actions.write(CallAction::Start { video: true });
                }
            }
        }
        CallPhase::Calling { .. } => {
            ui.label(
                egui::RichText::new(format!("Calling {}…", peer.unwrap_or("your peer")))
                    .color(ecolor(palette::ACCENT)),
            );
            if button(ui, "hangup", "Cancel") {
                actions.write(CallAction::HangUp);
            }
        }
        CallPhase::Ringing { video, .. } => {
            let what = if video { "a video call" } else { "a call" };
            ui.label(
                egui::RichText::new(format!(
                    "{} is calling: {what}",
                    peer.unwrap_or("Your peer")
                ))
                .color(ecolor(palette::ACCENT)),
            );
            if button(ui, "accept", "Accept") {
                actions.write(CallAction::Accept { video: false });
            }
            if video && button(ui, "accept_video", "Accept with video") {
                actions.write(CallAction::Accept { video: true });
            }
            if button(ui, "decline", "Decline") {
                actions.write(CallAction::Decline);
            }
        }
        CallPhase::Connecting { .. } | CallPhase::Active { .. } => {
            let connecting = matches!(call.call.phase(), CallPhase::Connecting { .. });
            ui.label(
                egui::RichText::new(if connecting {
                    "Connecting the call…"
                } else {
                    "In a call"
                })
                .color(ecolor(palette::GOOD)),
            );
            if button(ui, "mute", if muted { "Unmute" } else { "Mute" }) {
                actions.write(CallAction::SetMedia {
                    muted: !muted,
                    camera,
                });
            }
            if video
                && button(
                    ui,
                    "camera",
                    if camera { "Camera off" } else { "Camera on" },
                )
            {
                actions.write(CallAction::SetMedia {
                    muted,
                    camera: !camera,
                });
            }
            if button(ui, "hangup", "Hang up") {
                actions.write(CallAction::HangUp);
            }
        }
    }
}

/// The newest `*shown` (at least [`CHAT_PAGE`]) chat lines, oldest first, under a button that
/// shows a page more: however long the history, a frame lays out at most what was asked for.
pub fn chat_lines(ui: &mut egui::Ui, entries: &[ChatEntry], shown: &mut usize) {
    let total = entries.len();
    *shown = (*shown).max(CHAT_PAGE);
    if total > *shown
        && ui
            .small_button(format!("Show earlier messages ({} more)", total - *shown))
            .clicked()
    {
        *shown += CHAT_PAGE;
    }
    if total == 0 {
        ui.label(egui::RichText::new("No messages yet. Say hello!").color(ecolor(palette::MUTED)));
    }
    for entry in entries.iter().skip(total.saturating_sub(*shown)) {
        let (tick, tint) = match entry.delivery {
            Delivery::Sent => ("✔ sent", palette::MUTED),
            Delivery::Delivered => ("✔✔ delivered", palette::GOOD),
            Delivery::NotDelivered => ("not delivered — your peer was away", palette::BAD),
            Delivery::Received => ("", palette::MUTED),
        };
        let align = if entry.mine {
            egui::Align::Max
        } else {
            egui::Align::Min
        };
        ui.with_layout(egui::Layout::top_down(align), |ui| {
            egui::Frame::new()
                .fill(if entry.mine {
                    ecolor(palette::ACCENT).gamma_multiply(0.22)
                } else {
                    ecolor(palette::RAISED)
                })
                .corner_radius(10)
                .inner_margin(egui::Margin::symmetric(10, 6))
                .show(ui, |ui| {
                    ui.set_max_width(PANEL_WIDTH - 80.0);
                    if !entry.mine {
                        ui.label(
                            egui::RichText::new(&entry.author)
                                .small()
                                .color(ecolor(palette::ACCENT)),
                        );
                    }
                    ui.label(&entry.text);
                    if !tick.is_empty() {
                        ui.label(egui::RichText::new(tick).small().color(ecolor(tint)));
                    }
                });
        });
    }
}

/// The screen-wide Ui the panels are laid out in (egui 0.36 lays panels out inside a Ui).
fn root_ui(ctx: &egui::Context) -> egui::Ui {
    egui::Ui::new(
        ctx.clone(),
        egui::Id::new("duet-root"),
        egui::UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(ctx.viewport_rect()),
    )
}

fn ctx_copy(ui: &egui::Ui, text: &str) {
    ui.ctx().copy_text(text.to_owned());
}

fn finish_dialogs(
    mut dialogs: ResMut<Dialogs>,
    mut send: MessageWriter<SendFile>,
    mut notices: ResMut<Notices>,
) {
    for path in crate::util::take_finished(&mut dialogs.picks)
        .into_iter()
        .flatten()
    {
        send.write(SendFile(path));
    }
    for sentence in crate::util::take_finished(&mut dialogs.actions)
        .into_iter()
        .flatten()
    {
        notices.post(sentence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(len: usize) -> Vec<ChatEntry> {
        (0..len)
            .map(|i| ChatEntry {
                id: uuid::Uuid::from_u128(i as u128),
                author: "Bob".into(),
                mine: i % 3 == 0,
                sent_ms: i as u64,
                text: format!("message number {i}, long enough to wrap onto a second line"),
                delivery: if i % 3 == 0 {
                    Delivery::Delivered
                } else {
                    Delivery::Received
                },
            })
            .collect()
    }

    /// Height of what one frame of the chat list laid out, in a panel-sized scroll area (the
    /// part in view is drawn; all of it is measured and laid out).
    fn laid_out(entries: &[ChatEntry], shown: &mut usize) -> f32 {
        let ctx = egui::Context::default();
        let input = || egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(PANEL_WIDTH, 700.0),
            )),
            ..Default::default()
        };
        let mut height = 0.0;
        for _ in 0..2 {
            let output = ctx.run_ui(input(), |ui| {
                height = egui::ScrollArea::vertical()
                    .stick_to_bottom(true)
                    .show(ui, |ui| chat_lines(ui, entries, shown))
                    .content_size
                    .y;
            });
            output.drop_without_applying_deltas();
        }
        height
    }

    #[test]
    fn a_frame_lays_out_one_page_of_chat_however_long_the_history() {
        let (short, long) = (history(CHAT_PAGE + 50), history(20_000));
        let mut shown = CHAT_PAGE;
        let page = laid_out(&short, &mut shown);
        // Every shown line takes room (each is at least a line of text high)...
        assert!(page > 20.0 * CHAT_PAGE as f32, "{page} px");
        // ...and a history a hundred times longer lays out exactly as much.
        assert_eq!(laid_out(&long, &mut shown), page);
        // Two pages once the person asks for earlier messages: more, but not everything.
        let mut two = 2 * CHAT_PAGE;
        let more = laid_out(&long, &mut two);
        assert!(more > 1.9 * page && more < 2.1 * page, "{more} vs {page}");
    }
}
