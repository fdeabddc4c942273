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

/// Channel the HTTP threads answer through: the call, which try it was, and its outcome.
#[derive(Resource)]
struct Inbox {
    tx: Sender<Answered>,
    rx: Mutex<Receiver<Answered>>,
}

/// One HTTP outcome, as it came back from its thread.
struct Answered {
    call: ApiCall,
    attempt: u8,
    result: ehttp::Result<ehttp::Response>,
}

/// How long after a server's "unavailable" (502, 503, 504: restarting, overloaded, a proxy
/// between) a call is made once more before the person is told. Every call here is safe to
/// repeat: a room created twice leaves one unused room, which expires.
const RETRY_AFTER_S: f64 = 1.0;

/// The statuses that mean "unavailable right now" (see [`RETRY_AFTER_S`]).
const UNAVAILABLE: std::ops::RangeInclusive<u16> = 502..=504;

/// Calls waiting to be made again, each with the time (real, seconds since start) it is due.
#[derive(Resource, Default)]
struct Retries(Vec<(f64, ApiCall)>);

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
            .init_resource::<Retries>()
            .add_systems(Startup, |mut calls: MessageWriter<ApiCall>| {
                calls.write(ApiCall::Version);
            })
            .add_systems(PreUpdate, deliver_replies)
            .add_systems(PostUpdate, (send_calls, send_retries));
    }
}

fn send_calls(mut calls: MessageReader<ApiCall>, config: Res<ClientConfig>, inbox: Res<Inbox>) {
    for call in calls.read() {
        send(call, 0, &config, &inbox);
    }
}

/// Makes again the calls whose retry is due.
fn send_retries(
    mut retries: ResMut<Retries>,
    time: Res<Time<Real>>,
    config: Res<ClientConfig>,
    inbox: Res<Inbox>,
) {
    if retries.0.is_empty() {
        return;
    }
    let now = time.elapsed_secs_f64();
    let (due, later): (Vec<_>, Vec<_>) = retries.0.drain(..).partition(|(at, _)| *at <= now);
    retries.0 = later;
    for (_, call) in due {
        send(&call, 1, &config, &inbox);
    }
}

fn send(call: &ApiCall, attempt: u8, config: &ClientConfig, inbox: &Inbox) {
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
            let body =
                serde_json::to_vec(&duet_shared::api::OwnerSeat { key: *key }).unwrap_or_default();
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
        let _ = tx.send(Answered {
            call,
            attempt,
            result,
        });
    });
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
            .unwrap_or_else(|_| match response.status {
                status if UNAVAILABLE.contains(&status) => format!(
                    "The Duet server is unavailable right now ({status}); try again in a moment."
                ),
                status => format!("The server answered {status}."),
            });
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

/// Whether an outcome is the server saying "not now" (see [`RETRY_AFTER_S`]).
fn unavailable(result: &ehttp::Result<ehttp::Response>) -> bool {
    matches!(result, Ok(response) if UNAVAILABLE.contains(&response.status))
}

fn deliver_replies(
    inbox: Res<Inbox>,
    mut retries: ResMut<Retries>,
    time: Res<Time<Real>>,
    mut replies: MessageWriter<ApiReply>,
) {
    let Ok(rx) = inbox.rx.lock() else { return };
    while let Ok(Answered {
        call,
        attempt,
        result,
    }) = rx.try_recv()
    {
        if attempt == 0 && unavailable(&result) {
            // Not the call itself: a moderation call carries the owner key.
            debug!("the server was unavailable; the call goes once more in {RETRY_AFTER_S} s");
            retries
                .0
                .push((time.elapsed_secs_f64() + RETRY_AFTER_S, call));
            continue;
        }
        replies.write(interpret(call, result));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod retry_tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use super::*;

    /// A server on loopback that answers each request with the next of `answers` (status,
    /// body), then closes; returns its base URL and how many requests it has answered.
    fn server(answers: Vec<(u16, &'static str)>) -> (String, std::sync::Arc<Mutex<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = std::sync::Arc::new(Mutex::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // The request's head; these requests have no body.
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                *count.lock().unwrap() += 1;
            }
        });
        (base, served)
    }

    /// Runs `call` against `base` until a reply comes (at most 10 s).
    fn reply_to(call: ApiCall, base: &str) -> (ApiReply, Duration) {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .insert_resource(ClientConfig {
                server: base.to_owned(),
                ..ClientConfig::default()
            });
        app.add_plugins(ApiPlugin);
        let mut cursor = bevy::ecs::message::MessageCursor::<ApiReply>::default();
        // The start-up version check takes the server's first answer.
        next_reply(&mut app, &mut cursor);
        app.world_mut().write_message(call);
        let started = Instant::now();
        let reply = next_reply(&mut app, &mut cursor);
        (reply, started.elapsed())
    }

    fn next_reply(
        app: &mut App,
        cursor: &mut bevy::ecs::message::MessageCursor<ApiReply>,
    ) -> ApiReply {
        let started = Instant::now();
        loop {
            app.update();
            let replies = app.world().resource::<Messages<ApiReply>>();
            if let Some(reply) = cursor.read(replies).next() {
                return reply.clone();
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no reply");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    const CREATED: &str = r#"{"room":"r","owner_key":"k"}"#;

    #[test]
    fn a_server_unavailable_once_is_asked_again_after_a_second() {
        // The first answer goes to the start-up version check.
        let (base, served) = server(vec![(200, r#"{"api":7}"#), (503, ""), (201, CREATED)]);
        let (reply, took) = reply_to(ApiCall::CreateRoom, &base);
        assert!(matches!(reply, ApiReply::RoomCreated(_)), "{reply:?}");
        assert_eq!(*served.lock().unwrap(), 3);
        assert!(took >= Duration::from_secs_f64(RETRY_AFTER_S), "{took:?}");
    }

    #[test]
    fn a_server_unavailable_twice_is_said_in_words() {
        let (base, served) = server(vec![
            (200, r#"{"api":7}"#),
            (503, ""),
            (503, ""),
            (201, CREATED),
        ]);
        let (reply, _) = reply_to(ApiCall::CreateRoom, &base);
        let ApiReply::Failed { message, .. } = reply else {
            panic!("{reply:?}");
        };
        assert!(message.contains("unavailable right now"), "{message}");
        assert_eq!(*served.lock().unwrap(), 3);
    }

    #[test]
    fn a_refusal_is_not_asked_again() {
        let (base, served) = server(vec![(200, r#"{"api":7}"#), (500, ""), (201, CREATED)]);
        let (reply, _) = reply_to(ApiCall::CreateRoom, &base);
        assert!(matches!(reply, ApiReply::Failed { .. }), "{reply:?}");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(*served.lock().unwrap(), 2);
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
