//! Who is in the room: the link to the server (with reconnects), the other seat, and the
//! avatars that follow them.

use super::*;

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
        /// The code both people can compare.
        safety_code: String,
        /// Where they stand for this device, once the contacts said.
        standing: Option<Standing>,
    },
    /// They were here and left, or their connection was lost.
    Left {
        /// Their last name.
        name: String,
        /// The connection failed while nothing arrived from them (the network, not the
        /// person): Duet is joining again to reconnect.
        lost: bool,
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
    /// How their connection runs (direct or relayed), once known.
    pub path: Option<matchbox_socket::CandidatePair>,
    /// Why the last attempt to connect to someone in the other seat failed, until someone
    /// connects.
    pub unreachable: Option<String>,
    /// How the link to them is (round trip, or interrupted), from their verified hello on.
    pub health: Option<Health>,
}

impl Presence {
    /// How the peer is reached, in words, once known.
    pub fn path_words(&self) -> Option<&'static str> {
        use matchbox_socket::CandidateType;
        let pair = self.path?;
        Some(if pair.is_relayed() {
            "Through a relay server"
        } else if pair.remote == CandidateType::Host && pair.local == CandidateType::Host {
            "Direct, same network"
        } else {
            "Direct"
        })
    }

    /// The status line under the room: where the peer is, or why they are not.
    pub fn status(&self) -> String {
        if let (Seat::Here { name, .. }, Some(Health::Quiet { silent_s })) =
            (&self.seat, self.health)
        {
            return interrupted_words(name, silent_s);
        }
        self.situation()
    }

    /// How the connection runs while the peer is here, shown beside the status line (kept out
    /// of its sentence, which then stays on one line): "Direct · 42 ms".
    pub fn connection_badge(&self) -> Option<String> {
        if !matches!(self.seat, Seat::Here { .. }) || self.interrupted() {
            return None;
        }
        let rtt = match self.health {
            Some(Health::Live { rtt_ms: Some(rtt) }) => Some(format!("{rtt} ms")),
            _ => None,
        };
        match (self.path_words(), rtt) {
            (Some(path), Some(rtt)) => Some(format!("{path} · {rtt}")),
            (Some(path), None) => Some(path.to_owned()),
            (None, Some(rtt)) => Some(rtt),
            (None, None) => None,
        }
    }

    /// Whether the peer is here but nothing has arrived from them for a while: what is sent
    /// now would wait in a queue of the network's, so it is refused instead.
    pub fn interrupted(&self) -> bool {
        matches!(self.seat, Seat::Here { .. }) && self.health.is_some_and(|h| h.is_quiet())
    }

    fn situation(&self) -> String {
        match (&self.link, &self.seat) {
            (Link::Failed(why), _) => why.clone(),
            (Link::Connecting, _) => "Connecting to the room…".into(),
            (Link::Reconnecting { attempt, .. }, _) => format!(
                "Lost the connection to the Duet server; reconnecting (attempt {attempt})… Nothing is delivered until it is back."
            ),
            (_, Seat::Empty) => match &self.unreachable {
                Some(why) => why.clone(),
                None => "Waiting for your peer — share this link.".into(),
            },
            (_, Seat::Arriving) => "Your peer is connecting…".into(),
            (
                _,
                Seat::Here {
                    name,
                    safety_code,
                    standing,
                    ..
                },
            ) => match standing {
                None => format!("{name} is here."),
                Some(Standing::New) => format!(
                    "{name} is here: a new, unknown person to this device. To be sure it is them, \
                     compare the safety code {safety_code} with them."
                ),
                Some(Standing::Known { since_ms, verified }) => format!(
                    "{name} is here (known since {}{}).",
                    crate::util::date_words(*since_ms),
                    if *verified { ", verified" } else { "" }
                ),
                Some(Standing::NotTheOneMet { known_since_ms, .. }) => format!(
                    "This is not the {name} you met on {}: the same name, but another key. \
                     Compare the safety code {safety_code} before you trust them.",
                    crate::util::date_words(*known_since_ms)
                ),
            },
            (_, Seat::Left { name, lost: true }) => format!(
                "The connection to {name} was lost; reconnecting… Nothing you send is delivered \
                 until they are back."
            ),
            (_, Seat::Left { name, lost: false }) => {
                format!(
                    "{name} left. Nothing you send now is delivered; share the link to bring them back."
                )
            }
        }
    }

    /// The peer's name when they are here.
    /// The peer's safety code, and whether they are verified, while they are here.
    pub fn safety_code(&self) -> Option<(&str, bool)> {
        match &self.seat {
            Seat::Here {
                safety_code,
                standing,
                ..
            } => Some((
                safety_code.as_str(),
                matches!(standing, Some(Standing::Known { verified: true, .. })),
            )),
            _ => None,
        }
    }

    /// Where the peer stands for this device, while they are here and the contacts said.
    pub fn standing(&self) -> Option<Standing> {
        match &self.seat {
            Seat::Here { standing, .. } => *standing,
            _ => None,
        }
    }

    /// The peer's name, while they are here.
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
    /// The avatar's entity: it goes when the room screen does.
    pub(super) fn avatar(self) -> (Avatar, Transform, DespawnOnExit<Screen>) {
        (
            Avatar(self),
            Transform::from_translation(self.spot().extend(0.0)),
            DespawnOnExit(Screen::Room),
        )
    }
}

/// An avatar standing in the room.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avatar(pub Who);

/// Entities that belong to the room on screen: they go with the room screen
/// ([`DespawnOnExit`]), and when one room follows another without the lobby between.
pub(super) type RoomEntity = Or<(With<Avatar>, With<Bubble>)>;

/// The status while nothing arrives from the peer, in words.
pub fn interrupted_words(name: &str, silent_s: u32) -> String {
    format!(
        "No answer from {name} for {silent_s} s: the connection is interrupted, reconnecting… \
         Nothing you send is delivered until it is back."
    )
}

/// Why nobody could be reached in the handshake's time, in words: whether a relay was there to
/// try decides what the person can do about it.
pub fn unreachable_words(relay: bool) -> &'static str {
    if relay {
        "Your peer could not be reached within 15 seconds, not even through the relay server: \
         one of your networks blocks the connection. You are still in the room; rejoin to try \
         again, or try another network."
    } else {
        "Your networks block a direct connection and no relay is configured, so your peer \
         could not be reached within 15 seconds. You are still in the room; rejoin to try \
         again, or try another network."
    }
}

/// Why the connection did not open although the peer's app answered and a network path
/// worked, in words: the path is too slow or lossy to finish opening, which rejoining may beat.
pub fn not_opened_words() -> String {
    not_opened(
        ": a network between you is very slow or losing many packets. You are still in the \
         room; rejoin to try again.",
    )
}

/// The same, the first time: the net layer joins again for one fresh attempt
/// (`net::OpeningRetry`).
pub fn retrying_words() -> String {
    not_opened("; joining the room again to try once more…")
}

/// "A path … did not finish opening within 30 seconds", then `then`.
fn not_opened(then: &str) -> String {
    let secs = (matchbox_socket::HANDSHAKE_TIMEOUT + matchbox_socket::OPENING_GRACE).as_secs();
    format!(
        "A path to your peer was found, but the connection did not finish opening within \
         {secs} seconds{then}"
    )
}

/// Why the connection did not open when the peer's app never answered, in words.
pub const UNANSWERED_WORDS: &str = "Your peer's app did not answer the connection request \
     within 15 seconds. You are still in the room; rejoin to try again.";

/// What presence reads of the room and the server, and where its requests go.
#[derive(bevy::ecs::system::SystemParam)]
pub(super) struct Surroundings<'w> {
    room: Option<Res<'w, CurrentRoom>>,
    seats: ResMut<'w, SeatHolders>,
    ice: Option<Res<'w, crate::net::IceServers>>,
    time: Res<'w, Time<Real>>,
    calls: MessageWriter<'w, ApiCall>,
    leave: MessageWriter<'w, Disconnect>,
}

/// What an event does to the peer's avatar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AvatarChange {
    /// The peer said hello: they stand in the room.
    Arrived,
    /// The peer left or failed their hello.
    Gone,
}

pub(super) fn presence(
    mut commands: Commands,
    (mut net, mut identities): (MessageReader<NetEvent>, MessageReader<IdentityEvent>),
    mut presence: ResMut<Presence>,
    mut notices: ResMut<Notices>,
    avatars: Query<(Entity, &Avatar)>,
    mut around: Surroundings,
) {
    let peer_avatar = avatars
        .iter()
        .find(|(_, a)| a.0 == Who::Peer)
        .map(|(e, _)| e);
    let mut shown = peer_avatar.is_some();
    let mut changes = Vec::new();
    for event in net.read() {
        changes.extend(on_net(event, &mut presence, &mut notices, &mut around));
    }
    for event in identities.read() {
        changes.extend(on_identity(event, &mut presence, &mut notices));
    }
    for change in changes {
        match change {
            AvatarChange::Arrived if !shown => {
                commands.spawn(Who::Peer.avatar());
                shown = true;
            }
            AvatarChange::Arrived => {}
            AvatarChange::Gone => {
                if let Some(entity) = peer_avatar {
                    commands.entity(entity).despawn();
                }
                shown = false;
            }
        }
    }
}

/// Presence after an event of the connection.
fn on_net(
    event: &NetEvent,
    presence: &mut Presence,
    notices: &mut Notices,
    around: &mut Surroundings,
) -> Option<AvatarChange> {
    match event {
        NetEvent::Connected(_) => {
            around.seats.members.clear();
            if matches!(presence.link, Link::Reconnecting { .. }) {
                notices.post("Connected to the room again.");
            }
            presence.link = Link::InRoom;
        }
        NetEvent::PeerJoined(id) => {
            presence.seat = Seat::Arriving;
            presence.peer_id = Some(*id);
            presence.path = None;
            presence.unreachable = None;
            presence.health = None;
        }
        NetEvent::Path(pair) => presence.path = Some(*pair),
        NetEvent::Link(health) => on_health(*health, presence, notices),
        NetEvent::PeerLeft(_) => {
            on_peer_left(presence, notices);
            return Some(AvatarChange::Gone);
        }
        NetEvent::SignalingClosed(why) => on_signaling_closed(why, presence, notices, around),
        NetEvent::IceServers(_)
        | NetEvent::Negotiated(_)
        | NetEvent::PeerVerified(_)
        | NetEvent::HelloFailed(_) => {}
        NetEvent::SecondHello => notices.post(
            "Your peer's app introduced itself a second time, which Duet never does; the \
             connection was restarted.",
        ),
        NetEvent::PeerFailed(matchbox_socket::HandshakeFailure::TimedOut) => {
            let relay = around.ice.as_ref().is_some_and(|ice| ice.has_relay());
            let why = unreachable_words(relay);
            notices.post(why);
            presence.unreachable = Some(why.to_owned());
        }
        NetEvent::PeerFailed(matchbox_socket::HandshakeFailure::NotOpened) => {
            let why = not_opened_words();
            notices.post(why.clone());
            presence.unreachable = Some(why);
        }
        NetEvent::Retrying(_) => {
            let why = retrying_words();
            notices.post(why.clone());
            presence.unreachable = Some(why);
        }
        NetEvent::PeerFailed(matchbox_socket::HandshakeFailure::Unanswered) => {
            notices.post(UNANSWERED_WORDS);
            presence.unreachable = Some(UNANSWERED_WORDS.to_owned());
        }
        NetEvent::PeerFailed(why) => notices.post(format!(
            "A connection attempt from the other seat failed ({why}). You are still in the room."
        )),
        NetEvent::BadFrame(why) => notices.post(format!(
            "Your peer's app sent something broken ({why}); it was ignored."
        )),
    }
    None
}

/// The link went quiet or came back: say so once, on the change.
fn on_health(health: Health, presence: &mut Presence, notices: &mut Notices) {
    let was_quiet = presence.health.is_some_and(|h| h.is_quiet());
    presence.health = Some(health);
    let name = presence.peer_name().unwrap_or("your peer").to_owned();
    match (was_quiet, health.is_quiet()) {
        (false, true) => notices.post(format!(
            "Nothing arrives from {name}: the connection is interrupted. Duet keeps trying; \
             what you send meanwhile is not delivered."
        )),
        (true, false) => notices.post(format!("The connection to {name} is back.")),
        _ => {}
    }
}

/// The peer's seat emptied: they left, or the link had gone quiet (the net layer rejoins by
/// itself then).
fn on_peer_left(presence: &mut Presence, notices: &mut Notices) {
    presence.peer_id = None;
    presence.path = None;
    let lost = presence.health.take().is_some_and(|h| h.is_quiet());
    let name = match &presence.seat {
        Seat::Here { name, .. } => name.clone(),
        _ => "Your peer".into(),
    };
    notices.post(if lost {
        format!("The connection to {name} was lost; joining the room again to reconnect.")
    } else {
        format!("{name} left the room.")
    });
    presence.seat = Seat::Left { name, lost };
}

/// The server ended this socket: try again later, or stop and say why.
fn on_signaling_closed(
    why: &SignalingEnd,
    presence: &mut Presence,
    notices: &mut Notices,
    around: &mut Surroundings,
) {
    let room = around.room.as_deref();
    match why {
        // Worth another attempt: the server is away, or it saw this join's proof already
        // (the next socket signs a new one).
        SignalingEnd::Unreachable | SignalingEnd::ProofReused if room.is_some() => {
            let attempt = match presence.link {
                Link::Reconnecting { attempt, .. } => attempt + 1,
                _ => {
                    notices.post(why.to_string());
                    1
                }
            };
            presence.link = Link::Reconnecting {
                attempt,
                retry_at: Some(
                    around.time.elapsed()
                        + std::time::Duration::from_millis(retry_delay_ms(attempt)),
                ),
            };
        }
        _ => {
            notices.post(why.to_string());
            presence.link = Link::Failed(why.to_string());
            if why.leaves_the_room() {
                // Signaling is gone, but matchbox keeps the peer connection: close it too,
                // so this side does not look present where it is not.
                around.leave.write(Disconnect);
            }
            if *why == SignalingEnd::RoomFull {
                ask_seat_holders(room, &mut around.calls);
            }
            if let (SignalingEnd::Unexplained(_), Some(room)) = (why, room) {
                around.calls.write(ApiCall::RoomInfo {
                    room: room.room.clone(),
                });
            }
        }
    }
}

/// Presence after an event of the peer's identity.
fn on_identity(
    event: &IdentityEvent,
    presence: &mut Presence,
    notices: &mut Notices,
) -> Option<AvatarChange> {
    match event {
        IdentityEvent::PeerHello {
            identity,
            name,
            safety_code,
            ..
        } => {
            presence.seat = Seat::Here {
                name: name.clone(),
                identity: *identity,
                safety_code: safety_code.clone(),
                standing: None,
            };
            return Some(AvatarChange::Arrived);
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
        IdentityEvent::HelloFailed(why) => {
            let notice = super::hello_failure_notice(why);
            notices.post(notice);
            presence.link = Link::Failed(notice.to_owned());
            presence.seat = Seat::Empty;
            return Some(AvatarChange::Gone);
        }
        IdentityEvent::Renamed(_) => {}
    }
    None
}

/// Where the peer stands for this device (new, known, not the one met), once the contacts
/// said; a newcomer refused for wearing a verified contact's name ends the stay in the room.
pub(super) fn peer_standing(
    mut commands: Commands,
    mut contacts: MessageReader<ContactEvent>,
    mut presence: ResMut<Presence>,
    mut notices: ResMut<Notices>,
    avatars: Query<(Entity, &Avatar)>,
) {
    for event in contacts.read() {
        match event {
            ContactEvent::Met { standing, .. } => {
                if let Seat::Here {
                    standing: slot,
                    name,
                    ..
                } = &mut presence.seat
                {
                    *slot = Some(*standing);
                    if let Standing::NotTheOneMet { .. } = standing {
                        notices.post(format!(
                            "Careful: this is not the {name} you met before. Same name, another key."
                        ));
                    }
                }
            }
            ContactEvent::Verified { .. } => {
                if let Seat::Here { standing, name, .. } = &mut presence.seat {
                    if let Some(Standing::Known { verified, .. }) = standing {
                        *verified = true;
                    }
                    notices.post(format!("{name} is verified on this device."));
                }
            }
            ContactEvent::Refused { name } => {
                let why = format!(
                    "Someone calling themselves {name} came in, but not with the key of the {name} \
                     you verified, so Duet left the room. If {name} changed devices, forget the \
                     old {name} in People, then join again."
                );
                notices.post(why.clone());
                presence.link = Link::Failed(why);
                presence.seat = Seat::Empty;
                for (entity, avatar) in &avatars {
                    if avatar.0 == Who::Peer {
                        commands.entity(entity).despawn();
                    }
                }
            }
        }
    }
}

/// Wait before reconnect attempt `attempt` (1, 2, 4, 8, then every 15 s): quick after a blip,
/// gentle on a server that is down.
pub fn retry_delay_ms(attempt: u32) -> u64 {
    (1000u64 << attempt.saturating_sub(1).min(4)).min(15_000)
}

/// Starts the next attempt when its time comes: a fresh socket to the same room.
pub(super) fn retry_connection(
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
