//! The room's top bar: the link and its copy button, the call controls, my name, leaving.

use super::*;

pub(super) fn show(
    root: &mut egui::Ui,
    state: &mut PanelState,
    (identity, current): (&Identity, &CurrentRoom),
    view: &RoomView,
    out: &mut RoomOut,
    now: f64,
) {
    let RoomView {
        presence,
        call,
        supported,
        capabilities,
        ..
    } = view;
    let RoomOut {
        leave,
        rename,
        calls,
        ..
    } = out;
    egui::Panel::top("top")
        .exact_size(52.0)
        .frame(
            egui::Frame::new()
                .fill(ecolor(palette::PANEL))
                .inner_margin(egui::Margin::symmetric(16, 10)),
        )
        .show(root, |ui| {
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
                    state,
                    call,
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
}
