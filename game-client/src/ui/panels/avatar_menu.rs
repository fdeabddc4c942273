//! The peer avatar's menu (a right click on it, or a long press): the safety code, sending a
//! file (a phone has no drag and drop), and kick or ban for the room's creator.

use super::*;

pub(super) fn show(
    ctx: &egui::Context,
    state: &mut PanelState,
    dialogs: &mut Dialogs,
    current: &CurrentRoom,
    view: &RoomView,
    out: &mut RoomOut,
) {
    let RoomView { presence, host, .. } = view;
    let RoomOut {
        moderate, people, ..
    } = out;
    // The peer avatar's context menu (opened by a right click on it).
    if let Some(at) = state.avatar_menu {
        let mut close = false;
        egui::Area::new(egui::Id::new("avatar-menu"))
            .fixed_pos(at)
            .constrain(true)
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    // The explanation wraps instead of stretching the menu across the room.
                    ui.set_max_width(280.0);
                    let name = presence.peer_name().unwrap_or("your peer").to_owned();
                    if let Some((code, verified)) = presence.safety_code() {
                        ui.label(
                            egui::RichText::new("Safety code")
                                .small()
                                .color(ecolor(palette::MUTED)),
                        );
                        ui.label(egui::RichText::new(code).monospace().size(22.0));
                        if verified {
                            ui.label(
                                egui::RichText::new(format!("✔ {name} is verified"))
                                    .color(ecolor(palette::GOOD)),
                            );
                        } else {
                            ui.label(
                                egui::RichText::new(format!(
                                    "Ask {name} to read theirs out (a call, or in person): \
                                     the same code means nobody is in the middle."
                                ))
                                .small()
                                .color(ecolor(palette::MUTED)),
                            );
                            if ui.button("We compared it: it matches").clicked() {
                                people.write(ContactAction::VerifyPeer);
                                close = true;
                            }
                        }
                        ui.separator();
                    }
                    if presence.peer_name().is_some() {
                        let send = ui.button("Send a file…");
                        state.menu_send_button = Some(send.rect);
                        if send.clicked() {
                            dialogs.picks.push(host.shell.pick_file());
                            // Where its progress shows, in the compact layout.
                            state.tab = Tab::Files;
                            close = true;
                        }
                    }
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
            state.menu_send_button = None;
        }
    }
}
