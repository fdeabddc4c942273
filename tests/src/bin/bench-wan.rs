//! `cargo xtask bench wan`: file transfer across the network lab (`duet_tests::lab`) at real
//! round-trip times, loss and rates, against what the same emulated link carries.
//!
//! For each link profile, one lab: home A behind a cone NAT on the profile's access link, home B
//! behind a cone NAT on a clean, instant one, so the path between them (direct, through STUN) is
//! the profile. In it, per run:
//! - `tcp`: one TCP stream from home A to home B (a port forwarded on B's router) over the same
//!   path: the link's practical ceiling (Linux's CUBIC, autotuned buffers);
//! - `duet`: two `duet-client --headless`, A sends the file, B takes it unasked and verifies its
//!   SHA-256 (the product path: hashing, credit, disk);
//! - `reference`: stock `matchbox_socket` in a tight loop with a fixed window of 64 chunks
//!   (1 MiB) acknowledged one by one ([`duet_tests::reference`]), through the same Worker;
//! - the browser pairs (`tests/bench/wan.mjs`, Chromium run inside the homes): Duet's web client
//!   browser↔browser, native→browser and browser→native, and the plain-JS seed reference page
//!   between two browsers (16 KiB chunks, pause above 1 MiB buffered), which is the browser
//!   rows' `reference_mib_s`.
//!
//! Writes `target/bench/wan.json`: `{"size_mib", "runs", "results": [{"profile", "pair",
//! "duet_mib_s", "tcp_mib_s", "reference_mib_s", "ratio_to_tcp", "ratio_to_reference",
//! "peak_rss_growth_mib", "completed", "relayed"}]}`, medians over runs (MiB = 2^20 bytes).
//! `--profiles lan,city`, `--pairs n-n,b-b,n-b,b-n`, `--runs N`, `--size-mib N` narrow a run
//! (diagnostics). `--connections N` adds a diagnostic, printed only: two plain-JS pages moving
//! the same size from memory striped over N peer connections (`tests/bench/connections.js`),
//! which shows how far Chromium's SCTP goes with one connection and with several.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use duet_tests::lab::browser::local_link;
use duet_tests::lab::{BrowserHome, Lab, LinkParams, Nat, SERVERS, Servers, on_thread_in};
use duet_tests::measure::{PeakRss, lines_of};
use duet_tests::script::Script;
use duet_tests::{Event, HeadlessClient, median, on, sha256_of, temp_dir};
use serde::Serialize;

const MIB: usize = 1 << 20;
/// The reference's fixed window, in 16 KiB chunks: Duet's former native maximum.
const REFERENCE_WINDOW: u64 = 64;
/// The port B's router forwards to home B for the TCP stream.
const TCP_PORT: u16 = 5201;

/// A link profile, as the issue names them.
#[derive(Debug, Clone, Copy)]
struct Profile {
    name: &'static str,
    rtt_ms: u64,
    /// The round trip varies by up to ± this.
    jitter_ms: u64,
    mbit_s: u64,
    /// Share of packets lost, each way.
    loss: f64,
}

const PROFILES: [Profile; 4] = [
    Profile {
        name: "lan",
        rtt_ms: 1,
        jitter_ms: 0,
        mbit_s: 1000,
        loss: 0.0,
    },
    Profile {
        name: "city",
        rtt_ms: 20,
        jitter_ms: 0,
        mbit_s: 100,
        loss: 0.001,
    },
    Profile {
        name: "far",
        rtt_ms: 100,
        jitter_ms: 0,
        mbit_s: 50,
        loss: 0.005,
    },
    Profile {
        name: "mobile",
        rtt_ms: 150,
        jitter_ms: 20,
        mbit_s: 20,
        loss: 0.01,
    },
];

impl Profile {
    /// Home A's access link. Each direction gets half the round trip; jitter adds 0..J one
    /// way, so the base is lowered by half of it and the round trip spans RTT ± J.
    fn link(&self) -> LinkParams {
        let one_way = Duration::from_micros(self.rtt_ms * 500);
        let jitter = Duration::from_millis(self.jitter_ms);
        let bdp = (self.mbit_s * 1_000_000 / 8) as usize * self.rtt_ms as usize / 1000;
        LinkParams {
            delay: one_way.saturating_sub(jitter / 2),
            jitter,
            loss: self.loss,
            rate_bps: Some(self.mbit_s * 1_000_000),
            down: false,
            // A router's buffer of two bandwidth-delay products (at least 256 KiB).
            queue_bytes: (2 * bdp).max(256 << 10),
        }
    }
}

/// One measurement of one path.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    mib_s: f64,
    /// The larger of the two sides' peak RSS growth.
    rss_growth_mib: f64,
    relayed: bool,
    /// Two desktops: from both being in the room (signaling) to both past the peer's hello,
    /// the connection's set-up as a person waits for it. Past 15 s it used the opening grace.
    setup_s: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Row {
    profile: &'static str,
    pair: &'static str,
    duet_mib_s: f64,
    tcp_mib_s: f64,
    reference_mib_s: f64,
    ratio_to_tcp: f64,
    ratio_to_reference: f64,
    peak_rss_growth_mib: f64,
    completed: bool,
    relayed: bool,
    runs: usize,
    /// The median set-up (see `Sample::setup_s`), where measured.
    setup_s: Option<f64>,
}

/// A sender and a receiver, as the issue names the pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pair {
    Native,
    Browsers,
    NativeToBrowser,
    BrowserToNative,
}

impl Pair {
    const ALL: [Pair; 4] = [
        Pair::Native,
        Pair::Browsers,
        Pair::NativeToBrowser,
        Pair::BrowserToNative,
    ];

    /// The name in the report.
    fn name(self) -> &'static str {
        match self {
            Pair::Native => "native↔native",
            Pair::Browsers => "browser↔browser",
            Pair::NativeToBrowser => "native→browser",
            Pair::BrowserToNative => "browser→native",
        }
    }

    /// The name `--pairs` takes.
    fn flag(self) -> &'static str {
        match self {
            Pair::Native => "n-n",
            Pair::Browsers => "b-b",
            Pair::NativeToBrowser => "n-b",
            Pair::BrowserToNative => "b-n",
        }
    }

    /// `wan.mjs`'s mode: what the browsers do (`None`: no browser).
    fn script_mode(self) -> Option<&'static str> {
        match self {
            Pair::Native => None,
            Pair::Browsers => Some("pair"),
            Pair::NativeToBrowser => Some("receive"),
            Pair::BrowserToNative => Some("send"),
        }
    }
}

/// The lab of one profile and its servers, and a Chromium for each home when browsers run.
struct World {
    lab: Lab,
    servers: Servers,
    browsers: Option<[BrowserHome; 2]>,
    work: PathBuf,
}

impl World {
    fn start(profile: &Profile, browsers: bool) -> Result<Self> {
        let lab = Lab::start(Nat::Cone, profile.link(), Nat::Cone, LinkParams::default())?;
        let servers = Servers::start(&lab, false)?;
        let work = temp_dir("bench-wan-browsers")?;
        let browsers = if browsers {
            let server = servers.address()?;
            Some([
                BrowserHome::start(&lab.a.home, server, &work)?,
                BrowserHome::start(&lab.b.home, server, &work)?,
            ])
        } else {
            None
        };
        // The TCP stream's way in: a port forwarded to home B, as a person would set up.
        lab.b.router.sh(&format!(
            "nft add chain ip nat pre '{{ type nat hook prerouting priority -100 ; }}' && \
             nft add rule ip nat pre iifname wan tcp dport {TCP_PORT} dnat to 192.168.2.2"
        ))?;
        Ok(Self {
            lab,
            servers,
            browsers,
            work,
        })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// `size` bytes over one TCP stream from home A to home B.
fn tcp_run(world: &World, size: usize) -> Result<Sample> {
    let listener = on_thread_in(&world.lab.b.home.netns(), || {
        TcpListener::bind(("0.0.0.0", TCP_PORT))
    })??;
    let receiver = std::thread::spawn(move || -> Result<(usize, Instant)> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; 64 << 10];
        let mut received = 0;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok((received, Instant::now()));
            }
            received += n;
        }
    });
    let to = (world.lab.b.public, TCP_PORT);
    let started = on_thread_in(&world.lab.a.home.netns(), move || -> Result<Instant> {
        let mut stream = TcpStream::connect(to)?;
        let started = Instant::now();
        let buf = vec![0x5au8; 16 << 10];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len());
            stream.write_all(&buf[..n])?;
            left -= n;
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        Ok(started)
    })??;
    let (received, ended) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the TCP receiver panicked"))??;
    if received != size {
        bail!("TCP delivered {received} of {size} bytes");
    }
    Ok(Sample {
        mib_s: size as f64 / MIB as f64 / ended.duration_since(started).as_secs_f64(),
        ..Sample::default()
    })
}

/// A headless client in `home`, run through `env` with `vars`.
fn client_in(
    home: &duet_tests::lab::Namespace,
    binary: &Path,
    link: &str,
    dir: &Path,
    name: &str,
    vars: &[String],
) -> Result<HeadlessClient> {
    let mut wrapper = home.wrapper();
    wrapper.push("env".into());
    wrapper.extend(vars.iter().cloned());
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    HeadlessClient::start_wrapped(&wrapper, binary, link, dir, name)
}

/// Waits until `client` verified its peer and reported the connection's path: whether it is
/// relayed.
fn met(client: &mut HeadlessClient) -> Result<bool> {
    let (mut hello, mut relayed) = (false, None);
    while !hello || relayed.is_none() {
        match client.wait(
            "the peer's hello and the path",
            Duration::from_secs(120),
            |e| match e {
                Event::PeerHello { .. } => Some(None),
                Event::Path { relayed, .. } => Some(Some(*relayed)),
                _ => None,
            },
        )? {
            None => hello = true,
            Some(r) => relayed = Some(r),
        }
    }
    Ok(relayed.unwrap_or_default())
}

/// Duet, native to native: A sends `source` to B.
fn duet_native(
    world: &World,
    binary: &Path,
    source: &Path,
    digest: [u8; 32],
    size: usize,
) -> Result<Sample> {
    let link = world.servers.wrangler.new_room_link()?;
    let work = temp_dir("bench-wan")?;
    let mut a = client_in(
        &world.lab.a.home,
        binary,
        &link,
        &work.join("a"),
        "sender",
        &[],
    )?;
    let mut b = client_in(
        &world.lab.b.home,
        binary,
        &link,
        &work.join("b"),
        "receiver",
        &takes_unasked(),
    )?;
    let in_room = a
        .in_room_at(Duration::from_secs(120))?
        .max(b.in_room_at(Duration::from_secs(120))?);
    let relayed = met(&mut a)? | met(&mut b)?;
    let setup_s = Some(in_room.elapsed().as_secs_f64());
    let counters_before = Counters::read(world);
    let (rss_a, rss_b) = (PeakRss::watch(a.pid()), PeakRss::watch(b.pid()));
    let started = Instant::now();
    a.command(&format!("send {}", source.display()))?;
    let saved = b.wait(
        "the file",
        Duration::from_secs(900),
        on!(e @ (Event::TransferCompleted { .. } | Event::TransferFailed { .. }) => e.clone()),
    )?;
    let secs = started.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (counters_before, Counters::read(world)) {
        eprintln!("counters during the transfer: {}", after.since(&before));
    }
    let Event::TransferCompleted { location, .. } = saved else {
        bail!("the transfer failed: {saved:?}");
    };
    if sha256_of(Path::new(&location)) != digest {
        bail!("the received file differs from the sent one");
    }
    let sample = Sample {
        mib_s: size as f64 / MIB as f64 / secs,
        rss_growth_mib: rss_a.growth_mib().max(rss_b.growth_mib()),
        relayed,
        setup_s,
    };
    drop((a, b));
    let _ = std::fs::remove_dir_all(work);
    Ok(sample)
}

/// Where packets were dropped on the way (`DUET_BENCH_COUNTERS=1`): each home's UDP socket
/// buffers and each router's devices, from the kernel's counters.
struct Counters(Vec<(String, u64)>);

impl Counters {
    fn read(world: &World) -> Option<Self> {
        std::env::var_os("DUET_BENCH_COUNTERS")?;
        let mut all = Vec::new();
        for (side, home) in [("A", &world.lab.a), ("B", &world.lab.b)] {
            for (place, ns) in [("home", &home.home), ("router", &home.router)] {
                let name = format!("{place} {side}");
                all.extend(udp_counters(ns)?.map(|(k, v)| (format!("{name} udp {k}"), v)));
                all.extend(device_drops(ns)?.map(|(k, v)| (format!("{name} {k}"), v)));
            }
            let (out, back) = home.link.stats();
            for (way, s) in [("out", out), ("in", back)] {
                let name = format!("router {side} link {way}");
                all.push((format!("{name} delivered"), s.delivered));
                all.push((format!("{name} lost"), s.lost));
                all.push((format!("{name} overflow"), s.overflow));
            }
        }
        Some(Self(all))
    }

    /// What grew since `before`.
    fn since(&self, before: &Self) -> String {
        self.0
            .iter()
            .zip(&before.0)
            .filter(|((_, now), (_, then))| now > then)
            .map(|((k, now), (_, then))| format!("{k} +{}", now - then))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The namespace's UDP counters (`/proc/net/snmp`), by name.
fn udp_counters(ns: &duet_tests::lab::Namespace) -> Option<impl Iterator<Item = (String, u64)>> {
    let snmp = ns.command("cat").arg("/proc/net/snmp").output().ok()?;
    let snmp = String::from_utf8_lossy(&snmp.stdout).into_owned();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let pairs: Vec<(String, u64)> = match udp[..] {
        [keys, values] => keys
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect(),
        _ => Vec::new(),
    };
    Some(pairs.into_iter())
}

/// Each device's dropped packets, received and sent (`ip -s -o link`: a line per device,
/// "N: dev: <...> ... RX: bytes packets errors dropped ... \    B P E D ...").
fn device_drops(ns: &duet_tests::lab::Namespace) -> Option<impl Iterator<Item = (String, u64)>> {
    let links = ns.command("ip").args(["-s", "-o", "link"]).output().ok()?;
    let mut drops = Vec::new();
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        let dev = line.split(':').nth(1).unwrap_or("").trim().to_owned();
        let dropped: Vec<u64> = line
            .split('\\')
            .filter_map(|part| {
                let n: Vec<u64> = part
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                (n.len() >= 4).then(|| n[3])
            })
            .collect();
        if let [rx, tx] = dropped[..] {
            drops.push((format!("{dev} rx dropped"), rx));
            drops.push((format!("{dev} tx dropped"), tx));
        }
    }
    Some(drops.into_iter())
}

/// The receiver's environment: it takes the file unasked, as the bench times the wire and not
/// a person's click.
fn takes_unasked() -> Vec<String> {
    vec![format!("DUET_ASK_ABOVE={}", u64::MAX)]
}

/// How one attempt with browsers failed: before the two met (the page's set-up: a load or
/// the ICE servers' fetch through the home's forward once timed out under load), or after.
enum Failure {
    Setup(anyhow::Error),
    Transfer(anyhow::Error),
}

/// One run with browsers: a pair with at least one browser, or the seed reference page (`mode`
/// "reference"), or a diagnostic (`connections-N`): `wan.mjs` in `mode`, and the native side,
/// if any, here. A sends `source` to B.
struct BrowserRun<'a> {
    world: &'a World,
    mode: &'a str,
    /// The native client.
    binary: &'a Path,
    source: &'a Path,
    digest: [u8; 32],
    size: usize,
}

impl BrowserRun<'_> {
    /// Runs it; a set-up that failed before anything moved is tried once more, a failed
    /// transfer is not.
    fn measure(&self) -> Result<Sample> {
        match self.once() {
            Ok(sample) => Ok(sample),
            Err(Failure::Transfer(e)) => Err(e),
            Err(Failure::Setup(e)) => {
                println!("{}: the two did not meet ({e:#}); once more", self.mode);
                self.once().map_err(|f| match f {
                    Failure::Setup(e) | Failure::Transfer(e) => e,
                })
            }
        }
    }

    fn once(&self) -> Result<Sample, Failure> {
        let (mut script, mut native, work, native_relayed) =
            browsers_meet(self.world, self.mode, self.binary, self.source, self.digest)
                .map_err(Failure::Setup)?;
        transfer_with_browsers(
            &mut script,
            native.as_mut(),
            self.mode,
            self.source,
            self.digest,
        )
        .and_then(|(secs, native_growth)| {
            let result = script.result()?;
            let secs = match secs {
                Some(secs) => secs,
                None => result["secs"]
                    .as_f64()
                    .context("no time in the script's result")?,
            };
            let growth = |side: &str| result[side]["growth_mib"].as_f64().unwrap_or(0.0);
            drop(native);
            let _ = std::fs::remove_dir_all(&work);
            Ok(Sample {
                mib_s: self.size as f64 / MIB as f64 / secs,
                rss_growth_mib: growth("sender").max(growth("receiver")).max(native_growth),
                relayed: native_relayed || result["relayed"] == true,
                setup_s: None,
            })
        })
        .map_err(Failure::Transfer)
    }
}

/// Starts `wan.mjs` and the native side, if any, and waits until everyone met; the last is
/// whether the native side's path is relayed.
fn browsers_meet(
    world: &World,
    mode: &str,
    binary: &Path,
    source: &Path,
    digest: [u8; 32],
) -> Result<(Script, Option<HeadlessClient>, PathBuf, bool)> {
    let [home_a, home_b] = world.browsers.as_ref().context("no browsers in this lab")?;
    let link = world.servers.wrangler.new_room_link()?;
    let work = temp_dir("bench-wan-pair")?;
    let args = [
        mode.to_owned(),
        work.display().to_string(),
        local_link(&link, world.servers.address()?),
        source.display().to_string(),
        duet_tests::hex(&digest),
        format!("stun:{SERVERS}:3478"),
    ];
    let mut script = Script::start(
        "tests/bench/wan.mjs",
        &args,
        &[
            ("DUET_CHROMIUM_A", home_a.chromium.as_path()),
            ("DUET_CHROMIUM_B", home_b.chromium.as_path()),
        ],
    )?;
    let mut native = match mode {
        "send" => Some(client_in(
            &world.lab.b.home,
            binary,
            &link,
            &work.join("b"),
            "receiver",
            &takes_unasked(),
        )?),
        "receive" => Some(client_in(
            &world.lab.a.home,
            binary,
            &link,
            &work.join("a"),
            "sender",
            &[],
        )?),
        _ => None,
    };
    script.wait_for_start("MET", Duration::from_secs(180))?;
    let relayed = match native.as_mut() {
        Some(client) => met(client)?,
        None => false,
    };
    Ok((script, native, work, relayed))
}

/// Moves the file: `go` to the script, and the native side's part. The time if the native side
/// measured it, and its RSS growth.
fn transfer_with_browsers(
    script: &mut Script,
    mut native: Option<&mut HeadlessClient>,
    mode: &str,
    source: &Path,
    digest: [u8; 32],
) -> Result<(Option<f64>, f64)> {
    let rss = native.as_ref().map(|client| PeakRss::watch(client.pid()));
    script.say("go")?;
    let started = Instant::now();
    let mut secs = None;
    if let Some(client) = native.as_mut() {
        if mode == "receive" {
            client.command(&format!("send {}", source.display()))?;
        } else {
            let saved = client.wait(
                "the file",
                Duration::from_secs(1800),
                on!(e @ (Event::TransferCompleted { .. } | Event::TransferFailed { .. }) => e.clone()),
            )?;
            secs = Some(started.elapsed().as_secs_f64());
            let Event::TransferCompleted { location, .. } = saved else {
                bail!("the transfer failed: {saved:?}");
            };
            if sha256_of(Path::new(&location)) != digest {
                bail!("the received file differs from the sent one");
            }
        }
    }
    let native_growth = rss.map(|rss| rss.growth_mib()).unwrap_or(0.0);
    Ok((secs, native_growth))
}

/// The stock matchbox reference, native to native, through the Worker's stock URL.
fn reference_native(world: &World, exe: &Path, source: &Path, size: usize) -> Result<Sample> {
    let link = world.servers.wrangler.new_room_link()?;
    let room = link.rsplit('/').next().context("room id")?.to_owned();
    let spawn = |home: &duet_tests::lab::Namespace, role: &str| {
        let url = world
            .servers
            .wrangler
            .signal_url(&room, uuid::Uuid::new_v4());
        home.command(&exe.display().to_string())
            .args(["--reference-peer", role, &url, &size.to_string()])
            .arg(source)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
    };
    let mut sender = spawn(&world.lab.a.home, "send")?;
    let mut receiver = spawn(&world.lab.b.home, "receive")?;
    let (sender_out, receiver_out) = (lines_of(&mut sender)?, lines_of(&mut receiver)?);
    let limit = Duration::from_secs(120);
    sender_out
        .recv_timeout(limit)
        .context("sender never connected")?;
    receiver_out
        .recv_timeout(limit)
        .context("receiver never connected")?;
    let (rss_s, rss_r) = (PeakRss::watch(sender.id()), PeakRss::watch(receiver.id()));
    let started = Instant::now();
    writeln!(sender.stdin.as_mut().context("stdin")?, "go")?;
    let done = receiver_out.recv_timeout(Duration::from_secs(900));
    let secs = started.elapsed().as_secs_f64();
    let sample = Sample {
        mib_s: size as f64 / MIB as f64 / secs,
        rss_growth_mib: rss_s.growth_mib().max(rss_r.growth_mib()),
        relayed: false,
        setup_s: None,
    };
    for child in [&mut sender, &mut receiver] {
        let _ = child.kill();
        let _ = child.wait();
    }
    match done {
        Ok(line) if line == "done" => Ok(sample),
        other => bail!("the reference receiver did not finish: {other:?}"),
    }
}

/// Child mode: `--reference-peer send|receive URL SIZE SOURCE`.
fn reference_peer(args: &[String]) -> Result<()> {
    let [role, url, size, source] = args else {
        bail!("--reference-peer send|receive URL SIZE SOURCE");
    };
    duet_tests::reference::Peer {
        url: url.clone(),
        ice: matchbox_socket::RtcIceServerConfig {
            urls: vec![format!("stun:{SERVERS}:3478")],
            username: None,
            credential: None,
        },
        // Another window for a diagnostic run (`DUET_BENCH_REFERENCE_WINDOW`, in chunks): what
        // the same stack carries when the window is not the limit.
        window: std::env::var("DUET_BENCH_REFERENCE_WINDOW")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(REFERENCE_WINDOW),
        size: size.parse()?,
        // As Duet's native client asks for.
        udp_buffer: Some(4 << 20),
    }
    .run((role == "send").then_some(Path::new(source)))
}

/// Runs `f`, printing and keeping what it measured; a failure is printed and counted.
fn measure(
    label: &str,
    samples: &mut Vec<Sample>,
    failures: &mut usize,
    f: impl FnOnce() -> Result<Sample>,
) {
    match f() {
        Ok(sample) => {
            println!(
                "{label}: {:.2} MiB/s, {:.1} MiB RSS growth{}{}",
                sample.mib_s,
                sample.rss_growth_mib,
                if sample.relayed { ", relayed" } else { "" },
                sample
                    .setup_s
                    .map(|s| format!(", set up in {s:.2} s"))
                    .unwrap_or_default()
            );
            samples.push(sample);
        }
        Err(e) => {
            println!("{label}: failed: {e:#}");
            *failures += 1;
        }
    }
}

fn med(samples: &[Sample], pick: impl Fn(&Sample) -> f64) -> f64 {
    median(samples.iter().map(pick).collect())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--reference-peer") {
        return reference_peer(&args[2..]);
    }
    if !duet_tests::is_root() {
        bail!("the network lab needs root (namespaces, TUN devices, nftables)");
    }
    let runs: usize = duet_tests::flag_value(&args, "--runs").unwrap_or(3);
    let size = duet_tests::flag_value::<usize>(&args, "--size-mib").unwrap_or(100) * MIB;
    let wanted: Option<String> = duet_tests::flag_value(&args, "--profiles");
    let profiles: Vec<Profile> = PROFILES
        .into_iter()
        .filter(|p| {
            wanted
                .as_deref()
                .is_none_or(|w| w.split(',').any(|n| n == p.name))
        })
        .collect();
    let wanted_pairs: Option<String> = duet_tests::flag_value(&args, "--pairs");
    let pairs: Vec<Pair> = Pair::ALL
        .into_iter()
        .filter(|p| {
            wanted_pairs
                .as_deref()
                .is_none_or(|w| w.split(',').any(|n| n == p.flag()))
        })
        .collect();
    // A diagnostic beside the pairs: how Chromium's data channels scale with connections.
    let connections: Option<u32> = duet_tests::flag_value(&args, "--connections");
    let any_browser = pairs.iter().any(|p| p.script_mode().is_some()) || connections.is_some();
    let exe = std::env::current_exe()?;
    let client = exe.parent().context("binary dir")?.join("duet-client");
    let work = temp_dir("bench-wan-source")?;
    let source = work.join("wan.bin");
    let digest = duet_tests::make_file(&source, size);
    let mut results = Vec::new();
    for profile in &profiles {
        println!("== {} ({:?})", profile.name, profile.link());
        let world = World::start(profile, any_browser)?;
        let mut tcp = Vec::new();
        let (mut native_reference, mut seed_reference) = (Vec::new(), Vec::new());
        let mut duet: Vec<(Vec<Sample>, usize)> = vec![(Vec::new(), 0); pairs.len()];
        let with_browsers = |mode: &str| {
            BrowserRun {
                world: &world,
                mode,
                binary: &client,
                source: &source,
                digest,
                size,
            }
            .measure()
        };
        for run in 1..=runs {
            let label = |what: &str| format!("{} run {run} {what}", profile.name);
            let mut ignored = 0;
            measure(&label("tcp"), &mut tcp, &mut ignored, || {
                tcp_run(&world, size)
            });
            for (pair, (samples, failures)) in pairs.iter().zip(duet.iter_mut()) {
                measure(
                    &label(&format!("duet {}", pair.name())),
                    samples,
                    failures,
                    || match pair.script_mode() {
                        None => duet_native(&world, &client, &source, digest, size),
                        Some(mode) => with_browsers(mode),
                    },
                );
            }
            if pairs.contains(&Pair::Native) {
                measure(
                    &label("reference native↔native"),
                    &mut native_reference,
                    &mut ignored,
                    || reference_native(&world, &exe, &source, size),
                );
            }
            if let Some(n) = connections {
                measure(
                    &label(&format!("plain JS, {n} connections, from memory")),
                    &mut Vec::new(),
                    &mut ignored,
                    || with_browsers(&format!("connections-{n}")),
                );
            }
            if any_browser {
                measure(
                    &label("seed reference browser↔browser"),
                    &mut seed_reference,
                    &mut ignored,
                    || with_browsers("reference"),
                );
            }
        }
        let tcp_mib_s = med(&tcp, |s| s.mib_s);
        for (pair, (samples, failures)) in pairs.iter().zip(&duet) {
            let duet_mib_s = med(samples, |s| s.mib_s);
            let reference = match pair {
                Pair::Native => &native_reference,
                _ => &seed_reference,
            };
            let reference_mib_s = med(reference, |s| s.mib_s);
            results.push(Row {
                profile: profile.name,
                pair: pair.name(),
                duet_mib_s,
                tcp_mib_s,
                reference_mib_s,
                ratio_to_tcp: duet_mib_s / tcp_mib_s,
                ratio_to_reference: duet_mib_s / reference_mib_s,
                peak_rss_growth_mib: med(samples, |s| s.rss_growth_mib),
                completed: *failures == 0 && !samples.is_empty(),
                relayed: samples.iter().any(|s| s.relayed),
                runs: samples.len(),
                setup_s: {
                    let setups: Vec<f64> = samples.iter().filter_map(|s| s.setup_s).collect();
                    (!setups.is_empty()).then(|| median(setups))
                },
            });
            println!(
                "{}",
                serde_json::to_string(results.last().expect("pushed"))?
            );
        }
    }
    if wanted.is_some() || wanted_pairs.is_some() || connections.is_some() {
        // A partial or diagnostic run never overwrites the full report.
        println!("partial run (--profiles, --pairs, --connections): report not written");
        return Ok(());
    }
    let report = serde_json::json!({
        "size_mib": size / MIB,
        "runs": runs,
        "results": results,
    });
    duet_tests::measure::write_report("wan", &report)?;
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}
