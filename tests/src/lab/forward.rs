//! A TCP forwarder inside a namespace: a browser in a home reaches the signaling server (and the
//! page it serves) at a loopback address of its own, where the app allows its test hooks, while
//! every byte still crosses the home's NAT and WAN link to the lab's internet. WebRTC's own
//! traffic does not use it.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use super::in_netns;

/// Forwards connections until dropped.
pub struct Forward {
    stop: Arc<AtomicBool>,
    /// Where it listens (inside its namespace).
    pub listen: SocketAddr,
}

impl Forward {
    /// Listens on `listen` inside `netns` and forwards each connection to `to`, connecting
    /// from that namespace (so through its router).
    pub fn start(netns: &Path, listen: SocketAddr, to: SocketAddr) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns = netns.to_owned();
        let flag = stop.clone();
        std::thread::spawn(move || {
            // The thread stays in the namespace for its life: the connections it makes to `to`
            // and the threads it starts are there too.
            let _ = in_netns(&netns, || {
                let listener = match TcpListener::bind(listen).and_then(|l| {
                    l.set_nonblocking(true)?;
                    Ok(l)
                }) {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((inbound, _)) => {
                            let _ = inbound.set_nonblocking(false);
                            if let Ok(outbound) = TcpStream::connect(to) {
                                splice(inbound, outbound);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => break,
                    }
                }
            });
        });
        ready_rx
            .recv()
            .context("the forwarder's thread")?
            .with_context(|| format!("listening on {listen}"))?;
        Ok(Self { stop, listen })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies both ways until each side closes its half.
fn splice(a: TcpStream, b: TcpStream) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    for (mut from, mut to) in [
        (a.try_clone(), b.try_clone()),
        (b.try_clone(), a.try_clone()),
    ]
    .into_iter()
    .filter_map(|(x, y)| Some((x.ok()?, y.ok()?)))
    {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}
