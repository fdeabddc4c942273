//! The compact layout's "More" window: what the top bar has no room for on a phone (my name,
//! the link in full, the alert controls).

use super::*;

pub(super) fn show(
    ctx: &egui::Context,
    state: &mut PanelState,
    (identity, current): (&Identity, &CurrentRoom),
    view: &RoomView,
    out: &mut RoomOut,
) {
    if !state.more_open {
        return;
    }
    let mut open = true;
    let width = (ctx.viewport_rect().width() - 32.0).min(360.0);
    egui::Window::new("More")
        .anchor(egui::Align2::RIGHT_TOP, egui::vec2(-8.0, 68.0))
        .collapsible(false)
        .resizable(false)
        .open(&mut open)
        .show(ctx, |ui| {
            ui.set_width(width);
            ui.label(egui::RichText::new("You are").color(ecolor(palette::MUTED)));
            top_bar::name_field(ui, state, identity, &mut out.rename, width);
            ui.add_space(6.0);
            ui.label(egui::RichText::new("This room").color(ecolor(palette::MUTED)));
            ui.add(egui::Label::new(egui::RichText::new(&current.link).monospace()).wrap());
            if current.is_owner() {
                ui.label(
                    egui::RichText::new(
                        "You created it: press and hold your peer's avatar to remove them.",
                    )
                    .small()
                    .color(ecolor(palette::ACCENT)),
                );
            }
            ui.add_space(6.0);
            ui.horizontal_wrapped(|ui| status::alert_controls(ui, state, view, out));
        });
    if !open {
        state.more_open = false;
    }
}
