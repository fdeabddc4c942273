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
/// installed app often do not). Looked up once: the permission is read every frame.
fn has_notifications() -> bool {
    thread_local! {
        static HAS: bool = web_sys::window().is_some_and(|w| {
            js_sys::Reflect::has(&w, &JsValue::from_str("Notification")).unwrap_or(false)
        });
    }
    HAS.with(|has| *has)
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
/// messages replaces one notification instead of piling up; each still alerts (`renotify`).
///
/// Shown by the service worker when one runs the page: Chrome on Android has no
/// `new Notification` at all (it throws), and only there does a click focus the room's
/// window for sure (`sw.js`). The page's own constructor is the fallback.
pub fn notify(title: &str, body: &str) {
    if permission() != NotifyPermission::Granted {
        return;
    }
    let options = NotificationOptions::new();
    options.set_body(body);
    options.set_tag("duet");
    options.set_renotify(true);
    options.set_icon("/icons/duet-192.png");
    // The room to bring forward on a click: this page's own address.
    if let Some(href) = web_sys::window().and_then(|w| w.location().href().ok()) {
        options.set_data(&JsValue::from_str(&href));
    }
    if show_through_worker(title, &options) {
        return;
    }
    if let Ok(notification) = Notification::new_with_options(title, &options) {
        ON_CLICK.with(|handler| notification.set_onclick(Some(handler.as_ref().unchecked_ref())));
    }
}

/// Hands the notification to the service worker that controls this page, if one does; `false`
/// when none does (first visit, service workers refused), and the caller shows it itself.
///
/// Through `Reflect`: web-sys's service-worker types would be three more features to build for
/// three calls.
fn show_through_worker(title: &str, options: &NotificationOptions) -> bool {
    let get = |target: &JsValue, key: &str| {
        js_sys::Reflect::get(target, &JsValue::from_str(key))
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let Some(window) = web_sys::window() else {
        return false;
    };
    let Some(container) = get(&window.navigator(), "serviceWorker") else {
        return false;
    };
    if get(&container, "controller").is_none() {
        return false;
    }
    let Some(ready) = get(&container, "ready").and_then(|r| r.dyn_into::<js_sys::Promise>().ok())
    else {
        return false;
    };
    let (title, options) = (JsValue::from_str(title), JsValue::from(options.clone()));
    wasm_bindgen_futures::spawn_local(async move {
        let shown = async {
            let registration = wasm_bindgen_futures::JsFuture::from(ready).await?;
            let show: js_sys::Function = get(&registration, "showNotification")
                .ok_or_else(|| JsValue::from_str("no showNotification"))?
                .dyn_into()?;
            let promise: js_sys::Promise =
                show.call2(&registration, &title, &options)?.dyn_into()?;
            wasm_bindgen_futures::JsFuture::from(promise).await
        };
        if let Err(error) = shown.await {
            bevy::log::warn!("the service worker did not show a notification: {error:?}");
        }
    });
    true
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
