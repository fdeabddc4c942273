//! `cargo xtask bench hostile`: a headless victim under a flood of each kind from a hostile peer
//! (a raw matchbox socket speaking Duet's protocol badly on purpose) over real WebRTC through
//! `wrangler dev`, each for `DUET_FLOOD_SECS` (default 60) seconds, in a fresh room.
//!
//! Kinds: `idle` (the reference: the same peer, sending nothing), `chat` (10,000-character
//! messages, 200/s), `offers` (20 MiB offers with 10,000-character names, never followed by a
//! byte, 100/s), `tiny_files` (empty files, offer and digest, 100/s), `candidates` (a call invite
//! and 2 KiB ICE candidates, 500/s), `bad_frames` (undecodable frames on both channels, 500/s).
//!
//! Throughout, every 500 ms the victim says something and the peer answers with a receipt: the
//! chat round trip is from the victim's command to its "delivered" event. Also sampled: the
//! victim's RSS (every 100 ms) and the bytes under its data directory (history, downloads,
//! partials) before and after. Writes `target/bench/hostile.json`:
//! `{"flood_secs", "kinds": {KIND: {"rss_start_mib", "rss_peak_mib", "rss_growth_mib",
//! "storage_growth_bytes", "probes", "delivered", "rtt_median_ms", "rtt_max_ms", "sent"}},
//! "vs_idle": {KIND: {"rtt_median_ratio", "rss_growth_minus_idle_mib"}}, "targets", "pass"}`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use duet_shared::call::{CallId, CallSignal};
use duet_shared::peer::{CONTROL_CHANNEL, Control, DATA_CHANNEL, FileOffer, TransferId};
use duet_tests::automation::Delivery;
use duet_tests::evil::Evil;
use duet_tests::{
    Event, HeadlessClient, Wrangler, WranglerOptions, median, repo_root, rss, temp_dir,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// Targets from the issue: RSS growth and the chat round trip during every flood.
const MAX_RSS_GROWTH_MIB: f64 = 64.0;
const MAX_RTT_MS: f64 = 1000.0;
/// The partials budget (`PARTS_BUDGET_BYTES`, 1 GiB): storage growth must stay under it.
const STORAGE_BUDGET_BYTES: u64 = 1 << 30;

const KINDS: [&str; 6] = [
    "idle",
    "chat",
    "offers",
    "tiny_files",
    "candidates",
    "bad_frames",
];

/// Messages per second of each kind.
fn rate(kind: &str) -> f64 {
    match kind {
        "chat" => 200.0,
        "offers" | "tiny_files" => 100.0,
        "candidates" | "bad_frames" => 500.0,
        _ => 0.0,
    }
}

/// What the hostile peer does besides [`Evil`]'s own moves.
trait Flood {
    fn receipt_chats(&mut self);
    fn flood(&mut self, kind: &str, n: u64);
}

impl Flood for Evil {
    /// Answers the victim's chat with receipts, as an honest peer would.
    fn receipt_chats(&mut self) {
        let incoming: Vec<_> = self.socket.channel_mut(CONTROL_CHANNEL).receive();
        for (_, packet) in incoming {
            if let Ok(Control::Chat { id, .. }) = Control::decode(&packet) {
                self.control(&Control::ChatReceipt { id });
            }
        }
        let _ = self.socket.channel_mut(DATA_CHANNEL).receive();
    }

    /// Message `n` of a flood of `kind`.
    fn flood(&mut self, kind: &str, n: u64) {
        let long = |tag: &str| format!("{tag} {n} ").repeat(10_000 / (tag.len() + 8) + 1);
        match kind {
            "chat" => self.control(&Control::Chat {
                id: Uuid::new_v4(),
                sent_ms: n,
                text: long("flood").chars().take(10_000).collect(),
            }),
            "offers" | "tiny_files" => {
                let size = if kind == "offers" { 20 << 20 } else { 0 };
                let mut resume_key = [0u8; 32];
                resume_key[..8].copy_from_slice(&n.to_le_bytes());
                let name: String = if kind == "offers" {
                    long("offer").chars().take(10_000).collect()
                } else {
                    format!("tiny-{n}.txt")
                };
                self.control(&Control::Offer(FileOffer {
                    transfer: TransferId(n + 1),
                    name,
                    size,
                    mime: "application/octet-stream".into(),
                    resume_key,
                }));
                if size == 0 {
                    // The SHA-256 of nothing.
                    let sha256 = [
                        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8,
                        0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
                        0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
                    ];
                    self.control(&Control::Digest {
                        transfer: TransferId(n + 1),
                        sha256,
                    });
                }
            }
            "candidates" => {
                let call = CallId(1);
                if n == 0 {
                    self.control(&Control::Call(CallSignal::Invite { call, video: false }));
                }
                self.control(&Control::Call(CallSignal::Candidate {
                    call,
                    candidate: long("candidate:1 1 udp").chars().take(2048).collect(),
                    mid: Some("0".into()),
                    mline: Some(0),
                }));
            }
            "bad_frames" => {
                let garbage: Vec<u8> = (0..512u32).map(|i| (i as u64 * 31 + n) as u8).collect();
                let channel = if n.is_multiple_of(2) {
                    CONTROL_CHANNEL
                } else {
                    DATA_CHANNEL
                };
                self.raw(channel, garbage);
            }
            _ => {}
        }
    }
}

/// Bytes under `dir`, recursively.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

const MIB: f64 = 1024.0 * 1024.0;

async fn one_flood(wrangler: &Wrangler, binary: &Path, kind: &str, secs: u64) -> Result<Value> {
    let room = wrangler.api().create_room().await?.room;
    let link = format!("{}/r/{room}", wrangler.base);
    let dir = temp_dir(&format!("bench-hostile-{kind}"))?;
    let mut victim = HeadlessClient::start(binary, &link, &dir, "Victim")?;
    let mut evil = Evil::join(&wrangler.signal_url(&room, Uuid::new_v4())).await;
    evil.introduce("Mallory").await;
    let hello = Instant::now() + Duration::from_secs(30);
    'hello: loop {
        for event in victim.pending() {
            if matches!(event, Event::PeerHello { .. }) {
                break 'hello;
            }
        }
        if Instant::now() > hello {
            bail!("{kind}: the victim never saw the peer's hello");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Settle, then measure from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = victim.pid();
    let rss_start = rss(pid);
    let storage_start = bytes_under(&dir);
    let mut rss_peak = rss_start;
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut sent = 0u64;
    let mut probes: HashMap<String, Instant> = HashMap::new();
    let mut rtts = Vec::new();
    let (mut next_probe, mut next_rss) = (started, started);
    let mut probe = 0u32;
    let per_sec = rate(kind);
    let mut watch = |victim: &mut HeadlessClient, probes: &mut HashMap<String, Instant>| {
        for event in victim.pending() {
            if let Event::Chat(line) = &event
                && line.mine
                && line.state == Delivery::Delivered
                && let Some(at) = probes.remove(&line.text)
            {
                rtts.push(at.elapsed().as_secs_f64() * 1e3);
            }
            if let Event::Error { message } = &event {
                eprintln!("{kind}: the victim said {message}");
            }
        }
    };
    while Instant::now() < end {
        let now = Instant::now();
        let due = (now.duration_since(started).as_secs_f64() * per_sec) as u64;
        while sent < due {
            evil.flood(kind, sent);
            sent += 1;
        }
        if now >= next_probe {
            let text = format!("probe {probe}");
            victim.command(&format!("say {text}"))?;
            probes.insert(text, now);
            probe += 1;
            next_probe += Duration::from_millis(500);
        }
        if now >= next_rss {
            rss_peak = rss_peak.max(rss(pid));
            next_rss += Duration::from_millis(100);
        }
        evil.receipt_chats();
        watch(&mut victim, &mut probes);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The last probes get a second to come back; one still out counts as a round trip of
    // however long it has waited.
    let grace = Instant::now() + Duration::from_secs(1);
    while Instant::now() < grace && !probes.is_empty() {
        evil.receipt_chats();
        watch(&mut victim, &mut probes);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = rtts.len();
    for at in probes.values() {
        rtts.push(at.elapsed().as_secs_f64() * 1e3);
    }
    rss_peak = rss_peak.max(rss(pid));
    let storage_growth = bytes_under(&dir).saturating_sub(storage_start);
    drop(victim);
    let _ = std::fs::remove_dir_all(&dir);
    let result = json!({
        "rss_start_mib": rss_start as f64 / MIB,
        "rss_peak_mib": rss_peak as f64 / MIB,
        "rss_growth_mib": rss_peak.saturating_sub(rss_start) as f64 / MIB,
        "storage_growth_bytes": storage_growth,
        "probes": probe,
        "delivered": delivered,
        "rtt_median_ms": median(rtts.clone()),
        "rtt_max_ms": rtts.iter().copied().fold(0.0, f64::max),
        "sent": sent,
    });
    eprintln!("{kind}: {result}");
    Ok(result)
}

#[tokio::main]
async fn main() -> Result<()> {
    duet_tests::assert_loopback_only();
    let secs = std::env::var("DUET_FLOOD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let binary = repo_root().join("target/debug/duet-client");
    let wrangler = Wrangler::start(WranglerOptions::default())?;
    let mut kinds = serde_json::Map::new();
    for kind in KINDS {
        kinds.insert(
            kind.into(),
            one_flood(&wrangler, &binary, kind, secs).await?,
        );
    }
    let idle = kinds["idle"].clone();
    let mut vs_idle = serde_json::Map::new();
    let mut pass = true;
    for (kind, r) in &kinds {
        let growth = r["rss_growth_mib"].as_f64().unwrap_or(f64::NAN);
        let rtt_max = r["rtt_max_ms"].as_f64().unwrap_or(f64::NAN);
        let storage = r["storage_growth_bytes"].as_u64().unwrap_or(u64::MAX);
        pass &= growth <= MAX_RSS_GROWTH_MIB
            && rtt_max <= MAX_RTT_MS
            && storage <= STORAGE_BUDGET_BYTES
            && r["delivered"] == r["probes"];
        vs_idle.insert(
            kind.clone(),
            json!({
                "rtt_median_ratio": r["rtt_median_ms"].as_f64().unwrap_or(f64::NAN)
                    / idle["rtt_median_ms"].as_f64().unwrap_or(f64::NAN),
                "rss_growth_minus_idle_mib": growth - idle["rss_growth_mib"].as_f64().unwrap_or(0.0),
            }),
        );
    }
    let result = json!({
        "flood_secs": secs,
        "kinds": kinds,
        "vs_idle": vs_idle,
        "targets": {
            "rss_growth_mib": MAX_RSS_GROWTH_MIB,
            "rtt_max_ms": MAX_RTT_MS,
            "storage_growth_bytes": STORAGE_BUDGET_BYTES,
        },
        "pass": pass,
    });
    let out = repo_root().join("target/bench/hostile.json");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
