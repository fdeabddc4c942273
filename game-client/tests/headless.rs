//! Two headless clients over real WebRTC (webrtc-rs) through `wrangler dev`, in an `lo`-only
//! namespace: hello and names both ways, chat with receipts, rename, presence, "not delivered"
//! while the peer is away, and history and identity surviving a `kill -9`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use duet_tests::{Wrangler, assert_loopback_only, temp_dir};
use serde_json::Value;

/// A running `duet-client --headless`, killed on drop.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    name: &'static str,
}

impl Client {
    fn start(room_link: &str, data_dir: &Path, name: &'static str) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_duet-client"))
            .args([
                "--headless",
                "--room",
                room_link,
                "--name",
                name,
                "--data-dir",
            ])
            .arg(data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start duet-client");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("non-JSON output: {line}"),
                }
            }
        });
        let stdin = child.stdin.take();
        Client {
            child,
            stdin,
            events,
            name,
        }
    }

    fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for an event matching `want`, skipping others (printed for diagnosis).
    fn expect(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if want(&event) => return event,
                Ok(event) => eprintln!("[{}] {event}", self.name),
                Err(RecvTimeoutError::Timeout) => panic!("[{}] no {what} in 45 s", self.name),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("[{}] exited before {what}", self.name)
                }
            }
        }
    }

    fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is(event: &Value, kind: &str) -> bool {
    event["event"] == kind
}

#[test]
fn two_headless_clients_meet_chat_rename_and_keep_history() {
    assert_loopback_only();
    let wrangler = Wrangler::shared();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let room = runtime.block_on(wrangler.api().create_room()).unwrap().room;
    let link = format!("{}/r/{room}", wrangler.base);
    let (dir_a, dir_b): (PathBuf, PathBuf) =
        (temp_dir("client-a").unwrap(), temp_dir("client-b").unwrap());

    let mut a = Client::start(&link, &dir_a, "Ada");
    let ready_a = a.expect("ready", |e| is(e, "ready"));
    let mut b = Client::start(&link, &dir_b, "Bob");
    let ready_b = b.expect("ready", |e| is(e, "ready"));

    // Hello and names, both ways.
    let hello = a.expect("peer_hello", |e| is(e, "peer_hello"));
    assert_eq!(hello["name"], "Bob");
    assert_eq!(hello["identity"], ready_b["identity"]);
    let hello = b.expect("peer_hello", |e| is(e, "peer_hello"));
    assert_eq!(hello["name"], "Ada");
    assert_eq!(hello["identity"], ready_a["identity"]);

    // Chat with a receipt.
    a.command("say hi Bob, ünïcode ok? 👋");
    let got = b.expect("chat", |e| is(e, "chat") && e["mine"] == false);
    assert_eq!(got["text"], "hi Bob, ünïcode ok? 👋");
    assert_eq!(got["author"], "Ada");
    assert_eq!(got["state"], "received");
    a.expect("delivered", |e| {
        is(e, "chat") && e["state"] == "delivered" && e["id"] == got["id"]
    });

    // Rename is announced.
    a.command("rename Ada Lovelace");
    a.expect("renamed", |e| {
        is(e, "renamed") && e["name"] == "Ada Lovelace"
    });
    b.expect("peer_renamed", |e| {
        is(e, "peer_renamed") && e["name"] == "Ada Lovelace"
    });

    // B dies hard; A sees it leave, and a message written now is not delivered (nor queued).
    b.kill9();
    a.expect("peer_left", |e| is(e, "peer_left"));
    a.command("say are you there?");
    let lonely = a.expect("chat", |e| is(e, "chat") && e["text"] == "are you there?");
    assert_eq!(lonely["state"], "not_delivered");

    // B comes back from the same data dir: same identity, history intact after the kill -9.
    let mut b = Client::start(&link, &dir_b, "Bob");
    let again = b.expect("ready", |e| is(e, "ready"));
    assert_eq!(again["identity"], ready_b["identity"]);
    b.command("history");
    let history = b.expect("history", |e| is(e, "history"));
    let texts: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec!["hi Bob, ünïcode ok? 👋"],
        "the undelivered message never reached B"
    );
    // And they meet again (the server let the same identity take its seat back).
    b.expect("peer_hello", |e| {
        is(e, "peer_hello") && e["name"] == "Ada Lovelace"
    });
    a.expect("peer_hello", |e| is(e, "peer_hello") && e["name"] == "Bob");
}
