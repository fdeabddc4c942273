//! Duet's signaling service: a Cloudflare Worker with one Durable Object per room.
//!
//! Map of the crate:
//! - [`room`]: every decision (join, route, close, ban, expire) as pure functions over plain data.
//!   Compiled natively and unit-tested; it never touches the runtime or storage.
//! - [`ice`]: the STUN/TURN servers handed to a room's clients, and TURN credentials.
//! - [`revalidate`]: whether a conditional request names the current copy (a 304).
//! - [`secrets`]: room ids, owner keys, and the hashes stored in their place.
//! - `runtime` (wasm32 only): the Worker entry point (HTTP routing, static assets) and the `Room`
//!   Durable Object, which adapts WebSocket Hibernation events to [`room`] and carries out the
//!   result. This is the crate's single platform split.
//!
//! The WebSocket wire protocol is matchbox's, byte for byte, so stock `matchbox_socket` clients work.
//! The only things ever written to storage are the room record (owner key hash, salt, timestamps)
//! and the ban list; no signal or message content is stored.
#![forbid(unsafe_code)]

pub mod ice;
pub mod revalidate;
pub mod room;
pub mod secrets;

#[cfg(target_arch = "wasm32")]
mod runtime;
