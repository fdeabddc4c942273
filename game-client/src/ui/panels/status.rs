//! The room's status line: the latest notice, or where the peer is.

use super::*;

pub(super) fn show(root: &mut egui::Ui, view: &RoomView) {
    let RoomView {
        presence, notices, ..
    } = view;
    egui::Panel::bottom("status")
        .exact_size(36.0)
        .frame(
            egui::Frame::new()
                .fill(ecolor(palette::PANEL))
                .inner_margin(egui::Margin::symmetric(16, 8)),
        )
        .show(root, |ui| {
            let (text, tint) = match notices.latest(8_000) {
                Some(notice) => (notice.to_owned(), palette::ACCENT),
                None => (presence.status(), palette::MUTED),
            };
            // One line, whatever is said: a wrapped line made the panel's size change every
            // frame, and egui then discarded the frames a click in the chat input was in.
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
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
