//! `cargo xtask bench browser`: 200 MiB browser -> browser with Duet's wasm client, and in the
//! same run two plain-JS pages: the reference that implements the seed design (16 KiB chunks,
//! pause while `bufferedAmount` > 1 MiB, resume on `bufferedamountlow`) and the ceiling (256 KiB
//! messages from memory, dropped on arrival), all in Debian's Chromium through local `wrangler
//! dev`, each person in a Chromium of their own (see `tests/bench/browser.mjs`, which drives the
//! pages and measures).
//!
//! Writes `target/bench/browser.json` as `{"duet": S, "reference": S, "ceiling": S, "ratio",
//! "ratio_to_ceiling", "first_frame_ms", "first_frame_cached_ms", "wasm_gzip_mib",
//! "phone_start": {"cpu", "mbit_s", "rtt_ms", "wasm_wire_bytes", "wasm_download_ms",
//! "first_frame_ms"}}` (a first visit under a phone's 4× slower CPU and 10 Mbit/s) with `S = {"mib_s",
//! "memory_growth_mib", "channel_open_ms", "cpu_s_per_side": {"sender", "receiver"}, ...}` (MiB =
//! 2^20 bytes; medians over runs; memory is the larger side's peak growth of its browser's
//! processes during the transfer, CPU their CPU-seconds for the 200 MiB) plus every run's
//! details under `runs`.
//!
//! Usage: `cargo xtask bench browser [-- --runs N]` (default 3).

use anyhow::{Result, bail};
use duet_tests::{Wrangler, WranglerOptions, repo_root, temp_dir};
use serde_json::Value;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = duet_tests::flag_value(&args, "--runs").unwrap_or(3);
    let root = repo_root();
    // The shipped build leaves the wasm and its gzip; the quicker one (`build-web`) only the
    // gzip. A diagnostic run on the quicker one says so in its wasm size.
    let pkg = root.join("web/pkg");
    if !pkg.join("duet-client_bg.wasm").exists() && !pkg.join("duet-client_bg.wasm.gz").exists() {
        bail!("the web client is not built: run `cargo xtask build-web`");
    }
    let wrangler = Wrangler::start(WranglerOptions::default())?;
    let work = temp_dir("bench-browser")?;
    let result = duet_tests::node_bench_result(
        "browser.mjs",
        &[
            wrangler.base.clone(),
            work.display().to_string(),
            runs.to_string(),
        ],
    )?;
    let _ = std::fs::remove_dir_all(&work);
    let path = root.join("target/bench/browser.json");
    std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
    let get = |pointer: &str| {
        result
            .pointer(pointer)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    println!(
        "duet {:.1} MiB/s (memory +{:.0} MiB, channel {:.0} ms, CPU s {:.1}/{:.1}) | reference {:.1} MiB/s (memory +{:.0} MiB, channel {:.0} ms) | ratio {:.2} | ceiling {:.1} MiB/s (CPU s {:.1}/{:.1}), ratio {:.2} | first frame {:.0} ms, second visit {:.0} ms | phone (4× CPU, 10 Mbit/s): wasm {:.0} ms, first frame {:.0} ms | wasm gzip {:.2} MiB",
        get("/duet/mib_s"),
        get("/duet/memory_growth_mib"),
        get("/duet/channel_open_ms"),
        get("/duet/cpu_s_per_side/sender"),
        get("/duet/cpu_s_per_side/receiver"),
        get("/reference/mib_s"),
        get("/reference/memory_growth_mib"),
        get("/reference/channel_open_ms"),
        get("/ratio"),
        get("/ceiling/mib_s"),
        get("/ceiling/cpu_s_per_side/sender"),
        get("/ceiling/cpu_s_per_side/receiver"),
        get("/ratio_to_ceiling"),
        get("/first_frame_ms"),
        get("/first_frame_cached_ms"),
        get("/phone_start/wasm_download_ms"),
        get("/phone_start/first_frame_ms"),
        get("/wasm_gzip_mib"),
    );
    println!("wrote {}", path.display());
    Ok(())
}
