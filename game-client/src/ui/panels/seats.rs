//! My own room is full: who holds the seats, and a way to free one.

use super::*;

pub(super) fn show(
    ctx: &egui::Context,
    state: &mut PanelState,
    view: &RoomView,
    out: &mut RoomOut,
) {
    let RoomView { seats, .. } = view;
    let RoomOut { free_seat, .. } = out;
    // My own room is full: who holds the seats, and a way to free one.
    state.seat_buttons.clear();
    if !seats.members.is_empty() {
        egui::Window::new("Your room is full")
            .anchor(
                egui::Align2::CENTER_CENTER,
                // Over the room: left of the side panel, or the middle of a narrow screen.
                if ctx.viewport_rect().width() < COMPACT_BELOW {
                    egui::Vec2::ZERO
                } else {
                    egui::vec2(-PANEL_WIDTH / 2.0, 0.0)
                },
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
}
