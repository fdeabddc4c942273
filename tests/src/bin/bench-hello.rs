//! `cargo xtask bench hello`: what the authenticated hello costs between "both in the room" and
//! "chat ready", native to native over real WebRTC through `wrangler dev`.
//!
//! `DUET_JOINS` times (default 10), in a fresh room each: Ada joins and waits; Bob joins. Times
//! are taken in this process as each client's event line arrives:
//! - `in_room`: Bob's `connected` (the server took him; both are in the room);
//! - `connected`: the later of the two `peer_joined` (the WebRTC connection is up);
//! - `verified`: the later of the two `peer_hello` (both proofs verified: chat is ready).
//!
//! The hello is `connected → verified`: a greet each way, then a proof each way, each handled in
//! the next frame. The reference, in the same run on the same connection: Ada's chat round trip
//! (her `say` to her `delivered` event: a message each way, each handled in a frame), which is
//! what the earlier, unauthenticated hello cost at most (one message one way). Then the same
//! in Chromium (`tests/bench/hello.mjs`, skipped with `DUET_HELLO_BROWSER=0`). Writes
//! `target/bench/hello.json`: `{"joins", "native"|"browser": {"in_room_to_connected_ms",
//! "connected_to_verified_ms", "in_room_to_verified_ms", "chat_rtt_ms": {"median", "max"},
//! "hello_minus_chat_rtt_ms"}, "target_added_ms", "pass"}`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use duet_tests::automation::Delivery;
use duet_tests::{Event, HeadlessClient, Wrangler, WranglerOptions, repo_root, temp_dir};
use serde_json::json;

/// The target: what the authenticated hello may add to "both in room → chat ready".
const TARGET_ADDED_MS: f64 = 50.0;
const PATIENCE: Duration = Duration::from_secs(60);

/// Waits for `pick` and returns its value with the time the event line arrived.
fn at<T>(
    client: &mut HeadlessClient,
    what: &str,
    pick: impl Fn(&Event) -> Option<T>,
) -> Result<(T, Instant)> {
    client.wait_timed(what, PATIENCE, pick)
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

fn stats(values: &[f64]) -> serde_json::Value {
    let max = values.iter().copied().fold(0.0, f64::max);
    json!({
        "median": (duet_tests::median(values.to_vec()) * 10.0).round() / 10.0,
        "max": (max * 10.0).round() / 10.0,
    })
}

struct Join {
    in_room_to_connected: f64,
    connected_to_verified: f64,
    in_room_to_verified: f64,
    chat_rtt: f64,
}

fn one_join(binary: &Path, wrangler: &Wrangler, n: usize) -> Result<Join> {
    let link = wrangler.new_room_link()?;
    let mut ada =
        HeadlessClient::start(binary, &link, &temp_dir(&format!("hello-ada-{n}"))?, "Ada")?;
    ada.in_room_at(PATIENCE)?;
    let mut bob =
        HeadlessClient::start(binary, &link, &temp_dir(&format!("hello-bob-{n}"))?, "Bob")?;
    let in_room = bob.in_room_at(PATIENCE)?;
    let joined = |e: &Event| matches!(e, Event::PeerJoined { .. }).then_some(());
    let hello = |e: &Event| match e {
        Event::PeerHello { .. } => Some(Ok(())),
        Event::HelloFailed { message, .. } => Some(Err(message.clone())),
        _ => None,
    };
    let ((), bob_joined) = at(&mut bob, "Bob's connection", joined)?;
    let (bob_hello, bob_verified) = at(&mut bob, "Bob's hello", hello)?;
    let ((), ada_joined) = at(&mut ada, "Ada's connection", joined)?;
    let (ada_hello, ada_verified) = at(&mut ada, "Ada's hello", hello)?;
    if let Err(why) = bob_hello.and(ada_hello) {
        bail!("the hello failed: {why}");
    }
    let connected = bob_joined.max(ada_joined);
    let verified = bob_verified.max(ada_verified);
    // The reference: a chat round trip on the same connection.
    let text = format!("ping {n}");
    let sent = Instant::now();
    ada.command(&format!("say {text}"))?;
    let ((), delivered) = at(&mut ada, "the receipt", |e| match e {
        Event::Chat(line) if line.text == text && line.state == Delivery::Delivered => Some(()),
        _ => None,
    })?;
    Ok(Join {
        in_room_to_connected: ms(in_room, connected),
        connected_to_verified: ms(connected, verified),
        in_room_to_verified: ms(in_room, verified),
        chat_rtt: ms(sent, delivered),
    })
}

/// Medians and maxima over `joins`.
fn summary(joins: &[Join]) -> serde_json::Value {
    let column = |f: fn(&Join) -> f64| joins.iter().map(f).collect::<Vec<f64>>();
    let hello = column(|j| j.connected_to_verified);
    let rtt = column(|j| j.chat_rtt);
    let added = duet_tests::median(hello.clone()) - duet_tests::median(rtt.clone());
    json!({
        "in_room_to_connected_ms": stats(&column(|j| j.in_room_to_connected)),
        "connected_to_verified_ms": stats(&hello),
        "in_room_to_verified_ms": stats(&column(|j| j.in_room_to_verified)),
        "chat_rtt_ms": stats(&rtt),
        "hello_minus_chat_rtt_ms": (added * 10.0).round() / 10.0,
    })
}

fn main() -> Result<()> {
    duet_tests::assert_loopback_only();
    let joins: usize = std::env::var("DUET_JOINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let binary = repo_root().join("target/debug/duet-client");
    let wrangler = Wrangler::start(WranglerOptions::default())?;
    let results = (0..joins)
        .map(|n| one_join(&binary, &wrangler, n))
        .collect::<Result<Vec<Join>>>()?;
    let native = summary(&results);
    // The same in Chromium, unless asked to skip it (`DUET_HELLO_BROWSER=0`).
    let browser = if std::env::var("DUET_HELLO_BROWSER").as_deref() == Ok("0") {
        serde_json::Value::Null
    } else {
        let report = duet_tests::node_bench_result(
            "hello.mjs",
            &[wrangler.base.clone(), joins.to_string()],
        )?;
        let field = |j: &serde_json::Value, k: &str| j[k].as_f64().unwrap_or(f64::NAN);
        let joins: Vec<Join> = report["joins"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|j| Join {
                in_room_to_connected: field(j, "in_room_to_connected_ms"),
                connected_to_verified: field(j, "connected_to_verified_ms"),
                in_room_to_verified: field(j, "in_room_to_verified_ms"),
                chat_rtt: field(j, "chat_rtt_ms"),
            })
            .collect();
        summary(&joins)
    };
    let pass = [&native, &browser].iter().all(|s| {
        s.is_null()
            || s["connected_to_verified_ms"]["median"]
                .as_f64()
                .is_some_and(|m| m <= TARGET_ADDED_MS)
    });
    let result = json!({
        "joins": joins,
        "native": native,
        "browser": browser,
        "target_added_ms": TARGET_ADDED_MS,
        "pass": pass,
    });
    let out = repo_root().join("target/bench/hello.json");
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
