//! What a phone needs from the page itself: whether the screen is touched, the share sheet,
//! and editable elements standing in for egui's text fields.
//!
//! A phone opens its keyboard only for a focused editable element, and only from a touch on
//! it: a canvas gets no keyboard. So on a touch screen each text field egui draws gets a real
//! `<input>` laid exactly over it. The touch lands on the input, the browser opens the
//! keyboard and scrolls nothing (the page does not scroll), and the phone's own editing
//! (autocorrect, composition, selection handles, paste) works because the text lives in the
//! input; every change is reported whole ([`TextEdit::Text`]), Enter as [`TextEdit::Enter`].
//! bevy_egui's own text agent is not used: it needs `prevent_default_event_handling`, which
//! takes the browser's keys away on a desktop, and it opens the keyboard only on the touch
//! after the one that focused the field.

use std::cell::RefCell;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::wake_frame;
use crate::ports::{TextEdit, TextField};

/// The class the page's stylesheet gives the inputs (`web/style.css`).
const CLASS: &str = "duet-field";

/// One input standing in for a field.
struct Field {
    id: &'static str,
    input: web_sys::HtmlInputElement,
    /// Where it was last put, to touch the DOM only when that changes.
    rect: [f32; 4],
    /// Its placeholder as last set, so a frame compares it here rather than reading the DOM.
    hint: String,
    shown: bool,
}

thread_local! {
    static FIELDS: RefCell<Vec<Field>> = const { RefCell::new(Vec::new()) };
    static EDITS: RefCell<Vec<TextEdit>> = const { RefCell::new(Vec::new()) };
}

/// bevy_egui's touch handling looks for its text agent (`#egui_text_agent`) after every touch
/// and logs an error when it is missing; it is installed only with
/// `prevent_default_event_handling`, which Duet leaves off. A hidden input of that id quiets
/// it: egui never edits text on a touch screen (the page's fields do), so it stays hidden.
pub fn stand_in_for_egui_text_agent() {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if document.get_element_by_id("egui_text_agent").is_some() {
        return;
    }
    if let Ok(input) = document.create_element("input") {
        input.set_id("egui_text_agent");
        let _ = input.set_attribute("hidden", "");
        let _ = input.set_attribute("tabindex", "-1");
        let _ = input.set_attribute("aria-hidden", "true");
        if let Some(body) = document.body() {
            let _ = body.append_child(&input);
        }
    }
}

/// Whether the screen is touched rather than pointed at: a coarse primary pointer (a finger),
/// or touch points with no way to hover.
pub fn touch_screen() -> bool {
    let Some(window) = web_sys::window() else {
        return false;
    };
    let matches = |query: &str| {
        window
            .match_media(query)
            .ok()
            .flatten()
            .is_some_and(|list| list.matches())
    };
    matches("(pointer: coarse)")
        || (window.navigator().max_touch_points() > 0 && matches("(hover: none)"))
}

fn navigator() -> Option<JsValue> {
    Some(web_sys::window()?.navigator().into())
}

/// Whether the browser offers the Web Share API (phones do; most desktop browsers on Linux do
/// not).
pub fn can_share() -> bool {
    navigator()
        .and_then(|n| js_sys::Reflect::get(&n, &"share".into()).ok())
        .is_some_and(|share| share.is_function())
}

/// Opens the share sheet with the link. It needs the touch that pressed the button (a
/// transient activation), which the frame right after it still has. A refusal or a cancel
/// changes nothing, so the promise is only logged.
pub fn share_link(title: &str, link: &str) {
    let Some(navigator) = navigator() else { return };
    let Ok(share) = js_sys::Reflect::get(&navigator, &"share".into()) else {
        return;
    };
    let Ok(share) = share.dyn_into::<js_sys::Function>() else {
        return;
    };
    let data = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&data, &"title".into(), &title.into());
    let _ = js_sys::Reflect::set(&data, &"url".into(), &link.into());
    if let Ok(promise) = share.call1(&navigator, &data)
        && let Ok(promise) = promise.dyn_into::<js_sys::Promise>()
    {
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = wasm_bindgen_futures::JsFuture::from(promise).await {
                web_sys::console::info_1(&format!("The link was not shared: {e:?}").into());
            }
        });
    }
}

/// The edits since the last call.
pub fn take_edits() -> Vec<TextEdit> {
    EDITS.with_borrow_mut(std::mem::take)
}

fn push(edit: TextEdit) {
    EDITS.with_borrow_mut(|edits| edits.push(edit));
    wake_frame();
}

/// Puts an input over each field drawn this frame and hides the others. Frames run between
/// the page's events, so every edit the input reported is in the app's text by now: a text
/// that differs is the app's own change (cleared after sending) and is written to the input.
pub fn place(fields: &[TextField]) {
    FIELDS.with_borrow_mut(|placed| {
        for field in placed.iter_mut() {
            if field.shown && !fields.iter().any(|f| f.id == field.id) {
                let _ = field.input.blur();
                let _ = field.input.style().set_property("display", "none");
                field.shown = false;
            }
        }
        for wanted in fields {
            let index = match placed.iter().position(|f| f.id == wanted.id) {
                Some(index) => index,
                None => match create(wanted) {
                    Some(field) => {
                        placed.push(field);
                        placed.len() - 1
                    }
                    None => continue,
                },
            };
            let field = &mut placed[index];
            if field.rect != wanted.rect || !field.shown {
                let [x, y, w, h] = wanted.rect;
                let style = field.input.style();
                for (name, value) in [
                    ("left", format!("{x}px")),
                    ("top", format!("{y}px")),
                    ("width", format!("{w}px")),
                    ("height", format!("{h}px")),
                    ("display", "block".to_owned()),
                ] {
                    let _ = style.set_property(name, &value);
                }
                field.rect = wanted.rect;
                field.shown = true;
            }
            if field.input.value() != wanted.text {
                field.input.set_value(&wanted.text);
            }
            if field.hint != wanted.hint {
                field.input.set_placeholder(&wanted.hint);
                field.hint.clone_from(&wanted.hint);
            }
        }
    });
}

/// A new input for `field`, listening for what the person types.
fn create(field: &TextField) -> Option<Field> {
    let document = web_sys::window()?.document()?;
    let input: web_sys::HtmlInputElement =
        document.create_element("input").ok()?.dyn_into().ok()?;
    input.set_type("text");
    input.set_class_name(CLASS);
    input.set_max_length(field.max_chars.min(i32::MAX as usize) as i32);
    for (name, value) in [
        ("id", format!("duet-field-{}", field.id)),
        ("enterkeyhint", field.enter.to_owned()),
        ("autocomplete", "off".to_owned()),
        ("aria-label", field.hint.clone()),
        ("style", "display: none".to_owned()),
    ] {
        let _ = input.set_attribute(name, &value);
    }
    let id = field.id;
    let source = input.clone();
    let typed = Closure::<dyn FnMut()>::new(move || push(TextEdit::Text(id, source.value())));
    let key = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        let get = |name: &str| js_sys::Reflect::get(&event, &name.into()).ok();
        let composing = get("isComposing").and_then(|v| v.as_bool()) == Some(true);
        if !composing && get("key").and_then(|v| v.as_string()).as_deref() == Some("Enter") {
            event.prevent_default();
            push(TextEdit::Enter(id));
        }
    });
    let left = Closure::<dyn FnMut()>::new(move || push(TextEdit::Left(id)));
    let listen = |name: &str, callback: &js_sys::Function| {
        let _ = input.add_event_listener_with_callback(name, callback);
    };
    listen("input", typed.as_ref().unchecked_ref());
    listen("keydown", key.as_ref().unchecked_ref());
    listen("blur", left.as_ref().unchecked_ref());
    // The inputs live as long as the page.
    typed.forget();
    key.forget();
    left.forget();
    document.body()?.append_child(&input).ok()?;
    Some(Field {
        id,
        input,
        rect: [0.0; 4],
        hint: String::new(),
        shown: false,
    })
}
