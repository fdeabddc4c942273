//! Matchbox protocol conformance: the same raw-WebSocket script runs against Duet under
//! `wrangler dev` and against stock `matchbox_signaling` (full mesh) in-process; the frames each
//! client receives must be byte-identical once peer ids are replaced by placeholders. A golden
//! transcript pins every frame shape.

use std::time::Duration;

use duet_tests::{Wrangler, Ws, signal_to, stock_matchbox};
use matchbox_protocol::PeerId;
use serde_json::json;
use uuid::Uuid;

/// Where a scenario's two clients connect.
enum Server {
    Duet,
    Stock,
}

impl Server {
    /// Two URLs for two clients of one fresh room.
    async fn room_urls(&self) -> (String, String) {
        match self {
            Server::Duet => {
                let wrangler = Wrangler::shared();
                let room = wrangler.api().create_room().await.unwrap().room;
                (
                    wrangler.signal_url(&room, Uuid::new_v4()),
                    wrangler.signal_url(&room, Uuid::new_v4()),
                )
            }
            Server::Stock => {
                let base = stock_matchbox().await;
                (format!("{base}/room"), format!("{base}/room"))
            }
        }
    }
}

/// Replaces the two peer ids by `<A>` and `<B>`.
fn normalize(text: &str, a: PeerId, b: Option<PeerId>) -> String {
    let mut text = text.replace(&a.0.to_string(), "<A>");
    if let Some(b) = b {
        text = text.replace(&b.0.to_string(), "<B>");
    }
    text
}

const QUIET: Duration = Duration::from_millis(400);

/// The scripted session; returns the transcript of what each client received, in order.
async fn session(server: Server) -> Vec<String> {
    let (url_a, url_b) = server.room_urls().await;
    let mut transcript = Vec::new();
    let mut a = Ws::join(&url_a).await;
    let first = a.next_text(Duration::from_secs(10)).await.unwrap();
    let id_a: PeerId = match serde_json::from_str(&first).unwrap() {
        matchbox_protocol::JsonPeerEvent::IdAssigned(id) => id,
        other => panic!("first frame must be IdAssigned, got {other:?}"),
    };
    transcript.push(format!("A<-{}", normalize(&first, id_a, None)));
    a.expect_silence(QUIET).await;

    let mut b = Ws::join(&url_b).await;
    let first_b = b.next_text(Duration::from_secs(10)).await.unwrap();
    let id_b: PeerId = match serde_json::from_str(&first_b).unwrap() {
        matchbox_protocol::JsonPeerEvent::IdAssigned(id) => id,
        other => panic!("first frame must be IdAssigned, got {other:?}"),
    };
    let n = |t: &str| normalize(t, id_a, Some(id_b));
    transcript.push(format!("B<-{}", n(&first_b)));
    transcript.push(format!(
        "A<-{}",
        n(&a.next_text(Duration::from_secs(10)).await.unwrap())
    ));
    // The newcomer is not told about the peer already present.
    b.expect_silence(QUIET).await;

    // KeepAlive is accepted and produces nothing, for anyone.
    a.send_text(r#""KeepAlive""#).await.unwrap();
    a.expect_silence(QUIET).await;
    b.expect_silence(Duration::from_millis(50)).await;

    // An offer with awkward text: line breaks, unicode, quotes, escapes. (Duet refuses signal
    // data of any other shape than matchbox's own; see the rooms tests.)
    let data = json!({
        "Offer": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\nünï \"quoted\" \\ \u{1F600}",
    });
    a.send_text(signal_to(id_b, data)).await.unwrap();
    transcript.push(format!(
        "B<-{}",
        n(&b.next_text(Duration::from_secs(10)).await.unwrap())
    ));
    // And back, with the plain string data matchbox_socket itself uses for ICE.
    b.send_text(signal_to(
        id_a,
        json!({"IceCandidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host"}),
    ))
    .await
    .unwrap();
    transcript.push(format!(
        "A<-{}",
        n(&a.next_text(Duration::from_secs(10)).await.unwrap())
    ));

    b.close().await;
    transcript.push(format!(
        "A<-{}",
        n(&a.next_text(Duration::from_secs(10)).await.unwrap())
    ));
    a.expect_silence(QUIET).await;
    transcript
}

#[tokio::test(flavor = "multi_thread")]
async fn duet_and_stock_matchbox_send_identical_frames() {
    let duet = session(Server::Duet).await;
    let stock = session(Server::Stock).await;
    assert_eq!(duet, stock, "Duet diverges from stock matchbox_signaling");
}

#[tokio::test(flavor = "multi_thread")]
async fn golden_frame_shapes() {
    let transcript = session(Server::Duet).await;
    let golden = vec![
        r#"A<-{"IdAssigned":"<A>"}"#.to_owned(),
        r#"B<-{"IdAssigned":"<B>"}"#.to_owned(),
        r#"A<-{"NewPeer":"<B>"}"#.to_owned(),
        concat!(
            r#"B<-{"Signal":{"sender":"<A>","data":{"Offer":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"#,
            r#"ünï \"quoted\" \\ 😀"}}}"#
        )
        .to_owned(),
        r#"A<-{"Signal":{"sender":"<B>","data":{"IceCandidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host"}}}"#
            .to_owned(),
        r#"A<-{"PeerLeft":"<B>"}"#.to_owned(),
    ];
    assert_eq!(transcript, golden);
}
