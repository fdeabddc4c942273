//! Duet's shared wire types.
//!
//! Duet has two wires: the signaling HTTP/WebSocket API served by the Worker (this module's
//! [`api`]), and the peer protocol spoken over WebRTC data channels (arrives with the peer core).
//! Both ends of each wire compile this crate, so a field renamed here is renamed everywhere.
//! Plain types and pure functions only: no I/O, no runtime.
#![forbid(unsafe_code)]

pub mod api;
