//! A small test network made of network namespaces: an "internet" holding the signaling server
//! and a STUN/TURN server, and two homes, each behind its own NAT router, each router joined to
//! the internet by an emulated WAN link ([`link`]). Tests start it and tear it down by
//! themselves; the addresses exist only inside these namespaces.
//!
//! ```text
//!  home A 192.168.1.2 ─veth─ router A ══link A══ internet (10.100.0.1 on lo: signaling, coturn)
//!                            10.100.1.2   NAT     10.100.1.1
//!  home B 192.168.2.2 ─veth─ router B ══link B══ internet
//!                            10.100.2.2   NAT     10.100.2.1
//! ```
//!
//! Each namespace is held open by a `sh` that exits when its stdin closes: when the test
//! process ends, however it ends, its namespaces (and every device in them) go with it.

pub mod browser;
pub mod forward;
pub mod link;
pub mod servers;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

pub use browser::BrowserHome;
pub use forward::Forward;
pub use link::{Link, LinkEnd, LinkParams};
pub use servers::Servers;

/// Runs `f` on this thread inside the network namespace at `netns` (a `/proc/PID/ns/net`),
/// then returns the thread to its own. Sockets and devices made by `f` stay in that namespace.
pub fn in_netns<T>(netns: &Path, f: impl FnOnce() -> T) -> Result<T> {
    use nix::sched::{CloneFlags, setns};
    let own = std::fs::File::open("/proc/thread-self/ns/net").context("own netns")?;
    let target = std::fs::File::open(netns).with_context(|| format!("{}", netns.display()))?;
    setns(&target, CloneFlags::CLONE_NEWNET).context("entering the namespace")?;
    let result = f();
    setns(&own, CloneFlags::CLONE_NEWNET).context("leaving the namespace")?;
    Ok(result)
}

/// Runs `f` on a fresh thread inside `netns` (for blocking or async work whose sockets must be
/// there: a test's HTTP call to the signaling server).
pub fn on_thread_in<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let netns = netns.to_owned();
    std::thread::spawn(move || in_netns(&netns, f))
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in the namespace panicked"))?
}

/// One network namespace, held open by a process.
pub struct Namespace {
    /// What the tests call it.
    pub name: String,
    holder: Child,
}

impl Namespace {
    /// A new namespace with `lo` up (and multicast on it, which webrtc-rs's mDNS socket needs).
    pub fn new(name: &str) -> Result<Self> {
        let holder = Command::new("unshare")
            .args(["-n", "sh", "-c"])
            .arg("ip link set lo up && ip link set lo multicast on && echo up && read _")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("unshare -n")?;
        let mut ns = Self {
            name: name.to_owned(),
            holder,
        };
        let mut line = String::new();
        let stdout = ns.holder.stdout.take().context("holder stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        if line.trim() != "up" {
            bail!("namespace {name} did not come up");
        }
        Ok(ns)
    }

    /// The holder's process id: `nsenter -t PID -n` enters the namespace.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `/proc/PID/ns/net`.
    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// The prefix that runs a program in this namespace.
    pub fn wrapper(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.pid().to_string(),
            "-n".into(),
        ]
    }

    /// A command run in this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.pid().to_string(), "-n", program]);
        command
    }

    /// Runs `sh -c script` here and fails with its output if it fails.
    pub fn sh(&self, script: &str) -> Result<()> {
        let output = self
            .command("sh")
            .args(["-c", script])
            .output()
            .context("nsenter")?;
        if !output.status.success() {
            bail!(
                "in {}: `{script}` failed: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// How a home's router translates addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// `masquerade`: keeps the source port where it can, one mapping for all destinations, so
    /// the address a STUN server sees is the one the peer can answer (hole punching works).
    Cone,
    /// `masquerade fully-random`: a new random port for each destination, so the STUN server's
    /// view is useless to the peer and only a relay crosses it.
    Symmetric,
}

/// One home: its router and the namespace its devices live in.
pub struct Home {
    /// Where the person's app runs.
    pub home: Namespace,
    /// The NAT router.
    pub router: Namespace,
    /// The router's WAN link to the internet.
    pub link: Link,
    /// The router's public address.
    pub public: Ipv4Addr,
    /// Its number in the lab (1 for A, 2 for B).
    n: u8,
}

/// The whole lab.
pub struct Lab {
    /// Holds the servers.
    pub internet: Namespace,
    /// Home A (its WAN is link A).
    pub a: Home,
    /// Home B.
    pub b: Home,
}

/// The address servers listen on in the internet namespace.
pub const SERVERS: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);

impl Lab {
    /// Builds the lab: both homes behind `nat_a` / `nat_b`, their WAN links doing `link_a` /
    /// `link_b` (both directions).
    pub fn start(nat_a: Nat, link_a: LinkParams, nat_b: Nat, link_b: LinkParams) -> Result<Self> {
        let internet = Namespace::new("internet")?;
        // "The rest of the internet": a default route into a veth whose other end is down, so
        // a packet for an address outside the lab (a peer's private host candidate, which a
        // TURN client asks the relay to reach) vanishes as it would on the internet. Without
        // it the relay's send fails at once (ENETUNREACH), and coturn ends the whole
        // allocation for that one failed send.
        internet.sh(&format!(
            "ip addr add {SERVERS}/32 dev lo && sysctl -qw net.ipv4.ip_forward=1 && \
             ip link add rest type veth peer name void && ip link set rest up && \
             ip route add default dev rest"
        ))?;
        let a = Self::home(&internet, 1, nat_a, link_a)?;
        let b = Self::home(&internet, 2, nat_b, link_b)?;
        Ok(Self { internet, a, b })
    }

    /// The home's network changes its public address mid-session (a new lease, a carrier's
    /// NAT remapping): the router translates to a new address and forgets every mapping, so
    /// the peers' packets to the old one go nowhere and the home's next packets come from the
    /// new one. Returns the new address.
    pub fn rebind(&self, home: &Home) -> Result<Ipv4Addr> {
        let n = home.n;
        let new = Ipv4Addr::new(10, 101, n, 2);
        self.internet
            .sh(&format!("ip route replace {new}/32 dev home{n}"))?;
        home.router.sh(&format!(
            "ip addr add {new}/32 dev wan && \
             nft flush chain ip nat post && \
             nft add rule ip nat post oifname wan snat to {new} && \
             conntrack -F 2>/dev/null"
        ))?;
        Ok(new)
    }

    fn home(internet: &Namespace, n: u8, nat: Nat, params: LinkParams) -> Result<Home> {
        let router = Namespace::new(&format!("router {n}"))?;
        let home = Namespace::new(&format!("home {n}"))?;
        let public = Ipv4Addr::new(10, 100, n, 2);
        let link = Link::start(
            LinkEnd {
                netns: router.netns(),
                name: "wan".into(),
                address: public,
            },
            LinkEnd {
                netns: internet.netns(),
                name: format!("home{n}"),
                address: Ipv4Addr::new(10, 100, n, 1),
            },
            params,
            params,
        )?;
        let status = Command::new("ip")
            .args(["link", "add", "lan", "netns", &home.pid().to_string()])
            .args(["type", "veth", "peer", "name", "lan"])
            .args(["netns", &router.pid().to_string()])
            .status()?;
        if !status.success() {
            bail!("veth between home {n} and its router");
        }
        // Like a home router's firewall, unsolicited packets from the WAN are dropped rather
        // than answered: otherwise the peer's first hole-punching packet, arriving before this
        // side's own, leaves a conntrack entry that makes the NAT pick another port for this
        // side's packets to the peer (seen with Chromium: its checks left from a port the
        // peer's NAT had never seen). Nothing leaves for an address outside the lab.
        let random = match nat {
            Nat::Cone => "",
            Nat::Symmetric => " fully-random",
        };
        router.sh(&format!(
            "ip addr add 192.168.{n}.1/24 dev lan && ip link set lan up && \
             ip route add default via 10.100.{n}.1 dev wan && \
             sysctl -qw net.ipv4.ip_forward=1 && \
             nft add table ip nat && \
             nft add chain ip nat post '{{ type nat hook postrouting priority 100 ; }}' && \
             nft add rule ip nat post oifname wan masquerade{random} && \
             nft add table ip filter && \
             nft add chain ip filter input '{{ type filter hook input priority 0 ; }}' && \
             nft add rule ip filter input iifname wan ct state new drop && \
             nft add chain ip filter forward '{{ type filter hook forward priority 0 ; }}' && \
             nft add rule ip filter forward oifname wan ip daddr != {{ 10.100.0.0/16, 10.101.0.0/16 }} drop"
        ))?;
        home.sh(&format!(
            "ip addr add 192.168.{n}.2/24 dev lan && ip link set lan up && \
             ip link set lan multicast on && \
             ip route add default via 192.168.{n}.1 && \
             ip route add 224.0.0.0/4 dev lan"
        ))?;
        Ok(Home {
            home,
            router,
            link,
            public,
            n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The lab as its tests see it: a UDP echo in the internet answers both homes through
    /// their NATs, with the link's delay, and a cut link stops everything.
    #[test]
    fn homes_reach_the_internet_through_nat_with_the_links_delay() {
        if !crate::is_root() {
            eprintln!("skipped: building namespaces needs root (`cargo xtask test` runs as root)");
            return;
        }
        let lab = Lab::start(
            Nat::Cone,
            LinkParams::rtt(Duration::from_millis(40)),
            Nat::Symmetric,
            LinkParams::default(),
        )
        .unwrap();
        let echo = on_thread_in(&lab.internet.netns(), || {
            std::net::UdpSocket::bind((SERVERS, 7000)).unwrap()
        })
        .unwrap();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut seen = Vec::new();
            while let Ok((n, from)) = echo.recv_from(&mut buf) {
                if n == 1 && buf[0] == b'q' {
                    break;
                }
                seen.push(from);
                let _ = echo.send_to(&buf[..n], from);
            }
            seen
        });
        let ask = |home: &Namespace| {
            on_thread_in(&home.netns(), || {
                let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let started = Instant::now();
                socket.send_to(b"ping", (SERVERS, 7000)).unwrap();
                let mut buf = [0u8; 16];
                socket.recv_from(&mut buf).map(|_| started.elapsed()).ok()
            })
            .unwrap()
        };
        let rtt_a = ask(&lab.a.home).expect("home A reaches the internet");
        let rtt_b = ask(&lab.b.home).expect("home B reaches the internet");
        assert!(
            (Duration::from_millis(40)..Duration::from_millis(80)).contains(&rtt_a),
            "{rtt_a:?}"
        );
        assert!(rtt_b < Duration::from_millis(20), "{rtt_b:?}");
        lab.a.link.set_down(true);
        assert_eq!(ask(&lab.a.home), None, "a cut link carries nothing");
        lab.a.link.set_down(false);
        assert!(
            ask(&lab.a.home).is_some(),
            "and carries again when restored"
        );
        on_thread_in(&lab.internet.netns(), || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.send_to(b"q", (SERVERS, 7000)).unwrap();
        })
        .unwrap();
        let seen = server.join().unwrap();
        // The server saw the routers' public addresses, never a home's private one.
        assert!(seen.iter().all(|from| {
            let ip = from.ip().to_string();
            ip == lab.a.public.to_string() || ip == lab.b.public.to_string()
        }));
    }
}
