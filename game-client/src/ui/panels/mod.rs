//! The egui parts, one file per panel: the lobby (`lobby`), and in the room the top bar
//! (`top_bar`, with `call_bar`), the status line (`status`), the side panel's files (`files`)
//! and chat (`chat`), the full-room window (`seats`) and the peer's menu (`avatar_menu`).
//!
//! The room's systems gather what the panels show into [`RoomView`] and what they can ask for
//! into [`RoomOut`]; each panel is a function of those, drawn in a fixed order (egui lays out
//! the top, bottom and side panels before the windows over them).

mod avatar_menu;
mod call_bar;
mod chat;
mod fields;
mod files;
mod lobby;
mod more;
mod seats;
mod status;
mod top_bar;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy::tasks::Task;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::theme::{ecolor, palette};
use super::{COMPACT_BELOW, PANEL_WIDTH, RoomArea};
use crate::api::Moderation;
use crate::call::{CallAction, CallState, CallsSupported};
use crate::chat::{ChatEntry, ChatLog, Delivery, SendChat};
use crate::contacts::{ContactAction, Contacts};
use crate::frame::FrameSet;
use crate::identity::{Identity, Rename};
use crate::ports::{Capabilities, Host};
use crate::room::{
    AlertSettings, AnswerForeignLink, AttentionAction, CreateRoom, CurrentRoom, ForeignLink,
    ForeignQuestion, FreeSeat, JoinRoom, LeaveRoom, Moderate, Notices, Presence, ReceivedFiles,
    RecentRooms, RowState, Screen, SeatHolders, TransferList, TransferRow, Unseen,
};
use crate::transfer::{AnswerOffer, CancelTransfer, Direction, SendFile};
use duet_shared::call::CallPhase;

use call_bar::call_bar;
pub use chat::chat_lines;
use lobby::lobby;

/// Text the user is typing, and other egui-side state.
#[derive(Resource, Default)]
pub struct PanelState {
    /// The chat input.
    pub draft: String,
    /// The lobby's room-link field.
    pub link: String,
    /// The rename field.
    pub name: String,
    /// The contact being given a name of one's own in the lobby's list, if any.
    pub renaming_contact: Option<duet_shared::trust::PublicKey>,
    /// Its name field.
    pub contact_name: String,
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
    /// Where each recent room's "Open" button is in the lobby, by room id, for automation.
    pub recent_buttons: Vec<(String, egui::Rect)>,
    /// Where the avatar menu's "Kick" button is while the menu is open, for automation.
    pub kick_button: Option<egui::Rect>,
    /// Where the avatar menu's "Send a file…" button is while the menu is open, for automation.
    pub menu_send_button: Option<egui::Rect>,
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
    /// Where the alert controls are (`sound`, `notify`) while shown, for automation.
    pub alert_buttons: Vec<(&'static str, egui::Rect)>,
    /// Where the full-room window's buttons are (`remove_0`, `ban_0`, `remove_1`, ...), for
    /// automation.
    pub seat_buttons: Vec<(String, egui::Rect)>,
    /// Open avatar menu, at this screen position.
    pub avatar_menu: Option<egui::Pos2>,
    /// The "link copied" hint until this time (seconds).
    pub copied_until: f64,
    /// The page's own text fields on a touch screen.
    pub fields: fields::PageFields,
    /// Whether the compact layout's "More" window is open.
    pub more_open: bool,
    /// Where the compact layout's "More" button is, for automation.
    pub more_button: Option<egui::Rect>,
    /// Where the control with the keyboard focus is (Tab moves it), for automation.
    pub focused: Option<egui::Rect>,
    /// What the compact layout's column shows.
    pub tab: Tab,
    /// Where its "Chat" and "Files" switches are (`chat`, `files`), for automation.
    pub tab_buttons: Vec<(&'static str, egui::Rect)>,
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
        .init_resource::<RoomArea>()
        .add_systems(
            EguiPrimaryContextPass,
            (
                fields::take_edits,
                (
                    lobby.run_if(in_state(Screen::Lobby)),
                    room.run_if(in_state(Screen::Room)),
                ),
                fields::place,
            )
                .chain()
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

/// What the room's panels show.
#[derive(SystemParam)]
pub(super) struct RoomView<'w> {
    identity: Option<Res<'w, Identity>>,
    current: Option<Res<'w, CurrentRoom>>,
    presence: Res<'w, Presence>,
    chat: Res<'w, ChatLog>,
    transfers: Res<'w, TransferList>,
    received: Res<'w, ReceivedFiles>,
    notices: Res<'w, Notices>,
    seats: Res<'w, SeatHolders>,
    time: Res<'w, Time>,
    call: Res<'w, CallState>,
    supported: Res<'w, CallsSupported>,
    capabilities: Res<'w, Capabilities>,
    host: Res<'w, Host>,
    unseen: Res<'w, Unseen>,
    alerts: Option<Res<'w, AlertSettings>>,
}

/// Everything the room's panels can ask for.
#[derive(SystemParam)]
pub(super) struct RoomOut<'w> {
    send_chat: MessageWriter<'w, SendChat>,
    leave: MessageWriter<'w, LeaveRoom>,
    cancel: MessageWriter<'w, CancelTransfer>,
    answer: MessageWriter<'w, AnswerOffer>,
    moderate: MessageWriter<'w, Moderate>,
    free_seat: MessageWriter<'w, FreeSeat>,
    rename: MessageWriter<'w, Rename>,
    calls: MessageWriter<'w, CallAction>,
    people: MessageWriter<'w, ContactAction>,
    attention: MessageWriter<'w, AttentionAction>,
    /// Where the panels leave room for the room.
    area: ResMut<'w, RoomArea>,
}

/// The room screen: each panel in egui's order.
fn room(
    mut contexts: EguiContexts,
    mut state: ResMut<PanelState>,
    mut dialogs: ResMut<Dialogs>,
    view: RoomView,
    mut out: RoomOut,
) -> Result {
    let ctx = contexts.ctx_mut()?;
    let (Some(identity), Some(current)) = (view.identity.as_deref(), view.current.as_deref())
    else {
        return Ok(());
    };
    let mut root = root_ui(ctx);
    let now = view.time.elapsed_secs_f64();
    let compact = ctx.viewport_rect().width() < COMPACT_BELOW;
    top_bar::show(
        &mut root,
        &mut state,
        (identity, current),
        &view,
        &mut out,
        (now, compact),
    );
    let side = egui::Frame::new()
        .fill(ecolor(palette::PANEL))
        .inner_margin(if compact { 10 } else { 14 });
    if compact {
        top_bar::call_row(&mut root, &mut state, &view, &mut out);
        status::show(&mut root, &mut state, &view, &mut out, compact);
        let height = chat_height(root.available_rect_before_wrap().height());
        egui::Panel::bottom("side")
            .exact_size(height)
            .resizable(false)
            .frame(side)
            .show(&mut root, |ui| {
                if tabs(ui, &mut state, &view) == Tab::Files {
                    let list = ui.available_height() - 60.0;
                    files::show(ui, &mut state, &mut dialogs, &view, &mut out, list);
                } else {
                    chat::show(ui, &mut state, &view, &mut out);
                }
            });
    } else {
        status::show(&mut root, &mut state, &view, &mut out, compact);
        egui::Panel::right("side")
            .exact_size(PANEL_WIDTH)
            .resizable(false)
            .frame(side)
            .show(&mut root, |ui| {
                files::show(ui, &mut state, &mut dialogs, &view, &mut out, 230.0);
                ui.separator();
                chat::show(ui, &mut state, &view, &mut out);
            });
    }
    let area = root.available_rect_before_wrap();
    let area = Some(Rect::new(area.min.x, area.min.y, area.max.x, area.max.y));
    if out.area.0 != area {
        out.area.0 = area;
    }
    if compact {
        more::show(ctx, &mut state, (identity, current), &view, &mut out);
    } else {
        state.more_open = false;
        state.tab_buttons.clear();
    }
    seats::show(ctx, &mut state, &view, &mut out);
    avatar_menu::show(ctx, &mut state, &mut dialogs, current, &view, &mut out);
    state.focused = focused_rect(ctx);
    Ok(())
}

/// Where the widget with the keyboard focus is.
fn focused_rect(ctx: &egui::Context) -> Option<egui::Rect> {
    let id = ctx.memory(|m| m.focused())?;
    Some(ctx.read_response(id)?.rect)
}

/// Which half of the compact layout's column shows: a phone has room for one of them at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    /// The conversation and its input.
    #[default]
    Chat,
    /// Transfers and received files.
    Files,
}

/// The compact layout's "Chat" and "Files" switch; "Files" counts the transfers that move or
/// ask, so an offer is not missed while the chat shows.
fn tabs(ui: &mut egui::Ui, state: &mut PanelState, view: &RoomView) -> Tab {
    let busy = view
        .transfers
        .rows
        .iter()
        .filter(|row| matches!(row.state, RowState::Asking | RowState::Running))
        .count();
    state.tab_buttons.clear();
    ui.horizontal(|ui| {
        let chat = ui.add(egui::Button::new("Chat").selected(state.tab == Tab::Chat));
        let label = match busy {
            0 => "Files".to_owned(),
            n => format!("Files ({n})"),
        };
        let files = ui.add(egui::Button::new(label).selected(state.tab == Tab::Files));
        state.tab_buttons = vec![("chat", chat.rect), ("files", files.rect)];
        if chat.clicked() {
            state.tab = Tab::Chat;
        }
        if files.clicked() {
            state.tab = Tab::Files;
        }
    });
    ui.separator();
    state.tab
}

/// How tall the column (the chat or the files) is in the compact layout, from the height the
/// bars leave: a little over half, and nearly all of it when the phone's keyboard has taken
/// the lower half of the screen, so the input and the last messages stay in view.
fn chat_height(available: f32) -> f32 {
    /// The room keeps at least this much: both avatars, small.
    const ROOM_AT_LEAST: f32 = 120.0;
    if available < 560.0 {
        (available - ROOM_AT_LEAST).max(available * 0.6)
    } else {
        available * 0.56
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

/// A secondary button: small under a mouse, a whole fingertip's size on a touch screen.
fn minor_button(ui: &mut egui::Ui, text: impl Into<egui::WidgetText>) -> egui::Response {
    if ui.spacing().interact_size.y >= crate::ports::TOUCH_TARGET {
        ui.button(text)
    } else {
        ui.small_button(text)
    }
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
