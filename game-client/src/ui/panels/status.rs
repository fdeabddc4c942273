//! The room's status line: the latest notice, or where the peer is; and the alert controls
//! (the chime on or off, and asking for notifications while they can be asked for).

use super::*;
use crate::ports::NotifyPermission;

pub(super) fn show(
    root: &mut egui::Ui,
    state: &mut PanelState,
    view: &RoomView,
    out: &mut RoomOut,
    compact: bool,
) {
    let RoomView {
        presence, notices, ..
    } = view;
    state.alert_buttons.clear();
    let frame = egui::Frame::new()
        .fill(ecolor(palette::PANEL))
        .inner_margin(egui::Margin::symmetric(if compact { 10 } else { 16 }, 6));
    // Under the top bar in the compact layout: the bottom of a phone's screen is the chat
    // input's, next to the keyboard.
    let panel = if compact {
        egui::Panel::top("status")
    } else {
        egui::Panel::bottom("status")
    };
    panel
        // The alert buttons fit inside, whatever size the theme gives a control.
        .exact_size(if compact {
            30.0
        } else {
            root.spacing().interact_size.y + 12.0
        })
        .frame(frame)
        .show(root, |ui| {
            let (text, tint) = match notices.latest(8_000) {
                Some(notice) => (notice.to_owned(), palette::ACCENT),
                None => (presence.status(), palette::MUTED),
            };
            // One line, whatever is said: a wrapped line made the panel's size change every
            // frame, and egui then discarded the frames a click in the chat input was in.
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if !compact {
                    alert_controls(ui, state, view, out);
                    ui.separator();
                }
                if let Some(badge) = presence.connection_badge() {
                    ui.label(egui::RichText::new(badge).color(ecolor(palette::MUTED)));
                    ui.separator();
                }
                ui.with_layout(egui::Layout::left_to_right(egui::Align::Center), |ui| {
                    ui.add(
                        egui::Label::new(egui::RichText::new(text).color(ecolor(tint))).truncate(),
                    );
                });
            });
        });
}

/// The chime on or off, and asking for notifications while they can be asked for.
pub(super) fn alert_controls(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    view: &RoomView,
    out: &mut RoomOut,
) {
    let RoomView { unseen, alerts, .. } = view;
    let sound = alerts.as_deref().is_none_or(|a| a.sound);
    let toggle = ui
        .button(if sound { "Sound: on" } else { "Sound: off" })
        .on_hover_text("A short chime when something arrives while Duet is out of sight");
    state.alert_buttons.push(("sound", toggle.rect));
    if toggle.clicked() {
        out.attention.write(AttentionAction::SetSound(!sound));
    }
    // Asked only once the person is in a room and clicks: never on first load.
    if unseen.permission == NotifyPermission::Ask {
        let ask = ui.button("Notify me").on_hover_text(
            "Show a notification when your peer arrives, writes or calls while this tab is hidden",
        );
        state.alert_buttons.push(("notify", ask.rect));
        if ask.clicked() {
            out.attention.write(AttentionAction::AskToNotify);
        }
    }
}
