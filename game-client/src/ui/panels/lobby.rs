//! The lobby: my name, create a room, join one by its link, and the rooms I was in.

use super::*;

/// What the lobby shows.
#[derive(SystemParam)]
pub(super) struct LobbyView<'w> {
    identity: Option<Res<'w, Identity>>,
    recent: Option<Res<'w, RecentRooms>>,
    notices: Res<'w, Notices>,
    foreign: Res<'w, ForeignLink>,
    contacts: Option<Res<'w, Contacts>>,
}

/// What the lobby can ask for.
#[derive(SystemParam)]
pub(super) struct LobbyOut<'w> {
    create: MessageWriter<'w, CreateRoom>,
    join: MessageWriter<'w, JoinRoom>,
    rename: MessageWriter<'w, Rename>,
    answer: MessageWriter<'w, AnswerForeignLink>,
    people: MessageWriter<'w, ContactAction>,
}

pub(super) fn lobby(
    mut contexts: EguiContexts,
    mut state: ResMut<PanelState>,
    view: LobbyView,
    mut out: LobbyOut,
) -> Result {
    let ctx = contexts.ctx_mut()?;
    let Some(identity) = view.identity.as_deref() else {
        return Ok(());
    };
    let mut root = root_ui(ctx);
    if state.name.is_empty() {
        state.name = identity.name.clone();
    }
    let compact = ctx.viewport_rect().width() < COMPACT_BELOW;
    let margin = if compact { 14 } else { 24 };
    egui::CentralPanel::default()
        .frame(
            egui::Frame::NONE
                .fill(ecolor(palette::NIGHT))
                .inner_margin(8),
        )
        .show(&mut root, |ui| {
            // A phone's screen (or its keyboard) may leave less height than the lobby needs.
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.vertical_centered(|ui| {
                    title(ui, compact);
                    let width = (ui.available_width() - 2.0 * f32::from(margin)).min(460.0);
                    egui::Frame::new()
                        .fill(ecolor(palette::PANEL))
                        .corner_radius(14)
                        .inner_margin(margin)
                        .show(ui, |ui| {
                            ui.set_width(width);
                            name_row(ui, &mut state, identity, &mut out.rename);
                            ui.add_space(14.0);
                            create_and_join(ui, &mut state, &mut out);
                            if let Some(asked) = &view.foreign.0 {
                                foreign_question(ui, asked, &mut out.answer);
                            }
                            state.recent_buttons.clear();
                            if let Some(recent) =
                                view.recent.as_ref().filter(|r| !r.rooms.is_empty())
                            {
                                recent_rooms(ui, &mut state, recent, &mut out.join);
                            }
                            if let Some(contacts) =
                                view.contacts.as_ref().filter(|c| !c.0.is_empty())
                            {
                                ui.add_space(14.0);
                                people_list(ui, &mut state, contacts, &mut out.people);
                            }
                        });
                    if let Some(notice) = view.notices.latest(12_000) {
                        ui.add_space(16.0);
                        ui.label(egui::RichText::new(notice).color(ecolor(palette::BAD)));
                    }
                });
            });
        });
    state.focused = focused_rect(ctx);
    Ok(())
}

fn title(ui: &mut egui::Ui, compact: bool) {
    ui.add_space(if compact { 20.0 } else { 56.0 });
    ui.label(
        egui::RichText::new("Duet")
            .size(if compact { 40.0 } else { 54.0 })
            .family(egui::FontFamily::Name("bold".into()))
            .color(ecolor(palette::ACCENT)),
    );
    ui.label(
        egui::RichText::new(
            "A room for two. Chat and files go straight between you — no accounts, no server in the middle.",
        )
        .color(ecolor(palette::MUTED)),
    );
    ui.add_space(if compact { 16.0 } else { 28.0 });
}

/// My name, saved with the button or Enter.
fn name_row(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    identity: &Identity,
    rename: &mut MessageWriter<Rename>,
) {
    ui.horizontal(|ui| {
        ui.label("Your name");
        let width = (ui.available_width() - 80.0).clamp(100.0, 220.0);
        let typed = fields::text_field(
            ui,
            &mut state.fields,
            fields::Spec::name(width),
            &mut state.name,
        );
        let changed = state.name.trim() != identity.name;
        if (ui.add_enabled(changed, egui::Button::new("Save")).clicked() || typed.enter) && changed
        {
            rename.write(Rename(state.name.clone()));
        }
    });
}

/// Most characters the link field takes: a room link is under 100; this leaves room for a
/// long host name without letting a paste of a whole page in.
const LINK_CHARS: usize = 2048;

/// The big "Create a room" button, and a field to join by a link.
fn create_and_join(ui: &mut egui::Ui, state: &mut PanelState, out: &mut LobbyOut) {
    let big = egui::Button::new(
        egui::RichText::new("Create a room")
            .size(18.0)
            .color(ecolor(palette::NIGHT)),
    )
    .fill(ecolor(palette::ACCENT))
    .min_size(egui::vec2(ui.available_width(), 44.0));
    let button = ui.add(big);
    state.create_button = Some(button.rect);
    if button.clicked() {
        out.create.write(CreateRoom);
    }
    ui.add_space(14.0);
    ui.label(egui::RichText::new("or join one with its link").color(ecolor(palette::MUTED)));
    ui.horizontal(|ui| {
        let typed = fields::text_field(
            ui,
            &mut state.fields,
            fields::Spec {
                id: "link",
                hint: "http://127.0.0.1:8787/r/…".into(),
                width: (ui.available_width() - 70.0).clamp(120.0, 350.0),
                max_chars: LINK_CHARS,
                enter: "go",
            },
            &mut state.link,
        );
        if ui.button("Join").clicked() || (typed.enter && !state.link.is_empty()) {
            out.join.write(JoinRoom(state.link.trim().to_owned()));
        }
    });
}

/// A link to another server opens only when the person says so, after reading what it means.
fn foreign_question(
    ui: &mut egui::Ui,
    asked: &ForeignQuestion,
    answer: &mut MessageWriter<AnswerForeignLink>,
) {
    ui.add_space(10.0);
    ui.label(
        egui::RichText::new(format!(
            "This link is for another server, {}, not yours. That server would see your address \
             and name and could pretend to be the room. Open it only if you trust whoever sent it.",
            asked.server
        ))
        .color(ecolor(palette::BAD)),
    );
    ui.horizontal(|ui| {
        if ui.button("Open it anyway").clicked() {
            answer.write(AnswerForeignLink(true));
        }
        if ui.button("Don't open").clicked() {
            answer.write(AnswerForeignLink(false));
        }
    });
}

fn recent_rooms(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    recent: &RecentRooms,
    join: &mut MessageWriter<JoinRoom>,
) {
    ui.add_space(14.0);
    ui.label(egui::RichText::new("Recent rooms").color(ecolor(palette::MUTED)));
    for room in &recent.rooms {
        ui.horizontal(|ui| {
            ui.monospace(&room.room);
            if room.owner_key.is_some() {
                ui.label(
                    egui::RichText::new("yours")
                        .small()
                        .color(ecolor(palette::ACCENT)),
                );
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let open = ui.button("Open");
                state.recent_buttons.push((room.room.clone(), open.rect));
                if open.clicked() {
                    join.write(JoinRoom(room.link.clone()));
                }
            });
        });
    }
}

/// How many people the lobby lists before "and N more".
const PEOPLE_SHOWN: usize = 12;

/// The people this device met: each with the short form of their key, since when, whether they
/// are verified; a name of one's own for them, and forgetting them.
fn people_list(
    ui: &mut egui::Ui,
    state: &mut PanelState,
    contacts: &Contacts,
    people: &mut MessageWriter<ContactAction>,
) {
    ui.label(egui::RichText::new("People you met").color(ecolor(palette::MUTED)));
    for contact in contacts.0.iter().take(PEOPLE_SHOWN) {
        ui.horizontal(|ui| {
            let editing = state.renaming_contact == Some(contact.key);
            if editing {
                let typed = fields::text_field(
                    ui,
                    &mut state.fields,
                    fields::Spec {
                        id: "contact",
                        hint: "Their name".into(),
                        width: 160.0,
                        max_chars: duet_shared::peer::MAX_DISPLAY_NAME_CHARS,
                        enter: "done",
                    },
                    &mut state.contact_name,
                );
                if typed.left || typed.enter {
                    people.write(ContactAction::Rename {
                        key: contact.key,
                        name: state.contact_name.clone(),
                    });
                    state.renaming_contact = None;
                }
            } else {
                ui.label(contact.shown_name());
            }
            if contact.verified {
                ui.label(
                    egui::RichText::new("✔ verified")
                        .small()
                        .color(ecolor(palette::GOOD)),
                );
            }
            ui.label(
                egui::RichText::new(format!(
                    "{} · since {}",
                    contact.key.fingerprint(),
                    crate::util::date_words(contact.first_seen_ms)
                ))
                .small()
                .monospace()
                .color(ecolor(palette::MUTED)),
            );
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if minor_button(ui, "Forget").clicked() {
                    people.write(ContactAction::Forget { key: contact.key });
                }
                if !editing && minor_button(ui, "Rename").clicked() {
                    state.renaming_contact = Some(contact.key);
                    state.contact_name = contact.shown_name().to_owned();
                }
            });
        });
    }
    if contacts.0.len() > PEOPLE_SHOWN {
        ui.label(
            egui::RichText::new(format!("and {} more", contacts.0.len() - PEOPLE_SHOWN))
                .small()
                .color(ecolor(palette::MUTED)),
        );
    }
}
