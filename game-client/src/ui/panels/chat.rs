//! The side panel's chat: the conversation, paged so a long history costs no more per frame,
//! and the input line.

use super::*;

/// How many chat lines are laid out at first; older ones load on demand, so a history of
/// thousands of messages costs the same per frame as a short one.
pub(super) const CHAT_PAGE: usize = 200;

pub(super) fn show(ui: &mut egui::Ui, state: &mut PanelState, view: &RoomView, out: &mut RoomOut) {
    let RoomView { chat, presence, .. } = view;
    let RoomOut { send_chat, .. } = out;
    let peer_here = presence.peer_name().is_some();
    ui.heading("Chat");
    let input_height = ui.spacing().interact_size.y + 14.0;
    egui::ScrollArea::vertical()
        .id_salt("chat")
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .max_height(ui.available_height() - input_height)
        .show(ui, |ui| chat_lines(ui, &chat.entries, &mut state.shown));
    ui.horizontal(|ui| {
        let send_width = 70.0;
        let typed = fields::text_field(
            ui,
            &mut state.fields,
            fields::Spec {
                id: "chat",
                hint: if peer_here {
                    "Write a message".into()
                } else {
                    "Your peer is away: messages will not be delivered".into()
                },
                width: (ui.available_width() - send_width - ui.spacing().item_spacing.x).max(80.0),
                max_chars: duet_shared::peer::MAX_CHAT_CHARS,
                enter: "send",
            },
            &mut state.draft,
        );
        state.chat_input = Some(typed.rect);
        state.chat_focused = typed.focused;
        let send = ui.add(egui::Button::new("Send").min_size(egui::vec2(send_width, 0.0)));
        if (send.clicked() || typed.enter) && !state.draft.trim().is_empty() {
            send_chat.write(SendChat(std::mem::take(&mut state.draft)));
            if !state.fields.touch {
                ui.memory_mut(|m| m.request_focus(typed.id));
            }
        }
    });
}

/// The newest `*shown` (at least [`CHAT_PAGE`]) chat lines, oldest first, under a button that
/// shows a page more: however long the history, a frame lays out at most what was asked for.
pub fn chat_lines(ui: &mut egui::Ui, entries: &[ChatEntry], shown: &mut usize) {
    let total = entries.len();
    *shown = (*shown).max(CHAT_PAGE);
    if total > *shown
        && minor_button(
            ui,
            format!("Show earlier messages ({} more)", total - *shown),
        )
        .clicked()
    {
        *shown += CHAT_PAGE;
    }
    if total == 0 {
        ui.label(egui::RichText::new("No messages yet. Say hello!").color(ecolor(palette::MUTED)));
    }
    for entry in entries.iter().skip(total.saturating_sub(*shown)) {
        let (tick, tint) = match entry.delivery {
            Delivery::Sent => ("✔ sent", palette::MUTED),
            Delivery::Delivered => ("✔✔ delivered", palette::GOOD),
            Delivery::NotDelivered => ("not delivered — your peer was away", palette::BAD),
            Delivery::Received => ("", palette::MUTED),
        };
        let align = if entry.mine {
            egui::Align::Max
        } else {
            egui::Align::Min
        };
        ui.with_layout(egui::Layout::top_down(align), |ui| {
            egui::Frame::new()
                .fill(if entry.mine {
                    ecolor(palette::ACCENT).gamma_multiply(0.22)
                } else {
                    ecolor(palette::RAISED)
                })
                .corner_radius(10)
                .inner_margin(egui::Margin::symmetric(10, 6))
                .show(ui, |ui| {
                    ui.set_max_width(PANEL_WIDTH - 80.0);
                    if !entry.mine {
                        ui.label(
                            egui::RichText::new(&entry.author)
                                .small()
                                .color(ecolor(palette::ACCENT)),
                        );
                    }
                    ui.label(&entry.text);
                    if !tick.is_empty() {
                        ui.label(egui::RichText::new(tick).small().color(ecolor(tint)));
                    }
                });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(len: usize) -> Vec<ChatEntry> {
        (0..len)
            .map(|i| ChatEntry {
                id: uuid::Uuid::from_u128(i as u128),
                author: "Bob".into(),
                author_key: None,
                mine: i % 3 == 0,
                sent_ms: i as u64,
                text: format!("message number {i}, long enough to wrap onto a second line"),
                delivery: if i % 3 == 0 {
                    Delivery::Delivered
                } else {
                    Delivery::Received
                },
            })
            .collect()
    }

    /// Height of what one frame of the chat list laid out, in a panel-sized scroll area (the
    /// part in view is drawn; all of it is measured and laid out).
    fn laid_out(entries: &[ChatEntry], shown: &mut usize) -> f32 {
        let ctx = egui::Context::default();
        let input = || egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(PANEL_WIDTH, 700.0),
            )),
            ..Default::default()
        };
        let mut height = 0.0;
        for _ in 0..2 {
            let output = ctx.run_ui(input(), |ui| {
                height = egui::ScrollArea::vertical()
                    .stick_to_bottom(true)
                    .show(ui, |ui| chat_lines(ui, entries, shown))
                    .content_size
                    .y;
            });
            output.drop_without_applying_deltas();
        }
        height
    }

    #[test]
    fn a_frame_lays_out_one_page_of_chat_however_long_the_history() {
        let (short, long) = (history(CHAT_PAGE + 50), history(20_000));
        let mut shown = CHAT_PAGE;
        let page = laid_out(&short, &mut shown);
        // Every shown line takes room (each is at least a line of text high)...
        assert!(page > 20.0 * CHAT_PAGE as f32, "{page} px");
        // ...and a history a hundred times longer lays out exactly as much.
        assert_eq!(laid_out(&long, &mut shown), page);
        // Two pages once the person asks for earlier messages: more, but not everything.
        let mut two = 2 * CHAT_PAGE;
        let more = laid_out(&long, &mut two);
        assert!(more > 1.9 * page && more < 2.1 * page, "{more} vs {page}");
    }
}
