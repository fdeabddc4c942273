//! Text fields that work on every screen: egui's own where a keyboard types into the window,
//! and on a touch screen the page's editable element laid over the frame egui draws (see
//! [`crate::ports::Shell::place_text_fields`]): only a focused editable element brings up a
//! phone's keyboard.

use super::*;
use crate::ports::{TOUCH_TARGET, TextEdit, TextField};

/// The fields of this frame on a touch screen, and what was typed into them since the last.
#[derive(Default)]
pub struct PageFields {
    /// Whether fields are the page's own (a touch screen).
    pub touch: bool,
    /// Edits taken at the start of this frame's pass.
    pub edits: Vec<TextEdit>,
    /// Fields drawn this frame, handed to the platform after the pass.
    pub placed: Vec<TextField>,
}

/// What a field is.
pub struct Spec {
    /// Which field: edits come back under it.
    pub id: &'static str,
    /// Shown while it is empty.
    pub hint: String,
    /// Its width in logical pixels.
    pub width: f32,
    /// Most characters it takes.
    pub max_chars: usize,
    /// What a phone keyboard's Enter key says (`"send"`, `"done"`, `"go"`).
    pub enter: &'static str,
}

impl Spec {
    /// My own name, wherever it is edited.
    pub fn name(width: f32) -> Self {
        Self {
            id: "name",
            hint: "Your name".into(),
            width,
            max_chars: duet_shared::peer::MAX_DISPLAY_NAME_CHARS,
            enter: "done",
        }
    }
}

/// What happened to a field this frame.
pub struct Typed {
    /// Where it is on screen.
    pub rect: egui::Rect,
    /// Enter was pressed in it.
    pub enter: bool,
    /// It lost the keyboard.
    pub left: bool,
    /// It has the keyboard (egui's fields only; the page's element knows its own focus).
    pub focused: bool,
    /// egui's id of the field, to give it the keyboard back.
    pub id: egui::Id,
}

/// A one-line field editing `text`.
pub fn text_field(
    ui: &mut egui::Ui,
    fields: &mut PageFields,
    spec: Spec,
    text: &mut String,
) -> Typed {
    if !fields.touch {
        let field = ui.add(
            egui::TextEdit::singleline(text)
                .id_salt(("field", spec.id))
                .hint_text(spec.hint)
                .char_limit(spec.max_chars)
                .desired_width(spec.width),
        );
        let left = field.lost_focus();
        return Typed {
            rect: field.rect,
            enter: left && ui.input(|i| i.key_pressed(egui::Key::Enter)),
            left,
            focused: field.has_focus(),
            id: field.id,
        };
    }
    let (rect, response) =
        ui.allocate_exact_size(egui::vec2(spec.width, TOUCH_TARGET), egui::Sense::hover());
    // Drawn under the page's element, so the layout does not jump while it appears.
    ui.painter().rect_filled(rect, 6.0, ecolor(palette::RAISED));
    let (mut enter, mut left) = (false, false);
    for edit in &fields.edits {
        match edit {
            TextEdit::Text(id, typed) if *id == spec.id => {
                *text = typed.chars().take(spec.max_chars).collect();
            }
            TextEdit::Enter(id) if *id == spec.id => enter = true,
            TextEdit::Left(id) if *id == spec.id => left = true,
            _ => {}
        }
    }
    fields.placed.push(TextField {
        id: spec.id,
        rect: [rect.min.x, rect.min.y, rect.width(), rect.height()],
        text: text.clone(),
        hint: spec.hint,
        max_chars: spec.max_chars,
        enter: spec.enter,
    });
    Typed {
        rect,
        enter,
        left,
        focused: false,
        id: response.id,
    }
}

/// Takes what was typed into the page's fields, before the panels are drawn.
pub(super) fn take_edits(
    mut state: ResMut<PanelState>,
    host: Res<Host>,
    capabilities: Res<Capabilities>,
) {
    state.fields.touch = capabilities.touch;
    if capabilities.touch {
        state.fields.edits = host.shell.take_text_edits();
    }
}

/// Puts the page's fields where the panels drew them this frame.
pub(super) fn place(mut state: ResMut<PanelState>, host: Res<Host>) {
    if state.fields.touch {
        host.shell.place_text_fields(&state.fields.placed);
    }
    state.fields.placed.clear();
    state.fields.edits.clear();
}
