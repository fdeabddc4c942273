//! Duet's own signaling behaviour under real `wrangler dev`: the HTTP API, capacity, takeover,
//! moderation, and every kind of bad input. Each bad input must end only the offender's socket,
//! with a clear close code and reason, and leave the other peer and other rooms working.

use std::time::Duration;

use duet_shared::api::{CreatedRoom, ErrorCode, RoomMembers, close, is_valid_room_id};
use duet_tests::{Wrangler, WranglerOptions, Ws, relays, signal_to};
use matchbox_protocol::{JsonPeerEvent, PeerId};
use serde_json::json;
use uuid::Uuid;

const QUIET: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(10);

/// A room with two joined peers, A first.
struct Pair {
    room: CreatedRoom,
    identity_a: Uuid,
    identity_b: Uuid,
    a: Ws,
    id_a: PeerId,
    b: Ws,
    id_b: PeerId,
}

async fn pair(wrangler: &Wrangler) -> Pair {
    let room = wrangler.api().create_room().await.unwrap();
    let (identity_a, identity_b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut a = Ws::join(&wrangler.signal_url(&room.room, identity_a)).await;
    let id_a = a.id().await;
    let mut b = Ws::join(&wrangler.signal_url(&room.room, identity_b)).await;
    let id_b = b.id().await;
    assert_eq!(a.next_event().await.unwrap(), JsonPeerEvent::NewPeer(id_b));
    Pair {
        room,
        identity_a,
        identity_b,
        a,
        id_a,
        b,
        id_b,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_room_mints_unguessable_ids_and_owner_keys() {
    let api = Wrangler::shared().api();
    let one = api.create_room().await.unwrap();
    let two = api.create_room().await.unwrap();
    assert!(is_valid_room_id(&one.room), "{}", one.room);
    assert_ne!(one.room, two.room);
    assert_ne!(one.owner_key, two.owner_key);
    assert!(one.owner_key.len() >= 43, "owner key carries 256 bits");
    let info = api.room(&one.room).await.unwrap();
    assert_eq!(
        (info.room.as_str(), info.peers, info.capacity),
        (one.room.as_str(), 0, 2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_rooms_are_404_with_a_sentence() {
    let wrangler = Wrangler::shared();
    let never_created = "AAAAAAAAAAAAAAAAAAAAAA";
    let reply = wrangler.api().room_reply(never_created).await.unwrap();
    assert_eq!(reply.status, 404);
    let error = reply.error();
    assert_eq!(error.error, ErrorCode::UnknownRoom);
    assert!(
        error.message.contains("does not exist"),
        "{}",
        error.message
    );

    let refused = Ws::connect(&wrangler.signal_url(never_created, Uuid::new_v4()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 404);
    assert!(refused.body.contains("unknown_room"), "{}", refused.body);

    // Not even the shape of a room id.
    let refused = Ws::connect(&wrangler.signal_url("../../etc", Uuid::new_v4()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_must_be_a_uuid() {
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap().room;
    let base = wrangler.base.replace("http://", "ws://");
    for url in [
        format!("{base}/signal/{room}"),
        format!("{base}/signal/{room}?identity="),
        format!("{base}/signal/{room}?identity=not-a-uuid"),
    ] {
        let refused = Ws::connect(&url).await.err().expect("refused");
        assert_eq!(refused.status, 400, "{url}");
        assert!(
            refused.body.contains("invalid_identity"),
            "{}",
            refused.body
        );
        assert!(refused.body.contains("UUID"), "{}", refused.body);
    }
    assert_eq!(wrangler.api().room(&room).await.unwrap().peers, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_person_is_refused_and_the_two_are_undisturbed() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    assert_eq!(wrangler.api().room(&p.room.room).await.unwrap().peers, 2);
    let refused = Ws::connect(&wrangler.signal_url(&p.room.room, Uuid::new_v4()))
        .await
        .err()
        .expect("third peer refused");
    assert_eq!(refused.status, 409);
    let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["error"], "room_full");
    assert!(body["message"].as_str().unwrap().contains("two people"));
    // A plain GET shows the same refusal (browsers cannot read a failed upgrade's body).
    let reply = wrangler
        .api()
        .get(&format!(
            "/signal/{}?identity={}",
            p.room.room,
            Uuid::new_v4()
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, 409);
    p.a.expect_silence(QUIET).await;
    p.b.expect_silence(Duration::from_millis(10)).await;
    relays(&mut p.a, p.id_a, &mut p.b, p.id_b).await;
    relays(&mut p.b, p.id_b, &mut p.a, p.id_a).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_frees_the_seat() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    p.b.close().await;
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(p.id_b)
    );
    assert_eq!(wrangler.api().room(&p.room.room).await.unwrap().peers, 1);
    let mut c = Ws::join(&wrangler.signal_url(&p.room.room, Uuid::new_v4())).await;
    let id_c = c.id().await;
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(id_c)
    );
    relays(&mut c, id_c, &mut p.a, p.id_a).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnecting_identity_replaces_its_stale_socket() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    // A reloads: same identity, new socket, while the old one is still open.
    let mut a2 = Ws::join(&wrangler.signal_url(&p.room.room, p.identity_a)).await;
    let id_a2 = a2.id().await;
    assert_ne!(id_a2, p.id_a, "a new socket gets a new peer id");
    let closed = p.a.closed(WAIT).await.unwrap();
    assert_eq!(closed.code, close::REPLACED);
    assert!(
        closed.reason.contains("newer connection"),
        "{}",
        closed.reason
    );
    // The other peer sees the old one leave, then the new one arrive, in that order.
    assert_eq!(
        p.b.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(p.id_a)
    );
    assert_eq!(
        p.b.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(id_a2)
    );
    a2.expect_silence(QUIET).await;
    assert_eq!(wrangler.api().room(&p.room.room).await.unwrap().peers, 2);
    relays(&mut p.b, p.id_b, &mut a2, id_a2).await;
    relays(&mut a2, id_a2, &mut p.b, p.id_b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn moderation_needs_the_owner_key() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    let api = wrangler.api();
    for key in ["", "wrong", &p.room.owner_key[1..]] {
        let reply = api
            .moderate(&p.room.room, "kick", key, p.id_b)
            .await
            .unwrap();
        assert_eq!(reply.status, 401, "key {key:?}");
        assert_eq!(reply.error().error, ErrorCode::Unauthorized);
        assert!(reply.error().message.contains("owner key"));
        let reply = api
            .moderate(&p.room.room, "ban", key, p.id_b)
            .await
            .unwrap();
        assert_eq!(reply.status, 401);
        let reply = api.clear_bans(&p.room.room, key).await.unwrap();
        assert_eq!(reply.status, 401);
    }
    // Another room's key does not work here.
    let other = api.create_room().await.unwrap();
    let reply = api
        .moderate(&p.room.room, "kick", &other.owner_key, p.id_b)
        .await
        .unwrap();
    assert_eq!(reply.status, 401);
    // Unknown peer and bad body.
    let reply = api
        .moderate(
            &p.room.room,
            "kick",
            &p.room.owner_key,
            PeerId(Uuid::new_v4()),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error().error, ErrorCode::UnknownPeer);
    relays(&mut p.a, p.id_a, &mut p.b, p.id_b).await;
}

/// A stranger with the link holds both seats (two sockets): the owner, outside, lists who
/// holds them with the owner key (nobody else can), frees one, and gets in; the other seat
/// holder is undisturbed.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_locked_out_by_a_squatter_sees_the_seats_and_frees_one() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    let api = wrangler.api();
    let owner = Uuid::new_v4();
    let refused = Ws::connect(&wrangler.signal_url(&p.room.room, owner)).await;
    assert!(refused.is_err(), "the room is full");
    for key in [None, Some("wrong"), Some(&p.room.owner_key[1..])] {
        let reply = api.members(&p.room.room, key).await.unwrap();
        assert_eq!(reply.status, 401, "key {key:?}");
        assert_eq!(reply.error().error, ErrorCode::Unauthorized);
    }
    let reply = api
        .members(&p.room.room, Some(&p.room.owner_key))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let seats: RoomMembers = serde_json::from_str(&reply.body).unwrap();
    let peers: Vec<PeerId> = seats.members.iter().map(|m| m.peer).collect();
    assert_eq!(peers, [p.id_a, p.id_b], "both seats, oldest first");
    assert!(seats.members[0].joined_ms > 0);
    assert!(
        !reply.body.contains(&p.identity_a.to_string()),
        "no identities"
    );
    let reply = api
        .moderate(&p.room.room, "kick", &p.room.owner_key, p.id_b)
        .await
        .unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(p.b.closed(WAIT).await.unwrap().code, close::KICKED);
    let mut me = Ws::join(&wrangler.signal_url(&p.room.room, owner)).await;
    let mine = me.id().await;
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(p.id_b)
    );
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(mine)
    );
    relays(&mut p.a, p.id_a, &mut me, mine).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kick_closes_the_socket_and_the_peer_may_return() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    let reply = wrangler
        .api()
        .moderate(&p.room.room, "kick", &p.room.owner_key, p.id_b)
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    let closed = p.b.closed(WAIT).await.unwrap();
    assert_eq!(closed.code, close::KICKED);
    assert!(closed.reason.contains("removed"), "{}", closed.reason);
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(p.id_b)
    );
    p.a.expect_silence(QUIET).await;
    // A kick is not a ban.
    let mut b2 = Ws::join(&wrangler.signal_url(&p.room.room, p.identity_b)).await;
    let id_b2 = b2.id().await;
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(id_b2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ban_covers_identity_and_network_until_cleared() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    let api = wrangler.api();
    let reply = api
        .moderate(&p.room.room, "ban", &p.room.owner_key, p.id_b)
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    let closed = p.b.closed(WAIT).await.unwrap();
    assert_eq!(closed.code, close::BANNED);
    assert!(closed.reason.contains("banned"), "{}", closed.reason);
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(p.id_b)
    );

    // The banned identity is refused...
    let refused = Ws::connect(&wrangler.signal_url(&p.room.room, p.identity_b))
        .await
        .err()
        .expect("banned identity refused");
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("\"banned\""), "{}", refused.body);
    // ...and so is a fresh identity from the banned address (all of these come from 127.0.0.1).
    let refused = Ws::connect(&wrangler.signal_url(&p.room.room, Uuid::new_v4()))
        .await
        .err()
        .expect("fresh identity from banned address refused");
    assert_eq!(refused.status, 403);
    // The person still present is not the banned one: their reload is let in.
    let mut a2 = Ws::join(&wrangler.signal_url(&p.room.room, p.identity_a)).await;
    let id_a2 = a2.id().await;
    assert_eq!(p.a.closed(WAIT).await.unwrap().code, close::REPLACED);
    // Bans are per room.
    let mut elsewhere = pair(wrangler).await;
    relays(
        &mut elsewhere.a,
        elsewhere.id_a,
        &mut elsewhere.b,
        elsewhere.id_b,
    )
    .await;

    assert_eq!(
        api.clear_bans(&p.room.room, &p.room.owner_key)
            .await
            .unwrap()
            .status,
        204
    );
    let mut b2 = Ws::join(&wrangler.signal_url(&p.room.room, p.identity_b)).await;
    let id_b2 = b2.id().await;
    assert_eq!(
        a2.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(id_b2)
    );
    relays(&mut b2, id_b2, &mut a2, id_a2).await;
}

/// Sends something bad from A; A must be closed with `code`, B must only see A leave, and both B
/// and an unrelated room must keep working.
async fn offender_is_closed(bad: impl AsyncFnOnce(&mut Ws), code: u16, reason_has: &str) {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    let mut bystanders = pair(wrangler).await;
    bad(&mut p.a).await;
    let closed = p.a.closed(WAIT).await.unwrap();
    assert_eq!(closed.code, code, "{closed:?}");
    assert!(
        closed.reason.contains(reason_has),
        "reason {:?} should mention {reason_has:?}",
        closed.reason
    );
    assert_eq!(
        p.b.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(p.id_a)
    );
    p.b.expect_silence(QUIET).await;
    // B's room still works: someone new joins and talks to B.
    let mut c = Ws::join(&wrangler.signal_url(&p.room.room, Uuid::new_v4())).await;
    let id_c = c.id().await;
    assert_eq!(
        p.b.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(id_c)
    );
    relays(&mut c, id_c, &mut p.b, p.id_b).await;
    relays(&mut p.b, p.id_b, &mut c, id_c).await;
    // Other rooms never noticed.
    relays(
        &mut bystanders.a,
        bystanders.id_a,
        &mut bystanders.b,
        bystanders.id_b,
    )
    .await;
    bystanders.a.expect_silence(Duration::from_millis(10)).await;
    let _ = p.identity_b;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_json_text_closes_with_1007() {
    offender_is_closed(
        async |ws: &mut Ws| ws.send_text("hello, is this JSON?").await.unwrap(),
        1007,
        "not a matchbox request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_variant_closes_with_1007() {
    offender_is_closed(
        async |ws: &mut Ws| ws.send_text(r#"{"Shout":{"data":"hi"}}"#).await.unwrap(),
        1007,
        "unknown variant",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_peer_uuid_closes_with_1007() {
    offender_is_closed(
        async |ws: &mut Ws| {
            ws.send_text(r#"{"Signal":{"receiver":"12345","data":"x"}}"#)
                .await
                .unwrap()
        },
        1007,
        "not a matchbox request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_that_are_not_offers_answers_or_candidates_close_with_1007() {
    // Each would reach the receiving client's WebRTC stack as something it never asked for.
    for data in [
        json!("x"),
        json!({"Answer": 5}),
        json!({"Offer": "v=0", "Answer": "v=0"}),
        json!({"Offer": "o".repeat(duet_shared::api::MAX_SDP_BYTES + 1)}),
        json!({"IceCandidate": "c".repeat(duet_shared::api::MAX_CANDIDATE_BYTES + 1)}),
    ] {
        offender_is_closed(
            async |ws: &mut Ws| {
                ws.send_text(signal_to(PeerId(Uuid::new_v4()), data.clone()))
                    .await
                    .unwrap()
            },
            1007,
            "bad signal",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn join_churn_is_refused_with_429_and_the_member_stays() {
    use duet_shared::api::CLIENT_JOIN_BURST;
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap();
    let mut member = Ws::join(&wrangler.signal_url(&room.room, Uuid::new_v4())).await;
    let member_id = member.id().await;
    // The member's own join took one token from this address's bucket.
    let mut admitted = 1;
    let mut refused = None;
    for _ in 0..(CLIENT_JOIN_BURST as usize * 2) {
        match Ws::connect(&wrangler.signal_url(&room.room, Uuid::new_v4())).await {
            Ok(mut stranger) => {
                admitted += 1;
                let id = stranger.id().await;
                assert_eq!(
                    member.next_event().await.unwrap(),
                    JsonPeerEvent::NewPeer(id)
                );
                stranger.close().await;
                assert_eq!(
                    member.next_event().await.unwrap(),
                    JsonPeerEvent::PeerLeft(id)
                );
            }
            Err(r) => {
                refused = Some(r);
                break;
            }
        }
    }
    let refused = refused.expect("a loop of joins is cut off");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.body.contains("rate_limited"), "{}", refused.body);
    assert!(refused.body.contains("Wait a minute"), "{}", refused.body);
    assert_eq!(admitted, CLIENT_JOIN_BURST as usize);
    // The member was never disturbed and is still in the room.
    member.expect_silence(QUIET).await;
    assert_eq!(wrangler.api().room(&room.room).await.unwrap().peers, 1);
    member.send_text(r#""KeepAlive""#).await.unwrap();
    member.expect_silence(QUIET).await;
    let _ = member_id;
    // Other rooms are not limited by this room's churn.
    let mut other = pair(wrangler).await;
    relays(&mut other.a, other.id_a, &mut other.b, other.id_b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn moderation_checks_the_key_first_and_refuses_bodies_over_1_kib() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    let api = wrangler.api();
    let kick = format!("/api/rooms/{}/kick", p.room.room);
    // Without the key, even a garbage body gets 401: it was never parsed.
    let reply = api
        .post_raw(&kick, Some("wrong"), b"not json at all".to_vec())
        .await
        .unwrap();
    assert_eq!(reply.status, 401, "{reply:?}");
    // Over 1 KiB: 413, with or without the key, before anything reads it.
    for key in [None, Some(p.room.owner_key.as_str())] {
        let reply = api.post_raw(&kick, key, vec![b' '; 2048]).await.unwrap();
        assert_eq!(reply.status, 413, "{reply:?}");
        assert_eq!(reply.error().error, ErrorCode::TooLarge);
        let ban = format!("/api/rooms/{}/ban", p.room.room);
        let huge = vec![b'x'; 4 << 20];
        let reply = api.post_raw(&ban, key, huge).await.unwrap();
        assert_eq!(reply.status, 413, "{reply:?}");
    }
    // With the key, a padded body within 1 KiB still works.
    let body = format!("{{\"peer\": \"{}\"{}}}", p.id_b.0, " ".repeat(900));
    let reply = api
        .post_raw(&kick, Some(&p.room.owner_key), body.into_bytes())
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    let closed = p.b.closed(WAIT).await.unwrap();
    assert_eq!(closed.code, close::KICKED);
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(p.id_b)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_frames_close_with_1003() {
    offender_is_closed(
        async |ws: &mut Ws| ws.send_binary(vec![0, 1, 2, 255]).await.unwrap(),
        1003,
        "binary",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_frames_close_with_1009() {
    offender_is_closed(
        async |ws: &mut Ws| {
            let huge = signal_to(PeerId(Uuid::new_v4()), json!("x".repeat(70_000)));
            ws.send_text(huge).await.unwrap()
        },
        1009,
        "65536",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn floods_close_with_1008() {
    offender_is_closed(
        async |ws: &mut Ws| {
            for _ in 0..1_000 {
                if ws.send_text(r#""KeepAlive""#).await.is_err() {
                    break;
                }
            }
        },
        1008,
        "too many messages",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_to_self_or_absent_peers_are_dropped_quietly() {
    let wrangler = Wrangler::shared();
    let mut p = pair(wrangler).await;
    p.a.send_text(signal_to(p.id_a, json!({"Answer": "to myself"})))
        .await
        .unwrap();
    p.a.send_text(signal_to(
        PeerId(Uuid::new_v4()),
        json!({"Answer": "to nobody"}),
    ))
    .await
    .unwrap();
    p.a.expect_silence(QUIET).await;
    p.b.expect_silence(Duration::from_millis(10)).await;
    // Still connected and routed.
    relays(&mut p.a, p.id_a, &mut p.b, p.id_b).await;
    // A signal to a peer that just left is dropped too (a normal race, not an offence).
    p.b.close().await;
    assert_eq!(
        p.a.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(p.id_b)
    );
    p.a.send_text(signal_to(p.id_b, json!({"Answer": "too late"})))
        .await
        .unwrap();
    p.a.expect_silence(QUIET).await;
    assert_eq!(wrangler.api().room(&p.room.room).await.unwrap().peers, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_duets_own_page_or_app_may_create_rooms() {
    let wrangler = Wrangler::shared();
    let http = reqwest::Client::new();
    let create = |origin: Option<String>| {
        let mut request = http.post(format!("{}/api/rooms", wrangler.base));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    // Another site's page: refused, and no room was made.
    let foreign = create(Some("https://evil.example".into())).await.unwrap();
    assert_eq!(foreign.status().as_u16(), 403);
    let body: duet_shared::api::ApiError = foreign.json().await.unwrap();
    assert_eq!(body.error, ErrorCode::ForeignOrigin);
    // The app's own page, and a client with no Origin (the desktop app): created.
    let own = create(Some(wrangler.base.clone())).await.unwrap();
    assert_eq!(own.status().as_u16(), 201);
    assert_eq!(create(None).await.unwrap().status().as_u16(), 201);
}

/// A script minting rooms from one address is cut off with `429` past its budget (here 3, then
/// one per 8 s; shipped: 20, then one a minute), and gets more as the bucket refills. The refill
/// is slow enough that a busy machine (the first request compiles the worker) cannot refill a
/// token between two steps that expect none.
#[tokio::test(flavor = "multi_thread")]
async fn room_creation_from_one_address_is_rate_limited() {
    let wrangler = Wrangler::start(WranglerOptions {
        vars: vec![
            ("ROOM_CREATION_BURST".into(), "3".into()),
            ("ROOM_CREATION_REFILL_SECS".into(), "8".into()),
        ],
        ..Default::default()
    })
    .unwrap();
    let http = reqwest::Client::new();
    let create = || http.post(format!("{}/api/rooms", wrangler.base)).send();
    for n in 1..=3 {
        assert_eq!(
            create().await.unwrap().status().as_u16(),
            201,
            "creation {n}"
        );
    }
    let refused = create().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let body: duet_shared::api::ApiError = refused.json().await.unwrap();
    assert_eq!(body.error, ErrorCode::RateLimited);
    assert!(body.message.contains("Too many rooms"), "{}", body.message);
    // Joining an existing room is not a creation: still fine.
    tokio::time::sleep(Duration::from_millis(8_300)).await;
    let room: CreatedRoom = create().await.unwrap().json().await.unwrap();
    let mut ws = Ws::join(&wrangler.signal_url(&room.room, Uuid::new_v4())).await;
    ws.id().await;
    assert_eq!(
        create().await.unwrap().status().as_u16(),
        429,
        "one token refilled, one used"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_forbid_framing_inline_script_and_other_hosts() {
    let api = Wrangler::shared().api();
    let room = api.create_room().await.unwrap().room;
    let (_, home) = api.headers("/").await.unwrap();
    let (status, link) = api.headers(&format!("/r/{room}")).await.unwrap();
    assert_eq!(status, 200);
    let csp = |h: &reqwest::header::HeaderMap| {
        h.get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    // The static page and the room link (served by the Worker) say the same.
    assert_eq!(csp(&home), csp(&link), "web/_headers and PAGE_CSP differ");
    let policy = csp(&link);
    for directive in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "worker-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            policy.contains(directive),
            "{directive} missing from {policy}"
        );
    }
    assert!(!policy.contains("unsafe-eval'") || policy.contains("wasm-unsafe-eval"));
    for headers in [&home, &link] {
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    // The app's own script and wasm carry nosniff too; API answers do.
    let (_, script) = api.headers("/start.js").await.unwrap();
    assert_eq!(script["x-content-type-options"], "nosniff");
    let (_, answer) = api.headers(&format!("/api/rooms/{room}")).await.unwrap();
    assert_eq!(answer["x-content-type-options"], "nosniff");
    // The rules file itself is not served.
    let (status, _) = api.headers("/_headers").await.unwrap();
    assert_ne!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_says_its_api_version_and_the_app_can_be_installed() {
    let api = Wrangler::shared().api();
    let reply = api.get("/api/version").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let version: duet_shared::api::ServerVersion = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(version.api, duet_shared::api::API_VERSION);
    // The manifest, its icons and the service worker are served, as the page names them.
    let manifest = api.get("/manifest.webmanifest").await.unwrap();
    assert_eq!(manifest.status, 200);
    let manifest: serde_json::Value = serde_json::from_str(&manifest.body).unwrap();
    assert_eq!(manifest["display"], "standalone");
    for icon in manifest["icons"].as_array().unwrap() {
        let (status, headers) = api.headers(icon["src"].as_str().unwrap()).await.unwrap();
        assert_eq!(status, 200, "{icon}");
        assert_eq!(headers["content-type"], "image/png", "{icon}");
    }
    let (status, headers) = api.headers("/sw.js").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let page = api.get("/").await.unwrap().body;
    assert!(page.contains(r#"rel="manifest" href="/manifest.webmanifest""#));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_say_what_exists() {
    let api = Wrangler::shared().api();
    let reply = api.get("/api/nothing").await.unwrap();
    assert_eq!(reply.status, 404);
    assert!(reply.error().message.contains("/r/{room}"));
    let reply = api.get("/api/rooms").await.unwrap();
    assert_eq!(reply.status, 405);
    assert!(reply.error().message.contains("POST /api/rooms"));
    // Room links and / both serve the app's page: the canvas the wasm client draws into.
    let room = api.create_room().await.unwrap().room;
    let page = api.get(&format!("/r/{room}")).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>Duet"), "{}", page.body);
    assert!(page.body.contains(r#"<canvas id="duet""#), "{}", page.body);
    let home = api.get("/").await.unwrap();
    assert_eq!(home.body, page.body);
}
