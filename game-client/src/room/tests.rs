//! The room logic under `MinimalPlugins`: messages in, resources and entities out.

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
    let mut app = crate::net::testing::offline_app(Some(dir));
    app.add_plugins(StatesPlugin)
        .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
            250,
        )))
        .insert_resource(crate::chat::history::test_archive(dir))
        .insert_resource(ClientConfig::default())
        .add_message::<TransferEvent>()
        .add_message::<SendFile>()
        .add_message::<ApiCall>()
        .add_message::<ApiReply>()
        .add_message::<RebuildSocket>()
        .add_plugins((
            crate::identity::IdentityPlugin,
            crate::chat::ChatPlugin,
            crate::contacts::ContactsPlugin,
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

fn hello(name: &str) -> IdentityEvent {
    let key = duet_shared::trust::DeviceKey::from_seed([7; 32]).public();
    IdentityEvent::PeerHello {
        identity: key.uuid(),
        key,
        name: name.into(),
        safety_code: "123 456".into(),
    }
}

fn peer_arrives(app: &mut App, name: &str) -> PeerId {
    let id = PeerId(uuid::Uuid::new_v4());
    app.world_mut().write_message(NetEvent::PeerJoined(id));
    app.world_mut().write_message(hello(name));
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
    app.world_mut().write_message(hello("Bob"));
    app.update();
    assert_eq!(avatars(&mut app), vec![Who::Me, Who::Peer]);

    app.world_mut()
        .write_message(NetEvent::PeerLeft(PeerId(uuid::Uuid::new_v4())));
    app.update();
    assert_eq!(avatars(&mut app), vec![Who::Me]);
    assert_eq!(
        app.world().resource::<Presence>().seat,
        Seat::Left {
            name: "Bob".into(),
            lost: false
        }
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
        author_key: None,
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
        why: TransferEnd::PeerLeftSending,
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
        "Your peer left before the file was complete; if they are back within 10 minutes, it \
         resumes by itself."
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
        why: TransferEnd::PeerLeftReceiving,
    });
    app.update();
    assert_eq!(state(&app, mine), RowState::Running);
    assert_eq!(
        state(&app, asked),
        RowState::Paused(TransferEnd::PeerLeftReceiving)
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

/// A hello that does not verify ends the stay in the room with a warning in words, and the
/// peer's avatar goes.
#[test]
fn a_failed_hello_warns_that_someone_may_be_in_the_middle() {
    let dir = tempdir("hello-failed");
    let mut app = room_app(&dir);
    join_link(&mut app);
    peer_arrives(&mut app, "Bob");
    assert_eq!(avatars(&mut app), vec![Who::Me, Who::Peer]);
    app.world_mut().write_message(IdentityEvent::HelloFailed(
        duet_shared::handshake::HandshakeError::Intercepted,
    ));
    app.update();
    let presence = app.world().resource::<Presence>();
    assert!(
        matches!(&presence.link, Link::Failed(why) if why.contains("someone may be in the middle")),
        "{:?}",
        presence.link
    );
    assert_eq!(presence.peer_name(), None);
    assert_eq!(avatars(&mut app), vec![Who::Me]);
}

/// Where the peer stands shows in the status line: new, known since a day, not the one met.
#[test]
fn the_status_says_whether_the_peer_was_met_before() {
    let dir = tempdir("standing");
    let mut app = room_app(&dir);
    join_link(&mut app);
    app.world_mut()
        .write_message(NetEvent::Connected(PeerId(uuid::Uuid::new_v4())));
    peer_arrives(&mut app, "Bob");
    app.update();
    let status = app.world().resource::<Presence>().status();
    assert!(status.contains("new, unknown person"), "{status}");
    assert!(status.contains("123 456"), "{status}");
    // The same key again: known since today.
    app.world_mut()
        .write_message(NetEvent::PeerLeft(PeerId(uuid::Uuid::new_v4())));
    app.update();
    peer_arrives(&mut app, "Bob");
    app.update();
    let status = app.world().resource::<Presence>().status();
    assert!(status.contains("known since"), "{status}");
    // Another key under the same name.
    let other = duet_shared::trust::DeviceKey::from_seed([8; 32]).public();
    app.world_mut().write_message(IdentityEvent::PeerHello {
        identity: other.uuid(),
        key: other,
        name: "Bob".into(),
        safety_code: "654 321".into(),
    });
    app.update();
    app.update();
    let status = app.world().resource::<Presence>().status();
    assert!(status.contains("not the Bob you met"), "{status}");
    assert!(latest_notice(&app).contains("not the Bob you met before"));
}

/// Entering a room this device owns reserves its seat there, for the key it joins with; a room
/// someone else owns reserves nothing.
#[test]
fn the_owner_reserves_a_seat_for_this_devices_key() {
    let dir = tempdir("owner-seat");
    let mut app = room_app(&dir);
    create_owned_room(&mut app);
    let key = app
        .world()
        .resource::<crate::identity::Identity>()
        .key
        .room_key("zyxwvutsrqponmlkjihgfe")
        .public();
    let calls = drain::<ApiCall>(&mut app);
    assert!(
        calls.contains(&ApiCall::ReserveSeat {
            room: "zyxwvutsrqponmlkjihgfe".into(),
            owner_key: "secret".into(),
            key,
        }),
        "{calls:?}"
    );
    let dir = tempdir("guest-seat");
    let mut guest = room_app(&dir);
    join_link(&mut guest);
    guest.update();
    assert!(
        !drain::<ApiCall>(&mut guest)
            .iter()
            .any(|c| matches!(c, ApiCall::ReserveSeat { .. }))
    );
}

/// A join whose proof the server had already taken (412) is tried again with a fresh socket,
/// and so a fresh proof, as the notice says.
#[test]
fn a_reused_proof_is_retried_with_a_new_one() {
    let dir = tempdir("proof-reused");
    let mut app = room_app(&dir);
    join_link(&mut app);
    app.world_mut()
        .write_message(NetEvent::SignalingClosed(SignalingEnd::ProofReused));
    app.update();
    assert!(matches!(
        app.world().resource::<Presence>().link,
        Link::Reconnecting { attempt: 1, .. }
    ));
    assert!(latest_notice(&app).contains("joining again"));
    assert_eq!(rebuilds_within(&mut app, 2_000), 1);
}

/// A room joined through its link, on signaling, with nobody else there yet.
fn in_room_on_signaling(dir: &std::path::Path) -> App {
    let mut app = room_app(dir);
    join_link(&mut app);
    app.world_mut()
        .write_message(NetEvent::Connected(PeerId(uuid::Uuid::new_v4())));
    app.update();
    app
}

/// The room's status line after a handshake ended with `failure`.
fn status_after(app: &mut App, failure: matchbox_socket::HandshakeFailure) -> String {
    app.world_mut().write_message(NetEvent::PeerFailed(failure));
    app.update();
    app.world().resource::<Presence>().status()
}

/// A connection attempt that times out says why in words that depend on whether a relay was
/// there to try, and the status line keeps saying it until someone connects; once connected,
/// the status says how (direct or relayed).
#[test]
fn an_unreachable_peer_is_explained_and_a_connection_says_its_path() {
    use matchbox_socket::{CandidateType, HandshakeFailure};
    let dir = tempdir("unreachable");
    let mut app = in_room_on_signaling(&dir);
    let status = status_after(&mut app, HandshakeFailure::TimedOut);
    assert!(
        status.contains("no relay is configured") && status.contains("15 seconds"),
        "{status}"
    );
    app.insert_resource(crate::net::IceServers {
        servers: vec![crate::config::IceServer {
            urls: vec!["turn:relay.example:3478".into()],
            username: Some("u".into()),
            credential: Some("c".into()),
        }],
        source: crate::net::IceSource::Server,
        refresh_at_ms: None,
    });
    let status = status_after(&mut app, HandshakeFailure::TimedOut);
    assert!(status.contains("not even through the relay"), "{status}");
    peer_arrives(&mut app, "Bob");
    app.update();
    let relayed = matchbox_socket::CandidatePair::new(CandidateType::Host, CandidateType::Relay);
    app.world_mut().write_message(NetEvent::Path(relayed));
    app.update();
    let presence = app.world().resource::<Presence>();
    let status = presence.status();
    assert!(status.contains("Bob is here"), "{status}");
    assert_eq!(
        presence.connection_badge().as_deref(),
        Some("Through a relay server")
    );
}

/// A handshake that ran out of time says how far it got: a path that worked but was too slow
/// to open is not "your networks block a direct connection", nor is a peer whose app never
/// answered.
#[test]
fn a_slow_path_and_a_silent_peer_are_not_called_blocked_networks() {
    use matchbox_socket::HandshakeFailure;
    let dir = tempdir("not-opened");
    let mut app = in_room_on_signaling(&dir);
    let status = status_after(&mut app, HandshakeFailure::NotOpened);
    assert!(
        status.contains("path to your peer was found")
            && status.contains("30 seconds")
            && !status.contains("block"),
        "{status}"
    );
    let status = status_after(&mut app, HandshakeFailure::Unanswered);
    assert!(
        status.contains("did not answer") && !status.contains("block"),
        "{status}"
    );
    // The first such failure: the net layer is joining again, and the room says so.
    app.world_mut()
        .write_message(NetEvent::Retrying(HandshakeFailure::NotOpened));
    app.update();
    let status = app.world().resource::<Presence>().status();
    assert!(
        status.contains("path to your peer was found") && status.contains("try once more"),
        "{status}"
    );
    assert!(
        !status.contains("rejoin"),
        "nothing for the person to do yet: {status}"
    );
}

#[test]
fn an_interrupted_link_is_said_and_a_connection_lost_in_silence_is_not_a_leave() {
    use duet_shared::liveness::Health;
    let dir = duet_tests::temp_dir("room-interrupted").unwrap();
    let mut app = room_app(&dir);
    join_link(&mut app);
    app.world_mut()
        .write_message(NetEvent::Connected(PeerId(uuid::Uuid::new_v4())));
    let peer = peer_arrives(&mut app, "Bob");
    app.world_mut()
        .write_message(NetEvent::Link(Health::Live { rtt_ms: Some(42) }));
    app.update();
    let presence = app.world().resource::<Presence>();
    assert!(
        presence.status().starts_with("Bob is here"),
        "{}",
        presence.status()
    );
    assert_eq!(presence.connection_badge().as_deref(), Some("42 ms"));
    app.world_mut()
        .write_message(NetEvent::Link(Health::Quiet { silent_s: 4 }));
    app.update();
    let presence = app.world().resource::<Presence>().clone();
    assert!(presence.interrupted());
    assert_eq!(presence.status(), interrupted_words("Bob", 4));
    assert_eq!(presence.connection_badge(), None);
    assert!(
        latest_notice(&app).contains("interrupted"),
        "{}",
        latest_notice(&app)
    );
    // The connection ends while silent: lost, not left, and said so.
    app.world_mut().write_message(NetEvent::PeerLeft(peer));
    app.update();
    let presence = app.world().resource::<Presence>().clone();
    assert_eq!(
        presence.seat,
        Seat::Left {
            name: "Bob".into(),
            lost: true
        }
    );
    assert!(
        presence.status().contains("reconnecting"),
        "{}",
        presence.status()
    );
    assert!(!presence.interrupted());
    // Back, live: the status is about Bob again.
    peer_arrives(&mut app, "Bob");
    app.world_mut()
        .write_message(NetEvent::Link(Health::Live { rtt_ms: None }));
    app.update();
    let status = app.world().resource::<Presence>().status();
    assert!(status.starts_with("Bob is here"), "{status}");
}

/// A window that has (or lacks) the focus, as the desktop's reports it.
fn window_focused(app: &mut App, focused: bool) -> Entity {
    use bevy::window::PrimaryWindow;
    let existing = app
        .world_mut()
        .query_filtered::<Entity, With<PrimaryWindow>>()
        .iter(app.world())
        .next();
    let entity = existing.unwrap_or_else(|| {
        app.world_mut()
            .spawn((Window::default(), PrimaryWindow))
            .id()
    });
    app.world_mut().get_mut::<Window>(entity).unwrap().focused = focused;
    entity
}

fn title(app: &App, window: Entity) -> String {
    app.world().get::<Window>(window).unwrap().title.clone()
}

fn received_chat(author: &str) -> crate::chat::ChatChanged {
    crate::chat::ChatChanged(ChatEntry {
        id: uuid::Uuid::new_v4(),
        author: author.into(),
        mine: false,
        sent_ms: 1,
        text: "psst".into(),
        delivery: Delivery::Received,
        author_key: None,
    })
}

#[test]
fn out_of_sight_what_the_peer_does_counts_in_the_title_until_the_person_looks() {
    let dir = tempdir("alerts");
    let mut app = room_app(&dir);
    let window = window_focused(&mut app, false);
    app.update();
    assert_eq!(title(&app, window), "Duet");
    peer_arrives(&mut app, "Bob");
    let mut alerts = drain::<Alerted>(&mut app);
    app.world_mut().write_message(received_chat("Bob"));
    app.world_mut().write_message(TransferEvent::Asked {
        id: TransferId(9),
        name: "big.iso".into(),
        size: 1 << 30,
    });
    app.update();
    alerts.extend(drain::<Alerted>(&mut app));
    // My own message and its receipt are not news.
    let mut mine = received_chat("Me");
    mine.0.mine = true;
    mine.0.delivery = Delivery::Delivered;
    app.world_mut().write_message(mine);
    app.update();
    alerts.extend(drain::<Alerted>(&mut app));
    let told: Vec<_> = alerts
        .iter()
        .map(|a| (a.alert.kind(), a.unseen, a.told, a.sound))
        .collect();
    // All count; within a second of the first, the others are not told or chimed again.
    assert_eq!(
        told,
        [
            ("joined", 1, true, true),
            ("message", 2, false, false),
            ("file", 3, false, false)
        ]
    );
    assert_eq!(alerts[2].alert.body(), "Bob is sending you big.iso.");
    assert!(
        !alerts[1].alert.body().contains("psst"),
        "a notification never shows the text"
    );
    assert_eq!(title(&app, window), "(3) Duet");
    // A second later (four frames of 250 ms), the next is told again.
    for _ in 0..4 {
        app.update();
    }
    app.world_mut().write_message(received_chat("Bob"));
    app.update();
    let later = drain::<Alerted>(&mut app);
    assert_eq!(
        later
            .iter()
            .map(|a| (a.unseen, a.told, a.sound))
            .collect::<Vec<_>>(),
        [(4, true, true)]
    );
    assert_eq!(title(&app, window), "(4) Duet");
    // The person looks: the count goes, and while they look nothing counts.
    window_focused(&mut app, true);
    app.update();
    assert_eq!(title(&app, window), "Duet");
    app.world_mut().write_message(received_chat("Bob"));
    app.update();
    assert!(drain::<Alerted>(&mut app).is_empty());
    assert_eq!(app.world().resource::<Unseen>().count, 0);
}

#[test]
fn the_chime_can_be_turned_off_and_the_choice_is_kept_on_the_device() {
    let dir = tempdir("alert-settings");
    let mut app = room_app(&dir);
    assert!(app.world().resource::<AlertSettings>().sound);
    app.world_mut()
        .write_message(AttentionAction::SetSound(false));
    app.update();
    assert!(!app.world().resource::<AlertSettings>().sound);
    window_focused(&mut app, false);
    app.world_mut().write_message(received_chat("Bob"));
    app.update();
    let alerts = drain::<Alerted>(&mut app);
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].told && !alerts[0].sound, "turned off");
    // A restart reads it back.
    drop(app);
    let app = room_app(&dir);
    assert!(!app.world().resource::<AlertSettings>().sound);
}

#[test]
fn an_app_out_of_step_with_the_servers_api_says_so() {
    let dir = tempdir("api-version");
    let mut app = room_app(&dir);
    let ours = duet_shared::api::API_VERSION;
    let before = app.world().resource::<Notices>().posted;
    app.world_mut()
        .write_message(ApiReply::Version(duet_shared::api::ServerVersion {
            api: ours,
        }));
    app.update();
    assert_eq!(
        app.world().resource::<Notices>().posted,
        before,
        "in step: nothing"
    );
    app.world_mut()
        .write_message(ApiReply::Version(duet_shared::api::ServerVersion {
            api: ours + 1,
        }));
    app.update();
    let notice = latest_notice(&app);
    assert!(notice.contains("older than the server's"), "{notice}");
    assert!(notice.contains("reload the page"), "{notice}");
    // Not reachable: not this check's to say.
    app.world_mut().write_message(ApiReply::Failed {
        call: ApiCall::Version,
        message: "Cannot reach the Duet server".into(),
    });
    app.update();
    assert_eq!(app.world().resource::<Notices>().posted, before + 1);
}
