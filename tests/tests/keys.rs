//! Keyed joins under real `wrangler dev`: a Duet client proves its room key on every join, so
//! only the holder of that key can replace its seat, a copied join URL never displaces anyone,
//! and a ban names the key. Plain matchbox clients (`?identity=`) keep working beside them but
//! never displace a key holder.

use std::time::Duration;

use duet_shared::api::{CreatedRoom, close};
use duet_shared::trust::{DeviceKey, JOIN_PROOF_SKEW_MS};
use duet_tests::{Wrangler, Ws, now_ms, random_device, relays};
use matchbox_protocol::{JsonPeerEvent, PeerId};
use uuid::Uuid;

const QUIET: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(10);

/// A room Ada and Bob joined with their keys, Ada first.
struct Keyed {
    room: CreatedRoom,
    ada: DeviceKey,
    ada_url: String,
    a: Ws,
    id_a: PeerId,
    b: Ws,
    id_b: PeerId,
}

async fn keyed_pair(wrangler: &Wrangler) -> Keyed {
    let room = wrangler.api().create_room().await.unwrap();
    let (ada, bob) = (random_device(), random_device());
    let ada_url = wrangler.keyed_signal_url(&room.room, &ada, now_ms());
    let mut a = Ws::join(&ada_url).await;
    let id_a = a.id().await;
    let mut b = Ws::join(&wrangler.keyed_signal_url(&room.room, &bob, now_ms())).await;
    let id_b = b.id().await;
    assert_eq!(a.next_event().await.unwrap(), JsonPeerEvent::NewPeer(id_b));
    Keyed {
        room,
        ada,
        ada_url,
        a,
        id_a,
        b,
        id_b,
    }
}

/// Both are still there and talking, and nobody else came or went.
async fn undisturbed(k: &mut Keyed) {
    relays(&mut k.a, k.id_a, &mut k.b, k.id_b).await;
    relays(&mut k.b, k.id_b, &mut k.a, k.id_a).await;
    k.a.expect_silence(QUIET).await;
    k.b.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copied_join_url_never_takes_the_seat() {
    let wrangler = Wrangler::shared();
    let mut k = keyed_pair(wrangler).await;
    // Mallory has Ada's exact URL (key, time and signature): refused while Ada is there...
    let refused = Ws::connect(&k.ada_url).await.err().expect("replay refused");
    assert_eq!(refused.status, 412, "{}", refused.body);
    assert!(
        refused.body.contains("\"proof_reused\""),
        "{}",
        refused.body
    );
    // ...and so is an older proof of Ada's, and a forged one with a newer time.
    let older = wrangler.keyed_signal_url(&k.room.room, &k.ada, now_ms() - 60_000);
    assert_eq!(Ws::connect(&older).await.err().unwrap().status, 412);
    let signed_at = k
        .ada_url
        .split("ts=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let forged = k.ada_url.replace(
        &format!("ts={signed_at}"),
        &format!("ts={}", now_ms() + 1000),
    );
    let refused = Ws::connect(&forged)
        .await
        .err()
        .expect("forged proof refused");
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("\"invalid_proof\""),
        "{}",
        refused.body
    );
    undisturbed(&mut k).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_is_taken_once_even_after_its_holder_left() {
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap();
    let ada = random_device();
    let url = wrangler.keyed_signal_url(&room.room, &ada, now_ms());
    let mut a = Ws::join(&url).await;
    a.id().await;
    a.close().await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(wrangler.api().room(&room.room).await.unwrap().peers, 0);
    let refused = Ws::connect(&url)
        .await
        .err()
        .expect("a used proof is refused");
    assert_eq!(refused.status, 412);
    // Ada herself signs anew and is let in.
    let mut again = Ws::join(&wrangler.keyed_signal_url(&room.room, &ada, now_ms())).await;
    again.id().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_holder_replaces_her_own_seat_with_a_fresh_proof() {
    let wrangler = Wrangler::shared();
    let mut k = keyed_pair(wrangler).await;
    let mut a2 = Ws::join(&wrangler.keyed_signal_url(&k.room.room, &k.ada, now_ms())).await;
    let id_a2 = a2.id().await;
    let closed = k.a.closed(WAIT).await.unwrap();
    assert_eq!(closed.code, close::REPLACED);
    assert_eq!(
        k.b.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(k.id_a)
    );
    assert_eq!(
        k.b.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(id_a2)
    );
    relays(&mut a2, id_a2, &mut k.b, k.id_b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proofs_for_another_room_or_far_from_now_are_refused() {
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap();
    let other = wrangler.api().create_room().await.unwrap();
    let ada = random_device();
    let base = wrangler.signal_url(&room.room, Uuid::nil());
    let base = base.split('?').next().unwrap();
    let proof = ada.room_key(&other.room).sign_join(&other.room, now_ms());
    let refused = Ws::connect(&format!("{base}?{}", proof.query()))
        .await
        .err()
        .expect("a proof for another room");
    assert_eq!(refused.status, 400);
    for ts in [
        now_ms() - JOIN_PROOF_SKEW_MS - 60_000,
        now_ms() + JOIN_PROOF_SKEW_MS + 60_000,
    ] {
        let refused = Ws::connect(&wrangler.keyed_signal_url(&room.room, &ada, ts))
            .await
            .err()
            .expect("a proof far from now");
        assert_eq!(refused.status, 400);
        assert!(refused.body.contains("clock"), "{}", refused.body);
    }
    // A fresh room: each refused attempt counts against the room's join budget.
    let room = wrangler.api().create_room().await.unwrap();
    let base = wrangler.signal_url(&room.room, Uuid::nil());
    let base = base.split('?').next().unwrap();
    for broken in ["key=zz&ts=1&sig=00", "ts=1&sig=00", "key=00"] {
        let refused = Ws::connect(&format!("{base}?{broken}"))
            .await
            .err()
            .expect("a broken proof");
        assert_eq!(refused.status, 400, "{broken}");
    }
    assert_eq!(wrangler.api().room(&room.room).await.unwrap().peers, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_identity_never_displaces_a_key_holder() {
    let wrangler = Wrangler::shared();
    let mut k = keyed_pair(wrangler).await;
    // The UUID the server records for Ada's seat, which a stock client could try to wear.
    let ada_uuid = k.ada.room_key(&k.room.room).public().uuid();
    let refused = Ws::connect(&wrangler.signal_url(&k.room.room, ada_uuid))
        .await
        .err()
        .expect("full");
    assert_eq!(refused.status, 409);
    undisturbed(&mut k).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ban_names_the_key_and_the_present_person_keeps_her_seat() {
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap();
    let (ada, mallory) = (random_device(), random_device());
    let mut a = Ws::join(&wrangler.keyed_signal_url(&room.room, &ada, now_ms())).await;
    let id_a = a.id().await;
    let mut m = Ws::join(&wrangler.keyed_signal_url(&room.room, &mallory, now_ms())).await;
    let id_m = m.id().await;
    assert_eq!(a.next_event().await.unwrap(), JsonPeerEvent::NewPeer(id_m));
    let api = wrangler.api();
    let reply = api
        .moderate(&room.room, "ban", &room.owner_key, id_m)
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(m.closed(WAIT).await.unwrap().code, close::BANNED);
    assert_eq!(a.next_event().await.unwrap(), JsonPeerEvent::PeerLeft(id_m));
    // Mallory's key is refused with a fresh proof...
    let refused = Ws::connect(&wrangler.keyed_signal_url(&room.room, &mallory, now_ms()))
        .await
        .err()
        .expect("banned key");
    assert_eq!(refused.status, 403);
    // ...while Ada, on the same (banned) address, keeps replacing her own seat.
    let mut a2 = Ws::join(&wrangler.keyed_signal_url(&room.room, &ada, now_ms())).await;
    let id_a2 = a2.id().await;
    assert_ne!(id_a2, id_a);
    assert_eq!(a.closed(WAIT).await.unwrap().code, close::REPLACED);
    // Clearing the bans lets the key back.
    assert_eq!(
        api.clear_bans(&room.room, &room.owner_key)
            .await
            .unwrap()
            .status,
        204
    );
    let mut m2 = Ws::join(&wrangler.keyed_signal_url(&room.room, &mallory, now_ms())).await;
    let id_m2 = m2.id().await;
    assert_eq!(
        a2.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(id_m2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_gets_back_into_a_room_squatters_filled() {
    let wrangler = Wrangler::shared();
    let api = wrangler.api();
    let room = api.create_room().await.unwrap();
    let owner = random_device();
    let owner_key = owner.room_key(&room.room).public();
    // Only with the owner key.
    let refused = api
        .reserve_owner_seat(&room.room, "not-the-key", owner_key)
        .await
        .unwrap();
    assert_eq!(refused.status, 401, "{refused:?}");
    let reply = api
        .reserve_owner_seat(&room.room, &room.owner_key, owner_key)
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    // Two squatters take both seats.
    let mut first = Ws::join(&wrangler.signal_url(&room.room, Uuid::new_v4())).await;
    let id_first = first.id().await;
    let mut newest = Ws::join(&wrangler.signal_url(&room.room, Uuid::new_v4())).await;
    newest.id().await;
    let id_newest = match first.next_event().await.unwrap() {
        JsonPeerEvent::NewPeer(id) => id,
        other => panic!("{other:?}"),
    };
    // A stranger is refused; the owner is let in, and the newest squatter makes way.
    let stranger = wrangler.keyed_signal_url(&room.room, &random_device(), now_ms());
    assert_eq!(Ws::connect(&stranger).await.err().unwrap().status, 409);
    let mut back = Ws::join(&wrangler.keyed_signal_url(&room.room, &owner, now_ms())).await;
    let id_owner = back.id().await;
    let closed = newest.closed(WAIT).await.unwrap();
    assert_eq!(closed.code, close::SEAT_RESERVED);
    assert!(closed.reason.contains("owner"), "{}", closed.reason);
    assert_eq!(
        first.next_event().await.unwrap(),
        JsonPeerEvent::PeerLeft(id_newest)
    );
    assert_eq!(
        first.next_event().await.unwrap(),
        JsonPeerEvent::NewPeer(id_owner)
    );
    relays(&mut back, id_owner, &mut first, id_first).await;
}
