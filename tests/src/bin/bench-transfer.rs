//! `cargo xtask bench transfer`: a 200 MiB file native -> native over real WebRTC, three runs, with
//! two references measured in the same run:
//! - `duet`: two `duet-client --headless` processes through `wrangler dev` (the product path:
//!   hashing, offer, credit-based flow control, disk writes, verification);
//! - `tcp`: the same bytes over loopback TCP between two processes (16 KiB reads, written to disk
//!   on the far side);
//! - `stock_matchbox`: two stock `matchbox_socket` peers (separate processes, stock signaling)
//!   pushing 16 KiB chunks with no flow control at all;
//! - `webrtc_ceiling` (extra): the WebRTC transport in a tight loop - matchbox with one 16 KiB
//!   chunk per message, 16 in flight acknowledged one by one, 4 MiB UDP buffers, no disk, no
//!   hashing, no frame loop. Not a hard ceiling: Duet packs three chunks per message and beats
//!   it. `duet_vs_ceiling` is Duet's median over its median.
//!
//! - `windowed` and `minimized`: the same as `duet`, between two windowed clients
//!   (`--automation`), each on an X server of its own (Xvfb, Mesa's software rendering), the
//!   windows shown or unmapped (what a window manager does to a minimized window): the frame
//!   loop draws while the file moves, and must not slow it. `windowed_vs_headless` and
//!   `minimized_vs_headless` are their medians over `duet`'s.
//!
//! Writes `target/bench/transfer.json` as `{"duet": T, "tcp": T, "stock_matchbox": T, ...}` with
//! `T = {"runs", "median_mb_s", "connect_s", "sender_rss_growth_mib", "receiver_rss_growth_mib"}`
//! (MB = 10^6 bytes; medians over runs). Uses the dev-profile binaries the tests use (dependencies
//! are optimised in that profile), so benchmarks and tests share one build.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use duet_tests::desktop::Xvfb;
use duet_tests::measure::{PeakRss, lines_of};
use duet_tests::{Event, HeadlessClient, Wrangler, WranglerOptions, median, on, temp_dir};
use serde::Serialize;

const SIZE: usize = 200 * 1024 * 1024;
const CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Sample {
    mb_s: f64,
    connect_s: f64,
    sender_rss_growth_mib: f64,
    receiver_rss_growth_mib: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    runs: usize,
    median_mb_s: f64,
    connect_s: f64,
    sender_rss_growth_mib: f64,
    receiver_rss_growth_mib: f64,
}

fn summarize(samples: &[Sample]) -> Summary {
    Summary {
        runs: samples.len(),
        median_mb_s: median(samples.iter().map(|s| s.mb_s).collect()),
        connect_s: median(samples.iter().map(|s| s.connect_s).collect()),
        sender_rss_growth_mib: median(samples.iter().map(|s| s.sender_rss_growth_mib).collect()),
        receiver_rss_growth_mib: median(
            samples.iter().map(|s| s.receiver_rss_growth_mib).collect(),
        ),
    }
}

fn make_file(path: &Path) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..SIZE / block.len() {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

/// Waits for an event `want` takes from a headless client; a failed transfer on the way fails
/// the run.
fn wait_for(
    client: &mut HeadlessClient,
    what: &str,
    limit: Duration,
    want: impl Fn(&Event) -> bool,
) -> Result<Event> {
    let event = client.wait(
        what,
        limit,
        on!(e if want(e) || matches!(e, Event::TransferFailed { .. })),
    )?;
    if let Event::TransferFailed { message, .. } = &event {
        bail!("transfer failed: {message}");
    }
    Ok(event)
}

fn duet_run(wrangler: &Wrangler, binary: &Path, source: &Path) -> Result<Sample> {
    let runtime = tokio::runtime::Runtime::new()?;
    let room = runtime.block_on(wrangler.api().create_room())?.room;
    let link = format!("{}/r/{room}", wrangler.base);
    let work = temp_dir("bench-transfer")?;
    let started = Instant::now();
    let mut a = HeadlessClient::start(binary, &link, &work.join("a"), "sender")?;
    // The receiver takes the file unasked: the bench times the wire, not a person's click.
    let mut b = HeadlessClient::start_wrapped(
        &["env", &format!("DUET_ASK_ABOVE={}", u64::MAX)],
        binary,
        &link,
        &work.join("b"),
        "receiver",
    )?;
    let hello = |e: &Event| matches!(e, Event::PeerHello { .. });
    wait_for(&mut a, "peer_hello", Duration::from_secs(60), hello)?;
    wait_for(&mut b, "peer_hello", Duration::from_secs(60), hello)?;
    let connect_s = started.elapsed().as_secs_f64();
    let sample = time_transfer(&mut a, &mut b, source, connect_s)?;
    drop((a, b));
    let _ = std::fs::remove_dir_all(work);
    Ok(sample)
}

/// `a` sends `source` to `b`: the rate, and both sides' memory growth meanwhile.
fn time_transfer(
    a: &mut HeadlessClient,
    b: &mut HeadlessClient,
    source: &Path,
    connect_s: f64,
) -> Result<Sample> {
    let (rss_a, rss_b) = (PeakRss::watch(a.pid()), PeakRss::watch(b.pid()));
    let sent_at = Instant::now();
    a.command(&format!("send {}", source.display()))?;
    wait_for(b, "transfer_completed", Duration::from_secs(900), |e| {
        matches!(e, Event::TransferCompleted { .. })
    })?;
    let secs = sent_at.elapsed().as_secs_f64();
    Ok(Sample {
        mb_s: SIZE as f64 / secs / 1e6,
        connect_s,
        sender_rss_growth_mib: rss_a.growth_mib(),
        receiver_rss_growth_mib: rss_b.growth_mib(),
    })
}

/// How the windowed pair's windows are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Windows {
    /// On screen, drawing.
    Shown,
    /// Unmapped, as a window manager does with a minimized window: not on screen.
    Minimized,
}

/// Like [`duet_run`], with the windowed client (`--automation`), each on an X server of its own
/// (Xvfb, software rendering): the frame loop draws the room while the file moves.
fn windowed_run(
    wrangler: &Wrangler,
    binary: &Path,
    source: &Path,
    windows: Windows,
) -> Result<Sample> {
    let link = wrangler.new_room_link()?;
    let work = temp_dir("bench-windowed")?;
    let (xa, xb) = (Xvfb::start(), Xvfb::start());
    let started = Instant::now();
    let mut a = xa.client(
        binary,
        &wrangler.base,
        &link,
        &work.join("a"),
        "sender",
        None,
        &[],
    )?;
    let mut b = xb.client(
        binary,
        &wrangler.base,
        &link,
        &work.join("b"),
        "receiver",
        None,
        &[format!("DUET_ASK_ABOVE={}", u64::MAX)],
    )?;
    let hello = |e: &Event| matches!(e, Event::PeerHello { .. });
    wait_for(&mut a, "peer_hello", Duration::from_secs(90), hello)?;
    wait_for(&mut b, "peer_hello", Duration::from_secs(90), hello)?;
    let connect_s = started.elapsed().as_secs_f64();
    // The file goes once both windows have settled, as a person's would: the bench times the
    // transfer, not a window's start (its first frames build the render pipelines).
    std::thread::sleep(Duration::from_secs(3));
    if windows == Windows::Minimized {
        for x in [&xa, &xb] {
            // "Duet$": an unfocused window's title counts what happened unseen ("(1) Duet").
            x.xdotool(&["search", "--name", "Duet$", "windowunmap", "--sync", "%@"]);
            let shown = Command::new("xdotool")
                .args(["search", "--onlyvisible", "--name", "Duet$"])
                .env("DISPLAY", &x.display)
                .output()?;
            if !shown.stdout.is_empty() {
                bail!("a window is still shown on {}", x.display);
            }
        }
    }
    let sample = time_transfer(&mut a, &mut b, source, connect_s)?;
    drop((a, b, xa, xb));
    let _ = std::fs::remove_dir_all(work);
    Ok(sample)
}

/// Child mode: TCP receiver. Binds, prints its port, writes everything it receives to `dest`,
/// prints `done`.
fn tcp_receive(dest: &str) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    let (mut stream, _) = listener.accept()?;
    let mut out = std::fs::File::create(dest)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    println!("done");
    Ok(())
}

/// Child mode: TCP sender. Connects, prints `connected`, waits for a line on stdin, sends the file
/// in 16 KiB reads.
fn tcp_send(port: &str, source: &str) -> Result<()> {
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}"))?;
    println!("connected");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let mut file = std::fs::File::open(source)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn tcp_run(exe: &Path, source: &Path) -> Result<Sample> {
    let work = temp_dir("bench-tcp")?;
    let dest = work.join("received.bin");
    let started = Instant::now();
    let mut receiver = Command::new(exe)
        .arg("--tcp-receive")
        .arg(&dest)
        .stdout(Stdio::piped())
        .spawn()?;
    let receiver_out = lines_of(&mut receiver)?;
    let port = receiver_out.recv_timeout(Duration::from_secs(10))?;
    let mut sender = Command::new(exe)
        .args(["--tcp-send", &port])
        .arg(source)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let sender_out = lines_of(&mut sender)?;
    sender_out.recv_timeout(Duration::from_secs(10))?;
    let connect_s = started.elapsed().as_secs_f64();
    let (rss_s, rss_r) = (PeakRss::watch(sender.id()), PeakRss::watch(receiver.id()));
    let sent_at = Instant::now();
    writeln!(sender.stdin.as_mut().context("stdin")?, "go")?;
    let done = receiver_out.recv_timeout(Duration::from_secs(120));
    let secs = sent_at.elapsed().as_secs_f64();
    let sample = Sample {
        mb_s: SIZE as f64 / secs / 1e6,
        connect_s,
        sender_rss_growth_mib: rss_s.growth_mib(),
        receiver_rss_growth_mib: rss_r.growth_mib(),
    };
    let _ = (sender.wait(), receiver.wait());
    let received = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(work);
    match done {
        Ok(line) if line == "done" && received == SIZE as u64 => Ok(sample),
        other => bail!("tcp receiver did not finish ({received} bytes): {other:?}"),
    }
}

/// How a matchbox reference peer behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavor {
    /// Stock matchbox as an app would use it naively: push everything, no flow control.
    Stock,
    /// The transport's ceiling: matchbox in a tight async loop (no frame loop, no disk writes,
    /// no hashing), `CEILING_WINDOW` chunks in flight acknowledged one by one, and the same 4 MiB
    /// UDP buffers the Duet client asks for.
    Ceiling,
}

const CEILING_WINDOW: u64 = 16;

/// Child mode: a matchbox peer. `send` pushes the file; `receive` counts bytes and prints `done`
/// when all arrived. The ceiling is the shared windowed reference ([`duet_tests::reference`]).
fn stock_peer(flavor: Flavor, role: &str, url: &str, source: Option<&str>) -> Result<()> {
    let source = source.filter(|_| role == "send").map(Path::new);
    if flavor == Flavor::Ceiling {
        return duet_tests::reference::Peer {
            url: url.to_owned(),
            ice: duet_tests::loopback_ice(),
            window: CEILING_WINDOW,
            size: SIZE,
            udp_buffer: Some(duet_client_udp_buffer()),
        }
        .run(source);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (mut socket, peer) =
            duet_tests::reference::connect(url, duet_tests::loopback_ice()).await;
        if let Some(source) = source {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let mut file = std::fs::File::open(source)?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                socket.channel_mut(0).send(buf[..n].to_vec().into(), peer);
            }
            // Keep the socket alive until the parent kills us.
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = socket.update_peers();
            }
        }
        let mut received = 0usize;
        while received < SIZE {
            for (_, packet) in socket.channel_mut(0).receive() {
                received += packet.len();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        println!("done");
        Ok(())
    })
}

fn stock_run(flavor: Flavor, exe: &Path, source: &Path) -> Result<Sample> {
    let runtime = tokio::runtime::Runtime::new()?;
    let base = runtime.block_on(duet_tests::stock_matchbox());
    let url = format!("{base}/room");
    let started = Instant::now();
    let spawn = |role: &str| {
        Command::new(exe)
            .args([
                if flavor == Flavor::Stock {
                    "--stock-peer"
                } else {
                    "--ceiling-peer"
                },
                role,
                &url,
            ])
            .arg(source)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
    };
    let mut sender = spawn("send")?;
    let mut receiver = spawn("receive")?;
    let sender_out = lines_of(&mut sender)?;
    let receiver_out = lines_of(&mut receiver)?;
    sender_out
        .recv_timeout(Duration::from_secs(60))
        .context("sender never connected")?;
    receiver_out
        .recv_timeout(Duration::from_secs(60))
        .context("receiver never connected")?;
    let connect_s = started.elapsed().as_secs_f64();
    let (rss_s, rss_r) = (PeakRss::watch(sender.id()), PeakRss::watch(receiver.id()));
    let sent_at = Instant::now();
    writeln!(sender.stdin.as_mut().context("stdin")?, "go")?;
    // No flow control: webrtc-rs may stall for a long time; give up after 5 minutes.
    let done = receiver_out.recv_timeout(Duration::from_secs(300));
    let secs = sent_at.elapsed().as_secs_f64();
    let sample = Sample {
        mb_s: SIZE as f64 / secs / 1e6,
        connect_s,
        sender_rss_growth_mib: rss_s.growth_mib(),
        receiver_rss_growth_mib: rss_r.growth_mib(),
    };
    let _ = sender.kill();
    let _ = receiver.kill();
    let _ = (sender.wait(), receiver.wait());
    drop(runtime);
    match done {
        Ok(line) if line == "done" => Ok(sample),
        other => bail!("stock receiver did not finish: {other:?}"),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some(mode @ ("--stock-peer" | "--ceiling-peer")) => {
            let flavor = if mode == "--stock-peer" {
                Flavor::Stock
            } else {
                Flavor::Ceiling
            };
            return stock_peer(flavor, &args[2], &args[3], args.get(4).map(String::as_str));
        }
        Some("--tcp-receive") => return tcp_receive(&args[2]),
        Some("--tcp-send") => return tcp_send(&args[2], &args[3]),
        _ => {}
    }
    let runs: usize = duet_tests::flag_value(&args, "--runs").unwrap_or(3);
    // `--only duet|windowed|minimized|tcp|stock|ceiling` measures one path (diagnostics; the report then lacks the others).
    let only: Option<String> = duet_tests::flag_value(&args, "--only");
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let exe = std::env::current_exe()?;
    let client = exe.parent().context("binary dir")?.join("duet-client");
    let work = temp_dir("bench-source")?;
    let source = work.join("source.bin");
    make_file(&source)?;
    let wrangler = if wants("duet") || wants("windowed") || wants("minimized") {
        Some(Wrangler::start(WranglerOptions::default())?)
    } else {
        None
    };
    let (mut duet, mut tcp, mut stock, mut ceiling) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut windowed, mut minimized) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        if let Some(wrangler) = &wrangler {
            if wants("duet") {
                let d = duet_run(wrangler, &client, &source)?;
                println!("run {run} duet: {d:?}");
                duet.push(d);
            }
            if wants("windowed") {
                let w = windowed_run(wrangler, &client, &source, Windows::Shown)?;
                println!("run {run} windowed: {w:?}");
                windowed.push(w);
            }
            if wants("minimized") {
                let m = windowed_run(wrangler, &client, &source, Windows::Minimized)?;
                println!("run {run} minimized: {m:?}");
                minimized.push(m);
            }
        }
        if wants("tcp") {
            let t = tcp_run(&exe, &source)?;
            println!("run {run} tcp: {t:?}");
            tcp.push(t);
        }
        if wants("ceiling") {
            let c = stock_run(Flavor::Ceiling, &exe, &source)?;
            println!("run {run} webrtc_ceiling: {c:?}");
            ceiling.push(c);
        }
        if !wants("stock") {
            continue;
        }
        match stock_run(Flavor::Stock, &exe, &source) {
            Ok(s) => {
                println!("run {run} stock_matchbox: {s:?}");
                stock.push(s);
            }
            Err(e) => println!("run {run} stock_matchbox failed: {e:#}"),
        }
    }
    if only.is_some() {
        // A partial run never overwrites the full report.
        println!("partial run (--only): report not written");
        return Ok(());
    }
    let duet_summary = summarize(&duet);
    let ceiling_summary = summarize(&ceiling);
    let (windowed, minimized) = (summarize(&windowed), summarize(&minimized));
    let mut report = serde_json::json!({
        "windowed_vs_headless": windowed.median_mb_s / duet_summary.median_mb_s,
        "minimized_vs_headless": minimized.median_mb_s / duet_summary.median_mb_s,
        "windowed": windowed,
        "minimized": minimized,
        "duet": duet_summary,
        "tcp": summarize(&tcp),
        "webrtc_ceiling": ceiling_summary,
        "duet_vs_ceiling": duet_summary.median_mb_s / ceiling_summary.median_mb_s,
    });
    report["stock_matchbox"] = if stock.is_empty() {
        serde_json::json!({"runs": 0, "error": "no stock run completed"})
    } else {
        serde_json::to_value(summarize(&stock))?
    };
    duet_tests::measure::write_report("transfer", &report)?;
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}

/// The UDP buffer size the Duet client asks for (`duet_client::platform::UDP_BUFFER_BYTES`; this
/// crate does not link the client).
fn duet_client_udp_buffer() -> usize {
    4 << 20
}
