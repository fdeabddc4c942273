//! The room's top bar: the link and its copy (or share) button, the call controls, my name,
//! leaving. In the compact layout the call controls get a row of their own and my name moves
//! behind "More".

use super::*;

pub(super) fn show(
    root: &mut egui::Ui,
    state: &mut PanelState,
    (identity, current): (&Identity, &CurrentRoom),
    view: &RoomView,
    out: &mut RoomOut,
    (now, compact): (f64, bool),
) {
    let RoomView {
        presence,
        call,
        supported,
        capabilities,
        ..
    } = view;
    let bar_height = if capabilities.touch { 60.0 } else { 52.0 };
    egui::Panel::top("top")
        .exact_size(bar_height)
        .frame(
            egui::Frame::new()
                .fill(ecolor(palette::PANEL))
                .inner_margin(egui::Margin::symmetric(if compact { 10 } else { 16 }, 8)),
        )
        .show(root, |ui| {
            ui.horizontal_centered(|ui| {
                ui.label(
                    egui::RichText::new("Duet")
                        .size(22.0)
                        .family(egui::FontFamily::Name("bold".into()))
                        .color(ecolor(palette::ACCENT)),
                );
                ui.add_space(if compact { 4.0 } else { 12.0 });
                if !compact {
                    ui.label(
                        egui::RichText::new(&current.link)
                            .monospace()
                            .color(ecolor(palette::MUTED)),
                    );
                }
                share_button(ui, state, &current.link, view, now);
                if compact {
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if ui.button("Leave").clicked() {
                            out.leave.write(LeaveRoom);
                        }
                        let more = ui.add(egui::Button::new("More").selected(state.more_open));
                        state.more_button = Some(more.rect);
                        if more.clicked() {
                            state.more_open = !state.more_open;
                        }
                    });
                    return;
                }
                state.more_button = None;
                ui.add_space(16.0);
                call_bar(
                    ui,
                    state,
                    call,
                    (supported.0, capabilities.video),
                    presence.peer_name(),
                    &mut out.calls,
                );
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui.button("Leave").clicked() {
                        out.leave.write(LeaveRoom);
                    }
                    if current.is_owner() {
                        ui.label(
                            egui::RichText::new("your room")
                                .small()
                                .color(ecolor(palette::ACCENT)),
                        );
                    }
                    name_field(ui, state, identity, &mut out.rename, 140.0);
                    ui.label(egui::RichText::new("you are").color(ecolor(palette::MUTED)));
                });
            });
        });
}

/// "Copy link", or "Share link" where the platform has a share sheet (a phone), with a short
/// "Copied" after a copy.
fn share_button(ui: &mut egui::Ui, state: &mut PanelState, link: &str, view: &RoomView, now: f64) {
    let shell = &view.host.shell;
    let sheet = shell.can_share();
    let button = ui.button(if sheet { "Share link" } else { "Copy link" });
    state.copy_button = Some(button.rect);
    if button.clicked() {
        if sheet {
            shell.share_link("A Duet room", link);
        } else {
            ctx_copy(ui, link);
            state.copied_until = now + 2.0;
        }
    }
    if state.copied_until > now {
        ui.label(egui::RichText::new("Copied").color(ecolor(palette::GOOD)));
    }
}

/// My name, saved when the field lets go of the keyboard.
pub(super) fn name_field(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    identity: &Identity,
    rename: &mut MessageWriter<Rename>,
    width: f32,
) {
    if state.name.is_empty() {
        state.name = identity.name.clone();
    }
    let typed = fields::text_field(
        ui,
        &mut state.fields,
        fields::Spec::name(width),
        &mut state.name,
    );
    if (typed.left || typed.enter) && state.name.trim() != identity.name {
        rename.write(Rename(state.name.clone()));
    }
}

/// The compact layout's row of call controls, under the top bar, wrapping where they do not
/// fit; absent while there is nothing to show.
pub(super) fn call_row(
    root: &mut egui::Ui,
    state: &mut PanelState,
    view: &RoomView,
    out: &mut RoomOut,
) {
    let RoomView {
        presence,
        call,
        supported,
        capabilities,
        ..
    } = view;
    let idle = matches!(call.call.phase(), CallPhase::Idle);
    if !supported.0 || (idle && presence.peer_name().is_none()) {
        state.call_buttons.clear();
        return;
    }
    egui::Panel::top("calls")
        .frame(
            egui::Frame::new()
                .fill(ecolor(palette::PANEL))
                .inner_margin(egui::Margin::symmetric(10, 4)),
        )
        .show(root, |ui| {
            ui.horizontal_wrapped(|ui| {
                call_bar(
                    ui,
                    state,
                    call,
                    (supported.0, capabilities.video),
                    presence.peer_name(),
                    &mut out.calls,
                );
            });
        });
}
