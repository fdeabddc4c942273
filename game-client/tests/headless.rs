//! Two headless clients over real WebRTC (webrtc-rs) through `wrangler dev`, in an `lo`-only
//! namespace: hello and names both ways, chat with receipts, rename, presence, "not delivered"
//! while the peer is away, history and identity surviving a `kill -9`, and voice calls (a test
//! tone, a missing microphone, and ALSA devices backed by files).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use duet_tests::automation::{CallPhase, Delivery, Dir};
use duet_tests::{
    Event, HeadlessClient, Wrangler, WranglerOptions, assert_loopback_only, make_file, on,
    sha256_of, storage_files, temp_dir,
};

/// The harness's headless client, with this file's 45 s patience and panics for failures.
struct Client(HeadlessClient);

impl Client {
    fn start(room_link: &str, data_dir: &Path, name: &'static str) -> Client {
        let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
        Client(HeadlessClient::start(binary, room_link, data_dir, name).expect("start duet-client"))
    }

    fn command(&mut self, line: &str) {
        self.0.command(line).unwrap();
    }

    fn expect<T>(&mut self, what: &str, pick: impl Fn(&Event) -> Option<T>) -> T {
        self.0
            .wait(what, Duration::from_secs(45), pick)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Where the next transfer going `dir` that completes put its file.
    fn completed(&mut self, dir: Dir) -> PathBuf {
        let want = dir;
        PathBuf::from(self.expect(
            "a completed transfer",
            on!(Event::TransferCompleted { dir, location, .. } if *dir == want => location.clone()),
        ))
    }

    /// The next transfer going `dir` that fails: its sentence, and whether its bytes are kept.
    fn failed(&mut self, dir: Dir) -> (String, bool) {
        let want = dir;
        self.expect(
            "a failed transfer",
            on!(Event::TransferFailed { dir, message, paused, .. } if *dir == want
                => (message.clone(), *paused)),
        )
    }

    fn kill9(self) {
        self.0.kill9();
    }

    /// Waits for the question about a large offer and says yes to it, as the person would;
    /// returns the offered size.
    fn take_offer(&mut self) -> u64 {
        let (id, size) = self.expect(
            "a question about the offer",
            on!(Event::TransferAsked { id, size, .. } => (id.clone(), *size)),
        );
        self.command(&format!("take_file {id}"));
        size
    }
}

#[test]
fn two_headless_clients_meet_chat_rename_and_keep_history() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let (dir_a, dir_b): (PathBuf, PathBuf) =
        (temp_dir("client-a").unwrap(), temp_dir("client-b").unwrap());

    let mut a = Client::start(&link, &dir_a, "Ada");
    let ready_a = a.expect("ready", on!(Event::Ready { identity, .. } => *identity));
    let mut b = Client::start(&link, &dir_b, "Bob");
    let ready_b = b.expect("ready", on!(Event::Ready { identity, .. } => *identity));

    // Hello and names, both ways.
    // Each side proved its key over this connection, and both show the same safety code.
    let hello = on!(Event::PeerHello { identity, name, safety_code, .. }
        => (*identity, name.clone(), safety_code.clone()));
    let (seen_by_a, name_b, code_a) = a.expect("peer_hello", hello);
    let (seen_by_b, name_a, code_b) = b.expect("peer_hello", hello);
    assert_eq!((seen_by_a, name_b.as_str()), (ready_b, "Bob"));
    assert_eq!((seen_by_b, name_a.as_str()), (ready_a, "Ada"));
    assert_eq!(code_a, code_b);
    assert_eq!(code_a.len(), 7, "{code_a}");

    // Chat with a receipt.
    a.command("say hi Bob, ünïcode ok? 👋");
    let got = b.expect("chat", on!(Event::Chat(x) if !x.mine => x.clone()));
    assert_eq!(got.text, "hi Bob, ünïcode ok? 👋");
    assert_eq!(got.author, "Ada");
    assert_eq!(got.state, Delivery::Received);
    a.expect(
        "delivered",
        on!(Event::Chat(x) if x.state == Delivery::Delivered && x.id == got.id),
    );

    // Rename is announced.
    a.command("rename Ada Lovelace");
    a.expect(
        "renamed",
        on!(Event::Renamed { name, .. } if *name == "Ada Lovelace"),
    );
    b.expect(
        "peer_renamed",
        on!(Event::PeerRenamed { name, .. } if *name == "Ada Lovelace"),
    );

    // B dies hard; A sees it leave, and a message written now is not delivered (nor queued).
    b.kill9();
    a.expect("peer_left", on!(Event::PeerLeft { .. }));
    a.command("say are you there?");
    let lonely = a.expect(
        "chat",
        on!(Event::Chat(x) if x.text == "are you there?" => x.state),
    );
    assert_eq!(lonely, Delivery::NotDelivered);

    // B comes back from the same data dir: same identity, history intact after the kill -9.
    let mut b = Client::start(&link, &dir_b, "Bob");
    let again = b.expect("ready", on!(Event::Ready { identity, .. } => *identity));
    assert_eq!(again, ready_b);
    b.command("history");
    let history = b.expect(
        "history",
        on!(Event::History { entries } => entries.clone()),
    );
    let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        vec!["hi Bob, ünïcode ok? 👋"],
        "the undelivered message never reached B"
    );
    // And they meet again (the server let the same identity take its seat back).
    b.expect(
        "peer_hello",
        on!(Event::PeerHello { name, .. } if *name == "Ada Lovelace"),
    );
    a.expect(
        "peer_hello",
        on!(Event::PeerHello { name, .. } if *name == "Bob"),
    );
}

/// A deterministic pseudo-random file (xorshift), written in 1 MiB blocks.
fn visible_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".duet-partial")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_200_mib_file_survives_a_killed_sender_and_resumes() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("transfer").unwrap();
    let (dir_a, dir_b) = (work.join("a"), work.join("b"));
    let source = work.join("big file.bin");
    let size = 200 * 1024 * 1024;
    let digest = make_file(&source, size);
    let downloads = dir_b.join("downloads");

    let mut a = Client::start(&link, &dir_a, "Ada");
    let mut b = Client::start(&link, &dir_b, "Bob");
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));

    let started = Instant::now();
    a.command(&format!("send {}", source.display()));
    // 200 MiB is above the 25 MiB the receiver takes unasked: Bob says yes.
    assert_eq!(b.take_offer(), size as u64);
    let offered = b.expect(
        "incoming transfer",
        on!(Event::TransferStarted { dir: Dir::In, name, size, resumed_from, .. }
            => (name.clone(), *size, *resumed_from)),
    );
    assert_eq!(offered, ("big file.bin".to_owned(), size as u64, 0));
    // Progress shows on both sides; kill the sender past the middle.
    a.expect(
        "sender progress",
        on!(Event::TransferProgress { dir: Dir::Out, done, .. } if *done > 0),
    );
    let half = b.expect(
        "receiver at 50%",
        on!(Event::TransferProgress { dir: Dir::In, done, .. } if done * 2 >= size as u64
            => *done),
    );
    println!("50% after {:?} ({half} bytes)", started.elapsed());
    a.kill9();
    let (failed, paused) = b.failed(Dir::In);
    assert!(failed.contains("left"), "{failed}");
    assert!(paused, "its bytes are kept: {failed}");
    assert!(
        visible_files(&downloads).is_empty(),
        "nothing partial may be visible: {:?}",
        visible_files(&downloads)
    );

    // The sender comes back and sends the same file again: it resumes, not from zero.
    let mut a = Client::start(&link, &dir_a, "Ada");
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    let resumed_at = Instant::now();
    a.command(&format!("send {}", source.display()));
    // Bob said yes to this file already: the resume is not put to him again.
    let resumed = b.expect(
        "resumed transfer",
        on!(Event::TransferAsked { .. } | Event::TransferStarted { dir: Dir::In, .. }),
    );
    let Event::TransferStarted {
        resumed_from: from, ..
    } = resumed
    else {
        panic!("asked again: {resumed:?}");
    };
    assert!(
        from * 2 >= size as u64 - (1 << 20),
        "resumed from {from}, expected about half"
    );
    let saved = b.completed(Dir::In);
    a.completed(Dir::Out);
    let rest = size as u64 - from;
    let secs = resumed_at.elapsed().as_secs_f64();
    println!(
        "resumed {rest} bytes in {secs:.2} s = {:.1} MB/s",
        rest as f64 / secs / 1e6
    );
    assert_eq!(saved, downloads.join("big file.bin"));
    assert_eq!(std::fs::metadata(&saved).unwrap().len(), size as u64);
    assert_eq!(
        sha256_of(&saved),
        digest,
        "SHA-256 of the saved file matches the source"
    );
    assert_eq!(visible_files(&downloads), vec!["big file.bin".to_owned()]);
    std::fs::remove_file(&source).unwrap();
}

/// A file above the receiver's threshold (25 MiB) is not taken unasked: nothing is stored and
/// no byte moves until the person answers; "no" tells the sender in words, "yes" (to the same
/// file offered again) receives it.
#[test]
fn a_large_offer_waits_for_the_persons_answer() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("transfer-ask").unwrap();
    let source = work.join("big question.bin");
    let size = 30 * 1024 * 1024;
    let digest = make_file(&source, size);
    let downloads = work.join("b").join("downloads");
    let mut a = Client::start(&link, &work.join("a"), "Ada");
    let mut b = Client::start(&link, &work.join("b"), "Bob");
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));

    a.command(&format!("send {}", source.display()));
    let (asked, name, offered) = b.expect(
        "the question",
        on!(Event::TransferAsked { id, name, size } => (id.clone(), name.clone(), *size)),
    );
    assert_eq!((name.as_str(), offered), ("big question.bin", size as u64));
    // While Bob thinks, nothing moves and nothing is written.
    std::thread::sleep(Duration::from_secs(2));
    let meanwhile: Vec<Event> = a.0.pending().into_iter().chain(b.0.pending()).collect();
    assert!(
        !meanwhile.iter().any(|e| matches!(
            e,
            Event::TransferAccepted { .. } | Event::TransferStarted { dir: Dir::In, .. }
        ) || matches!(e, Event::TransferProgress { done, .. } if *done > 0)),
        "bytes moved before the answer: {meanwhile:?}"
    );
    assert!(
        storage_files(&downloads).is_empty(),
        "{:?}",
        storage_files(&downloads)
    );
    b.command(&format!("refuse_file {asked}"));
    let (refused, _) = a.failed(Dir::Out);
    assert!(refused.contains("said no"), "{refused}");
    b.expect(
        "the receiver's row",
        on!(Event::TransferFailed { dir: Dir::In, id, .. } if *id == asked),
    );
    assert!(
        storage_files(&downloads).is_empty(),
        "{:?}",
        storage_files(&downloads)
    );

    // Offered again, and taken after a while: the sender's hash of the file is ready long
    // before the person's yes, and the transfer must still end verified.
    a.command(&format!("send {}", source.display()));
    let asked = b.expect(
        "the question",
        on!(Event::TransferAsked { id, .. } => id.clone()),
    );
    std::thread::sleep(Duration::from_secs(3));
    b.command(&format!("take_file {asked}"));
    a.expect("the sender told", on!(Event::TransferAccepted { .. }));
    let saved = b.completed(Dir::In);
    assert_eq!(sha256_of(&saved), digest);
}

/// Grants that never reach the sender (from the third on, the receiver's engine drops them, as
/// lost messages would be) stall the transfer only until the receiver, waiting 2 s for chunks
/// it allowed, grants again.
#[test]
fn a_lost_grant_costs_a_pause_not_the_transfer() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("transfer-lost-grant").unwrap();
    let source = work.join("lost grant.bin");
    let size = 8 * 1024 * 1024;
    let digest = make_file(&source, size);
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let mut a = Client::start(&link, &work.join("a"), "Ada");
    let mut b = Client(
        HeadlessClient::start_wrapped(
            &["env", "DUET_FAULT_DROP_GRANT=3"],
            binary,
            &link,
            &work.join("b"),
            "Bob",
        )
        .expect("start duet-client"),
    );
    let (saved, secs) = once_met_send(&mut a, &mut b, &source);
    println!("8 MiB with lost grants in {secs:.2} s");
    assert!(
        secs >= 2.0,
        "the lost grant must have cost a pause: {secs:.2} s"
    );
    a.completed(Dir::Out);
    assert_eq!(sha256_of(&saved), digest);
}

/// Once `a` and `b` have met, `a` sends `source`: where `b` saved it, and the seconds from the
/// command to `b`'s end.
fn once_met_send(a: &mut Client, b: &mut Client, source: &Path) -> (PathBuf, f64) {
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));
    let started = Instant::now();
    a.command(&format!("send {}", source.display()));
    let saved = b.completed(Dir::In);
    (saved, started.elapsed().as_secs_f64())
}

/// Both apps run one frame every 3 s (a busy machine, a minimized window): the file still
/// moves at the network's pace, because transfers run beside the frames, not in them. In
/// frames, with at most 1 MiB of credit per turn, these 32 MiB would take over 90 s; what is
/// left is the frames that take the command and report the end.
#[test]
fn a_file_moves_at_the_networks_pace_however_seldom_the_app_draws() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("transfer-slow-frames").unwrap();
    let source = work.join("slow frames.bin");
    let digest = make_file(&source, 32 * 1024 * 1024);
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let slow = |dir: &str, name: &str| {
        Client(
            HeadlessClient::start_wrapped(
                &["env", "DUET_TICK_US=3000000", "DUET_ASK_ABOVE=1000000000"],
                binary,
                &link,
                &work.join(dir),
                name,
            )
            .expect("start duet-client"),
        )
    };
    let (mut a, mut b) = (slow("a", "Ada"), slow("b", "Bob"));
    let (saved, secs) = once_met_send(&mut a, &mut b, &source);
    println!("32 MiB between apps drawing every 3 s, in {secs:.1} s");
    assert_eq!(sha256_of(&saved), digest);
    assert!(secs < 20.0, "the transfer waited for frames: {secs:.1} s");
}

#[test]
fn the_sender_sees_the_transfer_fail_when_the_receiver_leaves() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("transfer-receiver-leaves").unwrap();
    let source = work.join("clip.bin");
    make_file(&source, 64 * 1024 * 1024);
    let mut a = Client::start(&link, &work.join("a"), "Ada");
    let mut b = Client::start(&link, &work.join("b"), "Bob");
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));
    a.command(&format!("send {}", source.display()));
    b.take_offer();
    b.expect(
        "some progress",
        on!(Event::TransferProgress { dir: Dir::In, done, .. } if *done > 4 << 20),
    );
    b.kill9();
    let (failed, _) = a.failed(Dir::Out);
    assert!(failed.contains("left"), "{failed}");
    // Nothing is stuck: a chat written now is honestly not delivered.
    a.command("say still there?");
    let chat = a.expect(
        "chat",
        on!(Event::Chat(x) if x.text == "still there?" => x.state),
    );
    assert_eq!(chat, Delivery::NotDelivered);
}

#[test]
fn a_full_disk_fails_the_transfer_on_both_sides_and_leaves_nothing() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("disk-full").unwrap();
    let source = work.join("too big for the disk.bin");
    make_file(&source, 8 * 1024 * 1024);
    let (dir_a, dir_b) = (work.join("a"), work.join("b"));
    let downloads = dir_b.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    // The receiver's downloads folder is a 2 MiB tmpfs in a private mount namespace: writes fail
    // with ENOSPC exactly as on a full disk, and nothing outside the test sees the mount.
    let mount = format!(
        "mount -t tmpfs -o size=2m duet-full '{}' && exec \"$@\"",
        downloads.display()
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let mut b = Client(
        HeadlessClient::start_wrapped(
            &["unshare", "-m", "sh", "-c", &mount, "sh"],
            binary,
            &link,
            &dir_b,
            "Bob",
        )
        .expect("start the receiver on a small disk"),
    );
    let mut a = Client::start(&link, &dir_a, "Ada");
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));
    a.command(&format!("send {}", source.display()));
    let (failed, _) = b.failed(Dir::In);
    assert!(failed.contains("not enough space"), "{failed}");
    let (failed, _) = a.failed(Dir::Out);
    assert!(failed.contains("disk or storage quota is full"), "{failed}");
    // Nothing partial is visible and the partial bytes were freed. The mount is private, so look
    // through the receiver's own view of it.
    let in_receivers_view = |args: &[&str]| {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &b.0.pid().to_string(), "-m"])
            .args(args)
            .arg(&downloads)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        in_receivers_view(&["df", "-k"]).contains("duet-full"),
        "tmpfs not mounted"
    );
    let visible: Vec<String> = in_receivers_view(&["ls", "-A"])
        .lines()
        .filter(|name| !name.starts_with('.'))
        .map(str::to_owned)
        .collect();
    assert!(visible.is_empty(), "partial file visible: {visible:?}");
    let used_kib: u64 = in_receivers_view(&["du", "-sk"])
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        used_kib < 64,
        "partial bytes left on the full disk: {used_kib} KiB"
    );
    // The room still works: chat goes through both ways.
    a.command("say sorry, your disk is full");
    b.expect(
        "chat",
        on!(Event::Chat(x) if x.text == "sorry, your disk is full"),
    );
}

#[test]
fn a_third_person_is_refused_with_a_sentence() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("third-person").unwrap();
    let mut a = Client::start(&link, &work.join("a"), "Ada");
    let mut b = Client::start(&link, &work.join("b"), "Bob");
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));
    let mut c = Client::start(&link, &work.join("c"), "Cleo");
    let refused = c.expect(
        "refusal",
        on!(Event::SignalingClosed { message } => message.clone()),
    );
    assert_eq!(
        refused,
        "This room already has two people in it. Only two fit in a Duet room."
    );
    // The two inside are undisturbed.
    a.command("say still just us");
    b.expect("chat", on!(Event::Chat(x) if x.text == "still just us"));
    // An unknown room is named as such.
    let missing = format!("{}/r/{}", wrangler.base, "A".repeat(22));
    let mut d = Client::start(&missing, &work.join("d"), "Dan");
    let refused = d.expect(
        "refusal",
        on!(Event::SignalingClosed { message } => message.clone()),
    );
    assert!(refused.starts_with("This room does not exist"), "{refused}");
}

#[test]
fn a_banned_person_is_told_so_when_they_come_back() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = wrangler.api();
    let created = runtime.block_on(api.create_room()).unwrap();
    let link = format!("{}/r/{}", wrangler.base, created.room);
    let work = temp_dir("banned").unwrap();
    let mut a = Client::start(&link, &work.join("a"), "Ada");
    let mut b = Client::start(&link, &work.join("b"), "Bob");
    let bob_id = b.expect("connected", on!(Event::Connected { peer_id } => *peer_id));
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));
    let reply = runtime
        .block_on(api.moderate(
            &created.room,
            "ban",
            &created.owner_key,
            matchbox_socket::PeerId(bob_id),
        ))
        .unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    b.kill9();
    let mut b = Client::start(&link, &work.join("b"), "Bob");
    let refused = b.expect(
        "refusal",
        on!(Event::SignalingClosed { message } => message.clone()),
    );
    assert_eq!(
        refused,
        "You cannot join this room: its creator has banned you."
    );
}

#[test]
fn an_unreachable_server_is_named() {
    assert_loopback_only();
    let work = temp_dir("unreachable").unwrap();
    // Port 9 on loopback: nothing listens there in the test namespace.
    let link = format!("http://127.0.0.1:9/r/{}", "A".repeat(22));
    let mut c = Client::start(&link, &work.join("c"), "Cleo");
    let refused = c.expect(
        "refusal",
        on!(Event::SignalingClosed { message } => message.clone()),
    );
    assert!(
        refused.starts_with("Cannot reach the Duet server"),
        "{refused}"
    );
}

#[test]
fn the_room_outlives_a_server_restart() {
    assert_loopback_only();
    let state = temp_dir("restart-state").unwrap();
    let options = WranglerOptions {
        persist_to: Some(state),
        port: Some(duet_tests::free_port()),
        ..Default::default()
    };
    let wrangler = Wrangler::start(options.clone()).unwrap();
    let link = wrangler.new_room_link().unwrap();
    let (dir_a, dir_b) = (
        temp_dir("restart-a").unwrap(),
        temp_dir("restart-b").unwrap(),
    );
    let mut a = Client::start(&link, &dir_a, "Ada");
    let mut b = Client::start(&link, &dir_b, "Bob");
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));

    // The server goes away (the whole wrangler/workerd process group is killed). The two are
    // already connected directly, so the room goes on: chat still arrives, with its receipt.
    drop(wrangler);
    std::thread::sleep(Duration::from_secs(2));
    a.command("say the server is gone, we are not");
    let got = b.expect(
        "chat without a server",
        on!(Event::Chat(x) if !x.mine => x.clone()),
    );
    assert_eq!(got.text, "the server is gone, we are not");
    a.expect(
        "delivered",
        on!(Event::Chat(x) if x.state == Delivery::Delivered && x.id == got.id),
    );

    // The same server comes back on the same address with the same storage. Bob quits. Ada
    // either hears his connection close, and then, alone with a dead signaling connection, is
    // told in words; or she hears nothing from him for 15 s, gives the connection up and joins
    // the room again, through the new server process.
    let _wrangler = Wrangler::start(options).unwrap();
    b.command("quit");
    // (Her socket ends once no peer is left; the leave itself may be reported before or after.)
    let lost = a.expect("signaling lost, or the room joined again", |e| match e {
        Event::SignalingClosed { message } => Some(Some(message.clone())),
        Event::Connected { .. } => Some(None),
        _ => None,
    });
    let rejoined = match lost {
        Some(lost) => {
            assert!(lost.contains("Cannot reach the Duet server"), "{lost}");
            // This headless client does not retry by itself (the windowed client's retries
            // are tested in `room` and `desktop.rs`): she comes back.
            a.command("quit");
            std::thread::sleep(Duration::from_millis(500));
            false
        }
        None => true,
    };
    eprintln!(
        "after Bob left, Ada {}",
        if rejoined {
            "joined again by herself"
        } else {
            "was told the server is gone"
        }
    );

    // The room survived the restart: they meet through the new server process, and chat is
    // delivered.
    let mut a = if rejoined {
        a
    } else {
        Client::start(&link, &dir_a, "Ada")
    };
    let mut b = Client::start(&link, &dir_b, "Bob");
    a.expect("peer_hello again", on!(Event::PeerHello { .. }));
    b.expect("peer_hello again", on!(Event::PeerHello { .. }));
    a.command("say back after the restart");
    let got = b.expect("chat", on!(Event::Chat(x) if !x.mine => x.clone()));
    assert_eq!(got.text, "back after the restart");
    a.expect(
        "delivered",
        on!(Event::Chat(x) if x.state == Delivery::Delivered && x.id == got.id),
    );
}

/// Two desktop apps call each other over a real webrtc-rs media connection of its own, each
/// sending a 440 Hz tone (`DUET_FAKE_AUDIO=tone`, set by the harness) Opus-encoded: both hear
/// the other (packets and bytes grow, the decoded level is the tone's), mute stops Ada's audio
/// at Bob's end while Bob's still reaches her, chat works during the call, and hanging up ends
/// it on both sides and stops the media.
#[test]
fn two_desktop_apps_call_each_other_with_voice() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let (dir_a, dir_b) = (temp_dir("call-a").unwrap(), temp_dir("call-b").unwrap());
    let mut a = Client::start(&link, &dir_a, "Ada");
    let mut b = Client::start(&link, &dir_b, "Bob");
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));

    a.command("call");
    let video = b.expect(
        "ringing",
        on!(Event::Call { phase: CallPhase::Ringing, video, .. } => *video),
    );
    assert_eq!(video, Some(false));
    b.command("accept");
    a.expect(
        "active",
        on!(Event::Call {
            phase: CallPhase::Active,
            ..
        }),
    );
    b.expect(
        "active",
        on!(Event::Call {
            phase: CallPhase::Active,
            ..
        }),
    );

    // Both hear the other's tone: a third of full scale, through Opus.
    let heard = |c: &mut Client| {
        c.expect(
            "a second of the peer's audio",
            on!(Event::CallStats(x) if x.inbound_audio_packets >= 50),
        )
    };
    // The first report made after now (not one that waited in the pipe).
    let stats = |c: &mut Client| {
        c.0.skip_pending();
        c.expect("call_stats", on!(Event::CallStats(x) => *x))
    };
    heard(&mut a);
    heard(&mut b);
    let (a1, b1) = (stats(&mut a), stats(&mut b));
    std::thread::sleep(Duration::from_secs(2));
    let (a2, b2) = (stats(&mut a), stats(&mut b));
    for (who, first, second) in [("Ada", &a1, &a2), ("Bob", &b1, &b2)] {
        let packets = second.inbound_audio_packets - first.inbound_audio_packets;
        let bytes = second.inbound_audio_bytes - first.inbound_audio_bytes;
        eprintln!("{who}: +{packets} packets, +{bytes} bytes, {second:?}");
        // 50 packets a second; at least 2 s passed between the two reports.
        assert!(packets >= 80, "{who} heard {packets} packets: {second:?}");
        assert!(bytes >= 80 * 20, "{who} heard {bytes} bytes: {second:?}");
        let level = second.peer_level;
        assert!(
            (0.25..0.45).contains(&level),
            "{who} heard level {level}: {second:?}"
        );
        assert!(second.outbound_audio_bytes > 0, "{second:?}");
        assert_eq!(second.packets_lost, 0, "{second:?}");
    }

    // A call never blocks chat.
    a.command("say still typing");
    b.expect(
        "chat during the call",
        on!(Event::Chat(x) if x.text == "still typing"),
    );

    // Mute: Ada's audio stops reaching Bob; Bob's still reaches Ada.
    a.command("mute");
    b.expect("Ada muted", on!(Event::PeerMedia { muted: true, .. }));
    std::thread::sleep(Duration::from_millis(1500));
    let (a3, b3) = (stats(&mut a), stats(&mut b));
    std::thread::sleep(Duration::from_secs(2));
    let (a4, b4) = (stats(&mut a), stats(&mut b));
    assert_eq!(
        b4.inbound_audio_packets - b3.inbound_audio_packets,
        0,
        "{b3:?} {b4:?}"
    );
    assert_eq!(
        a4.outbound_audio_bytes - a3.outbound_audio_bytes,
        0,
        "{a3:?} {a4:?}"
    );
    assert!(
        a4.inbound_audio_packets - a3.inbound_audio_packets >= 80,
        "{a3:?} {a4:?}"
    );
    a.command("unmute");
    b.expect("Ada unmuted", on!(Event::PeerMedia { muted: false, .. }));
    b.expect(
        "Ada's tone again",
        on!(Event::CallStats(x) if x.peer_level > 0.25),
    );

    // Hang up: both sides end, and the media stops reporting.
    a.command("hangup");
    let ended = on!(Event::CallEnded { reason, .. } => reason.clone());
    assert_eq!(a.expect("ended", ended), "HungUp");
    assert_eq!(b.expect("ended", ended), "PeerHungUp");
    a.command("say after the call");
    let next = b.expect(
        "the next chat or media report",
        on!(Event::Chat(_) | Event::CallStats(_)),
    );
    assert!(
        matches!(next, Event::Chat(_)),
        "media still reporting after hang-up: {next:?}"
    );
    let quiet = b.0.wait(
        "media after hang-up",
        Duration::from_millis(2500),
        on!(Event::CallStats(_)),
    );
    assert!(
        quiet.is_err(),
        "media still reporting after hang-up: {quiet:?}"
    );
}

/// A desktop app without a microphone (`DUET_FAKE_AUDIO=none`) accepts a call: the call ends
/// at once, and both sides say why in words (no microphone here, the peer has none there).
#[test]
fn a_call_without_a_microphone_ends_in_words_on_both_sides() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let (dir_a, dir_b) = (temp_dir("nomic-a").unwrap(), temp_dir("nomic-b").unwrap());
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let mut a = Client::start(&link, &dir_a, "Ada");
    let mut b = Client(
        HeadlessClient::start_wrapped(
            &["env", "DUET_FAKE_AUDIO=none"],
            binary,
            &link,
            &dir_b,
            "Bob",
        )
        .unwrap(),
    );
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));
    a.command("call");
    b.expect(
        "ringing",
        on!(Event::Call {
            phase: CallPhase::Ringing,
            ..
        }),
    );
    b.command("accept");
    let ended = on!(Event::CallEnded { reason, message } => (reason.clone(), message.clone()));
    let (reason, message) = b.expect("ended", ended);
    assert_eq!(reason, "NoMicrophone", "{message}");
    assert!(message.contains("microphone"), "{message}");
    let (reason, message) = a.expect("ended", ended);
    assert_eq!(reason, "PeerNoMicrophone", "{message}");
    assert!(message.contains("microphone"), "{message}");
    // The room goes on: chat still flows.
    b.command("say no voice, but here");
    a.expect(
        "chat",
        on!(Event::Chat(x) if x.text == "no voice, but here"),
    );
}

/// The desktop's real device path, without a sound card: ALSA's `file` plugin plays a recorded
/// 660 Hz tone as Bob's microphone and records his speakers to a file (through `plug`, which
/// converts to whatever `cpal` opens). Ada (the harness's 440 Hz tone) calls Bob: she hears his
/// "microphone", and his "speakers" play her tone.
#[test]
fn a_desktop_app_talks_through_its_sound_card() {
    assert_loopback_only();
    let home = temp_dir("alsa-home").unwrap();
    let microphone = home.join("microphone.raw");
    let speakers = home.join("speakers.raw");
    // 30 s of a 660 Hz tone at half scale, 48 kHz mono S16_LE.
    let tone: Vec<u8> = (0..48_000 * 30)
        .flat_map(|i| {
            let v = (i as f32 * 660.0 * std::f32::consts::TAU / 48_000.0).sin() * 16_384.0;
            (v as i16).to_le_bytes()
        })
        .collect();
    std::fs::write(&microphone, tone).unwrap();
    let slave = "format S16_LE rate 48000 channels 1";
    std::fs::write(
        home.join(".asoundrc"),
        format!(
            "pcm.!default {{ type asym playback.pcm \"speakers\" capture.pcm \"microphone\" }}\n\
             pcm.speakers {{ type plug slave {{ pcm \"speakerfile\" {slave} }} }}\n\
             pcm.speakerfile {{ type file slave.pcm \"null\" file \"{}\" format \"raw\" }}\n\
             pcm.microphone {{ type plug slave {{ pcm \"micfile\" {slave} }} }}\n\
             pcm.micfile {{ type file slave.pcm \"null\" file \"/dev/null\" infile \"{}\" format \"raw\" }}\n",
            speakers.display(),
            microphone.display()
        ),
    )
    .unwrap();
    let wrangler = Wrangler::shared();
    let link = wrangler.new_room_link().unwrap();
    let (dir_a, dir_b) = (temp_dir("card-a").unwrap(), temp_dir("card-b").unwrap());
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let home_var = format!("HOME={}", home.display());
    let mut a = Client::start(&link, &dir_a, "Ada");
    let mut b = Client(
        HeadlessClient::start_wrapped(
            &["env", "-u", "DUET_FAKE_AUDIO", &home_var],
            binary,
            &link,
            &dir_b,
            "Bob",
        )
        .unwrap(),
    );
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));
    a.command("call");
    b.expect(
        "ringing",
        on!(Event::Call {
            phase: CallPhase::Ringing,
            ..
        }),
    );
    b.command("accept");
    let active = b.expect(
        "active or ended",
        on!(Event::Call {
            phase: CallPhase::Active,
            ..
        } | Event::CallEnded { .. }),
    );
    assert!(matches!(active, Event::Call { .. }), "{active:?}");
    // Bob's microphone is the recorded tone, at about half scale once through Opus.
    let heard = a.expect(
        "Bob's microphone",
        on!(Event::CallStats(x) if x.peer_level > 0.3 => *x),
    );
    eprintln!("Ada hears Bob's sound card: {heard:?}");
    let mine = b.expect(
        "Bob's own level",
        on!(Event::CallStats(x) if x.inbound_audio_packets >= 100 => *x),
    );
    eprintln!("Bob: {mine:?}");
    assert!(mine.my_level > 0.3, "{mine:?}");
    a.command("hangup");
    b.expect("ended", on!(Event::CallEnded { .. }));
    // His speakers played Ada's tone (a third of full scale): find it in what they recorded.
    let played = std::fs::read(&speakers).unwrap();
    let peak = played
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs())
        .max()
        .unwrap_or(0);
    eprintln!("speakers: {} bytes, peak {peak}", played.len());
    // ALSA's null device takes audio as fast as it comes, so the recording is large.
    let _ = std::fs::remove_dir_all(&home);
    assert!(
        peak > 8_000,
        "the speakers played no tone: peak {peak} of 32768"
    );
}

/// Every client asks its room's server for STUN and TURN servers before it opens the socket,
/// and connects with them: here a real coturn on 127.0.0.1 with the secret the worker mints
/// credentials from.
#[test]
fn clients_connect_through_the_ice_servers_their_room_hands_out() {
    assert_loopback_only();
    let secret = "shared by the worker and coturn";
    let port = duet_tests::free_port();
    let _coturn = duet_tests::turn::Coturn::start(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        port,
        secret,
        true,
    )
    .unwrap();
    let wrangler = Wrangler::start(WranglerOptions {
        vars: vec![
            ("STUN_URLS".into(), format!("stun:127.0.0.1:{port}")),
            ("TURN_URLS".into(), format!("turn:127.0.0.1:{port}")),
            ("TURN_SECRET".into(), secret.into()),
        ],
        ..Default::default()
    })
    .unwrap();
    let link = wrangler.new_room_link().unwrap();
    let work = temp_dir("ice-servers").unwrap();
    let mut a = Client::start(&link, &work.join("a"), "Ada");
    let mut b = Client::start(&link, &work.join("b"), "Bob");
    for client in [&mut a, &mut b] {
        let (urls, relay, source) = client.expect(
            "ice servers",
            on!(Event::IceServers { urls, relay, source } => (urls.clone(), *relay, source.clone())),
        );
        assert_eq!(source, "server");
        assert!(relay, "TURN credentials handed out: {urls:?}");
        assert_eq!(
            urls,
            vec![
                format!("stun:127.0.0.1:{port}"),
                format!("turn:127.0.0.1:{port}")
            ]
        );
    }
    a.expect("peer_hello", on!(Event::PeerHello { .. }));
    b.expect("peer_hello", on!(Event::PeerHello { .. }));
    a.command("say through the configured servers");
    b.expect(
        "chat",
        on!(Event::Chat(x) if x.text == "through the configured servers"),
    );
}
