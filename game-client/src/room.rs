//! Room logic: which screen is up, who is in the room, avatars and speech bubbles as entities,
//! drop-zone hit tests, the transfer list, received files, moderation rights and notices.
//!
//! No rendering here: the presentation plugin draws what these resources and entities say, and
//! turns window input into the messages below. Everything runs under `MinimalPlugins` in tests.

use std::path::PathBuf;

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use duet_shared::peer::TransferId;
use serde::{Deserialize, Serialize};

use crate::api::{ApiCall, ApiReply, Moderation};
use crate::chat::{ChatChanged, ChatLog};
use crate::config::ClientConfig;
use crate::frame::FrameSet;
use crate::identity::{IdentityEvent, PeerProfile};
use crate::net::{NetEvent, RebuildSocket, RoomLink, SignalingEnd};
use crate::ports::Host;
use crate::transfer::{Direction, SendFile, TransferEvent};
use matchbox_socket::PeerId;

/// Radius of an avatar, in world units (pixels at zoom 1).
pub const AVATAR_RADIUS: f32 = 64.0;
/// Where my avatar stands (the room is centred on the world origin).
pub const MY_SPOT: Vec2 = Vec2::new(-170.0, -10.0);
/// Where my peer's avatar stands.
pub const PEER_SPOT: Vec2 = Vec2::new(170.0, -10.0);
/// How long a speech bubble stays, in seconds (it fades during the last third).
pub const BUBBLE_SECS: f32 = 6.0;
/// At most this many bubbles per avatar; older ones leave first.
pub const MAX_BUBBLES: usize = 3;
const RECENT_KEY: &str = "recent_rooms";
const RECEIVED_KEY: &str = "received_files";
const MAX_RECENT: usize = 8;
/// Received files listed (oldest leave the list first; on the desktop the files stay in the
/// downloads folder).
pub const MAX_RECEIVED_LISTED: usize = crate::storage::MAX_RECEIVED_KEPT;
/// Transfer rows shown; the oldest finished ones go first.
pub const MAX_ROWS: usize = 100;

/// The two screens.
#[derive(States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Screen {
    /// Create or join a room, rename yourself.
    #[default]
    Lobby,
    /// Inside a room.
    Room,
}

/// A room I have been in, newest first in [`RecentRooms`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRoom {
    /// Room id.
    pub room: String,
    /// Shareable link.
    pub link: String,
    /// Kept when I created the room: it lets me kick or ban.
    pub owner_key: Option<String>,
    /// Last visit, ms since the epoch.
    pub last_ms: u64,
}

/// Rooms I have been in (persisted).
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRooms {
    /// Newest first.
    pub rooms: Vec<RecentRoom>,
}

/// The room I am in.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct CurrentRoom {
    /// Room id.
    pub room: String,
    /// Shareable link.
    pub link: String,
    /// Present when I created the room.
    pub owner_key: Option<String>,
}

impl CurrentRoom {
    /// Only the room's creator may kick or ban.
    pub fn is_owner(&self) -> bool {
        self.owner_key.is_some()
    }
}

/// My connection to the room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Link {
    /// Signaling not answered yet.
    #[default]
    Connecting,
    /// In the room (signaling gave me an id).
    InRoom,
    /// The server could not be reached (it went away, or the network did); trying again.
    Reconnecting {
        /// Attempts so far (the wait grows with them).
        attempt: u32,
        /// When the next attempt starts (the app's real time since start, as
        /// `Time<Real>::elapsed`); `None` once it has started.
        retry_at: Option<std::time::Duration>,
    },
    /// The server refused or dropped us; the sentence says why.
    Failed(String),
}

/// The other seat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Seat {
    /// Nobody has come yet: share the link.
    #[default]
    Empty,
    /// Their connection is up; waiting for their hello.
    Arriving,
    /// They are here.
    Here {
        /// Display name.
        name: String,
        /// Identity (the avatar colour derives from it).
        identity: uuid::Uuid,
    },
    /// They were here and left.
    Left {
        /// Their last name.
        name: String,
    },
}

/// Who is in the room, as the UI shows it.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    /// My connection.
    pub link: Link,
    /// The other person.
    pub seat: Seat,
    /// Their signaling id while connected (what kick and ban name).
    pub peer_id: Option<PeerId>,
}

impl Presence {
    /// The status line under the room.
    pub fn status(&self) -> String {
        match (&self.link, &self.seat) {
            (Link::Failed(why), _) => why.clone(),
            (Link::Connecting, _) => "Connecting to the room…".into(),
            (Link::Reconnecting { attempt, .. }, _) => format!(
                "Lost the connection to the Duet server; reconnecting (attempt {attempt})… Nothing is delivered until it is back."
            ),
            (_, Seat::Empty) => "Waiting for your peer — share this link.".into(),
            (_, Seat::Arriving) => "Your peer is connecting…".into(),
            (_, Seat::Here { name, .. }) => format!("{name} is here."),
            (_, Seat::Left { name }) => {
                format!(
                    "{name} left. Nothing you send now is delivered; share the link to bring them back."
                )
            }
        }
    }

    /// The peer's name when they are here.
    pub fn peer_name(&self) -> Option<&str> {
        match &self.seat {
            Seat::Here { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Whose avatar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    /// Mine.
    Me,
    /// My peer's.
    Peer,
}

impl Who {
    /// Where this person's avatar stands.
    pub fn spot(self) -> Vec2 {
        match self {
            Who::Me => MY_SPOT,
            Who::Peer => PEER_SPOT,
        }
    }

    /// The avatar entity's components, standing on its spot.
    fn avatar(self) -> (Avatar, Transform) {
        (
            Avatar(self),
            Transform::from_translation(self.spot().extend(0.0)),
        )
    }
}

/// An avatar standing in the room.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avatar(pub Who);

/// Entities that belong to the room on screen (cleared when the room changes).
type RoomEntity = Or<(With<Avatar>, With<Bubble>)>;

/// A speech bubble over an avatar.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct Bubble {
    /// Over whose avatar.
    pub who: Who,
    /// What was said (shortened for the bubble).
    pub text: String,
    /// Seconds since it appeared.
    pub age: f32,
}

impl Bubble {
    /// Opacity: 1 for the first two thirds of its life, then fading to 0.
    pub fn alpha(&self) -> f32 {
        let fade_from = BUBBLE_SECS * 2.0 / 3.0;
        if self.age <= fade_from {
            1.0
        } else {
            (1.0 - (self.age - fade_from) / (BUBBLE_SECS - fade_from)).clamp(0.0, 1.0)
        }
    }
}

/// A file is being dragged over the window: the peer's avatar shows as a drop zone.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct DropZone {
    /// A drag is over the window.
    pub dragging: bool,
    /// The cursor is over the peer's avatar (drop sends).
    pub over_peer: bool,
}

/// One transfer in the list.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRow {
    /// Transfer id.
    pub id: TransferId,
    /// Which way.
    pub direction: Direction,
    /// File name.
    pub name: String,
    /// Bytes in total.
    pub size: u64,
    /// Bytes done.
    pub done: u64,
    /// Bytes per second, when known.
    pub rate: f64,
    /// Seconds left, when known.
    pub eta: Option<f64>,
    /// Running, done or failed.
    pub state: RowState,
}

impl TransferRow {
    /// 0..=1.
    pub fn fraction(&self) -> f32 {
        if self.size == 0 {
            1.0
        } else {
            (self.done as f64 / self.size as f64).clamp(0.0, 1.0) as f32
        }
    }
}

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RowState {
    /// The peer offers it and the person has not said yes or no yet (incoming).
    Asking,
    /// Offered; the peer has not accepted it yet (outgoing).
    AwaitingPeer,
    /// Bytes are moving.
    Running,
    /// Stopped with its bytes kept: the same file sent again resumes (incoming); the
    /// sentence says why it stopped.
    Paused(String),
    /// Done; for incoming files, where it was saved.
    Done(String),
    /// Ended without a file; the sentence says why (and whether it resumes).
    Failed(String),
}

impl RowState {
    /// Nothing more happens to it without the person or the peer starting it again.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Done(_) | Self::Failed(_) | Self::Paused(_))
    }
}

/// Transfers of this session, newest last.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct TransferList {
    /// Rows.
    pub rows: Vec<TransferRow>,
}

impl TransferList {
    /// Progress (0..=1) of the running transfer going `direction`, for the avatar ring.
    pub fn running(&self, direction: Direction) -> Option<f32> {
        self.rows
            .iter()
            .rev()
            .find(|r| r.direction == direction && r.state == RowState::Running)
            .map(TransferRow::fraction)
    }
}

/// A file I received, kept across restarts and after the peer leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedFile {
    /// File name as saved.
    pub name: String,
    /// Where it is on disk.
    pub location: String,
    /// Size in bytes.
    pub size: u64,
    /// Who sent it.
    pub from: String,
    /// Room it came through.
    pub room: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// Files received (persisted).
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedFiles {
    /// Newest last.
    pub files: Vec<ReceivedFile>,
}

/// Sentences for the user: errors and things that happened, newest last.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct Notices {
    /// Text and when it was posted (ms since the epoch); the last 50.
    pub items: Vec<(String, u64)>,
    /// How many were ever posted (so a reader can tell which are new).
    pub posted: usize,
}

impl Notices {
    /// Adds a sentence (and logs it for the event stream).
    pub fn post(&mut self, text: impl Into<String>) {
        self.items.push((text.into(), crate::util::now_ms()));
        self.posted += 1;
        if self.items.len() > 50 {
            self.items.remove(0);
        }
    }

    /// The latest notice if it is younger than `max_age_ms`.
    pub fn latest(&self, max_age_ms: u64) -> Option<&str> {
        self.items
            .last()
            .filter(|(_, at)| crate::util::now_ms().saturating_sub(*at) <= max_age_ms)
            .map(|(text, _)| text.as_str())
    }
}

/// Go into a room by its link.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct JoinRoom(pub String);

/// A room link for another server than the configured one, waiting for the person to say
/// whether to open it: that server would learn their address, name and identity, and could
/// pose as the room. `None`: no question open.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct ForeignLink(pub Option<ForeignQuestion>);

/// The question [`ForeignLink`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignQuestion {
    /// The link as given.
    pub link: String,
    /// Its server (`host:port`).
    pub server: String,
}

/// The person's answer to [`ForeignLink`]: open it (and trust that server for this run) or not.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerForeignLink(pub bool);

/// Servers, besides the configured one, whose links are followed without asking in this run:
/// the one a link on the command line names, and those the person said yes to.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedServers(pub Vec<String>);

/// Ask the server for a new room, then join it as its owner.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateRoom;

/// Back to the lobby.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaveRoom;

/// A file drag entered (true) or left (false) the window; `at` is the cursor in world space.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct FileHover {
    /// Dragging now.
    pub active: bool,
    /// Cursor position in world coordinates, when known.
    pub at: Option<Vec2>,
}

/// A file was dropped at `at` (world coordinates, when known).
#[derive(Message, Debug, Clone, PartialEq)]
pub struct FileDropped {
    /// The file.
    pub path: PathBuf,
    /// Cursor position in world coordinates.
    pub at: Option<Vec2>,
}

/// Kick or ban the peer (owner only).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moderate(pub Moderation);

/// Who holds the seats of my own room while it refuses me as full (the owner-only members
/// call), so that I can free one from outside: a stranger with the link holding both seats
/// would otherwise lock me out, since kicking needs a peer id only visible from inside.
/// Empty otherwise.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct SeatHolders {
    /// Oldest first.
    pub members: Vec<duet_shared::api::SeatHolder>,
}

/// Free a seat of my full room: remove or ban whoever holds it (room owner only).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSeat {
    /// The seat holder's signaling id.
    pub peer: PeerId,
    /// Kick or ban.
    pub action: Moderation,
}

/// Which avatar, if any, is under a world position.
pub fn avatar_at(point: Vec2) -> Option<Who> {
    // A little slack around the disc makes dropping forgiving.
    let reach = AVATAR_RADIUS + 12.0;
    [Who::Peer, Who::Me]
        .into_iter()
        .find(|who| point.distance(who.spot()) <= reach)
}

/// The hue (degrees) an identity is drawn in, from its bytes: stable across sessions.
pub fn identity_hue(identity: &uuid::Uuid) -> f32 {
    let bytes = identity.as_bytes();
    (u16::from_le_bytes([bytes[0], bytes[1]]) % 360) as f32
}

/// A stable, pleasant colour for an identity.
pub fn identity_colour(identity: &uuid::Uuid) -> Color {
    Color::hsl(identity_hue(identity), 0.55, 0.58)
}

/// The peer's colour as I see it: their own, unless it is too close to mine to tell the two
/// avatars apart, then turned a third of the way round the colour wheel.
pub fn peer_colour(mine: &uuid::Uuid, theirs: &uuid::Uuid) -> Color {
    let (a, b) = (identity_hue(mine), identity_hue(theirs));
    let gap = (a - b).abs().min(360.0 - (a - b).abs());
    let hue = if gap < 50.0 { (b + 120.0) % 360.0 } else { b };
    Color::hsl(hue, 0.55, 0.58)
}

/// Room logic.
pub struct RoomPlugin;

impl Plugin for RoomPlugin {
    fn build(&self, app: &mut App) {
        app.init_state::<Screen>()
            .add_message::<JoinRoom>()
            .add_message::<CreateRoom>()
            .add_message::<LeaveRoom>()
            .add_message::<FileHover>()
            .add_message::<FileDropped>()
            .add_message::<Moderate>()
            .add_message::<AnswerForeignLink>()
            .init_resource::<ForeignLink>()
            .init_resource::<TrustedServers>()
            .init_resource::<Presence>()
            .init_resource::<DropZone>()
            .init_resource::<TransferList>()
            .init_resource::<Notices>()
            .init_resource::<SeatHolders>()
            .add_message::<FreeSeat>()
            .add_systems(Startup, load_saved)
            // The browser's address bar follows the screen, so a reload lands in the same place.
            .add_systems(
                OnEnter(Screen::Room),
                |room: Option<Res<CurrentRoom>>, host: Option<Res<Host>>| {
                    if let Some(host) = host {
                        host.shell
                            .show_room_link(room.as_deref().map(|r| r.link.as_str()));
                    }
                },
            )
            .add_systems(OnEnter(Screen::Lobby), |host: Option<Res<Host>>| {
                if let Some(host) = host {
                    host.shell.show_room_link(None);
                }
            })
            .add_systems(
                Update,
                (
                    create_room,
                    api_replies,
                    answer_foreign_link,
                    join_room,
                    leave_room,
                    presence,
                    retry_connection,
                    bubbles,
                    drops,
                    transfers,
                    moderate,
                    free_seat,
                    calls,
                    history_failures,
                )
                    .chain()
                    .in_set(FrameSet::Room),
            );
    }
}

/// A chat history that could not be saved, in words: each kind of failure once per run.
fn history_failures(
    mut failed: MessageReader<crate::chat::HistoryFailed>,
    mut notices: ResMut<Notices>,
    mut last: Local<Option<crate::chat::history::HistoryError>>,
) {
    use crate::chat::history::HistoryError;
    for crate::chat::HistoryFailed(why) in failed.read() {
        if last.as_ref() == Some(why) {
            continue;
        }
        notices.post(match why {
            HistoryError::NoSpace => "This device's storage is full: new chat is shown but not saved, and your peer is not told it arrived.".to_owned(),
            HistoryError::Backend(e) => format!("Chat could not be saved ({e}): new messages are shown but not kept, and your peer is not told they arrived."),
        });
        *last = Some(why.clone());
    }
}

/// Call news in the status line (a call coming in, why one ended, why "call" did nothing);
/// leaving the room hangs up first.
fn calls(
    mut news: MessageReader<crate::call::CallChanged>,
    mut leaving: MessageReader<LeaveRoom>,
    mut notices: ResMut<Notices>,
    mut actions: MessageWriter<crate::call::CallAction>,
    presence: Res<Presence>,
) {
    use crate::call::CallChanged;
    use duet_shared::call::CallPhase;
    for event in news.read() {
        match event {
            CallChanged::Phase(CallPhase::Ringing { video, .. }) => notices.post(format!(
                "{} is calling you{}. Accept or decline at the top.",
                presence.peer_name().unwrap_or("Your peer"),
                if *video { " with video" } else { "" }
            )),
            CallChanged::Ended(why) => notices.post(why.to_string()),
            CallChanged::Refused(why) => notices.post(why.clone()),
            _ => {}
        }
    }
    if leaving.read().count() > 0 {
        actions.write(crate::call::CallAction::HangUp);
    }
}

fn load_saved(mut commands: Commands, pkv: Res<PkvStore>) {
    commands.insert_resource(pkv.get::<RecentRooms>(RECENT_KEY).unwrap_or_default());
    commands.insert_resource(pkv.get::<ReceivedFiles>(RECEIVED_KEY).unwrap_or_default());
}

fn create_room(mut asks: MessageReader<CreateRoom>, mut calls: MessageWriter<ApiCall>) {
    if asks.read().count() > 0 {
        calls.write(ApiCall::CreateRoom);
    }
}

#[allow(clippy::too_many_arguments)]
fn api_replies(
    mut replies: MessageReader<ApiReply>,
    config: Res<ClientConfig>,
    mut recent: ResMut<RecentRooms>,
    mut pkv: ResMut<PkvStore>,
    mut join: MessageWriter<JoinRoom>,
    mut notices: ResMut<Notices>,
    mut rebuild: MessageWriter<RebuildSocket>,
    mut presence: ResMut<Presence>,
    (mut seats, mut calls, room): (
        ResMut<SeatHolders>,
        MessageWriter<ApiCall>,
        Option<Res<CurrentRoom>>,
    ),
) {
    for reply in replies.read() {
        match reply {
            ApiReply::RoomCreated(created) => {
                let link = config.room_link(&created.room);
                remember(
                    &mut recent,
                    &mut pkv,
                    RecentRoom {
                        room: created.room.clone(),
                        link: link.clone(),
                        owner_key: Some(created.owner_key.clone()),
                        last_ms: crate::util::now_ms(),
                    },
                );
                join.write(JoinRoom(link));
            }
            ApiReply::Moderated(action) if !seats.members.is_empty() => {
                notices.post(match action {
                    Moderation::Kick => "A seat is free: joining your room…",
                    Moderation::Ban => "Banned from your room; a seat is free: joining…",
                });
                seats.members.clear();
                presence.link = Link::Connecting;
                rebuild.write(RebuildSocket);
            }
            ApiReply::Members(members) => {
                if matches!(presence.link, Link::Failed(_)) {
                    seats.members = members.members.clone();
                }
            }
            ApiReply::Moderated(action) => {
                notices.post(match action {
                    Moderation::Kick => {
                        "Your peer was removed from the room. They can come back with the link."
                    }
                    Moderation::Ban => "Your peer was banned: they cannot come back to this room.",
                });
                // Cut the direct connection too (the server only ends their signaling).
                rebuild.write(RebuildSocket);
            }
            ApiReply::RoomInfo(info) => {
                // Only asked after an unexplained refusal (see `presence`).
                if info.peers >= info.capacity {
                    notices.post(SignalingEnd::RoomFull.to_string());
                    presence.link = Link::Failed(SignalingEnd::RoomFull.to_string());
                    ask_seat_holders(room.as_deref(), &mut calls);
                }
            }
            ApiReply::Failed {
                call: ApiCall::RoomInfo { .. },
                message,
            } => {
                notices.post(message.clone());
                presence.link = Link::Failed(message.clone());
            }
            ApiReply::Failed { message, .. } => notices.post(message.clone()),
        }
    }
}

/// Records a visit (keeping an owner key learned earlier) and saves the list.
fn remember(recent: &mut RecentRooms, pkv: &mut PkvStore, mut visit: RecentRoom) {
    if let Some(old) = recent.rooms.iter().position(|r| r.room == visit.room) {
        let old = recent.rooms.remove(old);
        visit.owner_key = visit.owner_key.or(old.owner_key);
    }
    recent.rooms.insert(0, visit);
    recent.rooms.truncate(MAX_RECENT);
    if let Err(e) = pkv.set(RECENT_KEY, recent) {
        error!("could not save recent rooms: {e}");
    }
}

/// Opens the link the person agreed to, or forgets it.
fn answer_foreign_link(
    mut answers: MessageReader<AnswerForeignLink>,
    mut question: ResMut<ForeignLink>,
    mut trusted: ResMut<TrustedServers>,
    mut join: MessageWriter<JoinRoom>,
) {
    let Some(AnswerForeignLink(open)) = answers.read().last().copied() else {
        return;
    };
    if let Some(asked) = question.0.take()
        && open
    {
        trusted.0.push(asked.server);
        join.write(JoinRoom(asked.link));
    }
}

#[allow(clippy::too_many_arguments)]
fn join_room(
    mut commands: Commands,
    mut joins: MessageReader<JoinRoom>,
    (config, trusted, mut foreign): (Res<ClientConfig>, Res<TrustedServers>, ResMut<ForeignLink>),
    mut recent: ResMut<RecentRooms>,
    mut pkv: ResMut<PkvStore>,
    mut notices: ResMut<Notices>,
    mut next: ResMut<NextState<Screen>>,
    avatars: Query<Entity, RoomEntity>,
) {
    let Some(JoinRoom(link)) = joins.read().last() else {
        return;
    };
    let mut room_link = match RoomLink::parse(link.trim()) {
        Ok(room_link) => room_link,
        Err(e) => {
            notices.post(e.to_string());
            return;
        }
    };
    // A link to another server is followed only when the person says so.
    let server = crate::config::authority(&room_link.signal_url).unwrap_or_default();
    let own = crate::config::authority(&config.server).unwrap_or_default();
    if server != own && !trusted.0.contains(&server) {
        foreign.0 = Some(ForeignQuestion {
            link: link.trim().to_owned(),
            server,
        });
        return;
    }
    foreign.0 = None;
    room_link.ice_servers = config.ice_servers.clone();
    let room = room_link.room().to_owned();
    let owner_key = recent
        .rooms
        .iter()
        .find(|r| r.room == room)
        .and_then(|r| r.owner_key.clone());
    let shareable = room_link.page_link();
    remember(
        &mut recent,
        &mut pkv,
        RecentRoom {
            room: room.clone(),
            link: shareable.clone(),
            owner_key: owner_key.clone(),
            last_ms: crate::util::now_ms(),
        },
    );
    for entity in &avatars {
        commands.entity(entity).despawn();
    }
    commands.insert_resource(room_link);
    commands.insert_resource(CurrentRoom {
        room,
        link: shareable,
        owner_key,
    });
    commands.insert_resource(Presence::default());
    commands.insert_resource(TransferList::default());
    commands.insert_resource(PeerProfile::default());
    commands.spawn(Who::Me.avatar());
    next.set(Screen::Room);
}

fn leave_room(
    mut commands: Commands,
    mut leaves: MessageReader<LeaveRoom>,
    mut next: ResMut<NextState<Screen>>,
    mut chat: ResMut<ChatLog>,
    avatars: Query<Entity, RoomEntity>,
) {
    if leaves.read().count() == 0 {
        return;
    }
    commands.remove_resource::<RoomLink>();
    commands.remove_resource::<CurrentRoom>();
    commands.insert_resource(Presence::default());
    commands.insert_resource(SeatHolders::default());
    chat.entries.clear();
    for entity in &avatars {
        commands.entity(entity).despawn();
    }
    next.set(Screen::Lobby);
}

#[allow(clippy::too_many_arguments)]
fn presence(
    mut commands: Commands,
    mut net: MessageReader<NetEvent>,
    mut identities: MessageReader<IdentityEvent>,
    mut presence: ResMut<Presence>,
    mut notices: ResMut<Notices>,
    avatars: Query<(Entity, &Avatar)>,
    room: Option<Res<CurrentRoom>>,
    mut calls: MessageWriter<ApiCall>,
    mut seats: ResMut<SeatHolders>,
    time: Res<Time<Real>>,
) {
    let in_room = room.is_some();
    let peer_avatar = avatars
        .iter()
        .find(|(_, a)| a.0 == Who::Peer)
        .map(|(e, _)| e);
    let mut spawned = peer_avatar.is_some();
    for event in net.read() {
        match event {
            NetEvent::Connected(_) => {
                seats.members.clear();
                if matches!(presence.link, Link::Reconnecting { .. }) {
                    notices.post("Connected to the room again.");
                }
                presence.link = Link::InRoom;
            }
            NetEvent::PeerJoined(id) => {
                presence.seat = Seat::Arriving;
                presence.peer_id = Some(*id);
            }
            NetEvent::PeerLeft(_) => {
                presence.peer_id = None;
                let name = match &presence.seat {
                    Seat::Here { name, .. } => name.clone(),
                    _ => "Your peer".into(),
                };
                notices.post(format!("{name} left the room."));
                presence.seat = Seat::Left { name };
                if let Some(entity) = peer_avatar {
                    commands.entity(entity).despawn();
                }
                spawned = false;
            }
            NetEvent::SignalingClosed(SignalingEnd::Unreachable) if in_room => {
                let attempt = match presence.link {
                    Link::Reconnecting { attempt, .. } => attempt + 1,
                    _ => {
                        notices.post(SignalingEnd::Unreachable.to_string());
                        1
                    }
                };
                presence.link = Link::Reconnecting {
                    attempt,
                    retry_at: Some(
                        time.elapsed() + std::time::Duration::from_millis(retry_delay_ms(attempt)),
                    ),
                };
            }
            NetEvent::SignalingClosed(why) => {
                notices.post(why.to_string());
                presence.link = Link::Failed(why.to_string());
                if *why == SignalingEnd::RoomFull {
                    ask_seat_holders(room.as_deref(), &mut calls);
                }
                if let SignalingEnd::Unexplained(_) = why
                    && let Some(room) = room.as_deref()
                {
                    calls.write(ApiCall::RoomInfo {
                        room: room.room.clone(),
                    });
                }
            }
            NetEvent::SecondHello => notices.post(
                "Your peer's app introduced itself a second time, which Duet never does; the \
                 connection was restarted.",
            ),
            NetEvent::PeerFailed(why) => notices.post(format!(
                "A connection attempt from the other seat failed ({why}). You are still in the room."
            )),
            NetEvent::BadFrame(why) => notices.post(format!(
                "Your peer's app sent something broken ({why}); it was ignored."
            )),
        }
    }
    for event in identities.read() {
        match event {
            IdentityEvent::PeerHello { identity, name } => {
                presence.seat = Seat::Here {
                    name: name.clone(),
                    identity: *identity,
                };
                if !spawned {
                    commands.spawn(Who::Peer.avatar());
                    spawned = true;
                }
            }
            IdentityEvent::PeerRenamed(new) => {
                if let Seat::Here { name, .. } = &mut presence.seat {
                    notices.post(format!("{name} is now called {new}."));
                    *name = new.clone();
                }
            }
            IdentityEvent::VersionMismatch { theirs } => notices.post(format!(
                "Your peer's Duet speaks protocol version {theirs}, this one {}: one of you needs to update.",
                duet_shared::peer::PROTOCOL_VERSION
            )),
            IdentityEvent::Renamed(_) => {}
        }
    }
}

/// Wait before reconnect attempt `attempt` (1, 2, 4, 8, then every 15 s): quick after a blip,
/// gentle on a server that is down.
pub fn retry_delay_ms(attempt: u32) -> u64 {
    (1000u64 << attempt.saturating_sub(1).min(4)).min(15_000)
}

/// Starts the next attempt when its time comes: a fresh socket to the same room.
fn retry_connection(
    mut presence: ResMut<Presence>,
    mut rebuild: MessageWriter<RebuildSocket>,
    time: Res<Time<Real>>,
) {
    if let Link::Reconnecting { retry_at, .. } = &mut presence.link
        && retry_at.is_some_and(|at| time.elapsed() >= at)
    {
        *retry_at = None;
        rebuild.write(RebuildSocket);
    }
}

fn bubbles(
    mut commands: Commands,
    time: Res<Time>,
    mut changes: MessageReader<ChatChanged>,
    mut seen: Local<std::collections::HashSet<uuid::Uuid>>,
    mut existing: Query<(Entity, &mut Bubble)>,
) {
    let dt = time.delta_secs();
    let mut alive: Vec<(Entity, Who, f32)> = Vec::new();
    for (entity, mut bubble) in &mut existing {
        bubble.age += dt;
        if bubble.age >= BUBBLE_SECS {
            commands.entity(entity).despawn();
        } else {
            alive.push((entity, bubble.who, bubble.age));
        }
    }
    for ChatChanged(entry) in changes.read() {
        // Receipts update an entry; only a new message pops a bubble.
        if !seen.insert(entry.id) {
            continue;
        }
        let who = if entry.mine { Who::Me } else { Who::Peer };
        let mut text: String = entry.text.chars().take(140).collect();
        if entry.text.chars().count() > 140 {
            text.push('…');
        }
        // Make room: the oldest bubbles of that avatar leave first.
        let mut mine: Vec<_> = alive.iter().filter(|(_, w, _)| *w == who).collect();
        mine.sort_by(|a, b| b.2.total_cmp(&a.2));
        while mine.len() >= MAX_BUBBLES {
            let (entity, _, _) = mine.remove(0);
            commands.entity(*entity).despawn();
        }
        commands.spawn(Bubble {
            who,
            text,
            age: 0.0,
        });
    }
}

fn drops(
    mut hovers: MessageReader<FileHover>,
    mut dropped: MessageReader<FileDropped>,
    mut zone: ResMut<DropZone>,
    presence: Res<Presence>,
    mut send: MessageWriter<SendFile>,
    mut notices: ResMut<Notices>,
) {
    for hover in hovers.read() {
        zone.dragging = hover.active;
        zone.over_peer = hover.active && hover.at.and_then(avatar_at) == Some(Who::Peer);
    }
    for drop in dropped.read() {
        zone.dragging = false;
        zone.over_peer = false;
        let target = drop.at.and_then(avatar_at);
        match (target, presence.peer_name()) {
            (Some(Who::Peer), Some(_)) => {
                send.write(SendFile(drop.path.clone()));
            }
            (_, None) => notices.post(
                "Your peer is not in the room, so nothing was sent. Files go straight to them, never to a server.",
            ),
            (_, Some(name)) => notices.post(format!("Drop the file on {name}'s avatar to send it.")),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn transfers(
    mut events: MessageReader<TransferEvent>,
    mut list: ResMut<TransferList>,
    mut received: ResMut<ReceivedFiles>,
    mut pkv: ResMut<PkvStore>,
    mut notices: ResMut<Notices>,
    presence: Res<Presence>,
    room: Option<Res<CurrentRoom>>,
) {
    let mut received_changed = false;
    for event in events.read() {
        match event {
            TransferEvent::Started {
                id,
                direction,
                name,
                size,
                resumed_from,
            } => {
                list.rows.retain(|r| r.id != *id);
                list.rows.push(TransferRow {
                    id: *id,
                    direction: *direction,
                    name: name.clone(),
                    size: *size,
                    done: *resumed_from,
                    rate: 0.0,
                    eta: None,
                    state: match direction {
                        Direction::Outgoing => RowState::AwaitingPeer,
                        Direction::Incoming => RowState::Running,
                    },
                });
            }
            TransferEvent::Asked { id, name, size } => {
                list.rows.retain(|r| r.id != *id);
                list.rows.push(TransferRow {
                    id: *id,
                    direction: Direction::Incoming,
                    name: name.clone(),
                    size: *size,
                    done: 0,
                    rate: 0.0,
                    eta: None,
                    state: RowState::Asking,
                });
                notices.post(format!(
                    "{} wants to send you {name} ({:.1} MB): accept or decline it in the file list.",
                    presence.peer_name().unwrap_or("Your peer"),
                    *size as f64 / 1e6
                ));
            }
            TransferEvent::Accepted { id } => {
                if let Some(row) = list.rows.iter_mut().find(|r| r.id == *id) {
                    row.state = RowState::Running;
                }
            }
            TransferEvent::Paused { id, reason } => {
                if let Some(row) = list.rows.iter_mut().find(|r| r.id == *id) {
                    row.state = RowState::Paused(reason.clone());
                }
                notices.post(reason.clone());
            }
            TransferEvent::Progress { id, progress, .. } => {
                if let Some(row) = list.rows.iter_mut().find(|r| r.id == *id) {
                    row.done = progress.done;
                    row.rate = progress.bytes_per_sec;
                    row.eta = progress.eta_secs;
                }
            }
            TransferEvent::Completed {
                id,
                direction,
                location,
            } => {
                let mut name = String::new();
                let mut size = 0;
                if let Some(row) = list.rows.iter_mut().find(|r| r.id == *id) {
                    row.done = row.size;
                    row.state = RowState::Done(location.clone());
                    name = row.name.clone();
                    size = row.size;
                }
                if *direction == Direction::Incoming {
                    let saved_name = std::path::Path::new(location)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or(name);
                    received.files.push(ReceivedFile {
                        name: saved_name,
                        location: location.clone(),
                        size,
                        from: presence.peer_name().unwrap_or("your peer").to_owned(),
                        room: room.as_ref().map(|r| r.room.clone()).unwrap_or_default(),
                        at_ms: crate::util::now_ms(),
                    });
                    received_changed = true;
                }
            }
            TransferEvent::Failed { id, reason, .. } => {
                if let Some(row) = list.rows.iter_mut().find(|r| r.id == *id) {
                    row.state = RowState::Failed(reason.clone());
                }
                notices.post(reason.clone());
            }
        }
    }
    // A flood of tiny files costs one save per frame, of a bounded list, not one per file.
    if received_changed {
        let over = received.files.len().saturating_sub(MAX_RECEIVED_LISTED);
        received.files.drain(..over);
        if let Err(e) = pkv.set(RECEIVED_KEY, &*received) {
            notices.post(format!("Could not save the list of received files: {e}"));
        }
    }
    // Finished rows beyond the newest MAX_ROWS leave the list, oldest first; open ones stay.
    if list.rows.len() > MAX_ROWS {
        let mut excess = list.rows.len() - MAX_ROWS;
        list.rows.retain(|r| {
            let drop = excess > 0 && r.state.is_closed();
            excess -= usize::from(drop);
            !drop
        });
    }
}

/// My own room refused me as full: ask who holds its seats (see [`SeatHolders`]).
fn ask_seat_holders(room: Option<&CurrentRoom>, calls: &mut MessageWriter<ApiCall>) {
    if let Some(room) = room
        && let Some(owner_key) = &room.owner_key
    {
        calls.write(ApiCall::Members {
            room: room.room.clone(),
            owner_key: owner_key.clone(),
        });
    }
}

fn free_seat(
    mut asks: MessageReader<FreeSeat>,
    room: Option<Res<CurrentRoom>>,
    mut calls: MessageWriter<ApiCall>,
) {
    for ask in asks.read() {
        if let Some(room) = room.as_deref()
            && let Some(owner_key) = &room.owner_key
        {
            calls.write(ApiCall::Moderate {
                room: room.room.clone(),
                owner_key: owner_key.clone(),
                peer: ask.peer,
                action: ask.action,
            });
        }
    }
}

fn moderate(
    mut asks: MessageReader<Moderate>,
    room: Option<Res<CurrentRoom>>,
    presence: Res<Presence>,
    mut calls: MessageWriter<ApiCall>,
    mut notices: ResMut<Notices>,
) {
    for Moderate(action) in asks.read() {
        let Some(owner_key) = room.as_ref().and_then(|r| r.owner_key.clone()) else {
            notices.post("Only the person who created this room can remove someone from it.");
            continue;
        };
        let Some(peer) = presence.peer_id else {
            notices.post("Your peer is not in the room.");
            continue;
        };
        calls.write(ApiCall::Moderate {
            room: room.as_ref().map(|r| r.room.clone()).unwrap_or_default(),
            owner_key,
            peer,
            action: *action,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bevy::state::app::StatesPlugin;
    use bevy::time::TimeUpdateStrategy;
    use duet_shared::api::CreatedRoom;
    use duet_shared::transfer::Progress;

    use super::*;
    use crate::chat::{ChatEntry, Delivery};
    use crate::net::{ControlReceived, SendControl};

    const LINK: &str = "http://127.0.0.1:8787/r/abcdefghijklmnopqrstuv";

    /// Room logic with the chat and identity plugins, no network: net, transfer and API traffic
    /// is written and read as messages by the test.
    fn room_app(dir: &std::path::Path) -> App {
        let mut app = App::new();
        app.add_plugins((MinimalPlugins, StatesPlugin))
            .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
                250,
            )))
            .insert_resource(PkvStore::new_in_dir(dir))
            .insert_resource(crate::chat::history::test_archive(dir))
            .insert_resource(ClientConfig::default())
            .add_message::<NetEvent>()
            .add_message::<ControlReceived>()
            .add_message::<SendControl>()
            .add_message::<TransferEvent>()
            .add_message::<SendFile>()
            .add_message::<ApiCall>()
            .add_message::<ApiReply>()
            .add_message::<RebuildSocket>()
            .add_plugins((
                crate::identity::IdentityPlugin,
                crate::chat::ChatPlugin,
                crate::call::CallPlugin,
                RoomPlugin,
            ));
        app.update();
        app
    }

    fn avatars(app: &mut App) -> Vec<Who> {
        let mut who: Vec<Who> = app
            .world_mut()
            .query::<&Avatar>()
            .iter(app.world())
            .map(|a| a.0)
            .collect();
        who.sort_by_key(|w| *w == Who::Peer);
        who
    }

    fn drain<M: Message + Clone>(app: &mut App) -> Vec<M> {
        app.world_mut()
            .resource_mut::<Messages<M>>()
            .drain()
            .collect()
    }

    fn peer_arrives(app: &mut App, name: &str) -> PeerId {
        let id = PeerId(uuid::Uuid::new_v4());
        app.world_mut().write_message(NetEvent::PeerJoined(id));
        app.world_mut().write_message(IdentityEvent::PeerHello {
            identity: uuid::Uuid::new_v4(),
            name: name.into(),
        });
        app.update();
        id
    }

    /// Opens [`LINK`] (someone else's room) and lets the join go out.
    fn join_link(app: &mut App) {
        app.world_mut().write_message(JoinRoom(LINK.into()));
        app.update();
        app.update();
    }

    /// Creates a room as its owner (key `secret`), as the server would answer.
    fn create_owned_room(app: &mut App) {
        app.world_mut().write_message(CreateRoom);
        app.update();
        assert_eq!(drain::<ApiCall>(app), vec![ApiCall::CreateRoom]);
        app.world_mut()
            .write_message(ApiReply::RoomCreated(CreatedRoom {
                room: "zyxwvutsrqponmlkjihgfe".into(),
                owner_key: "secret".into(),
            }));
        app.update();
        app.update();
    }

    fn latest_notice(app: &App) -> String {
        app.world()
            .resource::<Notices>()
            .items
            .last()
            .map(|n| n.0.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_refusal_without_a_status_is_explained_by_asking_about_the_room() {
        let dir = tempdir("unexplained");
        let mut app = room_app(&dir);
        join_link(&mut app);
        drain::<ApiCall>(&mut app);
        // What a browser reports when the worker refuses the WebSocket (the 409 is hidden).
        app.world_mut()
            .write_message(NetEvent::SignalingClosed(SignalingEnd::from_loop_error(
                "Failed to connect to the server. CloseEvent { code: 1006 }",
            )));
        app.update();
        assert_eq!(
            drain::<ApiCall>(&mut app),
            vec![ApiCall::RoomInfo {
                room: "abcdefghijklmnopqrstuv".into()
            }]
        );
        app.world_mut()
            .write_message(ApiReply::RoomInfo(duet_shared::api::RoomInfo {
                room: "abcdefghijklmnopqrstuv".into(),
                peers: 2,
                capacity: 2,
            }));
        app.update();
        let status = app.world().resource::<Presence>().status();
        assert!(status.contains("already has two people"), "{status}");
        assert_eq!(latest_notice(&app), status);
        // A refusal whose cause is known asks nothing.
        app.world_mut()
            .write_message(NetEvent::SignalingClosed(SignalingEnd::Banned));
        app.update();
        assert!(drain::<ApiCall>(&mut app).is_empty());
    }

    #[test]
    fn an_unreachable_server_is_retried_with_growing_waits_but_a_refusal_is_not() {
        let dir = tempdir("reconnect");
        let mut app = room_app(&dir);
        join_link(&mut app);
        let me = PeerId(uuid::Uuid::new_v4());
        app.world_mut().write_message(NetEvent::Connected(me));
        app.update();
        drain::<RebuildSocket>(&mut app);

        // The server goes away: reconnecting, shown in words, and a fresh socket after 1 s.
        app.world_mut()
            .write_message(NetEvent::SignalingClosed(SignalingEnd::Unreachable));
        app.update();
        let presence = app.world().resource::<Presence>().clone();
        assert!(
            matches!(
                presence.link,
                Link::Reconnecting {
                    attempt: 1,
                    retry_at: Some(_)
                }
            ),
            "{presence:?}"
        );
        assert!(presence.status().contains("reconnecting (attempt 1)"));
        assert!(
            drain::<RebuildSocket>(&mut app).is_empty(),
            "not before the wait"
        );
        // Each update moves the app's clock by 250 ms.
        assert_eq!(rebuilds_within(&mut app, 1100), 1, "one socket per attempt");

        // Still down: the second attempt waits longer (2 s).
        app.world_mut()
            .write_message(NetEvent::SignalingClosed(SignalingEnd::Unreachable));
        app.update();
        let Link::Reconnecting {
            attempt: 2,
            retry_at: Some(at),
        } = app.world().resource::<Presence>().link
        else {
            panic!("{:?}", app.world().resource::<Presence>().link)
        };
        let now = app.world().resource::<Time<Real>>().elapsed();
        assert!(at >= now + Duration::from_millis(1500), "waits about 2 s");
        assert_eq!(retry_delay_ms(3), 4000);
        assert_eq!(retry_delay_ms(30), 15_000);

        // Back: in the room again, said so.
        app.world_mut().write_message(NetEvent::Connected(me));
        app.update();
        assert_eq!(app.world().resource::<Presence>().link, Link::InRoom);
        assert_eq!(latest_notice(&app), "Connected to the room again.");

        // A refusal (here: the room is full) is final: no retry.
        app.world_mut()
            .write_message(NetEvent::SignalingClosed(SignalingEnd::RoomFull));
        app.update();
        assert!(matches!(
            app.world().resource::<Presence>().link,
            Link::Failed(_)
        ));
        assert_eq!(rebuilds_within(&mut app, 5000), 0);
    }

    /// Runs the app for `ms` of its clock (250 ms an update) and counts the sockets rebuilt.
    fn rebuilds_within(app: &mut App, ms: u64) -> usize {
        (0..ms.div_ceil(250))
            .map(|_| {
                app.update();
                drain::<RebuildSocket>(app).len()
            })
            .sum()
    }

    #[test]
    fn an_incoming_call_is_announced_and_leaving_the_room_declines_it() {
        use duet_shared::call::{CallId, CallSignal, DeclineReason};
        use duet_shared::peer::Control;
        let dir = tempdir("call-notices");
        // The logic only: no Host, so no devices and no media connection.
        let mut app = room_app(&dir);
        app.world_mut().write_message(JoinRoom(LINK.into()));
        app.update();
        peer_arrives(&mut app, "Bob");
        app.world_mut()
            .write_message(ControlReceived(Control::Call(CallSignal::Invite {
                call: CallId(3),
                video: true,
            })));
        app.update();
        app.update();
        assert_eq!(
            latest_notice(&app),
            "Bob is calling you with video. Accept or decline at the top."
        );
        app.world_mut()
            .resource_mut::<Messages<SendControl>>()
            .clear();
        app.world_mut().write_message(LeaveRoom);
        app.update();
        app.update();
        let sent: Vec<Control> = app
            .world_mut()
            .resource_mut::<Messages<SendControl>>()
            .drain()
            .map(|SendControl(c)| c)
            .collect();
        assert!(
            sent.contains(&Control::Call(CallSignal::Decline {
                call: CallId(3),
                reason: DeclineReason::Declined
            })),
            "{sent:?}"
        );
        assert_eq!(latest_notice(&app), "You declined the call.");
    }

    #[test]
    fn avatars_spawn_and_despawn_with_presence() {
        let dir = tempdir("presence");
        let mut app = room_app(&dir);
        assert_eq!(
            *app.world().resource::<State<Screen>>().get(),
            Screen::Lobby
        );
        join_link(&mut app);
        assert_eq!(*app.world().resource::<State<Screen>>().get(), Screen::Room);
        assert_eq!(avatars(&mut app), vec![Who::Me]);
        let room = app.world().resource::<CurrentRoom>().clone();
        assert_eq!(room.room, "abcdefghijklmnopqrstuv");
        assert!(!room.is_owner());
        assert!(
            app.world()
                .resource::<Presence>()
                .status()
                .contains("Connecting")
        );
        app.world_mut()
            .write_message(NetEvent::Connected(PeerId(uuid::Uuid::new_v4())));
        app.update();
        assert!(
            app.world()
                .resource::<Presence>()
                .status()
                .contains("share this link")
        );

        peer_arrives(&mut app, "Bob");
        assert_eq!(avatars(&mut app), vec![Who::Me, Who::Peer]);
        assert_eq!(app.world().resource::<Presence>().peer_name(), Some("Bob"));
        // A second hello (e.g. after a rename race) does not duplicate the avatar.
        app.world_mut().write_message(IdentityEvent::PeerHello {
            identity: uuid::Uuid::new_v4(),
            name: "Bob".into(),
        });
        app.update();
        assert_eq!(avatars(&mut app), vec![Who::Me, Who::Peer]);

        app.world_mut()
            .write_message(NetEvent::PeerLeft(PeerId(uuid::Uuid::new_v4())));
        app.update();
        assert_eq!(avatars(&mut app), vec![Who::Me]);
        assert_eq!(
            app.world().resource::<Presence>().seat,
            Seat::Left { name: "Bob".into() }
        );
        assert_eq!(latest_notice(&app), "Bob left the room.");

        app.world_mut().write_message(LeaveRoom);
        app.update();
        app.update();
        assert_eq!(
            *app.world().resource::<State<Screen>>().get(),
            Screen::Lobby
        );
        assert!(avatars(&mut app).is_empty());
        assert!(!app.world().contains_resource::<RoomLink>());
        // The room is remembered for the lobby's list.
        assert_eq!(
            app.world().resource::<RecentRooms>().rooms[0].room,
            "abcdefghijklmnopqrstuv"
        );
    }

    #[test]
    fn the_two_avatars_never_share_a_colour() {
        let hue = |c: Color| Hsla::from(c).hue;
        for _ in 0..500 {
            let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
            let (mine, theirs) = (hue(identity_colour(&a)), hue(peer_colour(&a, &b)));
            let gap = (mine - theirs).abs().min(360.0 - (mine - theirs).abs());
            assert!(gap >= 49.9, "{mine} vs {theirs}");
        }
        let a = uuid::Uuid::new_v4();
        assert_eq!(identity_colour(&a), identity_colour(&a), "stable");
    }

    #[test]
    fn drop_zone_hit_tests_and_drops() {
        assert_eq!(avatar_at(PEER_SPOT), Some(Who::Peer));
        assert_eq!(
            avatar_at(PEER_SPOT + Vec2::new(AVATAR_RADIUS, 0.0)),
            Some(Who::Peer)
        );
        assert_eq!(
            avatar_at(PEER_SPOT + Vec2::new(0.0, AVATAR_RADIUS + 40.0)),
            None
        );
        assert_eq!(avatar_at(MY_SPOT + Vec2::new(-30.0, 30.0)), Some(Who::Me));
        assert_eq!(avatar_at(Vec2::ZERO), None);

        let dir = tempdir("drops");
        let mut app = room_app(&dir);
        app.world_mut().write_message(JoinRoom(LINK.into()));
        app.update();
        let file = PathBuf::from("/tmp/holiday.jpg");
        // Nobody there: nothing is sent, and the user is told why.
        app.world_mut().write_message(FileDropped {
            path: file.clone(),
            at: Some(PEER_SPOT),
        });
        app.update();
        assert!(drain::<SendFile>(&mut app).is_empty());
        assert!(latest_notice(&app).contains("not in the room"));

        peer_arrives(&mut app, "Bob");
        // Hovering over the peer lights the drop zone; elsewhere it only shows it.
        app.world_mut().write_message(FileHover {
            active: true,
            at: Some(Vec2::ZERO),
        });
        app.update();
        assert_eq!(
            *app.world().resource::<DropZone>(),
            DropZone {
                dragging: true,
                over_peer: false
            }
        );
        app.world_mut().write_message(FileHover {
            active: true,
            at: Some(PEER_SPOT + Vec2::new(10.0, -10.0)),
        });
        app.update();
        assert!(app.world().resource::<DropZone>().over_peer);
        // Dropped on my own avatar: not sent, with a hint.
        app.world_mut().write_message(FileDropped {
            path: file.clone(),
            at: Some(MY_SPOT),
        });
        app.update();
        assert!(drain::<SendFile>(&mut app).is_empty());
        assert_eq!(
            latest_notice(&app),
            "Drop the file on Bob's avatar to send it."
        );
        assert!(!app.world().resource::<DropZone>().dragging);
        // Dropped on the peer: sent.
        app.world_mut().write_message(FileDropped {
            path: file.clone(),
            at: Some(PEER_SPOT),
        });
        app.update();
        assert_eq!(drain::<SendFile>(&mut app), vec![SendFile(file)]);
    }

    fn entry(text: &str, mine: bool, delivery: Delivery) -> ChatEntry {
        ChatEntry {
            id: uuid::Uuid::new_v4(),
            author: "Ada".into(),
            mine,
            sent_ms: 0,
            text: text.into(),
            delivery,
        }
    }

    fn bubbles(app: &mut App) -> Vec<(Who, String, f32)> {
        app.world_mut()
            .query::<&Bubble>()
            .iter(app.world())
            .map(|b| (b.who, b.text.clone(), b.age))
            .collect()
    }

    #[test]
    fn bubbles_pop_once_fade_and_leave() {
        let dir = tempdir("bubbles");
        let mut app = room_app(&dir);
        let hello = entry("hello!", true, Delivery::Sent);
        app.world_mut().write_message(ChatChanged(hello.clone()));
        app.update();
        assert_eq!(bubbles(&mut app).len(), 1);
        assert_eq!(bubbles(&mut app)[0].0, Who::Me);
        // The receipt updates the same message: no second bubble.
        let mut delivered = hello.clone();
        delivered.delivery = Delivery::Delivered;
        app.world_mut().write_message(ChatChanged(delivered));
        app.update();
        assert_eq!(bubbles(&mut app).len(), 1);
        // The peer's message goes over the peer's avatar.
        app.world_mut()
            .write_message(ChatChanged(entry("hi Ada", false, Delivery::Received)));
        app.update();
        assert!(
            bubbles(&mut app)
                .iter()
                .any(|b| b.0 == Who::Peer && b.1 == "hi Ada")
        );
        // Full opacity first, fading at the end, gone after BUBBLE_SECS (0.25 s per update: the
        // most virtual time advances per frame).
        let b = Bubble {
            who: Who::Me,
            text: String::new(),
            age: 1.0,
        };
        assert_eq!(b.alpha(), 1.0);
        assert!(
            Bubble {
                age: BUBBLE_SECS - 0.5,
                ..b.clone()
            }
            .alpha()
                < 0.5
        );
        for _ in 0..26 {
            app.update();
        }
        assert!(bubbles(&mut app).is_empty(), "{:?}", bubbles(&mut app));
        // A burst keeps at most MAX_BUBBLES per avatar, newest kept; long text is shortened.
        let long = "x".repeat(500);
        for i in 0..5 {
            let text = if i == 4 {
                long.clone()
            } else {
                format!("m{i}")
            };
            app.world_mut()
                .write_message(ChatChanged(entry(&text, true, Delivery::Sent)));
            app.update();
        }
        let now = bubbles(&mut app);
        assert_eq!(now.len(), MAX_BUBBLES, "{now:?}");
        assert!(
            now.iter()
                .any(|b| b.1.chars().count() == 141 && b.1.ends_with('…'))
        );
        assert!(!now.iter().any(|b| b.1 == "m0" || b.1 == "m1"));
    }

    #[test]
    fn a_link_to_another_server_is_opened_only_when_the_person_says_so() {
        let dir = tempdir("foreign");
        let mut app = room_app(&dir);
        let foreign = "https://evil.example/r/abcdefghijklmnopqrstuv";
        app.world_mut().write_message(JoinRoom(foreign.into()));
        app.update();
        assert!(app.world().get_resource::<RoomLink>().is_none());
        let asked = app.world().resource::<ForeignLink>().0.clone().unwrap();
        assert_eq!(asked.server, "evil.example");
        // "Don't open": nothing joined, the question is gone.
        app.world_mut().write_message(AnswerForeignLink(false));
        app.update();
        app.update();
        assert!(app.world().get_resource::<RoomLink>().is_none());
        assert_eq!(app.world().resource::<ForeignLink>().0, None);
        // The configured server's links need no question.
        app.world_mut().write_message(JoinRoom(LINK.into()));
        app.update();
        assert_eq!(app.world().resource::<ForeignLink>().0, None);
        assert!(app.world().get_resource::<RoomLink>().is_some());
        app.world_mut().write_message(LeaveRoom);
        app.update();
        // Asked again, and "Open it anyway": joined on that server, and its link is shared.
        app.world_mut().write_message(JoinRoom(foreign.into()));
        app.update();
        assert!(app.world().resource::<ForeignLink>().0.is_some());
        app.world_mut().write_message(AnswerForeignLink(true));
        app.update();
        app.update();
        let joined = app.world().resource::<RoomLink>();
        assert_eq!(
            joined.signal_url,
            "wss://evil.example/signal/abcdefghijklmnopqrstuv"
        );
        assert_eq!(app.world().resource::<CurrentRoom>().link, foreign);
    }

    /// The owner meets "room full" in their own room (a squatter holds both seats): the client
    /// asks who holds them, shows the seats, frees the one chosen and joins again; someone
    /// else's full room asks nothing.
    #[test]
    fn an_owner_who_finds_the_room_full_sees_the_seats_and_frees_one() {
        let dir = tempdir("seats");
        let mut app = room_app(&dir);
        // Someone else's room: full, and nothing to be done about it.
        join_link(&mut app);
        drain::<ApiCall>(&mut app);
        app.world_mut()
            .write_message(NetEvent::SignalingClosed(SignalingEnd::RoomFull));
        app.update();
        assert!(drain::<ApiCall>(&mut app).is_empty());
        app.world_mut().write_message(LeaveRoom);
        app.update();

        create_owned_room(&mut app);
        drain::<ApiCall>(&mut app);
        app.world_mut()
            .write_message(NetEvent::SignalingClosed(SignalingEnd::RoomFull));
        app.update();
        assert_eq!(
            drain::<ApiCall>(&mut app),
            vec![ApiCall::Members {
                room: "zyxwvutsrqponmlkjihgfe".into(),
                owner_key: "secret".into(),
            }]
        );
        let (one, two) = (PeerId(uuid::Uuid::new_v4()), PeerId(uuid::Uuid::new_v4()));
        let holders = vec![
            duet_shared::api::SeatHolder {
                peer: one,
                joined_ms: 1,
            },
            duet_shared::api::SeatHolder {
                peer: two,
                joined_ms: 2,
            },
        ];
        app.world_mut()
            .write_message(ApiReply::Members(duet_shared::api::RoomMembers {
                members: holders.clone(),
            }));
        app.update();
        assert_eq!(app.world().resource::<SeatHolders>().members, holders);
        app.world_mut().write_message(FreeSeat {
            peer: two,
            action: Moderation::Kick,
        });
        app.update();
        assert_eq!(
            drain::<ApiCall>(&mut app),
            vec![ApiCall::Moderate {
                room: "zyxwvutsrqponmlkjihgfe".into(),
                owner_key: "secret".into(),
                peer: two,
                action: Moderation::Kick,
            }]
        );
        drain::<RebuildSocket>(&mut app);
        app.world_mut()
            .write_message(ApiReply::Moderated(Moderation::Kick));
        app.update();
        assert_eq!(drain::<RebuildSocket>(&mut app).len(), 1, "joins again");
        assert!(app.world().resource::<SeatHolders>().members.is_empty());
        assert_eq!(app.world().resource::<Presence>().link, Link::Connecting);
        assert!(latest_notice(&app).contains("A seat is free"));
    }

    #[test]
    fn only_the_owner_can_kick_or_ban() {
        let dir = tempdir("moderation");
        let mut app = room_app(&dir);
        // A joined (not created) room: no key, no call.
        app.world_mut().write_message(JoinRoom(LINK.into()));
        app.update();
        let peer = peer_arrives(&mut app, "Bob");
        app.world_mut().write_message(Moderate(Moderation::Kick));
        app.update();
        assert!(drain::<ApiCall>(&mut app).is_empty());
        assert!(latest_notice(&app).contains("Only the person who created"));

        // A created room: the owner key is kept and used.
        create_owned_room(&mut app);
        let room = app.world().resource::<CurrentRoom>().clone();
        assert_eq!(room.link, "http://127.0.0.1:8787/r/zyxwvutsrqponmlkjihgfe");
        assert!(room.is_owner());
        // Nobody there yet: nothing to kick.
        app.world_mut().write_message(Moderate(Moderation::Ban));
        app.update();
        assert!(drain::<ApiCall>(&mut app).is_empty());
        let _ = peer;
        let bob = peer_arrives(&mut app, "Bob");
        app.world_mut().write_message(Moderate(Moderation::Ban));
        app.update();
        assert_eq!(
            drain::<ApiCall>(&mut app),
            vec![ApiCall::Moderate {
                room: "zyxwvutsrqponmlkjihgfe".into(),
                owner_key: "secret".into(),
                peer: bob,
                action: Moderation::Ban,
            }]
        );
        // The key survives a restart (recent rooms are saved).
        drop(app);
        let mut app = room_app(&dir);
        app.world_mut().write_message(JoinRoom(
            "http://127.0.0.1:8787/r/zyxwvutsrqponmlkjihgfe".into(),
        ));
        app.update();
        assert!(app.world().resource::<CurrentRoom>().is_owner());
    }

    #[test]
    fn transfers_are_listed_and_received_files_survive_a_restart() {
        let dir = tempdir("transfer-list");
        let mut app = room_app(&dir);
        app.world_mut().write_message(JoinRoom(LINK.into()));
        app.update();
        peer_arrives(&mut app, "Bob");
        let id = TransferId(7);
        let events = [
            TransferEvent::Started {
                id,
                direction: Direction::Incoming,
                name: "song.ogg".into(),
                size: 1000,
                resumed_from: 200,
            },
            TransferEvent::Progress {
                id,
                direction: Direction::Incoming,
                progress: Progress {
                    done: 500,
                    total: 1000,
                    bytes_per_sec: 250.0,
                    eta_secs: Some(2.0),
                },
            },
        ];
        for event in events {
            app.world_mut().write_message(event);
        }
        app.update();
        let list = app.world().resource::<TransferList>().clone();
        assert_eq!(list.rows.len(), 1);
        assert_eq!(list.rows[0].fraction(), 0.5);
        assert_eq!(list.running(Direction::Incoming), Some(0.5));
        assert_eq!(list.running(Direction::Outgoing), None);
        app.world_mut().write_message(TransferEvent::Completed {
            id,
            direction: Direction::Incoming,
            location: "/downloads/song (1).ogg".into(),
        });
        app.world_mut().write_message(TransferEvent::Failed {
            id: TransferId(8),
            direction: Direction::Outgoing,
            reason: "Your peer left before the file was complete.".into(),
        });
        app.update();
        let list = app.world().resource::<TransferList>().clone();
        assert_eq!(
            list.rows[0].state,
            RowState::Done("/downloads/song (1).ogg".into())
        );
        assert_eq!(list.running(Direction::Incoming), None);
        assert_eq!(
            latest_notice(&app),
            "Your peer left before the file was complete."
        );
        let received = app.world().resource::<ReceivedFiles>().clone();
        assert_eq!(received.files.len(), 1);
        assert_eq!(received.files[0].name, "song (1).ogg");
        assert_eq!(received.files[0].from, "Bob");
        // The peer leaving and a restart keep the list.
        app.world_mut()
            .write_message(NetEvent::PeerLeft(PeerId(uuid::Uuid::new_v4())));
        app.update();
        drop(app);
        let app = room_app(&dir);
        assert_eq!(app.world().resource::<ReceivedFiles>(), &received);
    }

    #[test]
    fn a_flood_of_tiny_files_keeps_the_lists_bounded() {
        let dir = tempdir("transfer-flood");
        let mut app = room_app(&dir);
        app.world_mut().write_message(JoinRoom(LINK.into()));
        app.update();
        peer_arrives(&mut app, "Bob");
        let running = TransferId(1);
        app.world_mut().write_message(TransferEvent::Started {
            id: running,
            direction: Direction::Incoming,
            name: "still coming.bin".into(),
            size: 1 << 20,
            resumed_from: 0,
        });
        app.update();
        for n in 0..(MAX_RECEIVED_LISTED as u64 + 50) {
            let id = TransferId(100 + n);
            app.world_mut().write_message(TransferEvent::Started {
                id,
                direction: Direction::Incoming,
                name: format!("t{n}.txt"),
                size: 1,
                resumed_from: 0,
            });
            app.world_mut().write_message(TransferEvent::Completed {
                id,
                direction: Direction::Incoming,
                location: format!("/downloads/t{n}.txt"),
            });
        }
        app.update();
        let received = app.world().resource::<ReceivedFiles>();
        assert_eq!(received.files.len(), MAX_RECEIVED_LISTED);
        assert_eq!(
            received.files.last().unwrap().name,
            format!("t{}.txt", MAX_RECEIVED_LISTED + 49)
        );
        let list = app.world().resource::<TransferList>();
        assert_eq!(list.rows.len(), MAX_ROWS);
        assert!(
            list.rows.iter().any(|r| r.id == running),
            "an open row stays"
        );
    }

    #[test]
    fn questions_waiting_senders_and_pauses_show_in_the_rows() {
        let dir = tempdir("transfer-questions");
        let mut app = room_app(&dir);
        app.world_mut().write_message(JoinRoom(LINK.into()));
        app.update();
        peer_arrives(&mut app, "Bob");
        let (asked, mine) = (TransferId(1), TransferId(2));
        app.world_mut().write_message(TransferEvent::Asked {
            id: asked,
            name: "film.mkv".into(),
            size: 150_000_000,
        });
        app.world_mut().write_message(TransferEvent::Started {
            id: mine,
            direction: Direction::Outgoing,
            name: "slides.pdf".into(),
            size: 40_000_000,
            resumed_from: 0,
        });
        app.update();
        let state = |app: &App, id| {
            let list = app.world().resource::<TransferList>();
            list.rows.iter().find(|r| r.id == id).unwrap().state.clone()
        };
        assert_eq!(state(&app, asked), RowState::Asking);
        assert_eq!(state(&app, mine), RowState::AwaitingPeer);
        let notices: Vec<String> = app
            .world()
            .resource::<Notices>()
            .items
            .iter()
            .map(|n| n.0.clone())
            .collect();
        assert!(
            notices
                .iter()
                .any(|n| n.contains("Bob wants to send you film.mkv (150.0 MB)")),
            "{notices:?}"
        );
        app.world_mut()
            .write_message(TransferEvent::Accepted { id: mine });
        app.world_mut().write_message(TransferEvent::Paused {
            id: asked,
            reason: "Your peer left before the file was complete.".into(),
        });
        app.update();
        assert_eq!(state(&app, mine), RowState::Running);
        assert_eq!(
            state(&app, asked),
            RowState::Paused("Your peer left before the file was complete.".into())
        );
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "duet-room-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
