//! Room logic: which screen is up, who is in the room, avatars and speech bubbles as entities,
//! drop-zone hit tests, the transfer list, received files, moderation rights and notices.
//!
//! No rendering here: the presentation plugin draws what these resources and entities say, and
//! turns window input into the messages below. Everything runs under `MinimalPlugins` in tests.
//!
//! Here: the screens, recent rooms, joining and leaving, notices, the plugin. One file each for
//! [`presence`] (the link to the server and the other seat), [`files`] (drops, transfer rows,
//! received files), [`bubbles`], [`moderation`] (kick, ban, a full room's seats), [`layout`]
//! (where avatars stand, colours) and [`attention`] (what the peer did while the person was not
//! looking); they share this module's imports and types.

use std::path::PathBuf;

use bevy::prelude::*;
use bevy_pkv::PkvStore;
use duet_shared::liveness::Health;
use duet_shared::peer::TransferId;
use serde::{Deserialize, Serialize};

use crate::api::{ApiCall, ApiReply, Moderation};
use crate::chat::{ChatChanged, ChatLog};
use crate::config::ClientConfig;
use crate::contacts::{ContactEvent, Standing};
use crate::frame::FrameSet;
use crate::identity::{IdentityEvent, PeerProfile};
use crate::net::{Disconnect, NetEvent, RebuildSocket, RoomLink, SignalingEnd};
use crate::ports::Host;
use crate::transfer::{Direction, SendFile, TransferEnd, TransferEvent};
use matchbox_socket::PeerId;

/// What the person is told when the peer's authenticated hello failed (this side left the room).
pub fn hello_failure_notice(why: &duet_shared::handshake::HandshakeError) -> &'static str {
    use duet_shared::handshake::HandshakeError;
    match why {
        HandshakeError::Intercepted => {
            "Warning: someone may be in the middle of this connection. The other side's proof of \
             who they are did not match the connection, so Duet closed it and sent nothing. Do \
             not trust this network or server; rejoin to try again."
        }
        HandshakeError::NoFingerprint => {
            "The connection could not be secured (it named no certificate), so Duet closed it \
             and sent nothing. Rejoin to try again."
        }
        HandshakeError::TimedOut => {
            "Your peer's app did not prove who it is within 90 seconds, so Duet closed the \
             connection and sent nothing. It is joining the room again."
        }
        HandshakeError::BrokenCommitment | HandshakeError::OutOfOrder | HandshakeError::BadName => {
            "The other side's app broke the rules of saying hello, so Duet closed the connection \
             and sent nothing. Rejoin to try again."
        }
    }
}

mod attention;
mod bubbles;
mod files;
mod layout;
mod moderation;
mod presence;

pub use attention::*;
pub use bubbles::*;
pub use files::*;
pub use layout::*;
pub use moderation::*;
pub use presence::*;

const RECENT_KEY: &str = "recent_rooms";

const MAX_RECENT: usize = 8;

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
            .add_plugins(attention::plugin)
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
                    reserve_owner_seat,
                    leave_room,
                    presence,
                    peer_standing,
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

/// Entering a room this device owns reserves its seat there (for the key this device joins that
/// room with), so a squatter can never keep the owner out.
fn reserve_owner_seat(
    room: Option<Res<CurrentRoom>>,
    identity: Option<Res<crate::identity::Identity>>,
    mut calls: MessageWriter<ApiCall>,
) {
    let (Some(room), Some(identity)) = (room, identity) else {
        return;
    };
    if !room.is_added() {
        return;
    }
    if let Some(owner_key) = &room.owner_key {
        calls.write(ApiCall::ReserveSeat {
            room: room.room.clone(),
            owner_key: owner_key.clone(),
            key: identity.key.room_key(&room.room).public(),
        });
    }
}

fn create_room(mut asks: MessageReader<CreateRoom>, mut calls: MessageWriter<ApiCall>) {
    if asks.read().count() > 0 {
        calls.write(ApiCall::CreateRoom);
    }
}

/// Recent rooms, with the store that keeps them.
#[derive(bevy::ecs::system::SystemParam)]
struct Recent<'w> {
    rooms: ResMut<'w, RecentRooms>,
    pkv: ResMut<'w, PkvStore>,
}

impl Recent<'_> {
    /// Records a visit (keeping an owner key learned earlier) and saves the list.
    fn remember(&mut self, mut visit: RecentRoom) {
        let rooms = &mut self.rooms.rooms;
        if let Some(old) = rooms.iter().position(|r| r.room == visit.room) {
            let old = rooms.remove(old);
            visit.owner_key = visit.owner_key.or(old.owner_key);
        }
        rooms.insert(0, visit);
        rooms.truncate(MAX_RECENT);
        if let Err(e) = self.pkv.set(RECENT_KEY, &*self.rooms) {
            error!("could not save recent rooms: {e}");
        }
    }
}

/// Where the room stands with the server and the seats, and what the person is told.
#[derive(bevy::ecs::system::SystemParam)]
struct RoomStanding<'w> {
    presence: ResMut<'w, Presence>,
    seats: ResMut<'w, SeatHolders>,
    notices: ResMut<'w, Notices>,
}

/// What the API's answers make the room do next.
#[derive(bevy::ecs::system::SystemParam)]
struct NextMoves<'w> {
    join: MessageWriter<'w, JoinRoom>,
    rebuild: MessageWriter<'w, RebuildSocket>,
    calls: MessageWriter<'w, ApiCall>,
}

fn api_replies(
    mut replies: MessageReader<ApiReply>,
    config: Res<ClientConfig>,
    mut recent: Recent,
    mut standing: RoomStanding,
    mut moves: NextMoves,
    room: Option<Res<CurrentRoom>>,
) {
    let RoomStanding {
        presence,
        seats,
        notices,
    } = &mut standing;
    let NextMoves {
        join,
        rebuild,
        calls,
    } = &mut moves;
    for reply in replies.read() {
        match reply {
            ApiReply::RoomCreated(created) => {
                let link = config.room_link(&created.room);
                recent.remember(RecentRoom {
                    room: created.room.clone(),
                    link: link.clone(),
                    owner_key: Some(created.owner_key.clone()),
                    last_ms: crate::util::now_ms(),
                });
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
                    ask_seat_holders(room.as_deref(), calls);
                }
            }
            ApiReply::Failed {
                call: ApiCall::RoomInfo { .. },
                message,
            } => {
                notices.post(message.clone());
                presence.link = Link::Failed(message.clone());
            }
            ApiReply::Failed {
                call: ApiCall::ReserveSeat { .. },
                message,
            } => warn!("could not reserve the owner's seat: {message}"),
            ApiReply::Version(server) if server.api != duet_shared::api::API_VERSION => {
                notices.post(out_of_date_notice(server.api));
            }
            ApiReply::Version(_) => {}
            // An unreachable server is said by whatever the person does next.
            ApiReply::Failed {
                call: ApiCall::Version,
                message,
            } => warn!("could not ask the server's version: {message}"),
            ApiReply::Failed { message, .. } => notices.post(message.clone()),
            ApiReply::SeatReserved => {}
        }
    }
}

/// What the person is told when the server speaks another version of the API than this app.
pub fn out_of_date_notice(server_api: u16) -> String {
    let ours = duet_shared::api::API_VERSION;
    if server_api > ours {
        format!(
            "This copy of Duet is older than the server's (API {ours}, the server's {server_api}): \
             reload the page or update the app, or rooms may fail."
        )
    } else {
        format!(
            "The Duet server is older than this app (API {server_api}, the app's {ours}): rooms \
             may fail until the server is updated."
        )
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

fn join_room(
    mut commands: Commands,
    mut joins: MessageReader<JoinRoom>,
    (config, trusted, mut foreign): (Res<ClientConfig>, Res<TrustedServers>, ResMut<ForeignLink>),
    mut recent: Recent,
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
        .rooms
        .iter()
        .find(|r| r.room == room)
        .and_then(|r| r.owner_key.clone());
    let shareable = room_link.page_link();
    recent.remember(RecentRoom {
        room: room.clone(),
        link: shareable.clone(),
        owner_key: owner_key.clone(),
        last_ms: crate::util::now_ms(),
    });
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
) {
    if leaves.read().count() == 0 {
        return;
    }
    commands.remove_resource::<RoomLink>();
    commands.remove_resource::<CurrentRoom>();
    commands.insert_resource(Presence::default());
    commands.insert_resource(SeatHolders::default());
    chat.entries.clear();
    // The room's entities go with the screen (`DespawnOnExit`).
    next.set(Screen::Lobby);
}

#[cfg(test)]
mod tests;
