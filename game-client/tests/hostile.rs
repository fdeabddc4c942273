//! A peer that speaks Duet's protocol badly on purpose, over real WebRTC through `wrangler dev`,
//! against a headless `duet-client`. Every bad input must end in a clear `transfer_failed` (or be
//! ignored), never crash the client, and never leave anything visible in the downloads folder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use duet_shared::peer::{
    CHUNK_BYTES, CONTROL_CHANNEL, CancelReason, Control, DATA_CHANNEL, FileOffer, MAX_FILE_BYTES,
    PROTOCOL_VERSION, TransferId,
};
use duet_tests::evil::Evil;
use duet_tests::{
    Event, HeadlessClient, Wrangler, assert_loopback_only, on, open_files, rss, temp_dir,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The harness's headless client, with 30 s patience and panics for failures.
struct Client(HeadlessClient);

impl Client {
    fn start(link: &str, data_dir: &Path) -> Client {
        let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
        Client(HeadlessClient::start(binary, link, data_dir, "Victim").expect("start duet-client"))
    }

    fn expect<T>(&mut self, what: &str, pick: impl Fn(&Event) -> Option<T>) -> T {
        self.0
            .wait(what, Duration::from_secs(30), pick)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// The victim still chats with the evil peer after the attack.
async fn still_chats(client: &mut Client, evil: &mut Evil) {
    client.0.command("say still fine").unwrap();
    evil.expect(
        "the victim's chat",
        |m| matches!(m, Control::Chat { text, .. } if text == "still fine"),
    )
    .await;
}

fn offer(id: u64, name: &str, size: u64) -> FileOffer {
    FileOffer {
        transfer: TransferId(id),
        name: name.into(),
        size,
        mime: "application/octet-stream".into(),
        resume_key: Sha256::digest(id.to_le_bytes()).into(),
    }
}

fn digest(id: u64, data: &[u8]) -> Control {
    Control::Digest {
        transfer: TransferId(id),
        sha256: Sha256::digest(data).into(),
    }
}

fn visible(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".duet-partial")
                .collect()
        })
        .unwrap_or_default()
}

/// A victim in a fresh room, and the evil peer connected to it and introduced as Mallory.
async fn victim_and_mallory(prefix: &str) -> (Client, Evil, PathBuf) {
    victim_and_mallory_keyed(prefix, |_| duet_tests::random_device()).await
}

/// [`victim_and_mallory`], with Mallory's key picked knowing the victim's identity.
async fn victim_and_mallory_keyed(
    prefix: &str,
    key_for: impl FnOnce(Uuid) -> duet_shared::trust::DeviceKey,
) -> (Client, Evil, PathBuf) {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap().room;
    let link = format!("{}/r/{room}", wrangler.base);
    let dir = temp_dir(prefix).unwrap();
    let mut client = Client::start(&link, &dir);
    let victim = client.expect("ready", on!(Event::Ready { identity, .. } => *identity));
    let mut evil = Evil::join(&wrangler.signal_url(&room, Uuid::new_v4())).await;
    evil.introduce_as("Mallory", &key_for(victim)).await;
    client.expect(
        "hello",
        on!(Event::PeerHello { name, .. } if *name == "Mallory"),
    );
    (client, evil, dir)
}

/// Offers above the 25 MiB the victim takes unasked become questions: at most `MAX_ASKING` are
/// put to the person, the rest are declined as busy, nothing is opened, and an offer withdrawn
/// before the answer goes from the list in words.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_offers_asks_eight_questions_and_opens_nothing() {
    use duet_shared::admission::MAX_ASKING;
    let (mut client, mut evil, dir) = victim_and_mallory("ask-flood").await;
    for id in 0..500u64 {
        evil.control(&Control::Offer(offer(
            5_000 + id,
            &format!("big {id}.bin"),
            100 << 20,
        )));
    }
    let (mut accepted, mut declined) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted + declined + MAX_ASKING < 500 {
        assert!(
            Instant::now() < deadline,
            "{accepted} accepted, {declined} declined"
        );
        for (_, packet) in evil.socket.channel_mut(CONTROL_CHANNEL).receive() {
            match Control::decode(&packet) {
                Ok(Control::Accept { .. }) => accepted += 1,
                Ok(Control::Decline { .. }) => declined += 1,
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = client.0.pending();
    let asked: Vec<(String, String)> = events
        .iter()
        .filter_map(on!(Event::TransferAsked { id, name, .. } => (id.clone(), name.clone())))
        .collect();
    eprintln!(
        "large-offer flood: {} asked, {accepted} accepted, {declined} declined",
        asked.len()
    );
    assert_eq!(accepted, 0, "nothing above the threshold is taken unasked");
    assert_eq!(asked.len(), MAX_ASKING, "{asked:?}");
    assert_eq!(asked[0].1, "big 0.bin");
    assert!(visible(&dir.join("downloads")).is_empty());
    // Mallory withdraws the first question: the victim's list says so.
    evil.control(&Control::Cancel {
        transfer: TransferId(5_000),
        reason: CancelReason::User,
    });
    let withdrawn = client.expect(
        "the withdrawn question",
        on!(Event::TransferFailed { id, message, .. } if *id == asked[0].0 => message.clone()),
    );
    assert!(withdrawn.contains("withdrew"), "{withdrawn}");
    still_chats(&mut client, &mut evil).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_held_open_offers_opens_four_files_and_stays_small() {
    use duet_shared::admission::{MAX_RECEIVING, MAX_WAITING};
    let (mut client, mut evil, dir) = victim_and_mallory("offer-flood").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = client.0.pid();
    let (rss_before, files_before) = (rss(pid) / 1024, open_files(pid));
    // 2,000 offers of 20 MiB files (taken unasked) with 10,000-character names, none ever sent
    // a byte of.
    let name = format!("{}.bin", "n".repeat(9_996));
    for id in 0..2_000u64 {
        evil.control(&Control::Offer(offer(1_000 + id, &name, 20 << 20)));
        if id % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The victim accepts four, holds some, declines the rest, each in words.
    let mut accepted = 0;
    let mut declined = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    // Until the answers stop (at least all but the held ones have come).
    while accepted + declined + MAX_WAITING < 2_000
        || quiet_since.elapsed() < Duration::from_secs(2)
    {
        assert!(
            Instant::now() < deadline,
            "{accepted} accepted, {declined} declined"
        );
        for (_, packet) in evil.socket.channel_mut(CONTROL_CHANNEL).receive() {
            match Control::decode(&packet) {
                Ok(Control::Accept { .. }) => accepted += 1,
                Ok(Control::Decline { .. }) => declined += 1,
                _ => continue,
            }
            quiet_since = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (rss_after, files_after) = (rss(pid) / 1024, open_files(pid));
    eprintln!(
        "offer flood: {accepted} accepted, {declined} declined; RSS {rss_before} -> {rss_after} KiB, \
         open files {files_before} -> {files_after}"
    );
    assert_eq!(accepted, MAX_RECEIVING);
    let held = 2_000 - accepted - declined;
    assert!(held <= MAX_WAITING, "{held} offers held");
    assert!(
        files_after <= files_before + MAX_RECEIVING + 2,
        "open files {files_before} -> {files_after}"
    );
    assert!(
        rss_after.saturating_sub(rss_before) <= 64 * 1024,
        "RSS grew {rss_before} -> {rss_after} KiB"
    );
    still_chats(&mut client, &mut evil).await;
    // Nothing appeared in the downloads folder.
    assert!(visible(&dir.join("downloads")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incompatible_peer_gets_nothing_processed() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap().room;
    let link = format!("{}/r/{room}", wrangler.base);
    let dir = temp_dir("incompatible").unwrap();
    let mut client = Client::start(&link, &dir);
    let mut evil = Evil::join(&wrangler.signal_url(&room, Uuid::new_v4())).await;
    // The victim says hello first, so the peer learns the victim's version too.
    let theirs = evil
        .expect("the victim's hello", |m| matches!(m, Control::Hello { .. }))
        .await;
    assert!(matches!(theirs, Control::Hello { version, .. } if version == PROTOCOL_VERSION));
    evil.control(&Control::Hello {
        version: PROTOCOL_VERSION + 1,
        identity: Uuid::new_v4(),
        name: "Future".into(),
    });
    let mismatch = client.expect(
        "version mismatch",
        on!(Event::VersionMismatch { message, .. } => message.clone()),
    );
    assert!(mismatch.contains("incompatible"), "{mismatch}");
    // Chat and a file offer from it: neither stored, nor receipted, nor answered.
    let id = Uuid::new_v4();
    evil.control(&Control::Chat {
        id,
        sent_ms: 1,
        text: "from the future".into(),
    });
    evil.control(&Control::Offer(offer(1, "future.bin", 10)));
    evil.control(&Control::Hello {
        version: PROTOCOL_VERSION,
        identity: Uuid::new_v4(),
        name: "Now compatible?".into(),
    });
    // The second hello ends the connection instead of clearing the mismatch.
    client.expect("second hello", on!(Event::SecondHello));
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        for (_, packet) in evil.socket.channel_mut(CONTROL_CHANNEL).receive() {
            let message = Control::decode(&packet);
            assert!(
                !matches!(
                    message,
                    Ok(Control::ChatReceipt { .. }
                        | Control::Accept { .. }
                        | Control::Decline { .. })
                ),
                "an incompatible peer's message was processed: {message:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.0.command("history").unwrap();
    let history = client.expect(
        "history",
        on!(Event::History { entries } => entries.clone()),
    );
    assert!(history.is_empty(), "{history:?}");
    assert!(visible(&dir.join("downloads")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_peer_gets_clear_errors_and_leaves_nothing_behind() {
    let (mut client, mut evil, dir) = victim_and_mallory("hostile").await;
    let downloads = dir.join("downloads");

    // 1. Garbage on both channels: reported, ignored, client alive.
    evil.raw(CONTROL_CHANNEL, vec![0xff, 0xfe, 0xfd]);
    client.expect("bad frame", on!(Event::BadFrame { .. }));
    evil.raw(DATA_CHANNEL, vec![1, 2, 3]);
    client.expect(
        "bad chunk",
        on!(Event::TransferFailed { message, .. } if message.contains("broken")),
    );

    // 2. Over 200 MiB: declined before anything is stored.
    evil.control(&Control::Offer(offer(1, "huge.bin", MAX_FILE_BYTES + 1)));
    evil.expect("decline", |m| {
        matches!(
            m,
            Control::Decline {
                transfer: TransferId(1),
                ..
            }
        )
    })
    .await;
    client.expect(
        "too large",
        on!(Event::TransferFailed { message, .. } if message.contains("200 MiB")),
    );

    // 3. Chunks for a transfer that does not exist.
    evil.chunk(999, 0, &[0; 10]);
    client.expect(
        "unknown transfer",
        on!(Event::TransferFailed { message, .. } if message.contains("not running")),
    );

    // 4. Lies about the size: offers 10 bytes, sends a full chunk.
    evil.control(&Control::Offer(offer(2, "liar.txt", 10)));
    evil.expect("accept", |m| {
        matches!(
            m,
            Control::Accept {
                transfer: TransferId(2),
                ..
            }
        )
    })
    .await;
    evil.chunk(2, 0, &[7u8; CHUNK_BYTES]);
    client.expect(
        "size lie",
        on!(Event::TransferFailed { message, .. } if message.contains("lied")),
    );

    // 5. Sequence out of range, then duplicates.
    let two = vec![5u8; 2 * CHUNK_BYTES];
    evil.control(&Control::Offer(offer(3, "range.bin", two.len() as u64)));
    evil.expect("accept", |m| {
        matches!(
            m,
            Control::Accept {
                transfer: TransferId(3),
                ..
            }
        )
    })
    .await;
    evil.chunk(3, 7, &two[..CHUNK_BYTES]);
    client.expect(
        "out of range",
        on!(Event::TransferFailed { message, .. } if message.contains("past the end")),
    );
    evil.control(&Control::Offer(offer(4, "dup.bin", two.len() as u64)));
    evil.expect("accept", |m| {
        matches!(
            m,
            Control::Accept {
                transfer: TransferId(4),
                ..
            }
        )
    })
    .await;
    evil.chunk(4, 0, &two[..CHUNK_BYTES]);
    evil.chunk(4, 0, &two[..CHUNK_BYTES]);
    client.expect(
        "duplicate",
        on!(Event::TransferFailed { message, .. } if message.contains("twice")),
    );

    // 6. Hash mismatch: all bytes arrive, but they are not the offered file.
    let claimed = b"the real content";
    evil.control(&Control::Offer(offer(
        5,
        "../../../etc/passwd",
        claimed.len() as u64,
    )));
    evil.control(&digest(5, b"something else entirely"));
    evil.expect("accept", |m| {
        matches!(
            m,
            Control::Accept {
                transfer: TransferId(5),
                ..
            }
        )
    })
    .await;
    evil.chunk(5, 0, claimed);
    evil.expect("cancel", |m| {
        matches!(
            m,
            Control::Cancel {
                transfer: TransferId(5),
                ..
            }
        )
    })
    .await;
    client.expect(
        "hash mismatch",
        on!(Event::TransferFailed { message, .. } if message.contains("SHA-256")),
    );

    // 6b. Two different digests for one file: the second is a lie, the transfer ends.
    evil.control(&Control::Offer(offer(
        10,
        "twice.txt",
        claimed.len() as u64,
    )));
    evil.control(&digest(10, claimed));
    evil.control(&digest(10, b"no, this one"));
    evil.expect("cancel", |m| {
        matches!(
            m,
            Control::Cancel {
                transfer: TransferId(10),
                reason: CancelReason::ProtocolViolation,
            }
        )
    })
    .await;
    client.expect(
        "second digest",
        on!(Event::TransferFailed { message, .. } if message.contains("unexpected digest")),
    );

    // 7. A second hello on one connection (here: another version) is a protocol violation: the
    //    victim ends the connection and meets the peer again from the start.
    evil.control(&Control::Hello {
        version: PROTOCOL_VERSION + 1,
        identity: Uuid::new_v4(),
        name: "Future".into(),
    });
    client.expect("second hello", on!(Event::SecondHello));
    evil.reconnected().await;

    // Nothing partial became visible, and nothing was written outside the downloads folder.
    assert!(visible(&downloads).is_empty(), "{:?}", visible(&downloads));
    assert!(!dir.join("etc").exists() && !Path::new("/etc/passwd.duet").exists());

    // 8. After all that, an honest file with a path-traversing name lands safely inside.
    evil.introduce("Mallory").await;
    let honest = b"finally, real bytes";
    evil.control(&Control::Offer(offer(
        6,
        "..\\..\\evil\u{0}name.txt",
        honest.len() as u64,
    )));
    evil.control(&digest(6, honest));
    evil.expect("accept", |m| {
        matches!(
            m,
            Control::Accept {
                transfer: TransferId(6),
                ..
            }
        )
    })
    .await;
    evil.chunk(6, 0, honest);
    evil.expect("complete", |m| {
        matches!(
            m,
            Control::Complete {
                transfer: TransferId(6)
            }
        )
    })
    .await;
    let done = client.expect(
        "completed",
        on!(Event::TransferCompleted { location, .. } => location.clone()),
    );
    let location = Path::new(&done);
    assert_eq!(location.parent().unwrap(), downloads);
    assert_eq!(location.file_name().unwrap(), "evil_name.txt");
    assert_eq!(std::fs::read(location).unwrap(), honest);

    // 9. A 10,000-character name (multi-byte, with a path in it) is shortened to a file name the
    //    disk accepts, keeps its extension, lands inside; the same name again is de-duplicated.
    let long = format!("../{}.txt", "é".repeat(4_000) + &"x".repeat(5_993));
    assert_eq!(long.chars().count(), 10_000);
    let mut saved = Vec::new();
    for id in [7u64, 8] {
        evil.control(&Control::Offer(offer(id, &long, honest.len() as u64)));
        evil.control(&digest(id, honest));
        evil.expect(
            "accept",
            |m| matches!(m, Control::Accept { transfer, .. } if transfer.0 == id),
        )
        .await;
        evil.chunk(id, 0, honest);
        evil.expect(
            "complete",
            |m| matches!(m, Control::Complete { transfer } if transfer.0 == id),
        )
        .await;
        let location = PathBuf::from(client.expect(
            "completed",
            on!(Event::TransferCompleted { location, .. } => location.clone()),
        ));
        assert_eq!(location.parent().unwrap(), downloads);
        let name = location.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.len() <= 200 && name.ends_with(".txt"), "{name}");
        assert_eq!(std::fs::read(&location).unwrap(), honest);
        saved.push(name);
    }
    assert_ne!(
        saved[0], saved[1],
        "the second copy must not overwrite the first"
    );
    let _ = std::io::stdout().flush();
}

/// The pongs that arrived at Mallory since she last looked.
fn pongs_waiting(evil: &mut Evil) -> u32 {
    let packets = evil.socket.channel_mut(CONTROL_CHANNEL).receive();
    packets
        .iter()
        .filter(|(_, packet)| matches!(Control::decode(packet), Ok(Control::Pong { .. })))
        .count() as u32
}

/// A peer that floods pings gets at most one pong per 250 ms back, not one per ping: answering
/// each would queue replies without bound on the victim's side (this peer reads slowly on
/// purpose). The victim keeps working through it.
#[tokio::test(flavor = "multi_thread")]
async fn a_ping_flood_gets_at_most_four_pongs_a_second() {
    let (mut client, mut evil, _dir) = victim_and_mallory("duet-hostile-pings").await;
    let started = Instant::now();
    let mut pongs = 0u32;
    let mut sent = 0u64;
    // 10,000 pings a second for 3 s, reading the victim's answers every 100 ms.
    while started.elapsed() < Duration::from_secs(3) {
        for _ in 0..1_000 {
            evil.control(&Control::Ping { id: sent as u32 });
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        pongs += pongs_waiting(&mut evil);
    }
    // What the victim answered while the flood was still arriving.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        pongs += pongs_waiting(&mut evil);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let window_ms = started.elapsed().as_millis() as u64;
    println!("{sent} pings in 3 s; {pongs} pongs in {window_ms} ms");
    assert!(pongs >= 4, "the victim stopped answering: {pongs} pongs");
    assert!(
        u64::from(pongs) <= window_ms / 250 + 2,
        "{pongs} pongs in {window_ms} ms: more than one per 250 ms"
    );
    still_chats(&mut client, &mut evil).await;
}

/// A peer that proves who it is and then says nothing more (no pongs, no frames) is shown as
/// interrupted after about 3 s, takes no chat meanwhile, and is given up after about 15 s: the
/// victim joins the room again instead of staying "connected" to nobody.
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_goes_silent_is_shown_as_interrupted_then_given_up() {
    let (mut client, mut evil, _dir) = victim_and_mallory("duet-hostile-silent").await;
    let hello = Instant::now();
    let silent_s = client.expect(
        "the link gone quiet",
        on!(Event::Link { silent_s: Some(s), .. } => *s),
    );
    let quiet_after = hello.elapsed();
    assert!(silent_s >= 3, "quiet after {silent_s} s of silence");
    assert!(
        quiet_after >= Duration::from_millis(2_500) && quiet_after <= Duration::from_secs(6),
        "shown as interrupted {quiet_after:?} after the hello"
    );
    client.0.command("say are you there").unwrap();
    let state = client.expect(
        "the refused chat",
        on!(Event::Chat(line) if line.text == "are you there" => line.state),
    );
    assert_eq!(state, duet_shared::automation::Delivery::NotDelivered);
    client.expect(
        "the silent peer given up",
        on!(Event::PeerLeft { .. } => ()),
    );
    let given_up = hello.elapsed();
    assert!(
        given_up >= Duration::from_secs(14) && given_up <= Duration::from_secs(20),
        "given up {given_up:?} after the hello"
    );
    // Nothing of the refused line ever reached the peer.
    for (_, packet) in evil.socket.channel_mut(CONTROL_CHANNEL).receive() {
        if let Ok(Control::Chat { text, .. }) = Control::decode(&packet) {
            assert_ne!(text, "are you there", "a refused line was sent");
        }
    }
    // The victim is back in the room on a new connection, waiting for a hello again.
    evil.reconnected().await;
    println!("interrupted after {quiet_after:?}, given up after {given_up:?}");
}

/// A stranger who takes the free seat and never proves who it is (no hello at all, only a
/// connection) holds the victim for the hello's 90 s at most: the victim shows no name,
/// ends that connection with a sentence, and joins the room afresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_seat_holder_that_never_says_hello_is_dropped_after_90_s() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let room = wrangler.api().create_room().await.unwrap().room;
    let link = format!("{}/r/{room}", wrangler.base);
    let dir = temp_dir("duet-hostile-mute").unwrap();
    let mut client = Client::start(&link, &dir);
    let mut evil = Evil::join(&wrangler.signal_url(&room, Uuid::new_v4())).await;
    client.expect("the stranger's connection", on!(Event::Negotiated { .. }));
    let connected = Instant::now();
    let outcome = client
        .0
        .wait("the hello's end", Duration::from_secs(120), |e| match e {
            Event::HelloFailed { reason, message } => Some(Ok((reason.clone(), message.clone()))),
            Event::PeerHello { name, .. } => Some(Err(name.clone())),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (reason, message) = outcome.unwrap_or_else(|name| panic!("a name was shown: {name}"));
    let after = connected.elapsed();
    println!("hello ended after {after:?}: {reason}: {message}");
    assert_eq!(reason, "TimedOut");
    assert!(message.contains("in time"), "{message}");
    assert!(
        after >= Duration::from_secs(88) && after <= Duration::from_secs(95),
        "the hello ended {after:?} after the connection"
    );
    // The victim is back in the room on a new connection, waiting for a hello again.
    evil.reconnected().await;
}

/// Chunks of `transfer` that arrive on Mallory's data channel within `for_`.
async fn chunks_arriving(evil: &mut Evil, transfer: TransferId, for_: Duration) -> u32 {
    let deadline = Instant::now() + for_;
    let mut count = 0;
    while Instant::now() < deadline {
        for (_, frame) in evil.socket.channel_mut(DATA_CHANNEL).receive() {
            let chunks = duet_shared::peer::Chunk::decode_frame(&frame).expect("a data frame");
            count += chunks.iter().filter(|c| c.transfer == transfer).count() as u32;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    count
}

/// A receiver that grants the whole file at once and never says anything was written gets
/// `MAX_IN_FLIGHT` chunks (8 MiB), not the file: the sender keeps its own bound whatever it is
/// granted, and sends more only as the receiver reports chunks persisted.
#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_granting_the_whole_file_gets_only_the_senders_bound() {
    use duet_shared::transfer::MAX_IN_FLIGHT;
    let (mut client, mut evil, dir) = victim_and_mallory("grant-all").await;
    let source = dir.join("to mallory.bin");
    duet_tests::make_file(&source, 40 << 20);
    client
        .0
        .command(&format!("send {}", source.display()))
        .unwrap();
    let Control::Offer(offer) = evil
        .expect("the offer", |m| matches!(m, Control::Offer(_)))
        .await
    else {
        unreachable!()
    };
    let total = (offer.size / CHUNK_BYTES as u64) as u32;
    evil.control(&Control::Accept {
        transfer: offer.transfer,
        offset: 0,
    });
    evil.control(&Control::Credit {
        transfer: offer.transfer,
        persisted: 0,
        until: total,
    });
    let first = chunks_arriving(&mut evil, offer.transfer, Duration::from_secs(5)).await;
    assert_eq!(
        first, MAX_IN_FLIGHT,
        "granted {total} chunks, persisted none"
    );
    // One hundred reported written: one hundred more, no further.
    evil.control(&Control::Credit {
        transfer: offer.transfer,
        persisted: 100,
        until: total,
    });
    let more = chunks_arriving(&mut evil, offer.transfer, Duration::from_secs(3)).await;
    assert_eq!(more, 100);
}

/// A data-channel offer as a browser makes one: what a lane's answerer needs to answer it.
/// Nobody will ever connect to it (no candidates): the victim's lane waits out its 15 s.
fn lane_offer_sdp(nonce: u32) -> String {
    format!(
        "v=0\r\no=- {nonce} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         a=msid-semantic: WMS\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
         c=IN IP4 0.0.0.0\r\na=ice-ufrag:mal{nonce:04}\r\n\
         a=ice-pwd:mallorymallorymallorymallory\r\na=ice-options:trickle\r\n\
         a=fingerprint:sha-256 \
         9B:2E:6F:39:1A:B7:56:0C:42:D1:18:27:11:62:8C:40:9E:0C:39:E6:E4:D3:E4:3A:55:2F:4E:6A:AB:F0:6E:21\r\n\
         a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    )
}

/// A peer that may open lanes (its key sorts higher) floods offers, closes and candidates over
/// the proved connection: the victim creates connections for 8 offers back to back and then
/// one per 10 s, answers each offer it took and refuses the rest lane by lane, closes a lane
/// that gets more than 50 candidates, lets every unconnected lane go after 15 s, and keeps
/// chatting throughout.
#[tokio::test(flavor = "multi_thread")]
async fn a_lane_flood_gets_eight_connections_and_they_all_go() {
    use duet_shared::lane::{
        LANE_CONNECT_MS, LANE_OPEN_BURST, LANE_REFILL_MS, LaneSignal, MAX_LANES,
    };
    // A key whose UUID sorts above the victim's: the side that may offer lanes.
    let (mut client, mut evil, _dir) = victim_and_mallory_keyed("lane-flood", |victim| {
        std::iter::repeat_with(duet_tests::random_device)
            .find(|key| key.public().uuid() > victim)
            .unwrap()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = client.0.pid();
    let (rss_before, files_before) = (rss(pid) / 1024, open_files(pid));
    let lane_replies = |evil: &mut Evil| -> Vec<LaneSignal> {
        evil.socket
            .channel_mut(CONTROL_CHANNEL)
            .receive()
            .into_iter()
            .filter_map(|(_, packet)| match Control::decode(&packet) {
                Ok(Control::Lane(signal)) => Some(signal),
                _ => None,
            })
            .collect()
    };
    // 40 offers, 250 ms apart, each closed by Mallory before the next to make room. A refused
    // offer gets no reply (a reply per offer would be a queue the flood fills, as pongs were).
    let count_answers = |evil: &mut Evil| {
        lane_replies(evil)
            .iter()
            .filter(|s| matches!(s, LaneSignal::Answer { .. }))
            .count() as u32
    };
    let started = Instant::now();
    let (mut answered, mut files_peak) = (0u32, files_before);
    for n in 0..40u32 {
        let lane = (n % u32::from(MAX_LANES)) as u8;
        evil.control(&Control::Lane(LaneSignal::Offer {
            lane,
            sdp: lane_offer_sdp(n),
        }));
        tokio::time::sleep(Duration::from_millis(250)).await;
        answered += count_answers(&mut evil);
        files_peak = files_peak.max(open_files(pid));
        evil.control(&Control::Lane(LaneSignal::Close { lane }));
    }
    let flood_ms = started.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(2)).await;
    answered += count_answers(&mut evil);
    eprintln!(
        "lane flood: 40 offers in {flood_ms} ms, {answered} answered; open files \
         {files_before} -> {files_peak} at most"
    );
    let allowed = LANE_OPEN_BURST + (flood_ms / LANE_REFILL_MS) as u32;
    assert!(
        answered >= LANE_OPEN_BURST && answered <= allowed,
        "{answered} offers answered, {allowed} allowed"
    );
    // At most four lanes live at once, each a connection of a few sockets.
    assert!(
        files_peak <= files_before + 2 * usize::from(MAX_LANES),
        "open files {files_before} -> {files_peak} during the flood"
    );
    // A lane that is open gets 50 candidates and no more: the 51st closes it.
    tokio::time::sleep(Duration::from_millis(LANE_REFILL_MS)).await;
    evil.control(&Control::Lane(LaneSignal::Offer {
        lane: 0,
        sdp: lane_offer_sdp(99),
    }));
    for n in 0..200u16 {
        evil.control(&Control::Lane(LaneSignal::Candidate {
            lane: 0,
            candidate: format!(
                "candidate:{n} 1 udp 2122260223 127.0.0.1 {} typ host",
                40_000 + n
            ),
            mid: Some("0".into()),
            mline: Some(0),
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut closed = false;
    while !closed {
        assert!(
            Instant::now() < deadline,
            "200 candidates did not close the lane"
        );
        closed = lane_replies(&mut evil)
            .iter()
            .any(|s| matches!(s, LaneSignal::Close { lane: 0 }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    still_chats(&mut client, &mut evil).await;
    // A lane Mallory offers and then leaves unconnected is closed by the victim at its
    // deadline. Mallory keeps sending something meanwhile: a silent peer is given up.
    let keep_alive = async |evil: &mut Evil, for_: Duration| {
        let until = Instant::now() + for_;
        let mut closes = Vec::new();
        while Instant::now() < until {
            evil.control(&Control::Ping { id: 0 });
            for signal in lane_replies(evil) {
                if let LaneSignal::Close { lane } = signal {
                    closes.push((lane, Instant::now()));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        closes
    };
    keep_alive(&mut evil, Duration::from_millis(LANE_REFILL_MS)).await;
    let offered = Instant::now();
    evil.control(&Control::Lane(LaneSignal::Offer {
        lane: 1,
        sdp: lane_offer_sdp(100),
    }));
    let closes = keep_alive(&mut evil, Duration::from_millis(LANE_CONNECT_MS + 3_000)).await;
    let closed_after: Vec<u128> = closes
        .iter()
        .filter(|(lane, _)| *lane == 1)
        .map(|(_, at)| at.duration_since(offered).as_millis())
        .collect();
    eprintln!("the unconnected lane closed after {closed_after:?} ms");
    assert!(
        closed_after.len() == 1
            && closed_after[0] >= u128::from(LANE_CONNECT_MS) - 1_000
            && closed_after[0] <= u128::from(LANE_CONNECT_MS) + 3_000,
        "lane 1 closed after {closed_after:?} ms"
    );
    let (rss_after, files_after) = (rss(pid) / 1024, open_files(pid));
    eprintln!(
        "after the lanes' deadline: RSS {rss_before} -> {rss_after} KiB, open files \
         {files_before} -> {files_after}"
    );
    assert!(
        files_after <= files_before + 2,
        "open files {files_before} -> {files_after}: lane connections left behind"
    );
    assert!(
        rss_after.saturating_sub(rss_before) <= 32 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    still_chats(&mut client, &mut evil).await;
}
