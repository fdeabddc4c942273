//! The page's entry point: the same windowed client as the desktop, drawn into the page's
//! `<canvas id="duet">`, talking to the server that served the page.
//!
//! - The room comes from the address (`/r/{room}`); the server is the page's own origin, so one
//!   Worker serves the app and the signaling, locally and deployed.
//! - STUN/TURN servers come from `assets/config.ron`, built in.
//! - Identity, names, owner keys and the received-files list live in `localStorage` (bevy_pkv);
//!   chat history in IndexedDB (`platform::IdbHistory`), so that it cannot crowd them out;
//!   received files in IndexedDB too (`platform::IdbStore`).
//! - `?automation` adds the test hooks: state as `duet-event {json}` console lines; only on a
//!   page served from a loopback address ([`crate::config::test_hooks_allowed`]).

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use wasm_bindgen::JsCast;

use super::{DuetCorePlugins, add_platform, add_windowed_client, inject_faults};
use crate::config::ClientConfig;
use crate::transfer::Store;

/// The configuration shipped with the app (the same file the desktop reads).
const BUILT_IN_CONFIG: &str = include_str!("../../../assets/config.ron");

/// Builds and starts the app in the page.
pub fn main() -> AppExit {
    let Some(window) = web_sys::window() else {
        return AppExit::error();
    };
    let location = window.location();
    let origin = location.origin().unwrap_or_default();
    let path = location.pathname().unwrap_or_default();
    let automation = location
        .search()
        .is_ok_and(|query| query.contains("automation"))
        && crate::platform::test_hooks_here();
    if location
        .search()
        .is_ok_and(|query| query.contains("store_contract"))
        && crate::platform::test_hooks_here()
    {
        crate::platform::run_store_contract();
        return AppExit::Success;
    }
    let config = ClientConfig::from_ron(BUILT_IN_CONFIG, "assets/config.ron").unwrap_or_default();
    let config = ClientConfig {
        server: origin.clone(),
        ..config
    };
    if let Some(canvas) = window
        .document()
        .and_then(|d| d.get_element_by_id("duet"))
        .and_then(|e| e.dyn_into::<web_sys::HtmlCanvasElement>().ok())
    {
        crate::platform::listen_for_file_drags(&canvas);
        crate::platform::keep_tab_in_app(&canvas);
    }
    let join = path
        .strip_prefix("/r/")
        .filter(|room| !room.is_empty())
        .map(|room| format!("{origin}/r/{room}"));

    let mut app = App::new();
    add_platform(&mut app, |_| {});
    let wake = app.world().resource::<crate::ports::Host>().wake.clone();
    app.add_plugins(
        DefaultPlugins
            .set(AssetPlugin {
                // Duet ships no `.meta` files: asking for each one is a 404 per asset.
                meta_check: bevy::asset::AssetMetaCheck::Never,
                ..default()
            })
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: "Duet".into(),
                    canvas: Some("#duet".into()),
                    fit_canvas_to_parent: true,
                    // Let the browser keep its own keys (reload, devtools); egui still gets the text.
                    prevent_default_event_handling: false,
                    ..default()
                }),
                ..default()
            }),
    )
    .insert_resource(PkvStore::new("Duet", "Duet"))
    .insert_resource(crate::chat::history::ChatArchive(Box::new(
        crate::platform::IdbHistory::new(),
    )))
    .insert_resource(Store(Box::new(crate::platform::IdbStore::new(wake))))
    .insert_resource(config)
    .add_plugins(DuetCorePlugins);
    add_windowed_client(&mut app, automation, join);
    inject_faults(&mut app, crate::platform::fault_drop_grant());
    crate::platform::keep_running_when_hidden();
    crate::platform::stand_in_for_egui_text_agent();
    app.add_systems(Last, follow_page_visibility);
    app.insert_resource(crate::ui::ReportLayoutChanges(automation))
        .insert_resource(crate::ui::FramePacing::for_renderer(software_webgl()));
    app.run()
}

/// Whether the browser's WebGL draws without a GPU (SwiftShader, llvmpipe...), from the
/// renderer string a throwaway WebGL2 context reports.
fn software_webgl() -> bool {
    use js_sys::{Function, Reflect};
    use wasm_bindgen::JsValue;
    /// `UNMASKED_RENDERER_WEBGL` of the `WEBGL_debug_renderer_info` extension.
    const UNMASKED_RENDERER: f64 = 37_446.0;
    let call = |target: &JsValue, method: &str, arg: &JsValue| -> Option<JsValue> {
        let f: Function = Reflect::get(target, &method.into()).ok()?.dyn_into().ok()?;
        f.call1(target, arg).ok()
    };
    let renderer = (|| {
        let canvas = web_sys::window()?
            .document()?
            .create_element("canvas")
            .ok()?;
        let gl = call(&canvas, "getContext", &"webgl2".into())?;
        if gl.is_null() {
            return None;
        }
        call(&gl, "getExtension", &"WEBGL_debug_renderer_info".into())?;
        call(&gl, "getParameter", &UNMASKED_RENDERER.into())?.as_string()
    })()
    .unwrap_or_default()
    .to_ascii_lowercase();
    let software = ["swiftshader", "llvmpipe", "software", "basic render"]
        .iter()
        .any(|name| renderer.contains(name));
    if software {
        web_sys::console::info_1(
            &format!("Duet: WebGL draws without a GPU ({renderer}); drawing sparingly").into(),
        );
    }
    software
}

/// Bevy's loop updates a visible window only after a drawn frame, and a hidden tab draws none:
/// the app stopped dead the moment its tab was hidden (no peer met, no message taken) until the
/// person came back (`docs/attention.md`). An invisible window is updated on every wake-up
/// instead, which a hidden tab's timers give about once a second; so the window is invisible to
/// Bevy exactly while the page is hidden (for winit on the web, visibility is a no-op). Not
/// while it shows: there every wake-up would draw, on top of the animation frames.
fn follow_page_visibility(mut windows: Query<&mut Window, With<bevy::window::PrimaryWindow>>) {
    let shown = web_sys::window()
        .and_then(|w| w.document())
        .is_none_or(|d| d.visibility_state() == web_sys::VisibilityState::Visible);
    if let Ok(mut window) = windows.single_mut()
        && window.visible != shown
    {
        window.visible = shown;
    }
}
