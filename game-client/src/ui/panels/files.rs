//! The side panel's files: transfers of this session (progress, questions, pauses) and the
//! files received, with what the platform can do with them.

use super::*;

pub(super) fn show(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    dialogs: &mut Dialogs,
    view: &RoomView,
    out: &mut RoomOut,
    list_height: f32,
) {
    let RoomView {
        presence,
        transfers,
        received,
        capabilities,
        host,
        ..
    } = view;
    let RoomOut { cancel, answer, .. } = out;
    let peer_name = presence.peer_name().unwrap_or("your peer").to_owned();
    let peer_here = presence.peer_name().is_some();
    ui.horizontal(|ui| {
        ui.heading("Files");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let send = ui
                .add_enabled(peer_here, egui::Button::new("Send a file…"))
                .on_disabled_hover_text("Your peer is not in the room.");
            state.send_button = peer_here.then_some(send.rect);
            if send.clicked() {
                dialogs.picks.push(host.shell.pick_file());
            }
        });
    });
    if transfers.rows.is_empty() && received.files.is_empty() && list_height > 0.0 {
        ui.label(
            egui::RichText::new(if capabilities.touch {
                "Press and hold your peer's avatar to send a file."
            } else {
                "Drag a file onto your peer's avatar to send it."
            })
            .color(ecolor(palette::MUTED)),
        );
    }
    if list_height < 24.0 {
        state.offer_buttons.clear();
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("files")
        .max_height(list_height)
        .show(ui, |ui| {
            state.offer_buttons.clear();
            for row in transfers.rows.iter().rev() {
                transfer_row(ui, row, state, (cancel, answer), &peer_name);
            }
            received_files(ui, state, dialogs, received, capabilities, host);
        });
}

/// One transfer of this session: its name, progress or state, and what the person can do.
fn transfer_row(
    ui: &mut egui::Ui,
    row: &TransferRow,
    state: &mut PanelState,
    (cancel, answer): (
        &mut MessageWriter<CancelTransfer>,
        &mut MessageWriter<AnswerOffer>,
    ),
    peer_name: &str,
) {
    egui::Frame::new()
        .fill(ecolor(palette::RAISED))
        .corner_radius(8)
        .inner_margin(8)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            let arrow = if row.direction == Direction::Outgoing {
                "↑"
            } else {
                "↓"
            };
            ui.horizontal(|ui| {
                ui.label(format!("{arrow} {}", row.name));
                if matches!(row.state, RowState::Running | RowState::AwaitingPeer) {
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if minor_button(ui, "Cancel").clicked() {
                            cancel.write(CancelTransfer(row.id));
                        }
                    });
                }
            });
            if row.state == RowState::Asking {
                offer_question(ui, row, state, answer, peer_name);
            } else {
                row_state(ui, row, peer_name);
            }
        });
}

fn small(text: impl Into<String>, colour: [u8; 3]) -> egui::RichText {
    egui::RichText::new(text).small().color(ecolor(colour))
}

/// An offer waiting for the person's answer.
fn offer_question(
    ui: &mut egui::Ui,
    row: &TransferRow,
    state: &mut PanelState,
    answer: &mut MessageWriter<AnswerOffer>,
    peer_name: &str,
) {
    ui.label(small(
        format!(
            "{} · {peer_name} wants to send you this file",
            human_bytes(row.size as f64)
        ),
        palette::MUTED,
    ));
    ui.horizontal(|ui| {
        let yes = ui.button("Accept");
        let no = ui.button("Decline");
        if state.offer_buttons.is_empty() {
            // The list is newest first: the newest question's.
            state.offer_buttons = vec![("accept", yes.rect), ("decline", no.rect)];
        }
        for (button, accept) in [(yes, true), (no, false)] {
            if button.clicked() {
                answer.write(AnswerOffer { id: row.id, accept });
            }
        }
    });
}

/// Where a transfer that is not asking stands: waiting, moving, paused, done or failed.
fn row_state(ui: &mut egui::Ui, row: &TransferRow, peer_name: &str) {
    let bar = |ui: &mut egui::Ui, colour| {
        ui.add(
            egui::ProgressBar::new(row.fraction())
                .fill(ecolor(colour))
                .desired_height(8.0),
        );
    };
    let size = human_bytes(row.size as f64);
    match &row.state {
        RowState::Asking => {}
        RowState::AwaitingPeer => {
            ui.label(small(
                format!("{size} · waiting for {peer_name} to accept"),
                palette::MUTED,
            ));
        }
        RowState::Paused(why) => {
            bar(ui, palette::MUTED);
            ui.label(small(
                format!("paused, {:.0} % · {why}", row.fraction() * 100.0),
                palette::MUTED,
            ));
        }
        RowState::Running => {
            bar(ui, palette::ACCENT);
            let eta = row
                .eta
                .map(|s| format!(", {s:.0} s left"))
                .unwrap_or_default();
            ui.label(small(
                format!(
                    "{} of {size} · {}/s{eta}",
                    human_bytes(row.done as f64),
                    human_bytes(row.rate)
                ),
                palette::MUTED,
            ));
        }
        RowState::Done(_) => {
            ui.label(small(
                format!("{size} · done, checksum verified"),
                palette::GOOD,
            ));
        }
        RowState::Failed(why) => {
            ui.label(small(why.to_string(), palette::BAD));
        }
    }
}

/// The files received (newest first), with what this platform can do with each.
fn received_files(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    dialogs: &mut Dialogs,
    received: &ReceivedFiles,
    capabilities: &Capabilities,
    host: &Host,
) {
    if !received.files.is_empty() {
        ui.label(egui::RichText::new("Received").color(ecolor(palette::MUTED)));
    }
    state.file_button = None;
    state.file_actions.clear();
    for file in received.files.iter().rev().take(50) {
        ui.add(
            egui::Label::new(format!(
                "↓ {} · {} · from {}",
                file.name,
                human_bytes(file.size as f64),
                file.from
            ))
            .truncate(),
        )
        .on_hover_text(&file.location);
        ui.horizontal(|ui| {
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                for &action in capabilities.file_actions.iter().rev() {
                    let button = minor_button(ui, action.label());
                    // The list is newest first: its first row's buttons.
                    // Only what a person can reach: not scrolled out of the list.
                    let reachable = ui.clip_rect().contains_rect(button.rect);
                    if reachable && state.file_actions.len() < capabilities.file_actions.len() {
                        state.file_actions.push((action.label(), button.rect));
                    }
                    if reachable
                        && Some(&action) == capabilities.file_actions.first()
                        && state.file_button.is_none()
                    {
                        state.file_button = Some(button.rect);
                    }
                    if button.clicked()
                        && let Some(task) =
                            host.shell.file_action(action, &file.location, &file.name)
                    {
                        dialogs.actions.push(task);
                    }
                }
            });
        });
    }
}
