//! The Worker's front door: routes HTTP requests to the right room object or to static assets.
//!
//! Static files under `web/` are served by the `[assets]` binding before this code runs; what arrives
//! here is the API, the signaling WebSocket, and room links (`/r/{room}`), which get the app's page.

use duet_shared::api::{CreatedRoom, ErrorCode, is_valid_room_id};
use worker::{Context, Env, Method, Request, RequestInit, Response, Result, event};

use super::durable::{MAX_MODERATION_BODY, too_large};
use super::respond::{self, Failure};
use crate::secrets;

/// Binding name of the room Durable Object namespace (see `wrangler.toml`).
const ROOMS: &str = "ROOMS";

/// Internal path the edge uses to initialise a freshly minted room object.
pub const INIT_PATH: &str = "/internal/init";

/// Internal path of the object that counts one client address's room creations.
pub const CREATION_PATH: &str = "/internal/creation";

/// Body of the internal init request: the only thing a room is born with.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct InitRoom {
    /// Hex SHA-256 of the owner key.
    pub owner_key_hash: String,
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    match route(req, &env).await {
        Ok(response) => Ok(response),
        Err(failure) => failure.into_response(),
    }
}

/// Which room a path names, if it names one; the rest of the path after the id is returned too.
fn split_room<'p>(path: &'p str, prefix: &str) -> Option<(&'p str, &'p str)> {
    let rest = path.strip_prefix(prefix)?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    })
}

async fn route(req: Request, env: &Env) -> std::result::Result<Response, Failure> {
    let path = req.path();
    let method = req.method();
    if method == Method::Options {
        return Ok(respond::preflight()?);
    }
    if path == "/api/version" && method == Method::Get {
        // A client built for another version of this API (a page kept by its service worker,
        // an old desktop app) asks first, and tells its person instead of misreading answers.
        return Ok(respond::json(
            200,
            &duet_shared::api::ServerVersion {
                api: duet_shared::api::API_VERSION,
            },
        )?);
    }
    if path == "/api/rooms" || path == "/api/rooms/" {
        return match method {
            Method::Post => {
                check_origin(&req)?;
                limit_creations(&req, env).await?;
                create_room(env).await
            }
            _ => Err(Failure::refuse(
                ErrorCode::MethodNotAllowed,
                "Use POST /api/rooms to create a room.",
            )),
        };
    }
    if let Some((room, rest)) = split_room(&path, "/api/rooms/") {
        let allowed = matches!(
            (&method, rest),
            (Method::Get, "")
                | (Method::Get, "/members")
                | (Method::Get, "/ice")
                | (Method::Post, "/kick")
                | (Method::Post, "/ban")
                | (Method::Delete, "/bans")
                | (Method::Put, "/owner-seat")
        );
        if !allowed {
            return Err(Failure::refuse(
                ErrorCode::NotFound,
                format!(
                    "No API route {method:?} {path}. Routes: GET /api/rooms/{{room}}, \
                     GET /api/rooms/{{room}}/members, GET /api/rooms/{{room}}/ice, POST /api/rooms/{{room}}/kick, POST /api/rooms/{{room}}/ban, \
                     DELETE /api/rooms/{{room}}/bans, PUT /api/rooms/{{room}}/owner-seat."
                ),
            ));
        }
        if matches!(method, Method::Post | Method::Put) && !moderation_body_fits(&req)? {
            return Err(refuse_large_body(req).await);
        }
        return forward_to_room(room, req, env).await;
    }
    if let Some((room, "")) = split_room(&path, "/signal/") {
        return forward_to_room(room, req, env).await;
    }
    if path == CLIENT_WASM && method == Method::Get {
        return gzipped_client(&req, env).await;
    }
    if let Some((room, "")) = split_room(&path, "/r/")
        && is_valid_room_id(room)
    {
        // The app's page handles room links itself; it asks the API whether the room exists.
        let assets = env.assets("ASSETS")?;
        let mut index = assets.fetch("https://assets.local/", None).await?;
        return Ok(respond::page(index.bytes().await?)?);
    }
    Err(Failure::refuse(
        ErrorCode::NotFound,
        format!("Nothing at {path}. Room links look like /r/{{room}}."),
    ))
}

/// The web client's wasm. The shipped build is a static asset and never reaches the Worker. A
/// development build (`cargo xtask dev`: no LTO, no wasm-opt) is larger than the 25 MiB a static
/// asset may be, so it is stored gzipped beside that path and served from here as it is stored,
/// with `Content-Encoding: gzip`: the browser undoes it before compiling.
const CLIENT_WASM: &str = "/pkg/duet-client_bg.wasm";

async fn gzipped_client(req: &Request, env: &Env) -> std::result::Result<Response, Failure> {
    let assets = env.assets("ASSETS")?;
    let gzipped = assets
        .fetch(format!("https://assets.local{CLIENT_WASM}.gz"), None)
        .await?;
    if gzipped.status_code() != 200 {
        return Err(Failure::refuse(
            ErrorCode::NotFound,
            "The web client is not built: run `cargo xtask dev`.",
        ));
    }
    // The stored file's validator is the response's: the bytes sent are the stored bytes.
    let etag = gzipped.headers().get("etag")?.unwrap_or_default();
    let asked = req.headers().get("if-none-match")?.unwrap_or_default();
    if crate::revalidate::none_match_hits(&asked, &etag) {
        return Ok(respond::not_modified(&etag)?);
    }
    Ok(respond::gzipped_wasm(gzipped.body().clone(), &etag)?)
}

/// Kick and ban bodies are tiny: one over [`MAX_MODERATION_BODY`] (or of unknown length) is
/// refused by its `Content-Length`, before anything parses it or wakes the room.
fn moderation_body_fits(req: &Request) -> std::result::Result<bool, Failure> {
    let length = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<usize>().ok());
    Ok(length.is_some_and(|n| n <= MAX_MODERATION_BODY))
}

/// Most bytes of a refused body read (and dropped, chunk by chunk) before answering.
const DRAIN_LIMIT: usize = 8 << 20;

/// The `413` for a body that is too large. What was sent is read and dropped first, up to
/// [`DRAIN_LIMIT`], never kept: the runtime fails a request that is answered while its body
/// is still streaming in, and the client would see a broken connection instead of the refusal.
async fn refuse_large_body(mut req: Request) -> Failure {
    use futures_util::StreamExt;
    if let Ok(mut body) = req.stream() {
        let mut seen = 0;
        while let Some(Ok(chunk)) = body.next().await {
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    too_large()
}

/// Rooms are created only by Duet itself: the app's own page, or a client that is no web page at
/// all (the desktop app sends no `Origin`). Another site's page would otherwise make its visitors
/// mint rooms (a simple cross-origin POST needs no preflight).
fn check_origin(req: &Request) -> std::result::Result<(), Failure> {
    let Some(origin) = req.headers().get("origin")? else {
        return Ok(());
    };
    let host = req.headers().get("host")?.unwrap_or_default();
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    if !host.is_empty() && authority.eq_ignore_ascii_case(&host) {
        return Ok(());
    }
    Err(Failure::refuse(
        ErrorCode::ForeignOrigin,
        "Rooms can only be created from Duet's own page or app.",
    ))
}

/// Each client address has an object of its own (named by a hash of the address, never the
/// address) that counts its room creations; past its budget the creation is refused with
/// `429`.
async fn limit_creations(req: &Request, env: &Env) -> std::result::Result<(), Failure> {
    // Every request at the edge has an address; without one (never in production) all such
    // requests share one budget.
    let ip = req.headers().get("cf-connecting-ip")?.unwrap_or_default();
    let name = format!("creations:{}", secrets::hash_ip("room-creations", &ip));
    let stub = env.durable_object(ROOMS)?.id_from_name(&name)?.get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post);
    let request = Request::new_with_init(&format!("https://room.local{CREATION_PATH}"), &init)?;
    let response = stub.fetch_with_request(request).await?;
    match response.status_code() {
        204 => Ok(()),
        429 => Err(Failure::refuse(
            ErrorCode::RateLimited,
            "Too many rooms created from your address in a short time. Wait a minute, then \
             try again.",
        )),
        other => Err(Failure::Runtime(worker::Error::RustError(format!(
            "the creation counter answered with status {other}"
        )))),
    }
}

async fn create_room(env: &Env) -> std::result::Result<Response, Failure> {
    let to_internal =
        |e: secrets::NoRandomness| Failure::Runtime(worker::Error::RustError(e.to_string()));
    let room = secrets::new_room_id().map_err(to_internal)?;
    let owner_key = secrets::new_owner_key().map_err(to_internal)?;
    let stub = env.durable_object(ROOMS)?.id_from_name(&room)?.get_stub()?;
    let body = serde_json::to_string(&InitRoom {
        owner_key_hash: secrets::hash_owner_key(&owner_key),
    })
    .map_err(|e| worker::Error::RustError(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let request = Request::new_with_init(&format!("https://room.local{INIT_PATH}"), &init)?;
    let response = stub.fetch_with_request(request).await?;
    if response.status_code() != 204 {
        return Err(Failure::Runtime(worker::Error::RustError(format!(
            "room object refused initialisation with status {}",
            response.status_code()
        ))));
    }
    Ok(respond::json(201, &CreatedRoom { room, owner_key })?)
}

async fn forward_to_room(
    room: &str,
    req: Request,
    env: &Env,
) -> std::result::Result<Response, Failure> {
    if !is_valid_room_id(room) {
        return Err(Failure::refuse(
            ErrorCode::UnknownRoom,
            "There is no room with this id. Check the link, or create a new room.",
        ));
    }
    let stub = env.durable_object(ROOMS)?.id_from_name(room)?.get_stub()?;
    Ok(stub.fetch_with_request(req).await?)
}
