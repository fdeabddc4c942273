//! `cargo xtask bench signaling`: relay latency of Duet's signaling under `wrangler dev`, with stock
//! `matchbox_signaling` measured in the same run as the reference.
//!
//! Each run ramps up ROOMS rooms (100 rooms/s) of two raw WebSocket clients, then every room relays
//! RATE signals per second (~500 bytes, timestamped in the payload, alternating direction) for
//! SECS seconds, then drains for 2 s. Stock matchbox_signaling's full mesh has no rooms (every
//! socket would see every other), so the reference runs one stock server per room, in a separate
//! process like wrangler's. Each run starts from a fresh server. Results:
//! `target/bench/signaling.json`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use duet_tests::{Wrangler, WranglerOptions, repo_root};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use matchbox_protocol::{JsonPeerEvent, PeerId};
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Socket, Message>;
type Stream = SplitStream<Socket>;

#[derive(Debug, Clone)]
struct Config {
    rooms: usize,
    rate: u32,
    secs: u64,
    runs: usize,
    out: std::path::PathBuf,
    /// Diagnostics only: measure Duet alone (the report then has no valid ratio).
    duet_only: bool,
}

fn parse_args() -> Result<Config> {
    let mut config = Config {
        rooms: 1000,
        rate: 1,
        secs: 30,
        runs: 3,
        out: repo_root().join("target/bench/signaling.json"),
        duet_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().context("flag needs a value");
        match flag.as_str() {
            "--rooms" => config.rooms = value()?.parse()?,
            "--rate" => config.rate = value()?.parse()?,
            "--secs" => config.secs = value()?.parse()?,
            "--runs" => config.runs = value()?.parse()?,
            "--out" => config.out = value()?.into(),
            "--duet-only" => config.duet_only = true,
            "--stock-servers" => {
                // Child mode: serve N stock matchbox_signaling instances, print their ports.
                let n: usize = value()?.parse()?;
                serve_stock(n);
            }
            other => bail!("unknown flag {other}; flags: --rooms --rate --secs --runs --out"),
        }
    }
    Ok(config)
}

/// Child process: N stock full-mesh servers, one per room; prints ports then serves until stdin
/// closes.
fn serve_stock(n: usize) -> ! {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            let mut server = matchbox_signaling::SignalingServer::full_mesh_builder((
                std::net::Ipv4Addr::LOCALHOST,
                0,
            ))
            .build();
            ports.push(server.bind().expect("bind").port());
            tokio::spawn(server.serve());
        }
        let line: Vec<String> = ports.iter().map(u16::to_string).collect();
        println!("{}", line.join(","));
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let mut buf = String::new();
        let _ = stdin.read_line(&mut buf).await;
    });
    std::process::exit(0)
}

/// Where each room's clients connect.
enum Target {
    Duet(Wrangler),
    Stock {
        ports: Vec<u16>,
        _child: tokio::process::Child,
    },
}

impl Target {
    async fn urls(&self, room_index: usize) -> Result<(String, String)> {
        match self {
            Target::Duet(wrangler) => {
                let room =
                    tokio::time::timeout(Duration::from_secs(20), wrangler.api().create_room())
                        .await
                        .context("POST /api/rooms timed out")??
                        .room;
                Ok((
                    wrangler.signal_url(&room, Uuid::new_v4()),
                    wrangler.signal_url(&room, Uuid::new_v4()),
                ))
            }
            Target::Stock { ports, .. } => {
                let url = format!("ws://127.0.0.1:{}/room", ports[room_index]);
                Ok((url.clone(), url))
            }
        }
    }
}

async fn start_stock(rooms: usize) -> Result<Target> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["--stock-servers", &rooms.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await?
        .context("stock servers printed no ports")?;
    let ports = line
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<u16>, _>>()?;
    Ok(Target::Stock {
        ports,
        _child: child,
    })
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
    /// Breakdown of `errors`, printed per run so a failure says what failed.
    join_failures: AtomicU64,
    send_failures: AtomicU64,
    closed_by_server: AtomicU64,
    unexpected_frames: AtomicU64,
    /// Close frames seen, "code reason" -> count.
    closes: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Counters {
    fn error(&self, kind: &AtomicU64) {
        kind.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

async fn connect(url: &str) -> Result<Socket> {
    let config = WebSocketConfig::default();
    // No permessage-deflate: tungstenite does not negotiate it, matching the recipe.
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async_with_config(url, Some(config), true),
    )
    .await
    .context("WebSocket handshake timed out")??;
    Ok(socket)
}

async fn next_event(stream: &mut Stream) -> Result<JsonPeerEvent> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .context("timeout waiting for a frame")?
            .context("socket ended")??;
        if let Message::Text(text) = frame {
            return Ok(serde_json::from_str(&text)?);
        }
    }
}

struct Joined {
    sinks: (Sink, Sink),
    streams: (Stream, Stream),
    ids: (PeerId, PeerId),
}

async fn join_room(target: &Target, index: usize) -> Result<Joined> {
    let (url_a, url_b) = target.urls(index).await?;
    let (mut sink_a, mut stream_a) = connect(&url_a).await?.split();
    let JsonPeerEvent::IdAssigned(id_a) = next_event(&mut stream_a).await? else {
        bail!("A: expected IdAssigned");
    };
    let (sink_b, mut stream_b) = connect(&url_b).await?.split();
    let JsonPeerEvent::IdAssigned(id_b) = next_event(&mut stream_b).await? else {
        bail!("B: expected IdAssigned");
    };
    let JsonPeerEvent::NewPeer(seen) = next_event(&mut stream_a).await? else {
        bail!("A: expected NewPeer");
    };
    if seen != id_b {
        bail!("A saw the wrong peer");
    }
    sink_a.flush().await?;
    Ok(Joined {
        sinks: (sink_a, sink_b),
        streams: (stream_a, stream_b),
        ids: (id_a, id_b),
    })
}

/// Reads relayed signals until `stop`, returning latencies in microseconds.
async fn read_signals(
    mut stream: Stream,
    epoch: Instant,
    counters: Arc<Counters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return latencies,
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let now = epoch.elapsed().as_micros() as u64;
                    match serde_json::from_str::<JsonPeerEvent>(&text) {
                        Ok(JsonPeerEvent::Signal { data, .. }) => {
                            let sent = data["IceCandidate"]
                                .as_str()
                                .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
                                .and_then(|c| c["t"].as_u64())
                                .unwrap_or(now);
                            latencies.push(now.saturating_sub(sent) as u32);
                            counters.received.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => counters.error(&counters.unexpected_frames),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if !*stop.borrow() {
                        counters.error(&counters.closed_by_server);
                        let key = frame.map_or("none".to_owned(), |f| format!("{} {}", f.code, f.reason));
                        *counters.closes.lock().unwrap().entry(key).or_default() += 1;
                    }
                    return latencies;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if !*stop.borrow() {
                        counters.error(&counters.closed_by_server);
                        *counters.closes.lock().unwrap().entry(format!("error: {e}")).or_default() += 1;
                    }
                    return latencies;
                }
                None => {
                    if !*stop.borrow() {
                        counters.error(&counters.closed_by_server);
                        *counters.closes.lock().unwrap().entry("ended".to_owned()).or_default() += 1;
                    }
                    return latencies;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Summary {
    runs: usize,
    rooms: usize,
    sockets: usize,
    relayed: u64,
    errors: u64,
    undelivered: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

async fn one_run(target: &Arc<Target>, config: &Config) -> Result<Summary> {
    let epoch = Instant::now();
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    // Ramp: start one room every 10 ms (100 rooms/s).
    let mut joins = Vec::with_capacity(config.rooms);
    let ramp = tokio::time::interval(Duration::from_millis(10));
    tokio::pin!(ramp);
    for index in 0..config.rooms {
        ramp.as_mut().tick().await;
        let target = Arc::clone(target);
        joins.push(tokio::spawn(async move { join_room(&target, index).await }));
    }
    let mut joined = Vec::with_capacity(joins.len());
    for join in joins {
        joined.push(join.await?);
    }
    let sockets_ok = joined.iter().filter(|j| j.is_ok()).count() * 2;
    let join_errors = joined.iter().filter(|j| j.is_err()).count() as u64;
    if let Some(Err(e)) = joined.iter().find(|j| j.is_err()) {
        eprintln!("join failed ({join_errors} rooms), e.g.: {e:#}");
    }
    counters.errors.fetch_add(join_errors, Ordering::Relaxed);
    counters
        .join_failures
        .fetch_add(join_errors, Ordering::Relaxed);

    let mut readers = Vec::new();
    let mut senders = Vec::new();
    let period = Duration::from_secs(1) / config.rate;
    let ticks = config.secs * u64::from(config.rate);
    for (index, room) in joined.into_iter().flatten().enumerate() {
        let Joined {
            sinks: (mut sink_a, mut sink_b),
            streams: (stream_a, stream_b),
            ids: (id_a, id_b),
        } = room;
        readers.push(tokio::spawn(read_signals(
            stream_a,
            epoch,
            Arc::clone(&counters),
            stop_rx.clone(),
        )));
        readers.push(tokio::spawn(read_signals(
            stream_b,
            epoch,
            Arc::clone(&counters),
            stop_rx.clone(),
        )));
        let counters = Arc::clone(&counters);
        let mut go = go_rx.clone();
        let phase = period.mul_f64(index as f64 / config.rooms.max(1) as f64);
        senders.push(tokio::spawn(async move {
            let _ = go.wait_for(|g| *g).await;
            tokio::time::sleep(phase).await;
            let mut tick = tokio::time::interval(period);
            let pad = "p".repeat(380);
            for n in 0..ticks {
                tick.tick().await;
                let (sink, to) = if n % 2 == 0 {
                    (&mut sink_a, id_b)
                } else {
                    (&mut sink_b, id_a)
                };
                let t = epoch.elapsed().as_micros() as u64;
                // Shaped like a real trickled candidate: the JSON of the timing inside the
                // string matchbox peers send (the only signal shapes Duet relays).
                let candidate = serde_json::json!({"t": t, "seq": n, "pad": pad}).to_string();
                let frame = serde_json::json!({"Signal": {"receiver": to, "data": {"IceCandidate": candidate}}})
                    .to_string();
                match tokio::time::timeout(Duration::from_secs(5), sink.send(Message::text(frame))).await {
                    Ok(Ok(())) => {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        // The socket is gone (already counted by its reader); stop this room.
                        counters.error(&counters.send_failures);
                        break;
                    }
                }
            }
            (sink_a, sink_b)
        }));
    }
    let _ = go_tx.send(true);
    let mut sinks = Vec::new();
    for sender in senders {
        sinks.push(sender.await?);
    }
    // Drain: anything not delivered 2 s after the last send counts as undelivered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let mut latencies = Vec::new();
    for reader in readers {
        latencies.extend(reader.await?);
    }
    for (mut a, mut b) in sinks {
        let _ = tokio::time::timeout(Duration::from_secs(2), a.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), b.close()).await;
    }
    latencies.sort_unstable();
    eprintln!(
        "  errors: join {} send {} closed {} unexpected {}; closes {:?}",
        counters.join_failures.load(Ordering::Relaxed),
        counters.send_failures.load(Ordering::Relaxed),
        counters.closed_by_server.load(Ordering::Relaxed),
        counters.unexpected_frames.load(Ordering::Relaxed),
        counters.closes.lock().unwrap()
    );
    let sent = counters.sent.load(Ordering::Relaxed);
    let received = counters.received.load(Ordering::Relaxed);
    Ok(Summary {
        runs: 1,
        rooms: config.rooms,
        sockets: sockets_ok,
        relayed: received,
        errors: counters.errors.load(Ordering::Relaxed),
        undelivered: sent.saturating_sub(received),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies
            .last()
            .map_or(f64::NAN, |m| f64::from(*m) / 1000.0),
    })
}

fn combine(runs: &[Summary]) -> Summary {
    let pick_f = |f: fn(&Summary) -> f64| duet_tests::median(runs.iter().map(f).collect());
    let pick_u = |f: fn(&Summary) -> u64| duet_tests::median_u64(runs.iter().map(f).collect());
    Summary {
        runs: runs.len(),
        rooms: runs[0].rooms,
        sockets: pick_u(|s| s.sockets as u64) as usize,
        relayed: pick_u(|s| s.relayed),
        errors: pick_u(|s| s.errors),
        undelivered: pick_u(|s| s.undelivered),
        p50_ms: pick_f(|s| s.p50_ms),
        p99_ms: pick_f(|s| s.p99_ms),
        max_ms: pick_f(|s| s.max_ms),
    }
}

#[derive(Serialize)]
struct Report {
    duet: Summary,
    matchbox: Summary,
    p50_ratio: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Duet,
    Stock,
}

/// Every run gets a fresh server: a new `wrangler dev` with empty storage, or a new process of
/// stock servers. Runs are then independent samples (workerd keeps each run's 1,000 room objects
/// in memory, which would otherwise tax the next run).
async fn fresh_target(kind: Kind, rooms: usize) -> Result<Target> {
    match kind {
        Kind::Duet => Ok(Target::Duet(
            tokio::task::spawn_blocking(|| Wrangler::start(WranglerOptions::default())).await??,
        )),
        Kind::Stock => start_stock(rooms).await,
    }
}

async fn bench(kind: Kind, config: &Config) -> Result<Summary> {
    let name = if kind == Kind::Duet {
        "duet"
    } else {
        "matchbox"
    };
    let mut runs = Vec::new();
    for run in 1..=config.runs {
        let target = Arc::new(fresh_target(kind, config.rooms).await?);
        let summary = one_run(&target, config).await?;
        println!("{name} run {run}: {summary:?}");
        runs.push(summary);
        drop(target);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(combine(&runs))
}

/// 2,000 client sockets here and several times that in workerd exceed common defaults (20,000
/// was seen); raise the limit for this process and the servers it starts.
fn raise_fd_limit() {
    const WANT: u64 = 1 << 20;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, WANT, WANT).is_err() {
        let _ = rlimit::increase_nofile_limit(WANT);
    }
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        println!("open file limit: {soft}");
    }
}

fn main() -> Result<()> {
    // Parsed before any runtime exists: the stock-server child mode builds its own.
    let config = parse_args()?;
    raise_fd_limit();
    tokio::runtime::Runtime::new()?.block_on(run(config))
}

async fn run(config: Config) -> Result<()> {
    println!(
        "signaling bench: {} rooms x 2 sockets, {} signal(s)/room/s for {} s, {} runs each",
        config.rooms, config.rate, config.secs, config.runs
    );
    if config.duet_only {
        let duet = bench(Kind::Duet, &config).await?;
        println!("{}", serde_json::to_string_pretty(&duet)?);
        return Ok(());
    }
    let stock = bench(Kind::Stock, &config).await?;
    let duet = bench(Kind::Duet, &config).await?;
    let report = Report {
        p50_ratio: duet.p50_ms / stock.p50_ms,
        duet,
        matchbox: stock,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = config.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&config.out, &json)?;
    println!("{json}\nwritten to {}", config.out.display());
    Ok(())
}
