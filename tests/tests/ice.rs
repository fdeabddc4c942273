//! `GET /api/rooms/{room}/ice` under real `wrangler dev`: STUN URLs and TURN credentials that a
//! real coturn (started here on 127.0.0.1 with the same secret) grants an allocation to, only
//! for rooms that exist, rate-limited, and a broken configuration answered as a server failure.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use duet_shared::api::{ErrorCode, IceConfig};
use duet_tests::turn::Coturn;
use duet_tests::{Wrangler, WranglerOptions, assert_loopback_only, free_port};

fn vars(pairs: &[(&str, &str)]) -> WranglerOptions {
    WranglerOptions {
        vars: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

async fn ice(wrangler: &Wrangler, room: &str) -> reqwest::Response {
    reqwest::get(format!("{}/api/rooms/{room}/ice", wrangler.base))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_hands_out_turn_credentials_that_coturn_accepts() {
    assert_loopback_only();
    let secret = "the secret coturn and the worker share";
    let port = free_port();
    let turn_url = format!("turn:127.0.0.1:{port}?transport=udp");
    let wrangler = Wrangler::start(vars(&[
        ("STUN_URLS", &format!("stun:127.0.0.1:{port}")),
        ("TURN_URLS", &turn_url),
        ("TURN_SECRET", secret),
        ("ICE_TTL_SECS", "600"),
    ]))
    .unwrap();
    let coturn = Coturn::start(IpAddr::V4(Ipv4Addr::LOCALHOST), port, secret, true).unwrap();
    let room = wrangler.api().create_room().await.unwrap().room;

    let answer = ice(&wrangler, &room).await;
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer.headers()["cache-control"],
        "no-store",
        "credentials are never cached"
    );
    let config: IceConfig = answer.json().await.unwrap();
    assert_eq!(config.ttl_s, 600);
    assert_eq!(config.ice_servers.len(), 2, "{config:?}");
    assert_eq!(
        config.ice_servers[0].urls,
        vec![format!("stun:127.0.0.1:{port}")]
    );
    assert_eq!(config.ice_servers[0].credential, None);
    let turn = &config.ice_servers[1];
    assert_eq!(turn.urls, vec![turn_url]);
    let username = turn.username.clone().unwrap();
    let credential = turn.credential.clone().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (expiry, tag) = username.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "expires in {} s",
        expiry as i64 - now as i64
    );
    assert_eq!(tag, "duet", "the user name names no room and no person");

    // The real TURN server takes them, and nothing else.
    assert!(coturn.allocates(&username, &credential).unwrap());
    assert!(!coturn.allocates(&username, "not the password").unwrap());
    let forged = format!("{}:duet", expiry + 3600);
    assert!(
        !coturn.allocates(&forged, &credential).unwrap(),
        "a longer life cannot be claimed with the same password"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_rooms_that_exist_get_servers_and_not_without_limit() {
    let wrangler = Wrangler::start(vars(&[
        ("STUN_URLS", "stun:127.0.0.1:3478"),
        ("TURN_URLS", "turn:127.0.0.1:3478"),
        ("TURN_SECRET", "s"),
    ]))
    .unwrap();
    let unknown = ice(&wrangler, "AAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(unknown.status().as_u16(), 404);
    let body: duet_shared::api::ApiError = unknown.json().await.unwrap();
    assert_eq!(body.error, ErrorCode::UnknownRoom);
    let malformed = ice(&wrangler, "not-a-room").await;
    assert_eq!(malformed.status().as_u16(), 404);

    let room = wrangler.api().create_room().await.unwrap().room;
    let burst = duet_shared::api::CLIENT_ICE_BURST as usize;
    for n in 1..=burst {
        assert_eq!(
            ice(&wrangler, &room).await.status().as_u16(),
            200,
            "ask {n}"
        );
    }
    let refused = ice(&wrangler, &room).await;
    assert_eq!(refused.status().as_u16(), 429);
    let body: duet_shared::api::ApiError = refused.json().await.unwrap();
    assert_eq!(body.error, ErrorCode::RateLimited);
    // Another room is another budget.
    let other = wrangler.api().create_room().await.unwrap().room;
    assert_eq!(ice(&wrangler, &other).await.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_stun_in_tests_and_a_broken_turn_setting_is_a_server_failure() {
    // The harness empties STUN_URLS: tests reach nothing outside this machine.
    let plain = Wrangler::shared();
    let room = plain.api().create_room().await.unwrap().room;
    let config: IceConfig = ice(plain, &room).await.json().await.unwrap();
    assert!(config.ice_servers.is_empty(), "{config:?}");

    let broken = Wrangler::start(vars(&[("TURN_URLS", "turn:127.0.0.1:3478")])).unwrap();
    let room = broken.api().create_room().await.unwrap().room;
    let answer = ice(&broken, &room).await;
    assert_eq!(answer.status().as_u16(), 500);
    let body: duet_shared::api::ApiError = answer.json().await.unwrap();
    assert_eq!(body.error, ErrorCode::Internal);
    // The operator finds the reason in the worker's log, not the client.
    assert!(!body.message.contains("TURN_SECRET"), "{}", body.message);
}
