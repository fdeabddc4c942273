//! Identity under attack, on the real stack (headless clients over webrtc-rs, `wrangler dev`, in
//! an `lo`-only namespace): a relay in the middle is caught on both sides and nothing passes it;
//! a stranger who saw everything Ada's hello and links reveal cannot take her seat.

use std::path::Path;
use std::time::Duration;

use duet_shared::peer::Control;
use duet_shared::trust::{DeviceKey, PublicKey};
use duet_tests::automation::Delivery;
use duet_tests::mitm::Mitm;
use duet_tests::{Event, HeadlessClient, Wrangler, Ws, assert_loopback_only, on, temp_dir};

fn start(room_link: &str, name: &'static str) -> HeadlessClient {
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let dir = temp_dir(&format!("trust-{name}")).unwrap();
    HeadlessClient::start(binary, room_link, &dir, name).expect("start duet-client")
}

/// Ada and Bob each open the same link, but the server in front gives each a connection to a
/// relay: both notice, nobody is shown as the other, and no chat passes the relay.
#[tokio::test(flavor = "multi_thread")]
async fn a_relay_in_the_middle_is_caught_on_both_sides_and_nothing_passes() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let api = wrangler.api();
    let link_room = api.create_room().await.unwrap().room;
    let rooms = [
        api.create_room().await.unwrap().room,
        api.create_room().await.unwrap().room,
    ];
    let mitm = Mitm::start(&wrangler.base, rooms).await;
    let link = format!("{}/r/{link_room}", mitm.base);
    let mut ada = start(&link, "Ada");
    let mut bob = start(&link, "Bob");

    // Each side's connection is real, and to someone else than the other side.
    let fingerprints = on!(Event::Negotiated { local_fingerprint, remote_fingerprint }
        => (local_fingerprint.clone(), remote_fingerprint.clone()));
    let (ada_local, ada_remote) = ada.expect("negotiated", fingerprints);
    let (bob_local, bob_remote) = bob.expect("negotiated", fingerprints);
    assert_ne!(ada_remote, bob_local, "Ada is not connected to Bob");
    assert_ne!(bob_remote, ada_local, "Bob is not connected to Ada");

    for client in [&mut ada, &mut bob] {
        let caught = client.expect("the hello to fail", |e| match e {
            Event::HelloFailed { reason, .. } => Some(Ok(reason.clone())),
            Event::PeerHello { name, .. } => Some(Err(name.clone())),
            _ => None,
        });
        assert_eq!(caught, Ok("Intercepted".to_owned()));
    }
    // What Ada writes now reaches nobody, and says so.
    ada.command("say are you really Bob?").unwrap();
    let state = ada.expect(
        "chat",
        on!(Event::Chat(x) if x.text == "are you really Bob?" => x.state),
    );
    assert_eq!(state, Delivery::NotDelivered);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let relayed = mitm.relayed();
    assert!(
        relayed.iter().any(|m| matches!(m, Control::Proof { .. })),
        "the relay passed the proofs on: {relayed:?}"
    );
    assert!(
        !relayed
            .iter()
            .any(|m| matches!(m, Control::Chat { .. } | Control::Offer(_))),
        "no chat or file passed the relay: {relayed:?}"
    );
}

/// Mallory has seen Ada's hello (her key) and knows the room: wearing Ada's identity as a plain
/// client, or Ada's key with a signature of her own, she is refused; Ada and Bob keep chatting.
#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_with_adas_hello_cannot_take_her_seat() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap().room;
    let link = format!("{}/r/{room}", wrangler.base);
    let mut ada = start(&link, "Ada");
    let mut bob = start(&link, "Bob");
    let (ada_id, ada_key) = bob.expect(
        "Ada's hello",
        on!(Event::PeerHello { identity, key, .. } => (*identity, key.clone())),
    );
    ada.expect("Bob's hello", on!(Event::PeerHello { .. }));
    let ada_key = PublicKey::from_hex(&ada_key).unwrap();

    // Ada's identity as a plain matchbox client: the room is full.
    let refused = Ws::connect(&wrangler.signal_url(&room, ada_id))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 409);
    // Ada's key with Mallory's signature: not a proof.
    let mallory = DeviceKey::from_seed([66; 32]);
    let mut forged = mallory
        .room_key(&room)
        .sign_join(&room, duet_tests::now_ms());
    forged.key = ada_key;
    let base = wrangler.signal_url(&room, ada_id);
    let base = base.split('?').next().unwrap();
    let refused = Ws::connect(&format!("{base}?{}", forged.query()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 400);
    // Mallory's own key: the room is full.
    let own = mallory
        .room_key(&room)
        .sign_join(&room, duet_tests::now_ms());
    let refused = Ws::connect(&format!("{base}?{}", own.query()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 409);

    // Ada and Bob never noticed.
    ada.command("say still here").unwrap();
    let got = bob.expect("chat", on!(Event::Chat(x) if !x.mine => x.text.clone()));
    assert_eq!(got, "still here");
    ada.expect(
        "delivered",
        on!(Event::Chat(x) if x.text == "still here" && x.state == Delivery::Delivered),
    );
}

/// What this device remembers of people, across restarts: a new key under a known name is
/// flagged, verifying sticks, and once verified, someone else wearing that name is refused.
#[test]
fn people_are_remembered_verified_and_told_apart_from_namesakes() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let ada_dir = temp_dir("people-ada").unwrap();
    let (dan_dir, dan2_dir) = (
        temp_dir("people-dan").unwrap(),
        temp_dir("people-dan2").unwrap(),
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let start = |dir: &Path, name: &str| {
        HeadlessClient::start(binary, &link, dir, name).expect("start duet-client")
    };
    let standing = on!(Event::PeerStanding { standing, verified, .. }
        => (standing.clone(), *verified));

    let mut ada = start(&ada_dir, "Ada");
    let dan = start(&dan_dir, "Dan");
    assert_eq!(
        ada.expect("Dan's standing", standing),
        ("new".into(), false)
    );
    dan.kill9();
    ada.expect("Dan left", on!(Event::PeerLeft { .. }));

    // Another device, also called Dan: not the Dan met before.
    let dan2 = start(&dan2_dir, "Dan");
    assert_eq!(
        ada.expect("the namesake's standing", standing),
        ("not_the_one_met".into(), false)
    );
    // Ada compares the code with this Dan and says so.
    ada.command("verify").unwrap();
    ada.expect("verified", on!(Event::PeerVerified { .. }));
    dan2.kill9();
    ada.expect("Dan left", on!(Event::PeerLeft { .. }));

    // Ada restarts; the second Dan comes back: known, and still verified.
    drop(ada);
    let mut ada = start(&ada_dir, "Ada");
    let dan2 = start(&dan2_dir, "Dan");
    let (word, verified) = ada.expect("Dan's standing", standing);
    assert_eq!((word.as_str(), verified), ("known", true));
    ada.command("contacts").unwrap();
    let contacts = ada.expect(
        "contacts",
        on!(Event::Contacts { contacts } => contacts.clone()),
    );
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert!(
        contacts[0].verified && !contacts[1].verified,
        "{contacts:?}"
    );
    dan2.kill9();
    ada.expect("Dan left", on!(Event::PeerLeft { .. }));

    // A third device calling itself Dan: someone wearing the name of the verified Dan with a
    // key never met is refused, and Ada's side leaves the room.
    let _dan3 = start(&temp_dir("people-dan3").unwrap(), "Dan");
    let name = ada.expect(
        "the refusal",
        on!(Event::ImpostorRefused { name } => name.clone()),
    );
    assert_eq!(name, "Dan");
}

/// Mallory in the free seat, as a Duet peer: claiming Ada's key with her own signature gets
/// her refused; proving her own key and then switching to another mid-session too.
#[tokio::test(flavor = "multi_thread")]
async fn an_impostor_and_a_change_of_key_are_refused_by_the_peer() {
    use duet_shared::handshake::Handshake;
    use duet_tests::evil::Evil;
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let ada_key = DeviceKey::from_seed([1; 32]).public();

    // 1. Ada's key, Mallory's signature.
    let room = wrangler.api().create_room().await.unwrap().room;
    let mut bob = start(&format!("{}/r/{room}", wrangler.base), "Bob");
    let mut evil = Evil::join(&wrangler.signal_url(&room, uuid::Uuid::new_v4())).await;
    let mallory = DeviceKey::from_seed([66; 32]);
    let descriptions = evil.socket.session_descriptions(evil.peer).unwrap().clone();
    let (mut handshake, greet) = Handshake::start(
        &room,
        &descriptions.local,
        &descriptions.remote,
        [3; 16],
        mallory.public(),
    )
    .unwrap();
    evil.control(&Control::Hello {
        version: duet_shared::peer::PROTOCOL_VERSION,
        identity: uuid::Uuid::nil(),
        name: String::new(),
    });
    evil.control(&greet);
    let Control::Greet { commitment } = evil
        .expect("Bob's greet", |m| matches!(m, Control::Greet { .. }))
        .await
    else {
        unreachable!()
    };
    let Control::Proof {
        name,
        nonce,
        signature,
        ..
    } = handshake.on_greet(commitment, &mallory, "Ada").unwrap()
    else {
        unreachable!()
    };
    evil.control(&Control::Proof {
        key: ada_key,
        name,
        nonce,
        signature,
    });
    let failed = bob.expect("the impostor refused", |e| match e {
        Event::HelloFailed { reason, .. } => Some(Ok(reason.clone())),
        Event::PeerHello { name, .. } => Some(Err(name.clone())),
        _ => None,
    });
    assert_eq!(failed, Ok("Intercepted".to_owned()));

    // 2. Her own key, then another one on the same connection.
    let room = wrangler.api().create_room().await.unwrap().room;
    let mut bob = start(&format!("{}/r/{room}", wrangler.base), "Bob");
    let mut evil = Evil::join(&wrangler.signal_url(&room, uuid::Uuid::new_v4())).await;
    evil.introduce("Mallory").await;
    bob.expect("Mallory's hello", on!(Event::PeerHello { .. }));
    evil.control(&Control::Proof {
        key: ada_key,
        name: "Ada".into(),
        nonce: [0; 16],
        signature: duet_shared::trust::Sig([0; 64]),
    });
    let reason = bob.expect(
        "the change of key refused",
        on!(Event::HelloFailed { reason, .. } => reason.clone()),
    );
    assert_eq!(reason, "OutOfOrder");
}
