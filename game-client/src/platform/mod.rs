//! The adapters behind [`crate::ports`]: the desktop's (`native`) and the browser's (`web`),
//! chosen here by the one `cfg` split of the crate. Each offers [`capabilities`] and [`host`]
//! (every port implemented once), plus the few things only its own entry point in `app` uses.
//! Nothing but `app` names this module.

mod lane_mailbox;

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub use web::*;
