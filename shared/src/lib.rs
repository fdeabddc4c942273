//! Duet's shared wire types.
//!
//! Duet has two wires, and both ends of each compile this crate, so a field renamed here is
//! renamed everywhere:
//! - [`api`]: the signaling service's HTTP API around matchbox's WebSocket protocol.
//! - [`peer`]: the peer protocol two clients speak over WebRTC data channels, with its codec.
//!
//! And one protocol between a client and whatever drives it: [`automation`], the events a
//! client reports to tests and scripts.
//!
//! Plus the pure logic both clients share: [`transfer`] (sans-IO sender/receiver state machines
//! with end-to-end flow control), [`call`] (the call state machine), [`names`] (making a peer's file name
//! safe to write), [`trust`] (device keys, join and hello proofs, the safety code) and
//! [`handshake`] (the authenticated hello over one connection).
//! Plain types and pure functions only: no I/O, no runtime, no clock.
#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod automation;
pub mod call;
pub mod handshake;
pub mod lane;
pub mod liveness;
pub mod names;
pub mod peer;
pub mod transfer;
pub mod trust;
