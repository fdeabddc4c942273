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
mod files;
mod lobby;
mod seats;
mod status;
mod top_bar;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy::tasks::Task;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::PANEL_WIDTH;
use super::theme::{ecolor, palette};
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
    top_bar::show(
        &mut root,
        &mut state,
        (identity, current),
        &view,
        &mut out,
        now,
    );
    status::show(&mut root, &mut state, &view, &mut out);
    egui::Panel::right("side")
        .exact_size(PANEL_WIDTH)
        .resizable(false)
        .frame(
            egui::Frame::new()
                .fill(ecolor(palette::PANEL))
                .inner_margin(14),
        )
        .show(&mut root, |ui| {
            files::show(ui, &mut state, &mut dialogs, &view, &mut out);
            ui.separator();
            chat::show(ui, &mut state, &view, &mut out);
        });
    seats::show(ctx, &mut state, &view, &mut out);
    avatar_menu::show(ctx, &mut state, current, &view, &mut out);
    Ok(())
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
