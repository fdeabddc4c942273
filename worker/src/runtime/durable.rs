//! The `Room` Durable Object: one per room, holding at most two signaling WebSockets.
//!
//! It uses the WebSocket Hibernation API, so an idle room costs nothing: everything a socket needs
//! to be understood after a wake-up (its peer id, identity, IP hash) is in the socket's attachment.
//! Decisions come from [`crate::room`]; this file only reads state, calls them, and acts.
//!
//! Storage is touched on create, join, leave, ban and alarm — never when relaying a frame, because
//! outgoing messages wait for pending writes and a write per frame is the relay's throughput knee.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use duet_shared::api::{
    ErrorCode, OwnerSeat, PeerTarget, ROOM_CAPACITY, RoomInfo, RoomMembers, SeatHolder, close,
};
use duet_shared::trust::{JoinProof, TrustError};
use matchbox_protocol::{JsonPeerEvent, PeerId};
use uuid::Uuid;
use worker::{
    Date, DurableObject, Env, Method, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, durable_object,
};

use super::entry::{CREATION_PATH, INIT_PATH, InitRoom};
use super::respond::{self, Failure};
use crate::room::{
    self, AlarmDecision, Bans, Frame, FrameError, JoinDecision, Member, RateLimiter, RequestLimits,
    RoomRecord, Routed, SeenProofs,
};
use crate::secrets;

const RECORD_KEY: &str = "room";
/// Largest kick/ban body (`{"peer": "<uuid>"}` is 47 bytes).
pub(crate) const MAX_MODERATION_BODY: usize = 1024;

/// The refusal of a body over [`MAX_MODERATION_BODY`].
pub(crate) fn too_large() -> Failure {
    Failure::refuse(
        ErrorCode::TooLarge,
        "The request body is too large: send {\"peer\": \"<peer id>\"}, at most 1 KiB.",
    )
}
const BANS_KEY: &str = "bans";
/// The join proofs the room took lately ([`SeenProofs`]), so that each is taken once.
const SEEN_PROOFS_KEY: &str = "proofs";
/// Default idle lifetime of a room: a day without anybody in it.
const DEFAULT_IDLE_TTL_SECS: u64 = 24 * 60 * 60;
/// Default lifetime of a room nobody ever joined: ten minutes after its creation.
const DEFAULT_UNJOINED_TTL_SECS: u64 = 10 * 60;

/// One room. In-memory fields are caches that may be lost on hibernation without harm.
#[durable_object]
pub struct Room {
    state: State,
    env: Env,
    /// Flood protection per socket. Lost on hibernation, which only happens after quiet anyway.
    limiters: RefCell<HashMap<PeerId, RateLimiter>>,
    /// Peers already announced as gone whose sockets may still be listed while closing.
    departed: RefCell<HashSet<PeerId>>,
    /// Join rate limits (per room, per client address). In memory: an object looping joins is
    /// never idle long enough to be evicted, and a fresh object starts with full buckets.
    join_limits: RefCell<RequestLimits>,
    /// Limits on asking for ICE servers (per room, per client address), in memory like the
    /// join limits: each answer may mint TURN credentials.
    ice_limits: RefCell<RequestLimits>,
    /// When this object counts one client address's room creations (and is no room): its
    /// bucket. In memory, like the join limits.
    creations: RefCell<Option<RateLimiter>>,
}

type Outcome = std::result::Result<Response, Failure>;

/// Who the joining socket says it is: a Duet client's verified join proof, or a plain matchbox
/// client's `?identity=` UUID. A proof that is there but does not verify refuses the join; it
/// never falls back to the UUID.
fn claim_of(
    url: &worker::Url,
    room: &str,
    now_ms: u64,
) -> std::result::Result<room::Claim, Failure> {
    let mut pairs = url.query_pairs();
    match JoinProof::from_query(pairs) {
        Ok(Some(proof)) => {
            if let Err(e) = proof.verify(room, now_ms) {
                let message = match e {
                    TrustError::Stale => {
                        "Your device's clock is more than ten minutes off. Set it right, then \
                         join again."
                    }
                    _ => "Your app's proof of who it is did not check out. Reload and join again.",
                };
                return Err(Failure::refuse(ErrorCode::InvalidProof, message));
            }
            return Ok(room::Claim::Keyed {
                key: proof.key,
                proof_ms: proof.ts_ms,
            });
        }
        Ok(None) => {}
        Err(_) => {
            return Err(Failure::refuse(
                ErrorCode::InvalidProof,
                "The join proof (key, ts, sig) is incomplete or malformed.",
            ));
        }
    }
    let identity = pairs
        .find(|(k, _)| k == "identity")
        .map(|(_, v)| v.into_owned());
    match identity.as_deref().map(Uuid::parse_str) {
        Some(Ok(id)) => Ok(room::Claim::Plain(id)),
        Some(Err(_)) => Err(Failure::refuse(
            ErrorCode::InvalidIdentity,
            "The identity parameter is not a UUID. Connect to \
             /signal/{room}?identity={uuid} with your client's UUID.",
        )),
        None => Err(Failure::refuse(
            ErrorCode::InvalidIdentity,
            "The identity parameter is missing. Connect to \
             /signal/{room}?identity={uuid} with your client's UUID.",
        )),
    }
}

/// The requesting client's address, hashed with the room's salt (what rate limits and bans
/// key on; the address itself is never kept). `None` when the edge gave no address.
fn client_hash(req: &Request, record: &RoomRecord) -> Result<Option<String>> {
    Ok(req
        .headers()
        .get("cf-connecting-ip")?
        .map(|ip| secrets::hash_ip(&record.ip_salt, &ip)))
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

impl Room {
    fn secs_var(&self, name: &str, default: u64) -> u64 {
        self.env
            .var(name)
            .ok()
            .and_then(|v| v.to_string().parse::<u64>().ok())
            .unwrap_or(default)
            * 1000
    }

    fn idle_ttl_ms(&self) -> u64 {
        self.secs_var("ROOM_IDLE_TTL_SECS", DEFAULT_IDLE_TTL_SECS)
    }

    fn lifetimes(&self) -> room::Lifetimes {
        room::Lifetimes {
            idle_ms: self.idle_ttl_ms(),
            unjoined_ms: self.secs_var("UNJOINED_ROOM_TTL_SECS", DEFAULT_UNJOINED_TTL_SECS),
        }
    }

    /// `LOG_SIGNALS = "1"` logs one line per relayed signal: its kind and size, never its
    /// content. Off unless set; the tests turn it on to show that calls (negotiated between the
    /// peers over their own data channel) never pass through here.
    fn log_signals(&self) -> bool {
        self.env
            .var("LOG_SIGNALS")
            .is_ok_and(|v| v.to_string() == "1")
    }

    async fn record(&self) -> Result<Option<RoomRecord>> {
        self.state.storage().get::<RoomRecord>(RECORD_KEY).await
    }

    async fn existing_record(&self) -> std::result::Result<RoomRecord, Failure> {
        self.record().await?.ok_or_else(|| {
            Failure::refuse(
                ErrorCode::UnknownRoom,
                "This room does not exist (or expired after being empty for a while). \
                 Create a new room and share its link.",
            )
        })
    }

    async fn seen_proofs(&self) -> Result<SeenProofs> {
        Ok(self
            .state
            .storage()
            .get::<SeenProofs>(SEEN_PROOFS_KEY)
            .await?
            .unwrap_or_default())
    }

    async fn bans(&self) -> Result<Bans> {
        Ok(self
            .state
            .storage()
            .get::<Bans>(BANS_KEY)
            .await?
            .unwrap_or_default())
    }

    /// Live members with their sockets, in the order the runtime lists them.
    fn members(&self) -> Vec<(WebSocket, Member)> {
        let departed = self.departed.borrow();
        self.state
            .get_websockets()
            .into_iter()
            .filter_map(|ws| {
                let member = ws.deserialize_attachment::<Member>().ok().flatten()?;
                (!member.gone && !departed.contains(&member.peer)).then_some((ws, member))
            })
            .collect()
    }

    fn send(ws: &WebSocket, event: &JsonPeerEvent) {
        if let Err(e) = ws.send_with_str(room::event_text(event)) {
            worker::console_warn!("send failed: {e}");
        }
    }

    /// Marks `member` gone, closes its socket with `code`/`reason`, and tells the others.
    fn say_goodbye(&self, ws: &WebSocket, member: &Member, code: u16, reason: &str) {
        self.forget(ws, member);
        if let Err(e) = ws.close(Some(code), Some(room::truncate_reason(reason))) {
            worker::console_warn!("close failed: {e}");
        }
        self.announce_left(member.peer);
    }

    fn forget(&self, ws: &WebSocket, member: &Member) {
        let mut gone = member.clone();
        gone.gone = true;
        // Can fail once the socket is closed; the in-memory set covers that case.
        let _ = ws.serialize_attachment(&gone);
        self.departed.borrow_mut().insert(member.peer);
        self.limiters.borrow_mut().remove(&member.peer);
    }

    fn announce_left(&self, peer: PeerId) {
        for (other, _) in self.members() {
            Self::send(&other, &JsonPeerEvent::PeerLeft(peer));
        }
    }

    /// Records activity (join/leave) and makes sure the idle alarm is set.
    async fn touch(&self) -> Result<()> {
        if let Some(mut record) = self.record().await? {
            record.last_active_ms = now_ms();
            // Any activity means somebody was in the room (kicks and leaves follow a join).
            record.ever_joined = true;
            self.state.storage().put(RECORD_KEY, &record).await?;
            if self.state.storage().get_alarm().await?.is_none() {
                self.state
                    .storage()
                    .set_alarm(self.idle_ttl_ms() as i64)
                    .await?;
            }
        }
        Ok(())
    }

    async fn init(&self, mut req: Request) -> Outcome {
        let init: InitRoom = req.json().await?;
        if self.record().await?.is_some() {
            return Err(Failure::refuse(
                ErrorCode::BadRequest,
                "room already exists",
            ));
        }
        let now = now_ms();
        let record = RoomRecord {
            created_ms: now,
            owner_key_hash: init.owner_key_hash,
            ip_salt: secrets::new_salt().map_err(|e| worker::Error::RustError(e.to_string()))?,
            last_active_ms: now,
            ever_joined: false,
            owner_seat: None,
        };
        self.state.storage().put(RECORD_KEY, &record).await?;
        self.state
            .storage()
            .set_alarm(self.lifetimes().unjoined_ms as i64)
            .await?;
        Ok(respond::no_content()?)
    }

    async fn info(&self, room: &str) -> Outcome {
        self.existing_record().await?;
        Ok(respond::json(
            200,
            &RoomInfo {
                room: room.to_owned(),
                peers: self.members().len() as u32,
                capacity: ROOM_CAPACITY,
            },
        )?)
    }

    /// `GET /api/rooms/{room}/ice`: STUN and TURN servers, only for a room that exists and
    /// within the ICE request limits.
    async fn ice_servers(&self, req: &Request) -> Outcome {
        let record = self.existing_record().await?;
        let ip_hash = client_hash(req, &record)?;
        if !self
            .ice_limits
            .borrow_mut()
            .allow(ip_hash.as_deref(), now_ms() as f64)
        {
            return Err(Failure::refuse(
                ErrorCode::RateLimited,
                "Too many requests for connection servers in a short time. Wait a minute, \
                 then join again.",
            ));
        }
        super::ice::answer(&self.env, now_ms() / 1000).await
    }

    async fn join(&self, req: Request) -> Outcome {
        let record = self.existing_record().await?;
        let url = req.url()?;
        let room = url
            .path()
            .strip_prefix("/signal/")
            .unwrap_or_default()
            .to_owned();
        let ip_hash = client_hash(&req, &record)?;
        if !self
            .join_limits
            .borrow_mut()
            .allow(ip_hash.as_deref(), now_ms() as f64)
        {
            return Err(Failure::refuse(
                ErrorCode::RateLimited,
                "Too many attempts to join this room in a short time. Wait a minute, then \
                 try again.",
            ));
        }
        let claim = claim_of(&url, &room, now_ms())?;
        let members = self.members();
        let present: Vec<Member> = members.iter().map(|(_, m)| m.clone()).collect();
        let bans = self.bans().await?;
        // Only a keyed join has proofs to compare: a plain one costs no storage read for them.
        let mut seen = match claim {
            room::Claim::Keyed { .. } => self.seen_proofs().await?,
            room::Claim::Plain(_) => SeenProofs::default(),
        };
        let last_proof = claim.key().and_then(|key| seen.last(&key));
        let decision = room::decide_join(
            &present,
            &bans,
            &claim,
            ip_hash.as_deref(),
            last_proof,
            record.owner_seat.as_ref(),
        );
        let (replaces, displaces) = match decision {
            JoinDecision::Refuse(ErrorCode::Banned) => {
                return Err(Failure::refuse(
                    ErrorCode::Banned,
                    "The owner of this room has banned you from it.",
                ));
            }
            JoinDecision::Refuse(ErrorCode::ProofReused) => {
                return Err(Failure::refuse(
                    ErrorCode::ProofReused,
                    "This sign-in to the room was used already. Your app signs a new one each \
                     time it joins; a copied link with a key and signature does not let \
                     anyone in.",
                ));
            }
            JoinDecision::Refuse(ErrorCode::RoomFull) => {
                return Err(Failure::refuse(
                    ErrorCode::RoomFull,
                    "This room already has two people in it. Duet rooms are for two; \
                     ask for a new link.",
                ));
            }
            JoinDecision::Refuse(code) => {
                return Err(Failure::refuse(code, "You cannot join this room."));
            }
            JoinDecision::Admit { replaces } => (replaces, None),
            JoinDecision::Reclaim { displaces } => (None, Some(displaces)),
        };
        let upgrade = req.headers().get("upgrade")?.unwrap_or_default();
        if !upgrade.eq_ignore_ascii_case("websocket") {
            return Err(Failure::refuse(
                ErrorCode::UpgradeRequired,
                "This is the signaling WebSocket endpoint; connect with a WebSocket client.",
            ));
        }

        let peer =
            PeerId(secrets::new_peer_uuid().map_err(|e| worker::Error::RustError(e.to_string()))?);
        // The stale socket goes first, so the other peer hears PeerLeft(old) before NewPeer(new)
        // and the newcomer never hears about its own predecessor.
        if let Some((old_ws, old)) =
            replaces.and_then(|old_peer| members.iter().find(|(_, m)| m.peer == old_peer))
        {
            self.say_goodbye(
                old_ws,
                old,
                close::REPLACED,
                "Replaced by a newer connection with the same identity.",
            );
        }
        if let Some((other_ws, other)) =
            displaces.and_then(|peer| members.iter().find(|(_, m)| m.peer == peer))
        {
            self.say_goodbye(
                other_ws,
                other,
                close::SEAT_RESERVED,
                "The room's owner came back and needed their seat.",
            );
        }
        if let room::Claim::Keyed { key, proof_ms } = claim {
            seen.record(key, proof_ms, now_ms());
            self.state.storage().put(SEEN_PROOFS_KEY, &seen).await?;
        }
        let pair = WebSocketPair::new()?;
        let server = pair.server;
        self.state.accept_web_socket(&server);
        server.serialize_attachment(&Member {
            peer,
            identity: claim.identity(),
            ip_hash,
            gone: false,
            joined_ms: now_ms(),
            key: claim.key(),
            proof_ms: claim.proof_ms(),
        })?;
        Self::send(&server, &JsonPeerEvent::IdAssigned(peer));
        for (other, member) in self.members() {
            if member.peer != peer {
                Self::send(&other, &JsonPeerEvent::NewPeer(peer));
            }
        }
        self.touch().await?;
        Ok(Response::from_websocket(pair.client)?)
    }

    async fn authorize(&self, req: &Request) -> std::result::Result<RoomRecord, Failure> {
        let record = self.existing_record().await?;
        let header = req.headers().get("authorization")?.unwrap_or_default();
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("");
        if key.is_empty() || !secrets::owner_key_matches(&record.owner_key_hash, key) {
            return Err(Failure::refuse(
                ErrorCode::Unauthorized,
                "Moderation needs the room's owner key: send 'Authorization: Bearer {owner_key}' \
                 with the key you got when you created the room.",
            ));
        }
        Ok(record)
    }

    async fn moderate(&self, mut req: Request, ban: bool) -> Outcome {
        // The entry worker refused bodies over `MAX_MODERATION_BODY` by their Content-Length,
        // so this reads at most 1 KiB. It is read before answering anything (a response sent
        // while the body still streams in breaks the client's connection for its next request),
        // but looked at only once the key is checked.
        let body = req.bytes().await?;
        self.authorize(&req).await?;
        if body.len() > MAX_MODERATION_BODY {
            return Err(too_large());
        }
        let body = String::from_utf8_lossy(&body);
        let target: PeerTarget = serde_json::from_str(&body).map_err(|_| {
            Failure::refuse(
                ErrorCode::BadRequest,
                "Send a JSON body {\"peer\": \"<peer id>\"} naming the peer to act on.",
            )
        })?;
        let Some((ws, member)) = self
            .members()
            .into_iter()
            .find(|(_, m)| m.peer == target.peer)
        else {
            return Err(Failure::refuse(
                ErrorCode::UnknownPeer,
                "That peer is not in this room (it may have left already).",
            ));
        };
        if ban {
            let mut bans = self.bans().await?;
            bans.ban(&member);
            self.state.storage().put(BANS_KEY, &bans).await?;
            self.say_goodbye(
                &ws,
                &member,
                close::BANNED,
                "You were banned from this room by its owner.",
            );
        } else {
            self.say_goodbye(
                &ws,
                &member,
                close::KICKED,
                "You were removed from this room by its owner.",
            );
        }
        self.touch().await?;
        Ok(respond::no_content()?)
    }

    /// Who holds the seats, for the owner alone: from outside the room the owner can see and
    /// free a seat a squatter took (kick and ban name peer ids, otherwise seen only inside).
    async fn seat_holders(&self, req: &Request) -> Outcome {
        self.authorize(req).await?;
        let mut members: Vec<SeatHolder> = self
            .members()
            .into_iter()
            .map(|(_, m)| SeatHolder {
                peer: m.peer,
                joined_ms: m.joined_ms,
            })
            .collect();
        members.sort_by_key(|m| m.joined_ms);
        Ok(respond::json(200, &RoomMembers { members })?)
    }

    /// The owner reserves a seat for their device's room key: from then on a join proven by
    /// that key always finds a seat.
    async fn reserve_owner_seat(&self, mut req: Request) -> Outcome {
        let body = req.bytes().await?;
        let mut record = self.authorize(&req).await?;
        if body.len() > MAX_MODERATION_BODY {
            return Err(too_large());
        }
        let seat: OwnerSeat = serde_json::from_slice(&body).map_err(|_| {
            Failure::refuse(
                ErrorCode::BadRequest,
                "Send a JSON body {\"key\": \"<your room key, hex>\"} naming the key your \
                 app joins this room with.",
            )
        })?;
        record.owner_seat = Some(seat.key);
        self.state.storage().put(RECORD_KEY, &record).await?;
        Ok(respond::no_content()?)
    }

    async fn clear_bans(&self, req: Request) -> Outcome {
        self.authorize(&req).await?;
        self.state.storage().delete(BANS_KEY).await?;
        Ok(respond::no_content()?)
    }

    async fn route(&self, req: Request) -> Outcome {
        let path = req.path();
        let method = req.method();
        if path == INIT_PATH && method == Method::Post {
            return self.init(req).await;
        }
        if path == CREATION_PATH && method == Method::Post {
            return self.count_creation();
        }
        if path.starts_with("/signal/") {
            return self.join(req).await;
        }
        let Some(rest) = path.strip_prefix("/api/rooms/") else {
            return Err(Failure::refuse(ErrorCode::NotFound, "No such route."));
        };
        let (room, action) = rest.split_once('/').unwrap_or((rest, ""));
        match (method, action) {
            (Method::Get, "") => self.info(room).await,
            (Method::Get, "members") => self.seat_holders(&req).await,
            (Method::Get, "ice") => self.ice_servers(&req).await,
            (Method::Post, "kick") => self.moderate(req, false).await,
            (Method::Post, "ban") => self.moderate(req, true).await,
            (Method::Delete, "bans") => self.clear_bans(req).await,
            (Method::Put, "owner-seat") => self.reserve_owner_seat(req).await,
            _ => Err(Failure::refuse(ErrorCode::NotFound, "No such route.")),
        }
    }

    /// One room creation by this object's client address: `204` within its budget
    /// (`ROOM_CREATION_BURST`, then one per `ROOM_CREATION_REFILL_SECS`), else `429`.
    fn count_creation(&self) -> Outcome {
        let var = |name: &str, default: f64| {
            self.env
                .var(name)
                .ok()
                .and_then(|v| v.to_string().parse::<f64>().ok())
                .filter(|v| *v > 0.0)
                .unwrap_or(default)
        };
        let now = now_ms() as f64;
        let allowed = self
            .creations
            .borrow_mut()
            .get_or_insert_with(|| {
                let burst = var("ROOM_CREATION_BURST", 20.0);
                let refill = var("ROOM_CREATION_REFILL_SECS", 60.0);
                RateLimiter::with(burst, 1.0 / refill, now)
            })
            .allow(now);
        Ok(Response::empty()?.with_status(if allowed { 204 } else { 429 }))
    }

    /// A socket ended (closed by its client, or errored): announce it once, and start the idle
    /// clock if the room is now empty.
    async fn depart(&self, ws: &WebSocket) -> Result<()> {
        let Some(member) = ws.deserialize_attachment::<Member>().ok().flatten() else {
            return Ok(());
        };
        let already = member.gone || self.departed.borrow().contains(&member.peer);
        if !already {
            self.forget(ws, &member);
            self.announce_left(member.peer);
            self.touch().await?;
        }
        Ok(())
    }
}

impl DurableObject for Room {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            limiters: RefCell::new(HashMap::new()),
            departed: RefCell::new(HashSet::new()),
            join_limits: RefCell::new(RequestLimits::joins(now_ms() as f64)),
            ice_limits: RefCell::new(RequestLimits::ice(now_ms() as f64)),
            creations: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        match self.route(req).await {
            Ok(response) => Ok(response),
            Err(failure) => failure.into_response(),
        }
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let Some(member) = ws.deserialize_attachment::<Member>().ok().flatten() else {
            return Ok(());
        };
        if member.gone || self.departed.borrow().contains(&member.peer) {
            return Ok(());
        }
        let allowed = self
            .limiters
            .borrow_mut()
            .entry(member.peer)
            .or_insert_with(|| RateLimiter::new(now_ms() as f64))
            .allow(now_ms() as f64);
        let frame = match &message {
            WebSocketIncomingMessage::String(text) => Frame::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => Frame::Binary(bytes.len()),
        };
        let members = self.members();
        let live: Vec<PeerId> = members.iter().map(|(_, m)| m.peer).collect();
        let outcome = if allowed {
            room::route_frame(member.peer, &live, frame)
        } else {
            Err(FrameError::Flood)
        };
        match outcome {
            Ok(Routed::Relay { to, frame }) => {
                if self.log_signals() {
                    // What kind and how big, never what it says.
                    worker::console_log!(
                        "signal relayed: {}, {} bytes",
                        room::signal_kind(&frame),
                        frame.len()
                    );
                }
                if let Some((target, _)) = members.iter().find(|(_, m)| m.peer == to)
                    && let Err(e) = target.send_with_str(frame)
                {
                    worker::console_warn!("relay failed: {e}");
                }
            }
            Ok(Routed::Drop(_)) => {}
            Err(error) => {
                self.say_goodbye(&ws, &member, error.close_code(), &error.close_reason());
                self.touch().await?;
            }
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        self.depart(&ws).await?;
        // Complete the closing handshake; fails harmlessly if it already completed.
        let _ = ws.close(Some(1000), Some("bye"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.depart(&ws).await
    }

    async fn alarm(&self) -> Result<Response> {
        let Some(record) = self.record().await? else {
            return Response::ok("no room");
        };
        let live = self.members().len();
        match room::on_alarm(now_ms(), &record, live, self.lifetimes()) {
            AlarmDecision::Expire => {
                self.state.storage().delete_alarm().await?;
                self.state.storage().delete_all().await?;
                Response::ok("expired")
            }
            AlarmDecision::CheckAt(at) => {
                let offset = at.saturating_sub(now_ms()) as i64;
                self.state.storage().set_alarm(offset.max(1)).await?;
                Response::ok("rescheduled")
            }
        }
    }
}
