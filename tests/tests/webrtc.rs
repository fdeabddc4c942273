//! Two stock `matchbox_socket` peers (native webrtc-rs) find each other through Duet's signaling
//! under `wrangler dev` and exchange data on a reliable channel. Runs only in an `lo`-only network
//! namespace (`cargo xtask test` provides one), so ICE can use nothing but loopback.

use std::time::{Duration, Instant};

use duet_tests::{Wrangler, assert_loopback_only, loopback_ice};
use matchbox_socket::{PeerId, PeerState, WebRtcSocket};
use uuid::Uuid;

fn socket(url: &str) -> WebRtcSocket {
    let (socket, message_loop) = WebRtcSocket::builder(url)
        // Never the default public STUN servers: loopback only.
        .ice_server(loopback_ice())
        .add_reliable_channel()
        .build();
    tokio::spawn(async move {
        if let Err(e) = message_loop.await {
            eprintln!("matchbox message loop ended: {e:?}");
        }
    });
    socket
}

/// Polls both sockets until each sees the other connected.
async fn connect(a: &mut WebRtcSocket, b: &mut WebRtcSocket) -> (PeerId, PeerId) {
    let started = Instant::now();
    let (mut a_sees, mut b_sees) = (None, None);
    while a_sees.is_none() || b_sees.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "peers did not connect in 30 s"
        );
        for (peer, state) in a.update_peers() {
            if state == PeerState::Connected {
                a_sees = Some(peer);
            }
        }
        for (peer, state) in b.update_peers() {
            if state == PeerState::Connected {
                b_sees = Some(peer);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("WebRTC connected in {:?}", started.elapsed());
    (a_sees.unwrap(), b_sees.unwrap())
}

async fn receive_bytes(socket: &mut WebRtcSocket, from: PeerId, total: usize) -> Vec<u8> {
    let started = Instant::now();
    let mut received = Vec::with_capacity(total);
    while received.len() < total {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} of {total} bytes arrived",
            received.len()
        );
        for (peer, packet) in socket.channel_mut(0).receive() {
            assert_eq!(peer, from);
            received.extend_from_slice(&packet);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    received
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_matchbox_sockets_connect_through_duet_and_exchange_data() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap().room;
    let mut a = socket(&wrangler.signal_url(&room, Uuid::new_v4()));
    let mut b = socket(&wrangler.signal_url(&room, Uuid::new_v4()));
    let (b_id, a_id) = connect(&mut a, &mut b).await;
    assert_eq!(a.id(), Some(a_id));
    assert_eq!(b.id(), Some(b_id));
    assert_eq!(wrangler.api().room(&room).await.unwrap().peers, 2);

    // A greeting each way.
    a.channel_mut(0).send(b"hello from a".to_vec().into(), b_id);
    assert_eq!(receive_bytes(&mut b, a_id, 12).await, b"hello from a");
    b.channel_mut(0).send(b"hello from b".to_vec().into(), a_id);
    assert_eq!(receive_bytes(&mut a, b_id, 12).await, b"hello from b");

    // 1 MiB in 16 KiB chunks, paced, arrives complete and in order.
    let payload: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    let sender = async {
        for chunk in payload.chunks(16 * 1024) {
            a.channel_mut(0).send(chunk.to_vec().into(), b_id);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let (_, received) = tokio::join!(sender, receive_bytes(&mut b, a_id, payload.len()));
    assert!(received == payload, "payload corrupted or reordered");

    // Closing one side is seen by the other.
    drop(a);
    let started = Instant::now();
    'wait: loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "disconnect not seen"
        );
        for (peer, state) in b.update_peers() {
            if peer == a_id && state == PeerState::Disconnected {
                break 'wait;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
