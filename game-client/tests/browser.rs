//! The web client end to end, in Debian's Chromium driven by playwright-core (scripts in
//! `tests/e2e/`), served by local `wrangler dev` (the same Worker serves the wasm app and the
//! signaling), everything in an `lo`-only network namespace.
//!
//! The scripts only feed real input (mouse clicks, key presses, DOM drag-and-drop events with a
//! `DataTransfer`) and read the app's `duet-event` console lines and IndexedDB; the checks here
//! are on what they report. Screenshots go to `target/e2e/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use duet_tests::automation::{CallPhase, Dir};
use duet_tests::{
    Event, HeadlessClient, Wrangler, WranglerOptions, assert_loopback_only, hex, on, repo_root,
    temp_dir,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn node(script: &str, args: &[String]) -> Command {
    let root = repo_root();
    assert!(
        // The dev build (what the tests use) stores the wasm gzipped; the shipped one plain.
        root.join("web/pkg/duet-client_bg.wasm.gz").exists()
            || root.join("web/pkg/duet-client_bg.wasm").exists(),
        "the web client is not built: run `cargo xtask test` (or `cargo xtask build-web`)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(root.join("tests/e2e").join(script))
        .args(args)
        .current_dir(&root);
    cmd
}

/// Runs `tests/e2e/{script}` with `args`; returns its `RESULT` object, failing with its output if
/// the script failed.
fn scenario(script: &str, args: &[String]) -> Value {
    let output = node(script, args)
        .output()
        .expect("node (cargo xtask test installs the npm packages)");
    result_of(script, output)
}

fn result_of(script: &str, output: std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match duet_tests::result_line(&stdout) {
        Some(result) if output.status.success() => result,
        _ => panic!("{script} failed ({}):\n{stdout}\n{stderr}", output.status),
    }
}

/// One browser test at a time: each runs several Chromium pages drawing with software WebGL,
/// which on two cores is all the machine has.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn e2e_dir() -> PathBuf {
    repo_root().join("target/e2e")
}

#[test]
fn two_browsers_chat_send_a_file_keep_it_across_a_reload_and_refuse_a_third() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let r = scenario(
        "pair.mjs",
        &[wrangler.base.clone(), e2e_dir().display().to_string()],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());

    assert!(
        r["link"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/r/", wrangler.base)),
        "{r}"
    );
    assert_eq!(
        r["copied"], r["link"],
        "Copy link put the room's link on the clipboard"
    );
    assert_eq!(
        r["chat_received"],
        "Hello Bob, this is Ada typing in a browser."
    );
    assert_eq!(r["chat_state"], "delivered");

    // Chat history lives in IndexedDB: after the reload Bob has the greeting and the 8 long
    // messages (80,000 characters), while localStorage holds only the small things.
    assert_eq!(r["long_sent"], 8, "{r}");
    assert_eq!(r["history_after_reload"], 9, "{r}");
    let local = &r["local_storage"];
    assert!(local["chars"].as_u64().unwrap() < 20_000, "{local}");
    assert!(
        !local["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k.as_str().unwrap().contains("chat/")),
        "{local}"
    );

    // The 20 MiB file: progress reached the end on both sides, IndexedDB holds exactly its bytes
    // (in many records, never one whole-file write), and it survives a reload and downloads intact.
    let sent = r["sent_sha256"].as_str().unwrap();
    assert_eq!(sent.len(), 64);
    assert_eq!(r["progress_out"], 1.0, "{r}");
    assert_eq!(r["progress_in"], 1.0, "{r}");
    assert!(r["progress_events_in"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["stored"]["size"], 20 * 1024 * 1024);
    assert_eq!(r["stored"]["sha256"], sent);
    assert!(r["stored"]["records"].as_u64().unwrap() > 1, "{r}");
    assert_eq!(r["stored_name"], "holiday-video.bin");
    let listed = r["listed_after_reload"].as_array().unwrap();
    assert!(listed.iter().any(|n| n == "holiday-video.bin"), "{r}");
    assert_eq!(r["download_name"], "holiday-video.bin");
    assert_eq!(r["download_sha256"], sent);

    let refusal = r["third_person"].as_str().unwrap();
    assert!(refusal.contains("already has two people"), "{refusal}");

    // Sent through the file chooser: stored whole.
    assert_eq!(r["picked_location"], "notes.bin", "{r}");
    assert_eq!(r["picked_stored"]["size"], 300 * 1024, "{r}");
    assert_eq!(r["picked_stored"]["sha256"], r["picked_sha256"], "{r}");

    // A full quota: both sides told in words, nothing kept.
    let quota_in = r["quota_in"].as_str().unwrap_or_default();
    assert!(quota_in.contains("not enough space left"), "{r}");
    let quota_out = r["quota_out"].as_str().unwrap_or_default();
    assert!(quota_out.contains("quota is full"), "{r}");
    assert_eq!(r["quota_completed"], false, "{r}");
    assert!(r["quota_stored"].is_null(), "{r}");

    for shot in [
        "ada.png",
        "bob.png",
        "carol-refused.png",
        "bob-after-reload.png",
        "dan-quota-full.png",
    ] {
        let size = std::fs::metadata(e2e_dir().join(shot)).map(|m| m.len());
        assert!(size.as_ref().is_ok_and(|s| *s > 10_000), "{shot}: {size:?}");
    }
}

/// A native headless client and a browser exchange a chat and a 5 MiB file both ways. The
/// browser receives with lost grants (`fault_drop_grant=3`): its transfer must pause, grant
/// again, and finish intact. They also talk: the browser calls, the desktop accepts, and each
/// hears the other (Chromium's fake microphone one way, the desktop's 440 Hz tone the other)
/// until the browser hangs up.
#[test]
fn a_native_client_and_a_browser_exchange_chat_and_files_both_ways() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let room = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(wrangler.api().create_room())
        .unwrap()
        .room;
    let link = format!("{}/r/{room}", wrangler.base);
    let work = temp_dir("interop").unwrap();
    let file = work.join("from-the-desktop.bin");
    let bytes: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let sha = hex(&Sha256::digest(&bytes));
    let text = "Hello from the desktop client!";

    let browser = node(
        "interop.mjs",
        &[
            link.clone(),
            e2e_dir().display().to_string(),
            text.to_owned(),
            sha.clone(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_duet-client"));
    let mut native =
        HeadlessClient::start(binary, &link, &work.join("native"), "Dex").expect("native client");
    let native_side = (|| {
        let limit = Duration::from_secs(120);
        let hello = native.wait(
            "the browser's hello",
            limit,
            on!(Event::PeerHello { name, .. } => name.clone()),
        )?;
        native.command(&format!("say {text}"))?;
        native.wait(
            "the browser's call",
            limit,
            on!(Event::Call {
                phase: CallPhase::Ringing,
                ..
            }),
        )?;
        native.command("accept")?;
        // Until the browser hangs up: the most audio heard and the loudest it was.
        let heard = std::cell::Cell::new((0u64, 0.0f64));
        let ended = native.wait("the browser hanging up", limit, |e| {
            if let Event::CallStats(stats) = e {
                let (packets, level) = heard.get();
                heard.set((
                    packets.max(stats.inbound_audio_packets),
                    level.max(stats.peer_level),
                ));
            }
            match e {
                Event::CallEnded { reason, .. } => Some(reason.clone()),
                _ => None,
            }
        })?;
        anyhow::ensure!(ended == "PeerHungUp", "{ended}");
        let (packets, level) = heard.get();
        eprintln!("the desktop heard {packets} packets of the browser's audio, level {level}");
        anyhow::ensure!(packets >= 200, "the desktop heard {packets} packets");
        anyhow::ensure!(level > 0.001, "the desktop heard level {level}");
        native.wait(
            "the browser's chat",
            limit,
            on!(Event::Chat(x) if x.text == "Hi from the browser!"),
        )?;
        native.command(&format!("send {}", file.display()))?;
        native.wait(
            "the sent file",
            Duration::from_secs(180),
            on!(Event::TransferCompleted { dir: Dir::Out, .. }),
        )?;
        let received = native.wait(
            "the browser's file",
            Duration::from_secs(180),
            on!(Event::TransferCompleted { dir: Dir::In, location, .. } => location.clone()),
        )?;
        anyhow::Ok((hello, received))
    })();
    let output = browser.wait_with_output().unwrap();
    let (hello, received) = match native_side {
        Ok(events) => events,
        Err(e) => panic!(
            "{e:#}\nthe browser side said:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    };
    let r = result_of("interop.mjs", output);
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());

    assert!(!hello.is_empty(), "the browser's hello names it");
    assert_eq!(r["chat_received"], text);
    // The desktop's tone reached the browser: 5 s of packets, at the tone's level.
    let call = &r["call"];
    assert!(
        call["inbound_audio_packets_growth"].as_u64() >= Some(200),
        "{r}"
    );
    assert!(
        call["inbound_audio_bytes_growth"].as_u64() >= Some(200 * 20),
        "{r}"
    );
    assert!(
        call["outbound_audio_bytes_growth"].as_u64() > Some(0),
        "{r}"
    );
    assert!(call["peer_level"].as_f64() > Some(0.1), "{r}");
    assert_eq!(call["ended"], "HungUp", "{r}");
    assert_eq!(r["peer_name"], "Dex");
    assert_eq!(
        r["received"]["sha256"], sha,
        "the browser stored the desktop's bytes"
    );
    assert_eq!(r["received"]["size"], bytes.len());
    assert_eq!(
        r["grant_repeated"], true,
        "the browser lost its grants on purpose and must have granted again"
    );
    let got = std::fs::read(&received).unwrap();
    assert_eq!(got.len(), 5 * 1024 * 1024);
    assert_eq!(
        r["sent_sha256"].as_str().unwrap(),
        hex(&Sha256::digest(&got)),
        "the desktop saved the browser's bytes"
    );
}

/// A video call between two browsers with Chromium's fake microphone and camera: it rings and
/// is accepted through the call buttons, audio and video flow both ways (from `getStats()`),
/// chat and a file still work during it, mute stops Ada's outbound audio, and hanging up ends
/// the call and its media connection on both sides. The signaling server's own log shows it
/// relayed only the data connection's offer, answer and candidates, and its storage holds no
/// session description.
#[test]
fn two_browsers_call_each_other_with_audio_and_video() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    // A server of its own that logs every signal it relays (kind and size only): the call is
    // negotiated between the pages, so all the server may see is the data connection's.
    let wrangler = Wrangler::start(WranglerOptions {
        vars: vec![("LOG_SIGNALS".into(), "1".into())],
        verbose: true,
        ..Default::default()
    })
    .unwrap();
    let r = scenario(
        "calls.mjs",
        &[wrangler.base.clone(), e2e_dir().display().to_string()],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());

    assert_eq!(r["ringing_video"], true, "{r}");
    assert!(
        r["ringing_notice"]
            .as_str()
            .unwrap()
            .contains("is calling you with video"),
        "{r}"
    );
    for who in ["ada", "bob"] {
        let m = &r["media"][who];
        let positive = |key: &str| m[key].as_f64().is_some_and(|v| v > 0.0);
        assert!(positive("inbound_audio_bytes_growth"), "{who}: {m}");
        assert!(positive("inbound_audio_packets_growth"), "{who}: {m}");
        assert!(positive("inbound_video_bytes_growth"), "{who}: {m}");
        assert!(positive("peer_level"), "{who} hears silence: {m}");
    }
    assert_eq!(r["bob_sees_ada_camera"], true, "{r}");

    assert_eq!(r["chat_during_call"], "Can you hear me?");
    assert_eq!(r["file_stored"]["size"], 2 * 1024 * 1024, "{r}");
    assert_eq!(r["file_stored"]["sha256"], r["file_sha256"], "{r}");

    assert_eq!(r["bob_sees_mute"], true, "{r}");
    assert_eq!(r["muted"]["ada_outbound_audio_growth"], 0, "{r}");
    assert_eq!(r["muted"]["bob_inbound_audio_packets_growth"], 0, "{r}");
    assert!(
        r["muted"]["ada_inbound_audio_packets_growth"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "Bob's voice still reaches Ada: {r}"
    );

    assert_eq!(r["ada_ended"], "HungUp");
    assert_eq!(r["bob_ended"], "PeerHungUp");
    assert_eq!(r["bob_ended_message"], "Your peer ended the call.");
    assert_eq!(r["stats_after_hangup"], serde_json::json!([0, 0]), "{r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");

    // The server relayed one data connection's negotiation and nothing of the call's: one offer,
    // one answer, a few candidates (the call's own offer and answer would make two of each).
    let log = std::fs::read_to_string(&wrangler.log).unwrap();
    let relayed: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("signal relayed: ").nth(1))
        .collect();
    let count = |kind: &str| relayed.iter().filter(|l| l.starts_with(kind)).count();
    eprintln!("the server relayed: {relayed:?}");
    assert_eq!(count("Offer,"), 1, "{relayed:?}");
    assert_eq!(count("Answer,"), 1, "{relayed:?}");
    assert_eq!(
        count("IceCandidate,") + 2,
        relayed.len(),
        "nothing but the data connection's signals: {relayed:?}"
    );
    // And it stored none of it: no session description or candidate in its storage.
    for entry in walk(&wrangler.persist_to) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for needle in ["m=audio", "a=fingerprint", "candidate:"] {
            assert!(!text.contains(needle), "{} holds {needle}", entry.display());
        }
    }
    for shot in ["ada-in-call.png", "bob-in-call.png"] {
        let size = std::fs::metadata(e2e_dir().join(shot)).map(|m| m.len());
        assert!(size.as_ref().is_ok_and(|s| *s > 10_000), "{shot}: {size:?}");
    }
}

/// Calls when the browser has no microphone (a Chromium without media devices) or refuses it
/// (no permission granted, no fake prompt): the callee accepts, the call ends at once, and both
/// sides are told why in words; the room and its chat go on.
#[test]
fn a_missing_or_blocked_microphone_ends_the_call_in_words() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let r = scenario("call-devices.mjs", std::slice::from_ref(&wrangler.base));
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());

    let none = &r["no_microphone"];
    assert_eq!(none["peer"]["reason"], "NoMicrophone", "{r}");
    assert_eq!(none["ada"]["reason"], "PeerNoMicrophone", "{r}");
    let blocked = &r["denied"];
    assert_eq!(blocked["peer"]["reason"], "PermissionDenied", "{r}");
    assert_eq!(blocked["ada"]["reason"], "PeerPermissionDenied", "{r}");
    for side in [
        &none["peer"],
        &none["ada"],
        &blocked["peer"],
        &blocked["ada"],
    ] {
        let message = side["message"].as_str().unwrap_or_default();
        assert!(message.contains("microphone"), "not in words: {side}");
    }
    assert_eq!(r["chat_after_no_microphone"], "no microphone here", "{r}");
    assert_eq!(r["chat_after_denied"], "blocked, but here", "{r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
}

#[test]
fn a_stranger_with_bad_signals_cannot_crash_a_waiting_tab_or_leave_connections_open_or_use_test_hooks()
 {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let r = scenario(
        "hostile-signal.mjs",
        &[wrangler.base.clone(), e2e_dir().display().to_string()],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    // Each attack ended its own handshake, said why, and nothing else.
    let reasons: Vec<&str> = r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["BadDescription", "NotOpened"], "{r}");
    // A stalled opening is tried once more (Ada joins again); a refused description is not.
    assert_eq!(r["failures"][0]["retrying"], false, "{r}");
    assert_eq!(r["failures"][1]["retrying"], true, "{r}");
    assert_eq!(
        r["answered"], true,
        "Ada answered Mallory's real offer: {r}"
    );
    // The refused candidates were refused without taking the page down (this used to abort the
    // tab with `failed to add ice candidate`).
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    // No connection outlives its handshake: timed out, or its peer gone from signaling.
    assert_eq!(r["open_after_timeout"], 0, "{r}");
    assert_eq!(r["churn_connections_created"], 6, "{r}");
    assert_eq!(r["open_after_churn"], 0, "{r}");
    // And Ada is still in her room: Bob meets her and she reads his message.
    assert_eq!(r["chat_received"], "still here?", "{r}");
    assert_eq!(r["open_with_bob"], 1, "{r}");
    // A link that asks for the test hooks on a host that is not loopback gets none (and the
    // console says so).
    assert_eq!(r["hooks_elsewhere"]["events"], 0, "{r}");
    assert_eq!(r["hooks_elsewhere"]["warned"], true, "{r}");
}

/// What a browser keeps: parts nobody came back for expire (a week, or oldest first past the
/// 1 GiB budget), the oldest received files leave past 1,000 with their bytes, and a file
/// received again with other bytes never touches the verified one.
#[test]
fn a_browser_forgets_unclaimed_parts_and_old_files_and_keeps_verified_ones_intact() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let r = scenario(
        "storage.mjs",
        &[wrangler.base.clone(), e2e_dir().display().to_string()],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    let seeded = &r["seeded"];
    assert_eq!(seeded["file_count"], 1000, "{r}");
    assert_eq!(seeded["upgraded"], false, "{r}");
    // After the reload: the week-old part and the older of the two big ones are gone, records
    // and all; the others stay, and the part from before registration is registered.
    let parts = &r["after_reload"]["parts"];
    assert_eq!(parts["seed-old"]["records"], 0, "{r}");
    assert_eq!(parts["seed-old"]["registered"], false, "{r}");
    assert_eq!(parts["seed-big-older"]["records"], 0, "{r}");
    assert_eq!(parts["seed-big-older"]["registered"], false, "{r}");
    for kept in ["seed-big-newer", "seed-fresh", "seed-legacy"] {
        assert_eq!(parts[kept]["records"], 1, "{kept}: {r}");
        assert_eq!(parts[kept]["registered"], true, "{kept}: {r}");
    }
    assert_eq!(r["after_reload"]["upgraded"], true, "{r}");
    assert_eq!(r["after_reload"]["finished_count"], 1000, "{r}");
    assert_eq!(r["after_reload"]["file_count"], 1000, "{r}");
    // Each received file pushes the oldest out, bytes and all.
    let after_first = &r["after_first"];
    assert_eq!(after_first["file_count"], 1000, "{r}");
    assert_eq!(after_first["files"]["old-0000.bin"]["listed"], false, "{r}");
    assert_eq!(after_first["files"]["old-0000.bin"]["records"], 0, "{r}");
    assert_eq!(after_first["files"]["old-0001.bin"]["listed"], true, "{r}");
    let after_second = &r["after_second"];
    assert_eq!(after_second["file_count"], 1000, "{r}");
    assert_eq!(after_second["finished_count"], 1000, "{r}");
    assert_eq!(after_second["files"]["old-0001.bin"]["records"], 0, "{r}");
    assert_eq!(after_second["files"]["old-0002.bin"]["listed"], true, "{r}");
    assert_eq!(after_second["files"]["old-0002.bin"]["records"], 1, "{r}");
    assert_eq!(after_second["files"]["old-0999.bin"]["listed"], true, "{r}");
    // The same name, size and time (the same resume key) with other bytes: a file of its own
    // beside the first, and the first still hashes to what was verified.
    assert_eq!(r["first"]["location"], "report.pdf", "{r}");
    assert_eq!(r["first"]["stored"]["sha256"], r["first"]["sent"], "{r}");
    assert_eq!(r["second"]["location"], "report (1).pdf", "{r}");
    assert_eq!(r["second"]["stored"]["sha256"], r["second"]["sent"], "{r}");
    assert_ne!(r["first"]["sent"], r["second"]["sent"], "{r}");
    assert_eq!(r["first_after_second"]["sha256"], r["first"]["sent"], "{r}");
    assert_eq!(
        r["errors"],
        serde_json::json!({"ada": [], "bob": []}),
        "{r}"
    );
}

/// Every file under `dir`, recursively.
/// The store contract the desktop's folder store passes in a unit test, run by a page against
/// IndexedDB in Chromium: the same resume rule, unique names and discards, twice in one profile.
#[test]
fn the_browsers_store_keeps_the_same_contract_as_the_desktops() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let r = scenario("store-contract.mjs", std::slice::from_ref(&wrangler.base));
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{r}");
    for run in runs {
        assert_eq!(run["failure"], Value::Null, "{r}");
        // As many checks as the folder store's unit test counts.
        assert_eq!(run["checks"], 21, "{r}");
        assert_eq!(run["errors"], serde_json::json!([]), "{r}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Two browsers open the same link on a hostile signaling server that connects each to a relay
/// (see `duet_tests::mitm`): both notice, warn in words, and nothing of the chat passes.
#[test]
fn two_browsers_catch_a_relay_in_the_middle() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mitm, room) = runtime.block_on(async {
        let api = wrangler.api();
        let room = api.create_room().await.unwrap().room;
        let rooms = [
            api.create_room().await.unwrap().room,
            api.create_room().await.unwrap().room,
        ];
        (
            duet_tests::mitm::Mitm::start(&wrangler.base, rooms).await,
            room,
        )
    });
    let r = scenario("mitm.mjs", &[mitm.base.clone(), room]);
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_ne!(r["ada_remote"], r["bob_local"], "{r}");
    assert_ne!(r["bob_remote"], r["ada_local"], "{r}");
    for who in ["ada", "bob"] {
        assert_eq!(r[format!("{who}_hello")], "hello_failed", "{r}");
        assert_eq!(r[format!("{who}_reason")], "Intercepted", "{r}");
    }
    let relayed = mitm.relayed();
    assert!(
        relayed
            .iter()
            .any(|m| matches!(m, duet_shared::peer::Control::Proof { .. })),
        "{relayed:?}"
    );
    assert!(
        !relayed.iter().any(|m| matches!(
            m,
            duet_shared::peer::Control::Chat { .. } | duet_shared::peer::Control::Offer(_)
        )),
        "{relayed:?}"
    );
}

/// Bob's browser as the version before device keys left it (`before-keys/browser-bob.json`,
/// made by that version's web client with `old-install.mjs`; see the fixtures' README), opened
/// by today's web client at the same address, where his room has since expired: his name, his
/// received file (bytes unchanged), the room and its history are kept, and a new person meets
/// him under his name, with a key that survives a reload.
#[test]
fn a_browser_from_before_device_keys_keeps_its_name_history_files_and_rooms() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let fixture = repo_root().join("game-client/tests/fixtures/before-keys/browser-bob.json");
    let saved: Value = serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    let install = &saved["install"];
    let link = install["link"].as_str().unwrap();
    // Storage belongs to an origin: the server must be where it was.
    let port = duet_tests::loopback_port(link);
    let wrangler = Wrangler::start(duet_tests::WranglerOptions {
        port: Some(port),
        ..Default::default()
    })
    .unwrap();
    let new_link = wrangler.new_room_link().unwrap();
    let r = scenario(
        "upgrade.mjs",
        &[
            wrangler.base.clone(),
            fixture.display().to_string(),
            new_link,
            e2e_dir().display().to_string(),
        ],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r["origins"], serde_json::json!([wrangler.base]), "{r}");
    assert_eq!(r["name"], install["name"], "{r}");
    assert_eq!(r["received"], serde_json::json!([install["file"]]), "{r}");
    assert_eq!(r["stored_file"]["sha256"], install["file_sha256"], "{r}");
    let lines = install["history"].as_array().unwrap().len();
    assert!(lines >= 2, "the fixture holds a conversation: {install}");
    assert_eq!(r["history_loaded"], lines, "{r}");
    assert_eq!(r["history"], install["history"], "{r}");
    assert!(
        r["closed"].as_str().unwrap().contains("does not exist"),
        "{r}"
    );
    for run in ["run_0", "run_1"] {
        assert_eq!(r[run]["name"], install["name"], "{r}");
        assert_eq!(r[run]["identity"], r["identity"], "the key is kept: {r}");
        assert_eq!(r[run]["ada_saw"]["name"], install["name"], "{r}");
        assert_eq!(r[run]["ada_saw"]["identity"], r["identity"], "{r}");
    }
    assert_eq!(r["run_0"]["heard"], "welcome back 0", "{r}");
    assert_eq!(r["run_1"]["heard"], "welcome back 1", "{r}");
}

/// A hidden tab: what the peer does counts in the title, shows a notification and chimes; a
/// call rings on; looking again clears the count. Notifications are asked for only after the
/// person's click.
#[test]
fn a_hidden_tab_counts_notifies_and_rings_for_what_the_peer_does() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let r = scenario(
        "attention.mjs",
        &[wrangler.base.clone(), e2e_dir().display().to_string()],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r["buttons_before"], serde_json::json!(["notify", "sound"]));
    assert_eq!(r["asked_before_click"], 0, "never asked on load");
    assert!(r["asked_after_click"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["visibility"], "hidden", "another tab is in front");
    for (what, count) in [("joined", 1), ("message", 2), ("file", 3), ("call", 4)] {
        assert_eq!(r[what]["unseen"], count, "{what}: {r}");
        assert_eq!(r[what]["title"], format!("({count}) Duet"), "{what}: {r}");
        assert_eq!(r[what]["told"], true, "{what}: {r}");
    }
    for what in ["joined", "message", "file"] {
        assert_eq!(r[what]["sound"], true, "{what}: {r}");
    }
    let bodies: Vec<&str> = r["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["body"].as_str().unwrap())
        .collect();
    let bob = r["bob_name"].as_str().unwrap();
    assert_eq!(
        bodies,
        [
            format!("{bob} is here."),
            format!("{bob} sent you a message."),
            format!("{bob} is sending you photo.jpg."),
            format!("{bob} is calling you.")
        ],
        "{r}"
    );
    // Through the service worker (the only way on Android), each naming Ada's room.
    let room = &r["room_url"];
    assert!(
        r["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["visibility"] == "hidden" && n["via"] == "worker" && n["data"] == *room),
        "{r}"
    );
    // One tag: the worker shows the last, the call, not a pile of four.
    assert_eq!(r["shown"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(
        r["shown"][0]["body"],
        format!("{bob} is calling you."),
        "{r}"
    );
    // A click on it brings Ada's room forward, not the other tab of the same origin. (Her page
    // created its room: its client address may still be the one it was opened at.)
    assert_eq!(r["click"]["windows"], 2, "{r}");
    let focused = r["click"]["focused"].as_array().unwrap();
    assert_eq!(focused.len(), 1, "{r}");
    assert!(focused[0] == *room || focused[0] == r["opened_at"], "{r}");
    // Three chimes of two tones; the ring: four tones every 2 s for 5 s.
    assert_eq!(r["chime_tones"], 6, "{r}");
    assert!(r["ring_tones"].as_u64().unwrap() >= 8, "{r}");
    assert_eq!(r["visibility_back"], "visible");
    assert_eq!(r["title_back"], "Duet");
    assert_eq!(r["alerts_in_sight"], 0, "{r}");
    assert_eq!(r["title_in_sight"], "Duet");
}

/// The app is installable, its first visit downloads the wasm once (the service worker keeps
/// the page's copy), its second visit starts from the service worker's cache, and a new
/// build is used from the visit after the one that found it, never mixed with the old.
#[test]
fn the_app_installs_and_starts_from_its_cache_and_updates_at_the_next_visit() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let r = scenario(
        "pwa.mjs",
        &[wrangler.base.clone(), e2e_dir().display().to_string()],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r["installability_errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["manifest_errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["first"]["wasm_from_service_worker"], false, "{r}");
    // The wasm's body crossed the network once on the first visit: the service worker kept
    // what the page had fetched (its own request revalidated it), rather than a second copy.
    let fetches = r["first"]["wasm_fetches"].as_array().unwrap();
    let bodies = fetches
        .iter()
        .filter(|f| f["body_bytes"].as_i64().unwrap_or(0) > 1 << 20)
        .count();
    assert_eq!(bodies, 1, "{r}");
    assert!(
        fetches.iter().any(|f| f["by_worker"] == true),
        "the service worker asked for the wasm: {r}"
    );
    let kept = r["kept"].as_object().unwrap();
    assert_eq!(kept.len(), 1, "{r}");
    let paths = kept.values().next().unwrap();
    for path in [
        "/",
        "/start.js",
        "/pkg/duet-client_bg.wasm",
        "/pkg/build.json",
    ] {
        assert!(
            paths.as_array().unwrap().iter().any(|p| p == path),
            "{path}: {r}"
        );
    }
    assert_eq!(r["second"]["wasm_from_service_worker"], true, "{r}");
    assert_eq!(r["second"]["wasm_from_network"], 0, "{r}");
    assert!(r["second"]["first_frame_ms"].as_f64().unwrap() > 0.0);
    // The visit that finds a new build runs the old one whole; the next runs the new one.
    assert_eq!(r["third"]["new_build"], false, "{r}");
    let after = r["after_update"].as_object().unwrap();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["duet-app-00000000deadbeef"],
        "{r}"
    );
    assert_eq!(r["fourth"]["new_build"], true, "{r}");
    assert_eq!(r["fourth"]["wasm_from_service_worker"], true, "{r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
}

/// Two phones (Chromium's mobile emulation, real touch events): the compact layout, the share
/// sheet, the page's own input taking the focus from a tap and staying above the keyboard,
/// Enter sending, a long press opening the peer's menu (a tap does not), a file sent through the
/// chooser from that menu and downloaded on the other phone, and a kick by long press.
#[test]
fn two_phones_chat_send_a_file_and_remove_by_touch() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let dir = e2e_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("holiday-photo.jpg");
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let r = scenario(
        "phones.mjs",
        &[
            wrangler.base.clone(),
            dir.display().to_string(),
            file.display().to_string(),
        ],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    // Upright, the room sits above the chat, and what does not fit is behind "More".
    let window: Vec<f64> = serde_json::from_value(r["compact"]["window"].clone()).unwrap();
    assert_eq!(window, [393.0, 851.0], "{r}");
    let (input_y, me_y) = (
        r["compact"]["chat_input"][1].as_f64().unwrap(),
        r["compact"]["me"][1].as_f64().unwrap(),
    );
    assert!(me_y < input_y, "the room above the chat: {r}");
    assert!(
        r["compact"]["me"][0].as_f64().unwrap() > 0.0,
        "my avatar on screen: {r}"
    );
    // The share sheet got the room's link.
    assert_eq!(r["shared"]["url"], r["link"], "{r}");
    // A tap on the chat input gives the page's own input the focus.
    assert_eq!(r["focus_before"]["editable"], false, "{r}");
    assert_eq!(
        r["focus_after_tap"],
        serde_json::json!({"tag": "INPUT", "id": "duet-field-chat", "editable": true}),
        "{r}"
    );
    // With the keyboard up the input stays whole above it, and keeps the focus.
    let kb = &r["with_keyboard"];
    assert_eq!(kb["shown"], true, "{r}");
    assert!(kb["top"].as_f64().unwrap() >= 0.0, "{r}");
    assert!(
        kb["bottom"].as_f64().unwrap() <= kb["height"].as_f64().unwrap(),
        "{r}"
    );
    assert_eq!(r["focus_with_keyboard"]["id"], "duet-field-chat", "{r}");
    assert_eq!(r["chat_received"], "Hi Ada, typed on my phone 📱", "{r}");
    assert_eq!(r["input_after_send"], "", "{r}");
    // A tap is a tap; a long press opens the menu, with sending a file in it.
    assert_eq!(r["menu_after_tap"], false, "{r}");
    assert!(r["menu"]["send"].is_array(), "{r}");
    let sha = format!("{:x}", Sha256::digest(&bytes));
    assert_eq!(r["sent_sha256"], sha, "{r}");
    assert_eq!(r["download_sha256"], sha, "{r}");
    assert!(
        r["kick_notice"]
            .as_str()
            .unwrap()
            .starts_with("Your peer was removed"),
        "{r}"
    );
    assert_eq!(r["errors"]["ada"], serde_json::json!([]), "{r}");
    assert_eq!(r["errors"]["bob"], serde_json::json!([]), "{r}");
    // A first visit on a phone's connection and CPU started, and says what it took.
    let throttled = &r["throttled"];
    assert!(throttled["wasm_wire_bytes"].as_f64().unwrap() > 1e6, "{r}");
    assert!(throttled["wasm_download_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(
        throttled["first_frame_ms"].as_f64().unwrap()
            >= throttled["wasm_download_ms"].as_f64().unwrap(),
        "{r}"
    );
}
/// Everything from the keyboard: Tab moves the focus through the controls and Enter presses
/// them (create a room, copy its link); at twice the pixel density the logical layout holds,
/// so text follows the browser's zoom.
#[test]
fn the_keyboard_alone_creates_a_room_and_copies_its_link_and_text_follows_the_zoom() {
    assert_loopback_only();
    let _serial = one_at_a_time();
    let wrangler = Wrangler::shared();
    let r = scenario(
        "keyboard.mjs",
        &[wrangler.base.clone(), e2e_dir().display().to_string()],
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(r["tabs_to_create"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["tabs_to_copy"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["copied"], r["link"], "{r}");
    // The same logical layout at twice the density, to within rounding to a physical pixel.
    let points = |key: &str| -> Vec<f64> {
        ["window", "create"]
            .iter()
            .flat_map(|part| serde_json::from_value::<Vec<f64>>(r[key][part].clone()).unwrap())
            .collect()
    };
    for (a, b) in points("layout_1x").iter().zip(points("layout_2x")) {
        assert!((a - b).abs() <= 1.0, "{r}");
    }
    assert_eq!(r["screenshot_px"], serde_json::json!([2560, 1440]), "{r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
}
