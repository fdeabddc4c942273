//! Two headless clients in two homes behind NAT, across emulated WAN links (the lab in
//! `tests/src/lab`): the signaling server and a real coturn (STUN and TURN) in the lab's
//! internet, each client in its home namespace, nothing outside them.

use std::path::Path;
use std::time::{Duration, Instant};

use duet_tests::automation::Dir;
use duet_tests::lab::{BrowserHome, Lab, LinkParams, Nat, Servers};
use duet_tests::{Event, HeadlessClient, make_file, on, sha256_of, temp_dir};

/// The lab, its servers and a room.
struct World {
    lab: Lab,
    servers: Servers,
    link: String,
    _turn: Turn,
}

/// Lab tests share the machine, except those with browsers, which run alone: two
/// software-rendered Chromiums take both cores, and beside the native tests' transfers (each
/// packet through the userspace link emulator) their connections missed the app's 15 s limit
/// (the relay tests, in full runs only).
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A test's hold on [`MACHINE`].
enum Turn {
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

fn world(nat: Nat, link: LinkParams, relay: bool) -> Option<World> {
    let turn = Turn::Shared(MACHINE.read().unwrap_or_else(|e| e.into_inner()));
    world_with(nat, link, relay, turn)
}

/// [`world`] for a test with browsers: it runs alone.
fn world_alone(nat: Nat, link: LinkParams, relay: bool) -> Option<World> {
    let turn = Turn::Alone(MACHINE.write().unwrap_or_else(|e| e.into_inner()));
    world_with(nat, link, relay, turn)
}

fn world_with(nat: Nat, link: LinkParams, relay: bool, turn: Turn) -> Option<World> {
    if !duet_tests::is_root() {
        eprintln!("skipped: the network lab needs root (`cargo xtask test` runs as root)");
        return None;
    }
    let lab = Lab::start(nat, link, nat, link).unwrap();
    let servers = Servers::start(&lab, relay).unwrap();
    let link = servers.wrangler.new_room_link().unwrap();
    Some(World {
        lab,
        servers,
        link,
        _turn: turn,
    })
}

/// A headless client in `home`, with this file's patience.
struct Client(HeadlessClient);

impl Client {
    fn start(home: &duet_tests::lab::Namespace, link: &str, dir: &Path, name: &str) -> Client {
        let wrapper = home.wrapper();
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
        Client(HeadlessClient::start_wrapped(&wrapper, binary, link, dir, name).unwrap())
    }

    fn expect<T>(&mut self, what: &str, pick: impl Fn(&Event) -> Option<T>) -> T {
        self.expect_within(what, Duration::from_secs(60), pick)
    }

    fn expect_within<T>(
        &mut self,
        what: &str,
        within: Duration,
        pick: impl Fn(&Event) -> Option<T>,
    ) -> T {
        self.0
            .wait(what, within, pick)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// Waits until `client` verified its peer and knows its connection's path (in either order);
/// returns the path: `(local, remote, relayed)`.
fn meet(client: &mut Client) -> (String, String, bool) {
    meet_at(client).0
}

/// [`meet`], with the moment the peer's hello arrived.
fn meet_at(client: &mut Client) -> ((String, String, bool), Instant) {
    let (mut hello, mut path) = (None, None);
    while hello.is_none() || path.is_none() {
        let (seen, at) = client
            .0
            .wait_timed(
                "the peer's hello and the connection's path",
                Duration::from_secs(60),
                |e| match e {
                    Event::PeerHello { .. } => Some(None),
                    Event::Path {
                        local,
                        remote,
                        relayed,
                    } => Some(Some((local.clone(), remote.clone(), *relayed))),
                    _ => None,
                },
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        match seen {
            None => hello = Some(at),
            Some(seen) => path = Some(seen),
        }
    }
    (path.expect("seen"), hello.expect("seen"))
}

/// Ada in home A and Bob in home B, both past each other's hello; and a folder for the test.
fn two_met(world: &World, name: &str) -> (Client, Client, std::path::PathBuf) {
    let work = temp_dir(name).unwrap();
    let mut a = Client::start(&world.lab.a.home, &world.link, &work.join("a"), "Ada");
    let mut b = Client::start(&world.lab.b.home, &world.link, &work.join("b"), "Bob");
    meet(&mut a);
    meet(&mut b);
    (a, b, work)
}

/// Lifts the cut of `link` at `at`, and waits until both clients hear each other again;
/// returns when the link came back.
fn restore(link: &duet_tests::lab::Link, at: Instant, clients: [&mut Client; 2]) -> Instant {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
    link.set_down(false);
    let restored = Instant::now();
    for client in clients {
        client.expect(
            "the link back",
            on!(Event::Link { silent_s: None, .. } => ()),
        );
        eprintln!("link back after {:?}", restored.elapsed());
    }
    restored
}

/// Chat both ways and a 20 MiB file from A to B that verifies within `file_within`.
fn chat_and_a_file(a: &mut Client, b: &mut Client, work: &Path, file_within: Duration) {
    a.0.command("say hello from home A").unwrap();
    b.expect(
        "A's chat",
        on!(Event::Chat(x) if x.text == "hello from home A"),
    );
    b.0.command("say and back from home B").unwrap();
    a.expect(
        "B's chat",
        on!(Event::Chat(x) if x.text == "and back from home B"),
    );
    let source = work.join("across the networks.bin");
    let digest = make_file(&source, 20 << 20);
    a.0.command(&format!("send {}", source.display())).unwrap();
    let saved = b.expect_within(
        "the file",
        file_within,
        on!(Event::TransferCompleted { dir: Dir::In, location, .. } => location.clone()),
    );
    assert_eq!(sha256_of(Path::new(&saved)), digest);
    // Two desktops send on their one connection: no lanes (`Frames.stripes`).
    for client in [a, b] {
        assert_eq!(client.0.most_lanes, 0, "{} opened lanes", client.0.label);
    }
}

/// Both browsers had lanes open: the 20 MiB file was striped (over the relay too, when the
/// pair is relayed: lanes use the room's ICE servers).
fn assert_striped(result: &serde_json::Value) {
    for name in ["Ada", "Bob"] {
        let lanes = result["lanes"][name].as_u64().unwrap_or_default();
        assert!(lanes >= 1, "{name} had no lanes open: {result}");
    }
}

#[test]
fn two_homes_behind_cone_nats_connect_directly_through_stun() {
    // A relay is offered, as a deployment with TURN does, and not needed.
    let Some(world) = world(Nat::Cone, LinkParams::rtt(Duration::from_millis(20)), true) else {
        return;
    };
    let work = temp_dir("cone").unwrap();
    let started = Instant::now();
    let mut a = Client::start(&world.lab.a.home, &world.link, &work.join("a"), "Ada");
    let mut b = Client::start(&world.lab.b.home, &world.link, &work.join("b"), "Bob");
    let paths = [meet(&mut a), meet(&mut b)];
    eprintln!("chat ready after {:?}", started.elapsed());
    for (local, remote, relayed) in paths {
        assert!(
            !relayed,
            "a relay was available but not needed: {local}/{remote}"
        );
        // The peer is reached at its NAT's public address (signaled, or learned from its
        // packets), never at its home address, which is not routable from here.
        assert!(remote == "srflx" || remote == "prflx", "{local}/{remote}");
    }
    chat_and_a_file(&mut a, &mut b, &work, Duration::from_secs(60));
}

/// Symmetric NATs on both sides: hole punching cannot work, and both meet through coturn.
/// (This failed until the lab's internet had a default route: coturn ends an allocation when one
/// relayed send fails, and sending to a peer's private address failed at once without a route;
/// see `Lab::start`.)
#[test]
fn two_homes_behind_symmetric_nats_meet_through_the_relay() {
    let Some(world) = world(
        Nat::Symmetric,
        LinkParams::rtt(Duration::from_millis(20)),
        true,
    ) else {
        return;
    };
    let work = temp_dir("symmetric").unwrap();
    let mut a = Client::start(&world.lab.a.home, &world.link, &work.join("a"), "Ada");
    let mut b = Client::start(&world.lab.b.home, &world.link, &work.join("b"), "Bob");
    for client in [&mut a, &mut b] {
        let (local, remote, relayed) = meet(client);
        assert!(
            relayed,
            "symmetric NATs are crossed only by a relay: {local}/{remote}"
        );
    }
    // Through coturn the file may take a while: coturn's relay sockets have fixed 64 KiB
    // receive buffers, and SCTP's bursts overflow them now and then (`docs/networks.md`).
    chat_and_a_file(&mut a, &mut b, &work, Duration::from_secs(180));
}

/// From both in the room (the later of the two `connected`) to chat ready (the later of the
/// two verified hellos), with the path's kind.
fn chat_ready(a: &mut Client, b: &mut Client) -> (Duration, bool) {
    let mut in_room = Vec::new();
    let mut ready = Vec::new();
    let mut relayed = false;
    for client in [a, b] {
        let (_, at) = client
            .0
            .wait_timed(
                "connected",
                Duration::from_secs(60),
                on!(Event::Connected { .. }),
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        in_room.push(at);
        let ((_, _, through_relay), hello) = meet_at(client);
        relayed = through_relay;
        ready.push(hello);
    }
    let start = in_room.iter().max().copied().expect("two");
    let end = ready.iter().max().copied().expect("two");
    (end.saturating_duration_since(start), relayed)
}

/// Time from both in the room to chat ready, direct (cone NATs, STUN) and relayed (symmetric
/// NATs, TURN), at 0, 40 and 150 ms between the peers, five runs each: the figures in
/// `docs/networks.md`. A measurement, not a check; run it with `-- --ignored --nocapture`.
#[test]
#[ignore = "a measurement for docs/networks.md (about 5 minutes)"]
fn measure_chat_ready() {
    for (nat, relay) in [(Nat::Cone, false), (Nat::Symmetric, true)] {
        for between_ms in [0u64, 40, 150] {
            let per_link = LinkParams::rtt(Duration::from_millis(between_ms / 2));
            let Some(world) = world(nat, per_link, relay) else {
                return;
            };
            let mut samples = Vec::new();
            for run in 0..5 {
                let link = world.servers.wrangler.new_room_link().unwrap();
                let work = temp_dir(&format!("ready-{between_ms}-{run}")).unwrap();
                let mut a = Client::start(&world.lab.a.home, &link, &work.join("a"), "Ada");
                let mut b = Client::start(&world.lab.b.home, &link, &work.join("b"), "Bob");
                let (took, relayed) = chat_ready(&mut a, &mut b);
                assert_eq!(relayed, relay, "{nat:?} at {between_ms} ms");
                samples.push(took.as_millis() as u64);
            }
            samples.sort_unstable();
            println!(
                "chat ready, {} at {between_ms} ms: median {} ms, runs {samples:?}",
                if relay { "relayed" } else { "direct" },
                duet_tests::median_u64(samples.clone())
            );
        }
    }
}

#[test]
fn symmetric_nats_without_a_relay_fail_in_words_within_15_s() {
    let Some(world) = world(
        Nat::Symmetric,
        LinkParams::rtt(Duration::from_millis(20)),
        false,
    ) else {
        return;
    };
    let work = temp_dir("no-relay").unwrap();
    let mut a = Client::start(&world.lab.a.home, &world.link, &work.join("a"), "Ada");
    let mut b = Client::start(&world.lab.b.home, &world.link, &work.join("b"), "Bob");
    let both_in = Instant::now();
    for client in [&mut a, &mut b] {
        let reason = client.expect(
            "the attempt's end",
            on!(Event::PeerFailed { reason, .. } => reason.clone()),
        );
        assert_eq!(reason, "TimedOut");
    }
    let took = both_in.elapsed();
    // 15 s from the handshake's start, which follows both being in the room closely.
    assert!(took < Duration::from_secs(20), "{took:?}");
    for client in [&mut a, &mut b] {
        assert!(
            !client
                .0
                .pending()
                .iter()
                .any(|e| matches!(e, Event::PeerHello { .. })),
            "nobody met"
        );
    }
}

/// A network that lets ICE's checks through but drops every DTLS packet (a middlebox that
/// only knows STUN, or a path too lossy for the handshake to finish): each side's path works,
/// so its handshake gets the grace beyond 15 s, then ends as `NotOpened` — never "your
/// networks block a direct connection", which would send the person after the wrong fault.
/// Each side then joins the room again once for a fresh attempt, which opens once the network
/// lets DTLS through (that only one retry is made is `net::retry`'s unit test).
#[test]
fn a_path_that_answers_but_never_opens_gets_more_time_and_one_fresh_attempt() {
    let Some(world) = world(Nat::Cone, LinkParams::rtt(Duration::from_millis(20)), false) else {
        return;
    };
    // RFC 7983: a UDP payload whose first byte is 20..=63 is DTLS; STUN's is 0 or 1.
    let router = &world.lab.a.router;
    router
        .sh("nft add table inet dtls && \
             nft add chain inet dtls forward '{ type filter hook forward priority 0 ; }' && \
             nft add rule inet dtls forward 'meta l4proto udp @th,64,8 20-63 drop'")
        .unwrap();
    let work = temp_dir("no-dtls").unwrap();
    let mut a = Client::start(&world.lab.a.home, &world.link, &work.join("a"), "Ada");
    let mut b = Client::start(&world.lab.b.home, &world.link, &work.join("b"), "Bob");
    let both_in = Instant::now();
    for client in [&mut a, &mut b] {
        let (reason, message, retrying) = client.expect(
            "the attempt's end",
            on!(Event::PeerFailed { reason, message, retrying } =>
                (reason.clone(), message.clone(), *retrying)),
        );
        assert_eq!(reason, "NotOpened", "{message}");
        assert!(message.contains("path to the peer was found"), "{message}");
        assert!(retrying, "the first such failure is tried once more");
    }
    let took = both_in.elapsed();
    // 15 s and the 15 s grace from the handshake's start.
    assert!(
        took >= Duration::from_secs(29) && took < Duration::from_secs(36),
        "{took:?}"
    );
    // The network lets DTLS through again: the fresh attempt opens, and nothing else failed.
    router.sh("nft delete table inet dtls").unwrap();
    let healed = Instant::now();
    for client in [&mut a, &mut b] {
        meet(client);
        client.0.pending();
        assert_eq!(
            client.0.failed_handshakes, 1,
            "no other attempt failed on the way"
        );
    }
    let met = healed.elapsed();
    assert!(
        met < Duration::from_secs(20),
        "met {met:?} after the network healed"
    );
}

/// The link's round trip as the client reports it, once measured.
fn measured_rtt(client: &mut Client) -> u32 {
    client.expect(
        "a measured round trip",
        on!(Event::Link { rtt_ms: Some(rtt), silent_s: None } => *rtt),
    )
}

/// Ten seconds: the connection survives (SCTP retransmits once the link is back).
#[test]
fn a_short_outage_is_shown_refuses_chat_and_the_connection_recovers() {
    outage_during_chat(Duration::from_secs(10));
}

/// Forty-five seconds: ICE gives up on the connection after ~30 s of silence, and both sides
/// join the room again and meet over a new one.
#[test]
fn after_a_long_outage_both_rejoin_and_meet_again() {
    outage_during_chat(Duration::from_secs(45));
}

fn outage_during_chat(outage: Duration) {
    // 20 ms each home link: 40 ms between the peers.
    let Some(world) = world(Nat::Cone, LinkParams::rtt(Duration::from_millis(20)), false) else {
        return;
    };
    let (mut a, mut b, _work) = two_met(&world, "outage");
    for client in [&mut a, &mut b] {
        let rtt = measured_rtt(client);
        assert!(
            (38..=150).contains(&rtt),
            "round trip {rtt} ms over a 40 ms path"
        );
    }
    a.0.command("say before the outage").unwrap();
    b.expect(
        "the chat",
        on!(Event::Chat(x) if x.text == "before the outage"),
    );

    // Ada's home loses its link for 10 s.
    world.lab.a.link.set_down(true);
    let cut = Instant::now();
    for client in [&mut a, &mut b] {
        let silent = client.expect(
            "the link reported interrupted",
            on!(Event::Link { silent_s: Some(s), .. } => *s),
        );
        assert!(silent >= 3, "{silent}");
        let noticed = cut.elapsed();
        assert!(
            noticed < Duration::from_secs(6),
            "noticed after {noticed:?}"
        );
        eprintln!("interruption noticed after {noticed:?}");
    }
    a.0.command("say during the outage").unwrap();
    let state = a.expect(
        "Ada's own line",
        on!(Event::Chat(x) if x.text == "during the outage" => x.state),
    );
    assert_eq!(state, duet_tests::automation::Delivery::NotDelivered);
    let restored = restore(&world.lab.a.link, cut + outage, [&mut a, &mut b]);
    assert!(restored.elapsed() < Duration::from_secs(30));
    a.0.command("say after the outage").unwrap();
    b.expect(
        "the chat",
        on!(Event::Chat(x) if x.text == "after the outage"),
    );
    a.expect(
        "the receipt",
        on!(Event::Chat(x) if x.text == "after the outage"
            && x.state == duet_tests::automation::Delivery::Delivered),
    );
    // What was refused during the outage never arrives.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !b.0.pending()
            .iter()
            .any(|e| matches!(e, Event::Chat(x) if x.text == "during the outage")),
        "a refused message arrived"
    );
}

#[test]
fn a_ten_second_outage_mid_transfer_resumes_and_the_file_verifies() {
    // 40 ms between the peers and 0.5 % loss end to end (a quarter percent on each home link,
    // each way).
    let wan = LinkParams {
        loss: 0.0025,
        ..LinkParams::rtt(Duration::from_millis(20))
    };
    let Some(world) = world(Nat::Cone, wan, false) else {
        return;
    };
    let (mut a, mut b, work) = two_met(&world, "outage-transfer");
    let source = work.join("a hundred mebibytes.bin");
    let digest = make_file(&source, 100 << 20);
    let started = Instant::now();
    a.0.command(&format!("send {}", source.display())).unwrap();
    let asked = b.expect(
        "the question",
        on!(Event::TransferAsked { id, .. } => id.clone()),
    );
    b.0.command(&format!("take_file {asked}")).unwrap();
    b.expect(
        "a fifth of the file",
        on!(Event::TransferProgress { dir: Dir::In, done, .. } if *done >= 20 << 20),
    );
    eprintln!("20 MiB after {:?}", started.elapsed());
    world.lab.b.link.set_down(true);
    let cut = Instant::now();
    for client in [&mut a, &mut b] {
        client.expect(
            "the link reported interrupted",
            on!(Event::Link { silent_s: Some(_), .. } => ()),
        );
    }
    let restored = restore(
        &world.lab.b.link,
        cut + Duration::from_secs(10),
        [&mut a, &mut b],
    );
    let saved = b.expect_within(
        "the file",
        Duration::from_secs(400),
        on!(Event::TransferCompleted { dir: Dir::In, location, .. } => location.clone()),
    );
    eprintln!(
        "completed {:?} after the link returned, {:?} in all",
        restored.elapsed(),
        started.elapsed()
    );
    assert_eq!(sha256_of(Path::new(&saved)), digest);
}

#[test]
fn a_home_that_changes_address_mid_chat_recovers_within_30_s() {
    let Some(world) = world(Nat::Cone, LinkParams::rtt(Duration::from_millis(20)), false) else {
        return;
    };
    let (mut a, mut b, _work) = two_met(&world, "rebinding");
    a.0.command("say before the move").unwrap();
    b.expect(
        "the chat",
        on!(Event::Chat(x) if x.text == "before the move"),
    );

    let new = world.lab.rebind(&world.lab.a).unwrap();
    let moved = Instant::now();
    eprintln!("home A now at {new}");
    for client in [&mut a, &mut b] {
        client.expect(
            "the link reported interrupted",
            on!(Event::Link { silent_s: Some(_), .. } => ()),
        );
        client.expect(
            "the link back",
            on!(Event::Link { silent_s: None, .. } => ()),
        );
        eprintln!("link back after {:?}", moved.elapsed());
    }
    let took = moved.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    a.0.command("say from the new address").unwrap();
    b.expect(
        "the chat",
        on!(Event::Chat(x) if x.text == "from the new address"),
    );
    b.0.command("say and back").unwrap();
    a.expect("the chat", on!(Event::Chat(x) if x.text == "and back"));
}

#[test]
fn after_a_long_outage_mid_transfer_the_sending_resumes_on_a_new_connection() {
    // 40 ms between the peers, 16 Mbit/s each home link: 20 MiB take ~10 s, so the cut
    // lands mid-file.
    let wan = LinkParams {
        rate_bps: Some(16_000_000),
        ..LinkParams::rtt(Duration::from_millis(20))
    };
    let Some(world) = world(Nat::Cone, wan, false) else {
        return;
    };
    let (mut a, mut b, work) = two_met(&world, "outage-rejoin");
    let source = work.join("twenty mebibytes.bin");
    let digest = make_file(&source, 20 << 20);
    a.0.command(&format!("send {}", source.display())).unwrap();
    b.expect(
        "a quarter of the file",
        on!(Event::TransferProgress { dir: Dir::In, done, .. } if *done >= 5 << 20),
    );
    // Past the 15 s after which both give the connection up and join again.
    world.lab.a.link.set_down(true);
    let cut = Instant::now();
    b.expect(
        "the transfer paused",
        on!(Event::TransferFailed { dir: Dir::In, paused: true, .. } => ()),
    );
    eprintln!("paused after {:?}", cut.elapsed());
    std::thread::sleep(Duration::from_secs(20).saturating_sub(cut.elapsed()));
    world.lab.a.link.set_down(false);
    let restored = Instant::now();
    let resumed_from = b.expect(
        "the file offered again",
        on!(Event::TransferStarted { dir: Dir::In, resumed_from, .. } => *resumed_from),
    );
    eprintln!("resumed from {resumed_from} after {:?}", restored.elapsed());
    assert!(resumed_from >= 5 << 20, "{resumed_from}");
    let saved = b.expect(
        "the file",
        on!(Event::TransferCompleted { dir: Dir::In, location, .. } => location.clone()),
    );
    eprintln!("completed {:?} after the link returned", restored.elapsed());
    assert_eq!(sha256_of(Path::new(&saved)), digest);
    // One file, not two.
    let files: Vec<_> = std::fs::read_dir(Path::new(&saved).parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("twenty mebibytes")
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

/// A browser in home A (Chromium run inside the home's namespace) and a native client in home
/// B: they meet through STUN across both NATs, and ride out a 10 s cut of A's link.
/// Audio packets `client` hears over about two seconds, from the first report made after now.
fn audio_heard_over_2_s(client: &mut Client) -> u64 {
    let mut stats = || {
        client.0.skip_pending();
        client.expect(
            "call_stats",
            on!(Event::CallStats(x) => x.inbound_audio_packets),
        )
    };
    let first = stats();
    std::thread::sleep(Duration::from_secs(2));
    stats() - first
}

/// A voice call between two desktops in two homes: a 10 s outage interrupts it and the voice
/// comes back on the same call; a 25 s outage (longer than the room's connection waits) ends
/// it on both sides in words, and the two meet again afterwards.
#[test]
fn a_call_resumes_after_a_short_outage_and_ends_in_words_after_a_long_one() {
    let Some(world) = world(Nat::Cone, LinkParams::rtt(Duration::from_millis(20)), false) else {
        return;
    };
    let (mut a, mut b, _work) = two_met(&world, "lab-call");
    a.0.command("call").unwrap();
    b.expect(
        "ringing",
        on!(Event::Call {
            phase: duet_tests::automation::CallPhase::Ringing,
            ..
        }),
    );
    b.0.command("accept").unwrap();
    for client in [&mut a, &mut b] {
        client.expect(
            "the peer's voice",
            on!(Event::CallStats(x) if x.inbound_audio_packets >= 50),
        );
    }

    // 10 s: the room says interrupted, the call's own connection waits, and the voice returns.
    world.lab.a.link.set_down(true);
    let cut = Instant::now();
    for client in [&mut a, &mut b] {
        client.expect(
            "the link reported interrupted",
            on!(Event::Link { silent_s: Some(_), .. } => ()),
        );
    }
    std::thread::sleep((cut + Duration::from_secs(10)).saturating_duration_since(Instant::now()));
    world.lab.a.link.set_down(false);
    let restored = Instant::now();
    for (who, client) in [("Ada", &mut a), ("Bob", &mut b)] {
        // The room's link and the tone (its level is 0 while nothing arrives) both come back,
        // on the same call; whichever first.
        let (mut link, mut voice) = (None, None);
        while link.is_none() || voice.is_none() {
            let (seen, at) = client
                .0
                .wait_timed(
                    "the link and the voice back",
                    Duration::from_secs(30),
                    |e| match e {
                        Event::Link { silent_s: None, .. } => Some(Ok(true)),
                        Event::CallStats(x) if x.peer_level > 0.25 => Some(Ok(false)),
                        Event::CallEnded { message, .. } => Some(Err(message.clone())),
                        _ => None,
                    },
                )
                .unwrap_or_else(|e| panic!("{e:#}"));
            match seen {
                Ok(true) => link = link.or(Some(at - restored)),
                Ok(false) => voice = voice.or(Some(at - restored)),
                Err(why) => panic!("{who}'s call ended after a 10 s outage: {why}"),
            }
        }
        let packets = audio_heard_over_2_s(client);
        eprintln!(
            "{who}: link back after {link:?}, voice after {voice:?}; then {packets} packets in 2 s"
        );
        assert!(
            packets >= 80,
            "{who} heard {packets} packets in 2 s after the outage"
        );
    }

    // 25 s: the room's connection is given up after 15 s of silence, and with it the call.
    world.lab.a.link.set_down(true);
    let cut = Instant::now();
    for (who, client) in [("Ada", &mut a), ("Bob", &mut b)] {
        let (reason, message) = client.expect_within(
            "the call's end",
            Duration::from_secs(25),
            on!(Event::CallEnded { reason, message } => (reason.clone(), message.clone())),
        );
        eprintln!(
            "{who}: call ended after {:?}: {reason}: {message}",
            cut.elapsed()
        );
        assert!(
            cut.elapsed() < Duration::from_secs(22),
            "{who}'s call ended only after {:?}",
            cut.elapsed()
        );
        assert!(
            message.len() > 10,
            "{who}'s call ended without words: {message:?}"
        );
    }
    std::thread::sleep((cut + Duration::from_secs(25)).saturating_duration_since(Instant::now()));
    world.lab.a.link.set_down(false);
    for client in [&mut a, &mut b] {
        client.expect_within(
            "the peer's hello on a new connection",
            Duration::from_secs(60),
            on!(Event::PeerHello { .. }),
        );
    }
    a.0.command("say after the call").unwrap();
    b.expect(
        "the chat",
        on!(Event::Chat(x) if x.text == "after the call"),
    );
}

impl World {
    /// `link` as a browser in a home opens it.
    fn local_link(&self, link: &str) -> String {
        duet_tests::lab::browser::local_link(link, self.servers.address().unwrap())
    }

    /// A Chromium for `home`, its wrapper script in `work`.
    fn browser_in(&self, home: &duet_tests::lab::Namespace, work: &Path) -> BrowserHome {
        BrowserHome::start(home, self.servers.address().unwrap(), work).unwrap()
    }
}

/// A script of `tests/e2e` driving browsers in the lab, with this file's patience for failure.
struct Script(duet_tests::script::Script);

impl Script {
    fn start(script: &str, args: &[String], browsers: &[(&str, &BrowserHome)]) -> Script {
        let env: Vec<(&str, &Path)> = browsers
            .iter()
            .map(|(var, browser)| (*var, browser.chromium.as_path()))
            .collect();
        Script(
            duet_tests::script::Script::start(&format!("tests/e2e/{script}"), args, &env).unwrap(),
        )
    }

    /// Waits for the script to print `line`.
    fn wait_for(&mut self, line: &str, within: Duration) {
        self.wait_for_start(line, within);
    }

    /// Waits for a line that starts with `start`; returns the rest of it.
    fn wait_for_start(&mut self, start: &str, within: Duration) -> String {
        self.0
            .wait_for_start(start, within)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Waits for the script's end; its `RESULT`, which must say `ok`.
    fn result(self) -> serde_json::Value {
        let result = self.0.result().unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!("result: {result}");
        result
    }
}

/// Two browsers, Ada in home A and Bob in home B, running `lab-pair.mjs` in `mode`.
fn browser_pair(
    world: &World,
    work: &Path,
    mode: &str,
    extra: &[&str],
) -> (Script, [BrowserHome; 2]) {
    let homes = [
        world.browser_in(&world.lab.a.home, work),
        world.browser_in(&world.lab.b.home, work),
    ];
    let mut args = vec![
        mode.to_owned(),
        duet_tests::repo_root()
            .join("target/e2e")
            .display()
            .to_string(),
        world.local_link(&world.link),
    ];
    args.extend(extra.iter().map(|x| (*x).to_owned()));
    let script = Script::start(
        "lab-pair.mjs",
        &args,
        &[
            ("DUET_CHROMIUM_A", &homes[0]),
            ("DUET_CHROMIUM_B", &homes[1]),
        ],
    );
    (script, homes)
}

/// Both browsers' connections ran `relayed` (through TURN) or not, and never over a home
/// address.
fn assert_paths(result: &serde_json::Value, relayed: bool) {
    for name in ["Ada", "Bob"] {
        let path = &result["path"][name];
        assert_eq!(path["relayed"], relayed, "{name}: {result}");
        let remote = path["remote"].as_str().unwrap_or_default();
        let expected: &[&str] = if relayed {
            &["relay", "srflx", "prflx"]
        } else {
            &["srflx", "prflx"]
        };
        assert!(expected.contains(&remote), "{name}: {result}");
    }
}

/// Two browsers behind `nat`, 40 ms apart, with or without a relay offered: `lab-pair.mjs`'s
/// result in `mode` (`None`: the lab needs root).
fn browsers_across(nat: Nat, relay: bool, mode: &str) -> Option<serde_json::Value> {
    let world = world_alone(nat, LinkParams::rtt(Duration::from_millis(20)), relay)?;
    let work = temp_dir(&format!("lab-browsers-{mode}")).unwrap();
    let (script, _homes) = browser_pair(&world, &work, mode, &[]);
    Some(script.result())
}

#[test]
fn two_browsers_behind_cone_nats_connect_directly_chat_and_move_a_file() {
    // A relay is offered, as a deployment with TURN does, and not needed.
    let Some(result) = browsers_across(Nat::Cone, true, "meet") else {
        return;
    };
    assert_paths(&result, false);
    assert_eq!(result["received_sha256"], result["sent_sha256"], "{result}");
    assert_striped(&result);
    for name in ["Ada", "Bob"] {
        let rtt = result["rtt_ms"][name].as_u64().unwrap_or_default();
        assert!((38..=300).contains(&rtt), "{name}: {result}");
    }
}

#[test]
fn two_browsers_behind_symmetric_nats_meet_through_the_relay() {
    let Some(result) = browsers_across(Nat::Symmetric, true, "meet") else {
        return;
    };
    assert_paths(&result, true);
    assert_eq!(result["received_sha256"], result["sent_sha256"], "{result}");
    assert_striped(&result);
}

#[test]
fn two_browsers_behind_symmetric_nats_without_a_relay_say_why_within_15_s() {
    let Some(result) = browsers_across(Nat::Symmetric, false, "no-relay") else {
        return;
    };
    assert_eq!(result["met"], false, "{result}");
    for name in ["Ada", "Bob"] {
        // 15 s from the handshake's start, which follows both being in the room closely.
        let told = result["told_after_ms"][name].as_u64().unwrap_or(u64::MAX);
        assert!(told < 20_000, "{name}: {result}");
    }
}

#[test]
fn a_ten_second_outage_mid_transfer_between_browsers_resumes_and_the_file_verifies() {
    // As the native test: 40 ms between the peers and 0.5 % loss end to end.
    let wan = LinkParams {
        loss: 0.0025,
        ..LinkParams::rtt(Duration::from_millis(20))
    };
    let Some(world) = world_alone(Nat::Cone, wan, false) else {
        return;
    };
    let work = temp_dir("lab-browsers-outage").unwrap();
    let (mut script, _homes) = browser_pair(&world, &work, "outage", &[]);
    script.wait_for("CUT", Duration::from_secs(600));
    world.lab.b.link.set_down(true);
    std::thread::sleep(Duration::from_secs(10));
    world.lab.b.link.set_down(false);
    let result = script.result();
    assert_eq!(result["received_sha256"], result["sent_sha256"], "{result}");
    for name in ["Ada", "Bob"] {
        let noticed = result["interrupted_after_ms"][name]
            .as_u64()
            .unwrap_or(u64::MAX);
        assert!(noticed < 6_000, "{name}: {result}");
    }
}

/// [`measure_chat_ready`] for two browsers: the figures in `docs/networks.md`. A measurement,
/// not a check; run it with `-- --ignored --nocapture`.
#[test]
#[ignore = "a measurement for docs/networks.md (about 10 minutes)"]
fn measure_chat_ready_in_browsers() {
    for (nat, relay) in [(Nat::Cone, false), (Nat::Symmetric, true)] {
        for between_ms in [0u64, 40, 150] {
            let per_link = LinkParams::rtt(Duration::from_millis(between_ms / 2));
            let Some(world) = world_alone(nat, per_link, relay) else {
                return;
            };
            let work = temp_dir(&format!("browsers-ready-{between_ms}")).unwrap();
            let (script, _homes) = browser_pair(&world, &work, "ready", &["5"]);
            let result = script.result();
            assert_eq!(result["relayed"], relay, "{nat:?} at {between_ms} ms");
            let samples: Vec<u64> = result["runs_ms"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|x| x.as_u64())
                .collect();
            println!(
                "browsers, chat ready, {} at {between_ms} ms: median {} ms, runs {samples:?}",
                if relay { "relayed" } else { "direct" },
                duet_tests::median_u64(samples.clone())
            );
        }
    }
}

/// Bea (Chromium in home A) and Dex (a native client in home B) meet, chat both ways, and
/// Bea's 20 MiB file arrives at Dex and verifies. `lab.mjs` goes on with its outage part
/// unless `mode` is `meet-only`. The script, Dex, and Dex's connection path.
fn browser_meets_native(
    world: &World,
    home_a: &BrowserHome,
    work: &Path,
    mode: Option<&str>,
) -> (Script, Client, (String, String, bool)) {
    let out = duet_tests::repo_root().join("target/e2e");
    let mut args = vec![world.local_link(&world.link), out.display().to_string()];
    args.extend(mode.map(str::to_owned));
    let mut script = Script::start("lab.mjs", &args, &[("DUET_CHROMIUM", home_a)]);
    let mut native = Client::start(&world.lab.b.home, &world.link, &work.join("b"), "Dex");
    let path = meet(&mut native);
    native.expect_within(
        "the browser's chat",
        Duration::from_secs(120),
        on!(Event::Chat(x) if x.text == "hello from the browser"),
    );
    native.0.command("say hello from the desktop").unwrap();
    let sent = script.wait_for_start("SENT ", Duration::from_secs(120));
    let saved = native.expect_within(
        "the browser's file",
        Duration::from_secs(240),
        on!(Event::TransferCompleted { dir: Dir::In, location, .. } => location.clone()),
    );
    assert_eq!(duet_tests::hex(&sha256_of(Path::new(&saved))), sent);
    // The browser stripes what it sends; the desktop takes it over the lanes.
    assert!(native.0.most_lanes >= 1, "no lanes for the browser's file");
    (script, native, path)
}

/// The same pair behind symmetric NATs, with TURN: they meet through the relay (asserted on
/// both sides), chat both ways, and the browser's 20 MiB file verifies.
#[test]
fn a_browser_and_a_native_client_behind_symmetric_nats_meet_through_the_relay() {
    let Some(world) = world_alone(
        Nat::Symmetric,
        LinkParams::rtt(Duration::from_millis(20)),
        true,
    ) else {
        return;
    };
    let work = temp_dir("lab-browser-relayed").unwrap();
    let home_a = world.browser_in(&world.lab.a.home, &work);
    let (script, _native, (local_type, remote_type, relayed)) =
        browser_meets_native(&world, &home_a, &work, Some("meet-only"));
    assert!(relayed, "the desktop's pair: {local_type}/{remote_type}");
    let result = script.result();
    println!("browser to desktop through the relay: {result}");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["path"]["relayed"], true, "{result}");
}

#[test]
fn a_browser_and_a_native_client_meet_across_nats_and_ride_out_an_outage() {
    let Some(world) = world_alone(Nat::Cone, LinkParams::rtt(Duration::from_millis(20)), false)
    else {
        return;
    };
    let work = temp_dir("lab-browser").unwrap();
    let home_a = world.browser_in(&world.lab.a.home, &work);
    let (mut script, mut native, (local_type, remote_type, relayed)) =
        browser_meets_native(&world, &home_a, &work, None);
    assert!(!relayed, "{local_type}/{remote_type}");
    script.wait_for("CUT", Duration::from_secs(240));
    world.lab.a.link.set_down(true);
    let cut = Instant::now();
    native.expect(
        "the link reported interrupted",
        on!(Event::Link { silent_s: Some(_), .. } => ()),
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(cut.elapsed()));
    world.lab.a.link.set_down(false);
    native.expect(
        "the link back",
        on!(Event::Link { silent_s: None, .. } => ()),
    );
    let result = script.result();
    let remote = result["path"]["remote"].as_str().unwrap_or_default();
    assert!(remote == "srflx" || remote == "prflx", "{result}");
    assert_eq!(result["path"]["relayed"], false, "{result}");
    let rtt = result["rtt_ms"].as_u64().unwrap_or_default();
    assert!((38..=200).contains(&rtt), "{result}");
    assert!(
        result["interrupted_after_ms"].as_u64().unwrap_or(u64::MAX) < 6_000,
        "{result}"
    );
    assert_eq!(result["during_state"], "not_delivered", "{result}");
    assert!(
        result["back_after_cut_ms"].as_u64().unwrap_or(u64::MAX) < 40_000,
        "{result}"
    );
}
