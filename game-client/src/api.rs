//! Calls to the Duet worker's HTTP API: create a room, kick or ban the peer.
//!
//! Requests go out as [`ApiCall`] messages and answers come back as [`ApiReply`] messages, so the
//! rest of the client never blocks on the network. `ehttp` runs the request on its own thread
//! natively and through `fetch` in the browser; answers cross back through a channel.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use bevy::prelude::*;
use duet_shared::api::{ApiError, CreatedRoom, PeerTarget, RoomInfo, RoomMembers};
use matchbox_socket::PeerId;

use crate::config::ClientConfig;

/// What to ask the server.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum ApiCall {
    /// `GET /api/version`: whether this app and the server speak the same API (asked once, at
    /// start).
    Version,
    /// `POST /api/rooms`.
    CreateRoom,
    /// `POST /api/rooms/{room}/kick` or `/ban` with the owner key.
    Moderate {
        /// Room id.
        room: String,
        /// The owner key kept when the room was created.
        owner_key: String,
        /// The peer's signaling id.
        peer: PeerId,
        /// Kick or ban.
        action: Moderation,
    },
    /// `GET /api/rooms/{room}`: how many are in it (used to explain a refused join where the
    /// platform hides the refusal's HTTP status, as browsers do for WebSockets).
    RoomInfo {
        /// Room id.
        room: String,
    },
    /// `GET /api/rooms/{room}/members` with the owner key: who holds the seats, so that an
    /// owner who finds the room full can free a seat from outside.
    Members {
        /// Room id.
        room: String,
        /// The owner key kept when the room was created.
        owner_key: String,
    },
    /// `PUT /api/rooms/{room}/owner-seat` with the owner key: this device's room key always
    /// finds a seat in the room.
    ReserveSeat {
        /// Room id.
        room: String,
        /// The owner key kept when the room was created.
        owner_key: String,
        /// This device's key for the room.
        key: duet_shared::trust::PublicKey,
    },
}

/// A moderation action (room owner only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    /// Remove the peer; they may come back.
    Kick,
    /// Remove the peer and keep them (identity and address) out of this room.
    Ban,
}

impl Moderation {
    fn path(self) -> &'static str {
        match self {
            Self::Kick => "kick",
            Self::Ban => "ban",
        }
    }
}

/// What the server answered.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum ApiReply {
    /// The server's API version.
    Version(duet_shared::api::ServerVersion),
    /// A new room and its owner key.
    RoomCreated(CreatedRoom),
    /// The moderation action happened.
    Moderated(Moderation),
    /// Who is in a room.
    RoomInfo(RoomInfo),
    /// Who holds a room's seats (owner only).
    Members(RoomMembers),
    /// The owner's seat is reserved.
    SeatReserved,
    /// The call failed; `message` is a sentence for the user.
    Failed {
        /// Which call.
        call: ApiCall,
        /// What went wrong, in words.
        message: String,
    },
}

/// Channel the HTTP threads answer through.
#[derive(Resource)]
struct Inbox {
    tx: Sender<ApiReply>,
    rx: Mutex<Receiver<ApiReply>>,
}

/// Sends [`ApiCall`]s and delivers [`ApiReply`]s.
pub struct ApiPlugin;

impl Plugin for ApiPlugin {
    fn build(&self, app: &mut App) {
        let (tx, rx) = channel();
        app.add_message::<ApiCall>()
            .add_message::<ApiReply>()
            .init_resource::<ClientConfig>()
            .insert_resource(Inbox {
                tx,
                rx: Mutex::new(rx),
            })
            .add_systems(Startup, |mut calls: MessageWriter<ApiCall>| {
                calls.write(ApiCall::Version);
            })
            .add_systems(PreUpdate, deliver_replies)
            .add_systems(PostUpdate, send_calls);
    }
}

fn send_calls(mut calls: MessageReader<ApiCall>, config: Res<ClientConfig>, inbox: Res<Inbox>) {
    for call in calls.read() {
        let request = match call {
            ApiCall::Version => ehttp::Request::get(format!("{}/api/version", config.server)),
            ApiCall::CreateRoom => {
                ehttp::Request::post(format!("{}/api/rooms", config.server), Vec::new())
            }
            ApiCall::Moderate {
                room,
                owner_key,
                peer,
                action,
            } => {
                let body = serde_json::to_vec(&PeerTarget { peer: *peer }).unwrap_or_default();
                let mut request = ehttp::Request::post(
                    format!("{}/api/rooms/{room}/{}", config.server, action.path()),
                    body,
                );
                request.headers.insert("Content-Type", "application/json");
                request
                    .headers
                    .insert("Authorization", format!("Bearer {owner_key}"));
                request
            }
            ApiCall::RoomInfo { room } => {
                ehttp::Request::get(format!("{}/api/rooms/{room}", config.server))
            }
            ApiCall::ReserveSeat {
                room,
                owner_key,
                key,
            } => {
                let body = serde_json::to_vec(&duet_shared::api::OwnerSeat { key: *key })
                    .unwrap_or_default();
                let mut request = ehttp::Request::post(
                    format!("{}/api/rooms/{room}/owner-seat", config.server),
                    body,
                );
                request.method = "PUT".to_owned();
                request.headers.insert("Content-Type", "application/json");
                request
                    .headers
                    .insert("Authorization", format!("Bearer {owner_key}"));
                request
            }
            ApiCall::Members { room, owner_key } => {
                let mut request =
                    ehttp::Request::get(format!("{}/api/rooms/{room}/members", config.server));
                request
                    .headers
                    .insert("Authorization", format!("Bearer {owner_key}"));
                request
            }
        };
        // The answers are tiny, and the worker's empty 204s come back marked gzip through
        // wrangler: the native HTTP client then fails decoding an empty gzip stream ("unexpected
        // end of file", seen when kicking). Ask for no compression.
        let mut request = request;
        request.headers.insert("Accept-Encoding", "identity");
        let tx = inbox.tx.clone();
        let call = call.clone();
        ehttp::fetch(request, move |result| {
            let _ = tx.send(interpret(call, result));
        });
    }
}

/// Maps an HTTP outcome to a reply; pure, so it is unit-tested without a server.
fn interpret(call: ApiCall, result: ehttp::Result<ehttp::Response>) -> ApiReply {
    let fail = |message: String| ApiReply::Failed {
        call: call.clone(),
        message,
    };
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            return fail(format!(
                "Cannot reach the Duet server ({e}). Check your connection."
            ));
        }
    };
    if !response.ok {
        let message = serde_json::from_slice::<ApiError>(&response.bytes)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("The server answered {}.", response.status));
        return fail(message);
    }
    match &call {
        ApiCall::Version => match serde_json::from_slice(&response.bytes) {
            Ok(version) => ApiReply::Version(version),
            Err(e) => fail(format!("The server's answer was not understood: {e}")),
        },
        ApiCall::CreateRoom => match serde_json::from_slice::<CreatedRoom>(&response.bytes) {
            Ok(created) => ApiReply::RoomCreated(created),
            Err(e) => fail(format!("The server's answer was not understood: {e}")),
        },
        ApiCall::Moderate { action, .. } => ApiReply::Moderated(*action),
        ApiCall::ReserveSeat { .. } => ApiReply::SeatReserved,
        ApiCall::RoomInfo { .. } => match serde_json::from_slice::<RoomInfo>(&response.bytes) {
            Ok(info) => ApiReply::RoomInfo(info),
            Err(e) => fail(format!("The server's answer was not understood: {e}")),
        },
        ApiCall::Members { .. } => match serde_json::from_slice::<RoomMembers>(&response.bytes) {
            Ok(members) => ApiReply::Members(members),
            Err(e) => fail(format!("The server's answer was not understood: {e}")),
        },
    }
}

fn deliver_replies(inbox: Res<Inbox>, mut replies: MessageWriter<ApiReply>) {
    let Ok(rx) = inbox.rx.lock() else { return };
    while let Ok(reply) = rx.try_recv() {
        replies.write(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::util::http_answer as response;

    #[test]
    fn replies_are_parsed_and_failures_are_sentences() {
        let created = interpret(
            ApiCall::CreateRoom,
            response(201, r#"{"room":"r","owner_key":"k"}"#),
        );
        assert_eq!(
            created,
            ApiReply::RoomCreated(CreatedRoom {
                room: "r".into(),
                owner_key: "k".into()
            })
        );
        let refused = interpret(
            ApiCall::CreateRoom,
            response(
                401,
                r#"{"error":"unauthorized","message":"Wrong owner key."}"#,
            ),
        );
        assert!(
            matches!(refused, ApiReply::Failed { message, .. } if message == "Wrong owner key.")
        );
        let info = interpret(
            ApiCall::RoomInfo { room: "r".into() },
            response(200, r#"{"room":"r","peers":2,"capacity":2}"#),
        );
        assert!(matches!(info, ApiReply::RoomInfo(i) if i.peers == 2 && i.capacity == 2));
        let version = interpret(ApiCall::Version, response(200, r#"{"api":7}"#));
        assert_eq!(
            version,
            ApiReply::Version(duet_shared::api::ServerVersion { api: 7 })
        );
        let down = interpret(ApiCall::CreateRoom, Err("connection refused".into()));
        assert!(
            matches!(down, ApiReply::Failed { message, .. } if message.starts_with("Cannot reach"))
        );
    }
}
