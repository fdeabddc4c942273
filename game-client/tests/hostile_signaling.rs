//! A stranger with the room link attacks a headless `duet-client` waiting in its room, through
//! the real signaling server (`wrangler dev`) with a raw WebSocket that speaks matchbox's protocol:
//! session descriptions that are not SDP, ICE candidates that are not candidates, a loop of joins,
//! and a handshake left hanging. Each must end only that handshake, leave no connection (nor its
//! sockets) behind, and leave the victim in the room, able to meet an honest peer and chat.

use std::path::Path;
use std::time::{Duration, Instant};

use duet_tests::automation::Delivery;
use duet_tests::{
    Event, HeadlessClient, Wrangler, Ws, assert_loopback_only, on, signal_to, temp_dir,
};
use matchbox_protocol::{JsonPeerEvent, PeerId};
use serde_json::{Value, json};
use uuid::Uuid;

struct Client(HeadlessClient);

impl Client {
    fn start(link: &str, data_dir: &Path, name: &str) -> Client {
        let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
        Client(HeadlessClient::start(binary, link, data_dir, name).expect("start duet-client"))
    }

    fn expect<T>(&mut self, what: &str, limit: Duration, pick: impl Fn(&Event) -> Option<T>) -> T {
        self.0
            .wait(what, limit, pick)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Waits until signaling has given this client its id; returns it.
    fn connected(&mut self) -> PeerId {
        PeerId(self.expect(
            "connected",
            Duration::from_secs(30),
            on!(Event::Connected { peer_id } => *peer_id),
        ))
    }

    /// Files the process has open (its UDP sockets among them).
    fn open_files(&self) -> usize {
        duet_tests::open_files(self.0.pid())
    }

    /// Waits (up to `limit`) until at most `most` files are open; returns the last count.
    fn open_files_settle(&self, most: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let open = self.open_files();
            if open <= most || Instant::now() > deadline {
                return open;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The sentence of a failed handshake whose reason is `reason`.
fn failed_with(e: &Event, why: &str) -> Option<String> {
    match e {
        Event::PeerFailed {
            reason, message, ..
        } if reason == why => Some(message.clone()),
        _ => None,
    }
}

/// The stranger's next signal from `from` of `kind` (`Offer`, `Answer`, `IceCandidate`).
async fn signal_from(ws: &mut Ws, from: PeerId, kind: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no {kind} from the victim");
        if let JsonPeerEvent::Signal { sender, data } = ws.next_event().await.unwrap()
            && sender == from
            && let Some(text) = data.get(kind).and_then(Value::as_str)
        {
            return text.to_owned();
        }
    }
}

/// An honest second person joins, and the two chat: the victim is still fully in its room.
fn an_honest_peer_can_still_chat(link: &str, victim: &mut Client) {
    let dir = temp_dir("honest").unwrap();
    let mut bob = Client::start(link, &dir, "Bob");
    let long = Duration::from_secs(60);
    victim.expect(
        "Bob's hello",
        long,
        on!(Event::PeerHello { name, .. } if *name == "Bob"),
    );
    bob.expect("the victim's hello", long, on!(Event::PeerHello { .. }));
    bob.0.command("say still here?").unwrap();
    victim.expect(
        "Bob's message",
        long,
        on!(Event::Chat(x) if x.text == "still here?"),
    );
    bob.expect(
        "the receipt",
        long,
        on!(Event::Chat(x) if x.state == Delivery::Delivered),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn descriptions_and_candidates_that_are_not_sdp_end_only_that_handshake() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap().room;
    let link = format!("{}/r/{room}", wrangler.base);
    let dir = temp_dir("hostile-signal").unwrap();
    let mut victim = Client::start(&link, &dir, "Victim");
    let victim_id = victim.connected();
    let patience = Duration::from_secs(30);

    // 1. The victim offers to the newcomer, who answers with garbage (after a garbage candidate).
    let mut stranger = Ws::join(&wrangler.signal_url(&room, Uuid::new_v4())).await;
    signal_from(&mut stranger, victim_id, "Offer").await;
    stranger
        .send_text(signal_to(
            victim_id,
            json!({"IceCandidate": r#"{"candidate":"x"}"#}),
        ))
        .await
        .unwrap();
    stranger
        .send_text(signal_to(victim_id, json!({"Answer": "x"})))
        .await
        .unwrap();
    let failed = victim.expect("the handshake's failure", patience, |e| {
        failed_with(e, "BadDescription")
    });
    assert!(failed.contains("not valid"), "{failed}");
    // More signals for the failed handshake are ignored, not a second connection.
    stranger
        .send_text(signal_to(victim_id, json!({"Offer": "y"})))
        .await
        .unwrap();
    stranger.close().await;

    // 2. The stranger is there first, so it offers to the victim when it (re)joins: garbage again.
    let mut stranger = Ws::join(&wrangler.signal_url(&room, Uuid::new_v4())).await;
    stranger.id().await;
    victim.0.kill9();
    let mut victim = Client::start(&link, &dir, "Victim");
    let victim_id = victim.connected();
    let deadline = Instant::now() + patience;
    loop {
        assert!(Instant::now() < deadline, "no NewPeer for the victim");
        if stranger.next_event().await.unwrap() == JsonPeerEvent::NewPeer(victim_id) {
            break;
        }
    }
    for data in [
        json!({"IceCandidate": "not json"}),
        json!({"IceCandidate": r#"{"candidate":"candidate:x","sdpMid":"0"}"#}),
        json!({"Answer": "an answer to nothing"}),
        json!({"Offer": "v=0\r\nnot really"}),
    ] {
        stranger
            .send_text(signal_to(victim_id, data))
            .await
            .unwrap();
    }
    victim.expect("the handshake's failure", patience, |e| {
        failed_with(e, "BadDescription")
    });
    stranger.close().await;

    an_honest_peer_can_still_chat(&link, &mut victim);
}

#[tokio::test(flavor = "multi_thread")]
async fn join_churn_and_hanging_handshakes_leave_no_connections_behind() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap().room;
    let link = format!("{}/r/{room}", wrangler.base);
    let dir = temp_dir("hostile-churn").unwrap();
    let mut victim = Client::start(&link, &dir, "Victim");
    let victim_id = victim.connected();
    std::thread::sleep(Duration::from_secs(2));
    let before = victim.open_files();

    // A stranger joins, lets the victim start a handshake (its offer proves the connection and
    // its sockets exist), and leaves: eight times. Each PeerLeft must close that connection.
    for _ in 0..8 {
        let mut stranger = Ws::join(&wrangler.signal_url(&room, Uuid::new_v4())).await;
        signal_from(&mut stranger, victim_id, "Offer").await;
        stranger.close().await;
    }
    let after_churn = victim.open_files_settle(before + 2, Duration::from_secs(10));
    eprintln!("open files: {before} before, {after_churn} after 8 abandoned handshakes");
    assert!(
        after_churn <= before + 2,
        "abandoned handshakes kept their sockets: {before} -> {after_churn} open files"
    );

    // A stranger that stays but never answers (it waits for the victim's offer and sends
    // nothing back): the handshake holds sockets until it times out, and says the peer never
    // answered, not that the networks are blocked.
    let mut silent = Ws::join(&wrangler.signal_url(&room, Uuid::new_v4())).await;
    signal_from(&mut silent, victim_id, "Offer").await;
    let during = victim.open_files();
    assert!(
        during > before,
        "a live handshake holds sockets ({before} -> {during}): the measurement sees them"
    );
    let started = Instant::now();
    victim.expect("the timeout", Duration::from_secs(40), |e| {
        failed_with(e, "Unanswered")
    });
    let waited = started.elapsed();
    eprintln!("hanging handshake ended after {waited:?}");
    assert!(
        // The 15 s run from the handshake's start, a moment before `started`.
        waited >= Duration::from_secs(13) && waited <= Duration::from_secs(30),
        "{waited:?}"
    );
    let after_timeout = victim.open_files_settle(before + 2, Duration::from_secs(10));
    assert!(
        after_timeout <= before + 2,
        "a timed-out handshake kept its sockets: {before} -> {after_timeout}"
    );
    silent.close().await;

    an_honest_peer_can_still_chat(&link, &mut victim);
}
