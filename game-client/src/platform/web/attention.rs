//! The page's side of [`crate::ports::Attention`]: whether the tab is seen, its title, the
//! Notification API and short sounds through Web Audio.
//!
//! Everything is made on demand from the page's globals: the port is shared across threads in
//! type (`Send + Sync`), and the DOM's objects are not, so only plain values are kept here.

use std::cell::RefCell;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{AudioContext, Notification, NotificationOptions, NotificationPermission};

use crate::ports::{Note, NotifyPermission, Sound};

/// The page is seen: its tab is the one shown and its window has the focus.
pub fn in_sight() -> Option<bool> {
    let document = web_sys::window()?.document()?;
    let visible = document.visibility_state() == web_sys::VisibilityState::Visible;
    Some(visible && document.has_focus().unwrap_or(true))
}

/// The tab's title.
pub fn show_title(title: &str) {
    if let Some(document) = web_sys::window().and_then(|w| w.document())
        && document.title() != title
    {
        document.set_title(title);
    }
}

/// Whether the browser has the Notification API at all (phones' browsers outside an
/// installed app often do not).
fn has_notifications() -> bool {
    web_sys::window().is_some_and(|w| {
        js_sys::Reflect::has(&w, &JsValue::from_str("Notification")).unwrap_or(false)
    })
}

pub fn permission() -> NotifyPermission {
    if !has_notifications() {
        return NotifyPermission::Unsupported;
    }
    match Notification::permission() {
        NotificationPermission::Granted => NotifyPermission::Granted,
        NotificationPermission::Denied => NotifyPermission::Denied,
        _ => NotifyPermission::Ask,
    }
}

pub fn ask_permission() {
    if has_notifications() {
        // The answer is read again each frame (`permission`); the promise itself is not needed.
        let _ = Notification::request_permission();
    }
}

thread_local! {
    /// A notification's click handler: bring the page forward and close it. One for the
    /// page's lifetime, so a notification costs no closure of its own.
    static ON_CLICK: Closure<dyn Fn(web_sys::Event)> = Closure::new(|event: web_sys::Event| {
        if let Some(window) = web_sys::window() {
            let _ = window.focus();
        }
        if let Some(notification) = event.target().and_then(|t| t.dyn_into::<Notification>().ok()) {
            notification.close();
        }
    });
    /// The page's one audio context, made at the first sound.
    static AUDIO: RefCell<Option<AudioContext>> = const { RefCell::new(None) };
}

/// A system notification, if the person allowed them. All share one tag, so a burst of
/// messages replaces one notification instead of piling up.
pub fn notify(title: &str, body: &str) {
    if permission() != NotifyPermission::Granted {
        return;
    }
    let options = NotificationOptions::new();
    options.set_body(body);
    options.set_tag("duet");
    options.set_icon("/icons/duet-192.png");
    if let Ok(notification) = Notification::new_with_options(title, &options) {
        ON_CLICK.with(|handler| notification.set_onclick(Some(handler.as_ref().unchecked_ref())));
    }
}

/// Plays `sound` through Web Audio. The browser lets a page make sound once the person has
/// clicked in it; before that the context stays suspended and this is silent.
pub fn play(sound: Sound) {
    AUDIO.with_borrow_mut(|audio| {
        if audio.is_none() {
            *audio = AudioContext::new().ok();
        }
        let Some(context) = audio.as_ref() else {
            return;
        };
        if context.state() == web_sys::AudioContextState::Suspended {
            let _ = context.resume();
        }
        let start = context.current_time() + 0.02;
        for note in sound.notes() {
            let _ = play_note(context, start, note);
        }
    });
}

/// One note: an oscillator through a gain that fades in and out over 10 ms (no clicks).
fn play_note(context: &AudioContext, start: f64, note: &Note) -> Result<(), JsValue> {
    let oscillator = context.create_oscillator()?;
    oscillator.frequency().set_value(note.hz);
    let gain = context.create_gain()?;
    let (from, to) = (
        start + f64::from(note.at_ms) / 1000.0,
        start + f64::from(note.at_ms + note.ms) / 1000.0,
    );
    let level = gain.gain();
    level.set_value_at_time(0.0, from)?;
    level.linear_ramp_to_value_at_time(0.2, from + 0.01)?;
    level.set_value_at_time(0.2, to - 0.01)?;
    level.linear_ramp_to_value_at_time(0.0, to)?;
    oscillator.connect_with_audio_node(&gain)?;
    gain.connect_with_audio_node(&context.destination())?;
    oscillator.start_with_when(from)?;
    oscillator.stop_with_when(to)?;
    Ok(())
}
