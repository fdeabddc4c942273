//! Test harness for Duet's integration tests and load generators.
//!
//! Everything here drives real processes: [`Wrangler`] starts `wrangler dev` (workerd) from the
//! repository's pinned install, [`stock_matchbox`] starts stock `matchbox_signaling` in-process,
//! and [`Ws`] is a raw WebSocket client for speaking the matchbox protocol by hand.
//!
//! Tests that open WebRTC connections must run in an `lo`-only network namespace (`cargo xtask
//! test` does that); [`assert_loopback_only`] refuses to run them anywhere else.
#![forbid(unsafe_code)]

pub mod desktop;
pub mod evil;
pub mod lab;
pub mod measure;
pub mod mitm;
pub mod reference;
pub mod script;
pub mod turn;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use duet_shared::api::{ApiError, CreatedRoom, PeerTarget, RoomInfo};
use futures::{SinkExt, StreamExt};
use matchbox_protocol::{JsonPeerEvent, PeerId};
use tokio::net::TcpStream as TokioTcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub use duet_shared::automation::{self, Event};

/// A picker for [`HeadlessClient::wait`]: `on!(Event::PeerHello { name, .. } => name.clone())`
/// is a closure that gives `Some(name)` for a peer's hello and `None` for anything else; a
/// guard narrows it (`on!(Event::Chat(c) if !c.mine => c.clone())`), and with no `=>` it gives
/// the whole event.
#[macro_export]
macro_rules! on {
    ($pattern:pat $(if $guard:expr)? => $out:expr) => {
        |event: &$crate::Event| match event {
            $pattern $(if $guard)? => Some($out),
            _ => None,
        }
    };
    ($pattern:pat $(if $guard:expr)?) => {
        |event: &$crate::Event| match event {
            $pattern $(if $guard)? => Some(event.clone()),
            _ => None,
        }
    };
}

/// The median of `values` (the upper of the two middle ones for an even count); NaN for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// [`median`] for whole numbers; 0 for none.
pub fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// The repository root (where `wrangler.toml` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// The port of a loopback link (`http://127.0.0.1:PORT/...`): a fixture's link names the server
/// it was made against, and a test that reopens it runs its server there.
pub fn loopback_port(link: &str) -> u16 {
    link.strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("not a loopback link: {link}"))
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for test servers). Never the
/// same port twice in one test process: tests run in parallel threads, and two servers handed the
/// same just-released port would collide (the loser's `wrangler dev` exits while the winner
/// answers its readiness probe).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Options for a `wrangler dev` instance.
#[derive(Debug, Clone, Default)]
pub struct WranglerOptions {
    /// Where Durable Object storage lives. A fresh temporary directory when `None`.
    pub persist_to: Option<PathBuf>,
    /// `--var NAME:VALUE` overrides (e.g. a short idle TTL).
    pub vars: Vec<(String, String)>,
    /// The port to serve on (a restarted server keeps its address); a free one when `None`.
    pub port: Option<u16>,
    /// Log the worker's own `console.log` lines too (`--log-level log`), not just warnings.
    pub verbose: bool,
    /// Run it in this network namespace (a `/proc/PID/ns/net`, see [`lab`]) instead of this
    /// process's, listening on `ip`.
    pub netns: Option<(PathBuf, Ipv4Addr)>,
}

/// A running `wrangler dev`, stopped (whole process group) when dropped — or when the test process
/// dies, because its supervisor shell exits as soon as our end of its stdin closes.
pub struct Wrangler {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The Durable Object storage directory.
    pub persist_to: PathBuf,
    /// Where wrangler's output goes.
    pub log: PathBuf,
    /// The network namespace it runs in, when not this process's.
    netns: Option<PathBuf>,
    supervisor: Child,
}

impl Wrangler {
    /// Starts `wrangler dev` and waits until the worker answers (up to 90 s).
    pub fn start(options: WranglerOptions) -> Result<Self> {
        let root = repo_root();
        // Ports picked here come from the ephemeral range, where any process's outgoing
        // connection may take one before wrangler binds it (seen once in CI): pick again.
        let taken = |port: u16| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok();
        let mut picks = 0;
        let (port, inspector) = loop {
            let (port, inspector) = (options.port.unwrap_or_else(free_port), free_port());
            picks += 1;
            let clash = options.netns.is_none() && taken(port) || taken(inspector);
            if !clash || options.port.is_some() || picks == 10 {
                break (port, inspector);
            }
        };
        let persist_to = match options.persist_to {
            Some(dir) => dir,
            None => temp_dir("wrangler-state")?,
        };
        let logs = root.join("target/test-logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("wrangler-{port}.log"));
        // An older run's log on this port must not be read as this one's (see `wait_ready`).
        let _ = std::fs::remove_file(&log);
        let ip = options
            .netns
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |(_, ip)| *ip);
        let mut args = vec![
            "dev".to_owned(),
            "--ip".into(),
            ip.to_string(),
            "--port".into(),
            port.to_string(),
            "--inspector-ip".into(),
            "127.0.0.1".into(),
            "--inspector-port".into(),
            inspector.to_string(),
            "--persist-to".into(),
            persist_to.display().to_string(),
            "--show-interactive-dev-session=false".into(),
            "--log-level".into(),
            if options.verbose { "log" } else { "warn" }.into(),
        ];
        // Every test creates rooms from 127.0.0.1: the creation budget per address is for the
        // one test of it to set (a later `--var` wins). No STUN server either: the shipped
        // default is a public one, and tests talk to nothing outside this machine (a test of
        // ICE servers sets its own).
        let defaults = [
            ("ROOM_CREATION_BURST".to_owned(), "1000000".to_owned()),
            ("STUN_URLS".to_owned(), String::new()),
        ];
        for (name, value) in defaults.iter().chain(&options.vars) {
            args.push("--var".into());
            args.push(format!("{name}:{value}"));
        }
        // Single-quoted for the shell (a quote inside closes, escapes and reopens).
        let quoted: Vec<String> = args
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        // The shell owns a fresh process group (setsid); wrangler and workerd join it. When our
        // stdin pipe closes (drop or crash), `read` returns and the whole group is killed.
        let enter = options
            .netns
            .as_ref()
            .map(|(netns, _)| format!("nsenter --net={} ", netns.display()))
            .unwrap_or_default();
        let script = format!(
            "trap '' TERM; {enter}node_modules/.bin/wrangler {} > '{}' 2>&1 & read _; \
             kill -TERM 0; sleep 0.5; kill -KILL 0",
            quoted.join(" "),
            log.display()
        );
        if options.netns.is_none() && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            bail!("port {port} is already taken; wrangler dev would not get it");
        }
        let supervisor = Command::new("setsid")
            .args(["sh", "-c", &script])
            .current_dir(&root)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_SEND_ERROR_REPORTS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("WRANGLER_LOG_PATH", logs.join("wrangler-debug"))
            .env("DUET_PREBUILT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting wrangler dev (run `cargo xtask test`, which installs it)")?;
        let wrangler = Wrangler {
            base: format!("http://{ip}:{port}"),
            persist_to,
            log,
            netns: options.netns.map(|(netns, _)| netns),
            supervisor,
        };
        wrangler.wait_ready(Duration::from_secs(90))?;
        Ok(wrangler)
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let addr = self.base.trim_start_matches("http://").to_owned();
        while started.elapsed() < limit {
            // Someone else's server on our port would answer the probe below: make sure ours
            // did not give up.
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("ERROR") {
                bail!("wrangler dev failed to start; its log:\n{log}");
            }
            let connected = match &self.netns {
                Some(netns) => lab::in_netns(netns, || TcpStream::connect(&addr))?,
                None => TcpStream::connect(&addr),
            };
            if let Ok(mut stream) = connected {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let request = "GET /api/rooms/AAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\n\
                               Connection: close\r\n\r\n";
                let mut reply = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut reply).is_ok()
                    && reply.starts_with("HTTP/1.1 404")
                    && reply.contains("unknown_room")
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        bail!("wrangler dev did not become ready in {limit:?}; its log:\n{log}")
    }

    /// The shared instance for tests that need no special options. Started on first use; stopped
    /// when the test process exits.
    pub fn shared() -> &'static Wrangler {
        static SHARED: OnceLock<Wrangler> = OnceLock::new();
        SHARED.get_or_init(|| Wrangler::start(WranglerOptions::default()).expect("wrangler dev"))
    }

    /// Creates a room through the API and returns its link (`http://…/r/{room}`), blocking:
    /// for tests that run no async runtime of their own.
    pub fn new_room_link(&self) -> Result<String> {
        let api = self.api();
        let create = move || -> Result<String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(api.create_room())?.room)
        };
        // In another namespace, the request has to leave from there.
        let room = match &self.netns {
            Some(netns) => lab::on_thread_in(netns, create)??,
            None => create()?,
        };
        Ok(format!("{}/r/{room}", self.base))
    }

    /// A client for this instance's HTTP API.
    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    /// `ws://…/signal/{room}?identity={identity}`.
    pub fn signal_url(&self, room: &str, identity: Uuid) -> String {
        format!(
            "{}/signal/{room}?identity={identity}",
            self.base.replace("http://", "ws://")
        )
    }

    /// `ws://…/signal/{room}?key=…&ts=…&sig=…`: a Duet client's join, proven by `device`'s key
    /// for the room, signed at `ts_ms`.
    pub fn keyed_signal_url(
        &self,
        room: &str,
        device: &duet_shared::trust::DeviceKey,
        ts_ms: u64,
    ) -> String {
        let proof = device.room_key(room).sign_join(room, ts_ms);
        format!(
            "{}/signal/{room}?{}",
            self.base.replace("http://", "ws://"),
            proof.query()
        )
    }

    /// Files of this instance's Durable Object storage.
    pub fn storage_files(&self) -> Vec<PathBuf> {
        storage_files(&self.persist_to)
    }
}

/// Every file under a storage directory (SQLite databases and their journals).
pub fn storage_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

impl Drop for Wrangler {
    fn drop(&mut self) {
        drop(self.supervisor.stdin.take());
        let _ = self.supervisor.wait();
    }
}

/// Proves `from` can still signal `to` (a socket is alive and routed): a candidate with a fresh
/// nonce goes through, exactly as sent.
pub async fn relays(from: &mut Ws, from_id: PeerId, to: &mut Ws, to_id: PeerId) {
    let nonce = Uuid::new_v4().to_string();
    from.send_text(signal_to(to_id, serde_json::json!({"IceCandidate": nonce})))
        .await
        .unwrap();
    assert_eq!(
        to.next_event().await.unwrap(),
        JsonPeerEvent::Signal {
            sender: from_id,
            data: serde_json::json!({"IceCandidate": nonce})
        }
    );
}

/// A device key from fresh random bytes (two v4 UUIDs): a new person for each call.
pub fn random_device() -> duet_shared::trust::DeviceKey {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    duet_shared::trust::DeviceKey::from_seed(seed)
}

/// Milliseconds since the Unix epoch, for join proofs.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh directory under `$DUET_TEST_TMP` (set per test binary by `cargo xtask test`, which
/// removes it once the binary passed), else under `target/test-tmp`.
pub fn temp_dir(prefix: &str) -> Result<PathBuf> {
    let base = std::env::var_os("DUET_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-tmp"));
    let dir = base.join(format!("{prefix}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A client for the signaling service's HTTP API.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

/// An HTTP answer: status and body text.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// The body as Duet's error shape.
    pub fn error(&self) -> ApiError {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an ApiError ({e}): {}", self.body))
    }
}

impl Api {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn reply(response: reqwest::Response) -> Result<Reply> {
        Ok(Reply {
            status: response.status().as_u16(),
            body: response.text().await?,
        })
    }

    /// `POST /api/rooms`.
    pub async fn create_room(&self) -> Result<CreatedRoom> {
        let response = self
            .http
            .post(format!("{}/api/rooms", self.base))
            .send()
            .await?;
        if response.status().as_u16() != 201 {
            bail!("create room: {:?}", Self::reply(response).await?);
        }
        Ok(response.json().await?)
    }

    /// `GET /api/rooms/{room}`, raw.
    pub async fn room_reply(&self, room: &str) -> Result<Reply> {
        Self::reply(
            self.http
                .get(format!("{}/api/rooms/{room}", self.base))
                .send()
                .await?,
        )
        .await
    }

    /// `GET /api/rooms/{room}`, parsed (fails unless 200).
    pub async fn room(&self, room: &str) -> Result<RoomInfo> {
        let reply = self.room_reply(room).await?;
        if reply.status != 200 {
            bail!("room info: {reply:?}");
        }
        Ok(serde_json::from_str(&reply.body)?)
    }

    /// A plain (non-upgrade) GET of the signaling URL: shows the refusal a WebSocket would get.
    pub async fn get(&self, path: &str) -> Result<Reply> {
        Self::reply(self.http.get(format!("{}{path}", self.base)).send().await?).await
    }

    /// `GET {path}`: status and response headers.
    pub async fn headers(&self, path: &str) -> Result<(u16, reqwest::header::HeaderMap)> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok((response.status().as_u16(), response.headers().clone()))
    }

    /// `POST {path}` with `body` as it is, and `Authorization: Bearer {key}` if given.
    pub async fn post_raw(&self, path: &str, key: Option<&str>, body: Vec<u8>) -> Result<Reply> {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        Self::reply(request.send().await?).await
    }

    /// `POST /api/rooms/{room}/{action}` with `{"peer": peer}` (action: kick or ban).
    pub async fn moderate(
        &self,
        room: &str,
        action: &str,
        owner_key: &str,
        peer: PeerId,
    ) -> Result<Reply> {
        Self::reply(
            self.http
                .post(format!("{}/api/rooms/{room}/{action}", self.base))
                .bearer_auth(owner_key)
                .json(&PeerTarget { peer })
                .send()
                .await?,
        )
        .await
    }

    /// `PUT /api/rooms/{room}/owner-seat` with the owner key: reserves a seat for `key`.
    pub async fn reserve_owner_seat(
        &self,
        room: &str,
        owner_key: &str,
        key: duet_shared::trust::PublicKey,
    ) -> Result<Reply> {
        Self::reply(
            self.http
                .put(format!("{}/api/rooms/{room}/owner-seat", self.base))
                .bearer_auth(owner_key)
                .json(&duet_shared::api::OwnerSeat { key })
                .send()
                .await?,
        )
        .await
    }

    /// `GET /api/rooms/{room}/members` with `Authorization: Bearer {owner_key}` if given.
    pub async fn members(&self, room: &str, owner_key: Option<&str>) -> Result<Reply> {
        let mut request = self
            .http
            .get(format!("{}/api/rooms/{room}/members", self.base));
        if let Some(key) = owner_key {
            request = request.bearer_auth(key);
        }
        Self::reply(request.send().await?).await
    }

    /// `DELETE /api/rooms/{room}/bans`.
    pub async fn clear_bans(&self, room: &str, owner_key: &str) -> Result<Reply> {
        Self::reply(
            self.http
                .delete(format!("{}/api/rooms/{room}/bans", self.base))
                .bearer_auth(owner_key)
                .send()
                .await?,
        )
        .await
    }
}

/// A raw signaling WebSocket.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TokioTcpStream>>,
}

/// How a WebSocket ended, as seen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Close code (1005 when the frame had none, 1006 when the connection just dropped).
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

/// What a refused handshake returned.
#[derive(Debug, Clone)]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl Ws {
    /// Connects; `Err(Refused)` when the server answers the upgrade with an HTTP error.
    pub async fn connect(url: &str) -> std::result::Result<Ws, Refused> {
        let config = tungstenite::protocol::WebSocketConfig::default();
        match tokio_tungstenite::connect_async_with_config(url, Some(config), true).await {
            Ok((stream, _)) => Ok(Ws { stream }),
            Err(tungstenite::Error::Http(response)) => {
                // tungstenite keeps only the body bytes that arrived with the headers; repeat
                // the same upgrade request by hand to read the whole refusal.
                let body = match raw_upgrade(url).await {
                    Ok(refused) => refused.body,
                    Err(_) => response
                        .body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                };
                Err(Refused {
                    status: response.status().as_u16(),
                    body,
                })
            }
            Err(e) => Err(Refused {
                status: 0,
                body: e.to_string(),
            }),
        }
    }

    /// Connects, panicking with the refusal if there is one.
    pub async fn join(url: &str) -> Ws {
        match Self::connect(url).await {
            Ok(ws) => ws,
            Err(refused) => panic!("join {url} refused: {refused:?}"),
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        self.stream.send(Message::text(text.into())).await?;
        Ok(())
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.stream.send(Message::binary(bytes)).await?;
        Ok(())
    }

    /// The next text frame, within `limit`. Pings are skipped.
    pub async fn next_text(&mut self, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.stream.next())
                .await
                .context("no frame in time")?;
            match next {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(frame))) => bail!("closed instead: {frame:?}"),
                Some(Ok(other)) => bail!("unexpected frame {other:?}"),
                Some(Err(e)) => bail!("socket error: {e}"),
                None => bail!("socket ended"),
            }
        }
    }

    /// The next frame, parsed as a matchbox event.
    pub async fn next_event(&mut self) -> Result<JsonPeerEvent> {
        let text = self.next_text(Duration::from_secs(10)).await?;
        serde_json::from_str(&text).with_context(|| format!("not a PeerEvent: {text}"))
    }

    /// The `IdAssigned` frame every socket gets first.
    pub async fn id(&mut self) -> PeerId {
        match self.next_event().await.expect("IdAssigned") {
            JsonPeerEvent::IdAssigned(id) => id,
            other => panic!("expected IdAssigned first, got {other:?}"),
        }
    }

    /// Asserts nothing arrives for `quiet` (the socket must stay open).
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(next) = tokio::time::timeout(quiet, self.stream.next()).await {
            panic!("expected silence, got {next:?}");
        }
    }

    /// Waits for the server to close the socket; returns code and reason.
    pub async fn closed(&mut self, limit: Duration) -> Result<Closed> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.stream.next())
                .await
                .context("socket not closed in time")?;
            match next {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return Ok(Closed {
                        code: code.into(),
                        reason: reason.to_string(),
                    });
                }
                Some(Ok(Message::Close(None))) => {
                    return Ok(Closed {
                        code: 1005,
                        reason: String::new(),
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Ok(Closed {
                        code: 1006,
                        reason: String::new(),
                    });
                }
            }
        }
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // Drain until the server acknowledges, so the server has seen the close.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }
}

/// Sends a WebSocket upgrade request over a plain TCP stream and reads the complete answer.
/// Used to read refusals in full.
pub async fn raw_upgrade(url: &str) -> Result<Refused> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("ws://").context("ws:// url")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TokioTcpStream::connect(host).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some(split) = text.find("\r\n\r\n") {
            let head = text[..split].to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if raw.len() >= split + 4 + length {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = String::from_utf8_lossy(&raw[split + 4..split + 4 + length]);
                return Ok(Refused {
                    status,
                    body: body.into_owned(),
                });
            }
        }
    }
    bail!("connection ended before the full response")
}

/// `{"Signal":{"receiver":…,"data":…}}` as a client sends it.
pub fn signal_to(receiver: PeerId, data: serde_json::Value) -> String {
    serde_json::json!({"Signal": {"receiver": receiver, "data": data}}).to_string()
}

/// Starts stock `matchbox_signaling` (full mesh) on 127.0.0.1 inside the current tokio runtime.
/// Returns its `ws://` base; any path is one mesh.
pub async fn stock_matchbox() -> String {
    let mut server =
        matchbox_signaling::SignalingServer::full_mesh_builder((Ipv4Addr::LOCALHOST, 0)).build();
    let addr = server.bind().expect("bind stock matchbox_signaling");
    tokio::spawn(server.serve());
    format!("ws://{addr}")
}

/// Writes `size` bytes of a fixed pseudo-random pattern to `path` (incompressible, the same
/// every run) and returns their SHA-256.
pub fn make_file(path: &Path, size: usize) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        hasher.update(&block[..n]);
        left -= n;
    }
    file.flush().unwrap();
    hasher.finalize().into()
}

/// Lowercase hex, as the browser scripts print digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of the file at `path`.
pub fn sha256_of(path: &Path) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hasher.finalize().into()
}

/// Whether this process runs as root (namespaces, TUN devices and NAT need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    })
}

/// Panics unless this process runs in a network namespace whose only interface is `lo`. WebRTC
/// peers elsewhere would offer (and use) the machine's real addresses.
pub fn assert_loopback_only() {
    // /proc/self/net/dev follows this process's namespace (sysfs would show the host's).
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        interfaces,
        vec!["lo"],
        "WebRTC tests must run in an lo-only network namespace: use `cargo xtask test`"
    );
}

/// Resident set size of a process, in bytes (0 if it is gone).
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Files a process has open (its sockets among them; 0 if it is gone).
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// ICE configuration with no servers: host candidates only, never the public STUN defaults.
pub fn loopback_ice() -> matchbox_socket::RtcIceServerConfig {
    matchbox_socket::RtcIceServerConfig {
        urls: vec![],
        username: None,
        credential: None,
    }
}

/// A running `duet-client --headless`: JSON events in, stdin commands out. Killed on drop.
pub struct HeadlessClient {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    /// Each event line, typed; a line the protocol does not know arrives as itself, and fails
    /// the next wait.
    events: std::sync::mpsc::Receiver<(Instant, std::result::Result<Event, String>)>,
    /// Label used in diagnostics.
    pub label: String,
    /// The most lanes the client reported open at once ([`Event::Lanes`]), among the events
    /// seen so far.
    pub most_lanes: u8,
    /// Handshakes that failed, as their events arrived (waited for or not).
    pub failed_handshakes: usize,
}

impl HeadlessClient {
    /// Starts `binary --headless --room LINK --name NAME --data-dir DIR`.
    pub fn start(binary: &Path, link: &str, data_dir: &Path, name: &str) -> Result<Self> {
        Self::start_wrapped(&[], binary, link, data_dir, name)
    }

    /// Like [`start`](Self::start), run through `wrapper` (a program and its arguments that end
    /// by executing the rest of the command line, e.g. `unshare -m sh -c '...; exec "$@"' sh`).
    pub fn start_wrapped(
        wrapper: &[&str],
        binary: &Path,
        link: &str,
        data_dir: &Path,
        name: &str,
    ) -> Result<Self> {
        Self::spawn(wrapper, binary, "--headless", link, data_dir, name)
    }

    /// The windowed client with `--automation` (same events and commands, plus `layout`,
    /// `drop X Y PATH`, `screenshot PATH`), run through `wrapper` (e.g. `env DISPLAY=:90`).
    /// An empty `link` opens the lobby; an empty `name` keeps the stored one.
    pub fn start_windowed(
        wrapper: &[&str],
        binary: &Path,
        link: &str,
        data_dir: &Path,
        name: &str,
    ) -> Result<Self> {
        Self::spawn(wrapper, binary, "--automation", link, data_dir, name)
    }

    fn spawn(
        wrapper: &[&str],
        binary: &Path,
        mode: &str,
        link: &str,
        data_dir: &Path,
        name: &str,
    ) -> Result<Self> {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let mut child = command
            .arg(mode)
            .args(if link.is_empty() {
                vec![]
            } else {
                vec!["--room", link]
            })
            .args(if name.is_empty() {
                vec![]
            } else {
                vec!["--name", name]
            })
            .arg("--data-dir")
            .arg(data_dir)
            // Calls send a 440 Hz tone instead of a microphone's sound, as Chromium's fake devices
            // do in the browser tests (test machines have no sound card). A wrapper such as
            // `env DUET_FAKE_AUDIO=none` (no microphone) overrides it.
            .env("DUET_FAKE_AUDIO", "tone")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, events) = std::sync::mpsc::channel();
        // `DUET_ECHO_EVENTS=1`: every event of every client to stderr as it arrives, for the
        // runs where a test fails on one client because of what the other did.
        let echo = std::env::var_os("DUET_ECHO_EVENTS")
            .is_some()
            .then(|| name.to_owned());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { return };
                if let Some(label) = &echo {
                    eprintln!("[{label} {:?}] {line}", std::time::SystemTime::now());
                }
                if serde_json::from_str::<serde_json::Value>(&line).is_err() {
                    eprintln!("non-JSON output: {line}");
                    continue;
                }
                let event = serde_json::from_str::<Event>(&line).map_err(|_| line);
                if tx.send((Instant::now(), event)).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            events,
            label: name.to_owned(),
            most_lanes: 0,
            failed_handshakes: 0,
        })
    }

    /// The process id (for RSS sampling).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one stdin command line.
    pub fn command(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")?;
        Ok(stdin.flush()?)
    }

    /// What `pick` makes of the next event it takes (see [`on!`]) within `limit`; events it
    /// leaves are skipped (printed to stderr). An event line the protocol does not know fails.
    pub fn wait<T>(
        &mut self,
        what: &str,
        limit: Duration,
        pick: impl Fn(&Event) -> Option<T>,
    ) -> Result<T> {
        self.wait_timed(what, limit, pick).map(|(picked, _)| picked)
    }

    /// [`wait`](Self::wait) with 45 s of patience, panicking with the reason: for tests.
    pub fn expect<T>(&mut self, what: &str, pick: impl Fn(&Event) -> Option<T>) -> T {
        self.wait(what, Duration::from_secs(45), pick)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`wait`](Self::wait), with the moment the picked event's line arrived (for measuring:
    /// it may have waited in the queue since).
    pub fn wait_timed<T>(
        &mut self,
        what: &str,
        limit: Duration,
        pick: impl Fn(&Event) -> Option<T>,
    ) -> Result<(T, Instant)> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((arrived, Ok(event))) => {
                    self.note(&event);
                    match pick(&event) {
                        Some(picked) => return Ok((picked, arrived)),
                        None => eprintln!("[{}] {}", self.label, event.to_line()),
                    }
                }
                Ok((_, Err(line))) => {
                    bail!(
                        "[{}] reported an event the protocol does not know: {line}",
                        self.label
                    )
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    bail!("[{}] no {what} in {limit:?}", self.label)
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("[{}] exited before {what}", self.label)
                }
            }
        }
    }

    /// When signaling gave this client its place in the room (the `connected` event's arrival).
    pub fn in_room_at(&mut self, limit: Duration) -> Result<Instant> {
        let ((), at) = self.wait_timed("its place in the room", limit, |e| {
            matches!(e, Event::Connected { .. }).then_some(())
        })?;
        Ok(at)
    }

    /// Notes what the harness keeps track of across waits.
    fn note(&mut self, event: &Event) {
        match event {
            Event::Lanes { open } => self.most_lanes = self.most_lanes.max(*open),
            Event::PeerFailed { .. } => self.failed_handshakes += 1,
            _ => {}
        }
    }

    /// The events that arrived but were not waited for, without waiting (and without lines the
    /// protocol does not know, which are printed).
    pub fn pending(&mut self) -> Vec<Event> {
        let events: Vec<Event> = std::iter::from_fn(|| self.events.try_recv().ok())
            .filter_map(|(_, event)| {
                event
                    .map_err(|line| eprintln!("[{}] unknown event: {line}", self.label))
                    .ok()
            })
            .collect();
        for event in &events {
            self.note(event);
        }
        events
    }

    /// Drops the events that arrived but were not waited for (so the next [`wait`](Self::wait)
    /// sees only what happens from now on, e.g. a fresh once-a-second report).
    pub fn skip_pending(&mut self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Like [`wait`](Self::wait), but `pick` sees each event line as JSON, known to this
    /// protocol or not: for driving a client of another version.
    pub fn wait_json<T>(
        &mut self,
        what: &str,
        limit: Duration,
        pick: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.events.recv_timeout(left) {
                Ok((_, Ok(event))) => event.to_line(),
                Ok((_, Err(line))) => line,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    bail!("[{}] no {what} in {limit:?}", self.label)
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("[{}] exited before {what}", self.label)
                }
            };
            let value: serde_json::Value = serde_json::from_str(&line)?;
            match pick(&value) {
                Some(picked) => return Ok(picked),
                None => eprintln!("[{}] {line}", self.label),
            }
        }
    }

    /// Sends `quit` and waits up to `limit` for the client to exit by itself (having saved
    /// what it keeps), killing it only past that.
    pub fn quit(mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        self.command("quit")?;
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("[{}] did not exit within {limit:?} of quit", self.label);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`, then reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HeadlessClient {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value after `flag` on the command line, parsed (benchmarks' `--runs N` and the like).
pub fn flag_value<T: std::str::FromStr>(args: &[String], flag: &str) -> Option<T> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// Runs a benchmark's Node driver (`tests/bench/SCRIPT`) with `args` and returns the JSON it
/// printed on its last `RESULT {json}` line; its stderr goes to ours as it runs.
pub fn node_bench_result(script: &str, args: &[String]) -> Result<serde_json::Value> {
    let root = repo_root();
    let output = Command::new("node")
        .arg(root.join("tests/bench").join(script))
        .args(args)
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .context("node (cargo xtask bench installs the npm packages)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    result_line(&stdout).with_context(|| format!("{script} failed ({}):\n{stdout}", output.status))
}

/// The JSON of the last `RESULT {json}` line a Node scenario or benchmark printed.
pub fn result_line(stdout: &str) -> Option<serde_json::Value> {
    stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("RESULT "))
        .and_then(|json| serde_json::from_str(json).ok())
}
