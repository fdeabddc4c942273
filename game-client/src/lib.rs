//! Duet's client, as Bevy plugins: a headless core plus room logic and a presentation layer.
//!
//! # Map of the crate
//!
//! Each concern lives in one module; the layers below are the import rule: a module may use the
//! modules of lower layers and never one of its own layer or above (`tests/layers.rs` fails on
//! any import that breaks it, and so on any cycle).
//!
//! | layer | module | what it is |
//! |---|---|---|
//! | 0 base | [`util`] | locks shared with the browser's pump, the wall clock, finished tasks |
//! |  | [`frame`] | the order of a frame's work, as system sets |
//! |  | [`config`] | server URL, STUN/TURN servers, thresholds from `assets/config.ron` |
//! | 1 seam | [`ports`] | the platform as traits ([`ports::Host`]) and values ([`ports::Capabilities`]) |
//! | 2 core | [`net`] | the WebRTC socket to the room, the peer's presence, the control channel |
//! | 3 | [`identity`] | who I am (a device key + display name), kept on this device; the peer's authenticated hello |
//! | 4 | [`chat`] | messages with delivery state; [`chat::history`] is where they are kept |
//! |  | [`call`] | voice/video calls: the shared call machine over the control channel |
//! |  | [`contacts`] | the people this device met: known, new, not the one met before, verified |
//! |  | [`storage`] | where received files go: the store contract and its one resume rule, the folder store |
//! |  | [`api`] | the worker's HTTP API (create a room, kick, ban, seats) as messages |
//! | 5 | [`transfer`] | file transfer: a sans-IO engine (time and a link injected) and its plugin |
//! | 6 adapters | [`platform`] | the desktop's and the browser's implementations of [`ports`] |
//! | 6 features | [`room`] | room logic for the window: screens, presence, avatars, file lists |
//! |  | [`headless`] | a runner printing `duet_shared::automation` events, taking stdin commands |
//! | 7 presentation | [`ui`] | the window, the 2D room, the egui panels; headless runs skip it |
//! | 8 assembly | [`app`] | the composition root both `main`s use: the only user of [`platform`] |
//!
//! The core (layers 2–5) never imports the platform or the UI; it reaches the platform only
//! through [`ports`], which the app fills in and logic tests leave out or fake. Nothing here
//! assumes a window. No offline delivery: a chat sent while the peer is away is stored as not
//! delivered and shown so; nothing is queued for later.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod call;
pub mod chat;
pub mod config;
pub mod contacts;
pub mod frame;
pub mod headless;
pub mod identity;
pub mod net;
pub mod platform;
pub mod ports;
pub mod room;
pub mod storage;
pub mod transfer;
pub mod ui;
pub mod util;
