//! `cargo xtask bench call`: a video call between two browsers with Duet's wasm client for 60 s,
//! and in the same run the plain-JS reference call (`tests/bench/call-reference.html`:
//! `getUserMedia` and one `RTCPeerConnection`), each person in a Chromium of their own with fake
//! devices, through local `wrangler dev` (see `tests/bench/call.mjs`, which drives the pages and
//! measures).
//!
//! Writes `target/bench/call.json` as `{"rtt_ms", "jitter_ms", "packets_lost", "audio_level_ok",
//! "video_fps", "cpu_percent_per_tab"}` for Duet, plus `reference` (the same numbers for the
//! plain page), `ratio_to_reference` and the details under `duet`.
//!
//! Usage: `cargo xtask bench call [-- --secs N]` (default 60).

use anyhow::{Result, bail};
use duet_tests::{Wrangler, WranglerOptions, repo_root, temp_dir};
use serde_json::Value;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = duet_tests::flag_value(&args, "--secs").unwrap_or(60);
    let root = repo_root();
    if !root.join("web/pkg/duet-client_bg.wasm").exists() {
        bail!("the web client is not built: run `cargo xtask build-web`");
    }
    let wrangler = Wrangler::start(WranglerOptions::default())?;
    let work = temp_dir("bench-call")?;
    let result = duet_tests::node_bench_result(
        "call.mjs",
        &[
            wrangler.base.clone(),
            work.display().to_string(),
            secs.to_string(),
        ],
    )?;
    let _ = std::fs::remove_dir_all(&work);
    let path = root.join("target/bench/call.json");
    std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
    let show = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let r = &result["reference"];
    println!(
        "duet: rtt {} ms, jitter {} ms, lost {}, audio ok {}, video {} fps, cpu {} % per tab \
         | reference: rtt {} ms, jitter {} ms, lost {}, video {} fps, cpu {} % per tab \
         | ratio {}",
        show(&result["rtt_ms"]),
        show(&result["jitter_ms"]),
        show(&result["packets_lost"]),
        show(&result["audio_level_ok"]),
        show(&result["video_fps"]),
        show(&result["cpu_percent_per_tab"]),
        show(&r["rtt_ms"]),
        show(&r["jitter_ms"]),
        show(&r["packets_lost"]),
        show(&r["video_fps"]),
        show(&r["cpu_percent_per_tab"]),
        show(&result["ratio_to_reference"]),
    );
    println!("wrote {}", path.display());
    Ok(())
}
