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
            ui.label(egui::RichText::new(text).color(ecolor(tint)));
        });
}
