//! What the room object keeps on disk, across `wrangler dev` restarts: bans survive, idle rooms
//! are deleted, and no signal or message content is ever written.

use std::time::{Duration, Instant};

use duet_shared::api::close;
use std::path::Path;

use duet_tests::{Wrangler, WranglerOptions, Ws, signal_to, storage_files, temp_dir};
use matchbox_protocol::JsonPeerEvent;
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

fn storage_contains(dir: &Path, needle: &[u8]) -> Vec<String> {
    storage_files(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bans_survive_a_restart() {
    let state = temp_dir("ban-restart").unwrap();
    let options = WranglerOptions {
        persist_to: Some(state.clone()),
        ..Default::default()
    };
    let (room, identity_a, identity_b) = {
        let wrangler = Wrangler::start(options.clone()).unwrap();
        let api = wrangler.api();
        let room = api.create_room().await.unwrap();
        let (identity_a, identity_b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut a = Ws::join(&wrangler.signal_url(&room.room, identity_a)).await;
        a.id().await;
        let mut b = Ws::join(&wrangler.signal_url(&room.room, identity_b)).await;
        let id_b = b.id().await;
        assert_eq!(a.next_event().await.unwrap(), JsonPeerEvent::NewPeer(id_b));
        let reply = api
            .moderate(&room.room, "ban", &room.owner_key, id_b)
            .await
            .unwrap();
        assert_eq!(reply.status, 204);
        assert_eq!(b.closed(WAIT).await.unwrap().code, close::BANNED);
        a.close().await;
        (room, identity_a, identity_b)
        // wrangler dev stops here.
    };
    let wrangler = Wrangler::start(options).unwrap();
    let api = wrangler.api();
    assert_eq!(
        api.room(&room.room).await.unwrap().peers,
        0,
        "room survived"
    );
    let refused = Ws::connect(&wrangler.signal_url(&room.room, identity_b))
        .await
        .err()
        .expect("ban survived the restart");
    assert_eq!(refused.status, 403, "{refused:?}");
    // The owner key still works after the restart, and clearing bans lets B back in.
    assert_eq!(
        api.clear_bans(&room.room, &room.owner_key)
            .await
            .unwrap()
            .status,
        204
    );
    let mut a = Ws::join(&wrangler.signal_url(&room.room, identity_a)).await;
    a.id().await;
    let mut b = Ws::join(&wrangler.signal_url(&room.room, identity_b)).await;
    let id_b = b.id().await;
    assert_eq!(a.next_event().await.unwrap(), JsonPeerEvent::NewPeer(id_b));
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_holds_no_signal_content_and_no_owner_key() {
    let wrangler = Wrangler::start(WranglerOptions::default()).unwrap();
    let api = wrangler.api();
    let room = api.create_room().await.unwrap();
    let marker = format!("duet-secret-sdp-{}", Uuid::new_v4());
    let identity_a = Uuid::new_v4();
    let mut a = Ws::join(&wrangler.signal_url(&room.room, identity_a)).await;
    let id_a = a.id().await;
    let mut b = Ws::join(&wrangler.signal_url(&room.room, Uuid::new_v4())).await;
    let id_b = b.id().await;
    a.next_event().await.unwrap();
    for i in 0..50 {
        a.send_text(signal_to(id_b, json!({"Offer": format!("{marker}-{i}")})))
            .await
            .unwrap();
        b.next_event().await.unwrap();
        b.send_text(signal_to(
            id_a,
            json!({"Answer": format!("{marker}-answer-{i}")}),
        ))
        .await
        .unwrap();
        a.next_event().await.unwrap();
    }
    // A ban gives the room something to write, so there is a database to inspect.
    api.moderate(&room.room, "ban", &room.owner_key, id_b)
        .await
        .unwrap();
    a.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let persist = wrangler.persist_to.clone();
    let key_hash = duet_worker::secrets::hash_owner_key(&room.owner_key);
    drop(wrangler);

    let sqlite: Vec<_> = storage_files(&persist)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sqlite"))
        .collect();
    assert!(!sqlite.is_empty(), "the room's SQLite database exists");
    // Positive control: the scan does find what the room is supposed to store.
    assert!(
        !storage_contains(&persist, key_hash.as_bytes()).is_empty(),
        "owner key hash should be stored (control for the scan)"
    );
    for needle in [
        marker.as_bytes(),
        room.owner_key.as_bytes(),
        identity_a.to_string().as_bytes(),
        b"127.0.0.1",
    ] {
        let hits = storage_contains(&persist, needle);
        assert!(
            hits.is_empty(),
            "{:?} found in {hits:?}",
            String::from_utf8_lossy(needle)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_nobody_joins_expire_soon_and_used_ones_do_not() {
    let wrangler = Wrangler::start(WranglerOptions {
        vars: vec![
            ("ROOM_IDLE_TTL_SECS".into(), "60".into()),
            ("UNJOINED_ROOM_TTL_SECS".into(), "2".into()),
        ],
        ..Default::default()
    })
    .unwrap();
    let api = wrangler.api();
    let minted = api.create_room().await.unwrap();
    let used = api.create_room().await.unwrap();
    // Somebody joins the used room and leaves again: it lives on, empty, for the idle TTL.
    let mut visitor = Ws::join(&wrangler.signal_url(&used.room, Uuid::new_v4())).await;
    visitor.id().await;
    visitor.close().await;
    let started = Instant::now();
    loop {
        if api.room_reply(&minted.room).await.unwrap().status == 404 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a room nobody joined is still there after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "expired too early"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        api.room(&used.room).await.unwrap().peers,
        0,
        "the used room is still there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_rooms_expire_and_their_storage_is_deleted() {
    let wrangler = Wrangler::start(WranglerOptions {
        vars: vec![
            ("ROOM_IDLE_TTL_SECS".into(), "2".into()),
            ("UNJOINED_ROOM_TTL_SECS".into(), "2".into()),
        ],
        ..Default::default()
    })
    .unwrap();
    let api = wrangler.api();
    let idle = api.create_room().await.unwrap();
    let busy = api.create_room().await.unwrap();
    // Someone stays in the busy room for the whole time; it must not expire under them.
    let mut stayer = Ws::join(&wrangler.signal_url(&busy.room, Uuid::new_v4())).await;
    stayer.id().await;
    let key_hash = duet_worker::secrets::hash_owner_key(&idle.owner_key);
    let started = Instant::now();
    loop {
        let reply = api.room_reply(&idle.room).await.unwrap();
        if reply.status == 404 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "idle room still there after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "expired too early"
    );
    assert_eq!(api.room(&busy.room).await.unwrap().peers, 1);
    stayer.expect_silence(Duration::from_millis(100)).await;
    // The expired room's record is gone from disk, not just hidden.
    let hits = storage_contains(&wrangler.persist_to, key_hash.as_bytes());
    assert!(
        hits.is_empty(),
        "expired room's record still on disk: {hits:?}"
    );
    let refused = Ws::connect(&wrangler.signal_url(&idle.room, Uuid::new_v4()))
        .await
        .err()
        .expect("expired room refuses joins");
    assert_eq!(refused.status, 404);
}
