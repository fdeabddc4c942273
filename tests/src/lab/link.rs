//! An emulated WAN link: one-way delay, jitter, loss, a rate and outages, for IP packets moving
//! between two TUN devices in two namespaces. This kernel has no `netem`, so this is it.
//!
//! [`LinkQueue`] is the whole behaviour, sans I/O with the time passed in (unit-tested below);
//! [`Link`] is the thread that moves packets between the TUN devices through two of them (one
//! per direction).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the link does to packets, per direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// One-way delay.
    pub delay: Duration,
    /// Up to this much more delay, uniformly at random (packets stay in order, as on a real
    /// link: a later packet waits for an earlier one).
    pub jitter: Duration,
    /// Share of packets lost, 0.0 to 1.0.
    pub loss: f64,
    /// Bits per second; `None`: as fast as the machine moves them.
    pub rate_bps: Option<u64>,
    /// Whether the link is cut: everything is dropped.
    pub down: bool,
    /// Most bytes waiting in the queue (a router's buffer); past it packets are dropped.
    pub queue_bytes: usize,
}

impl Default for LinkParams {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
            down: false,
            queue_bytes: 4 << 20,
        }
    }
}

impl LinkParams {
    /// A link with `rtt` round trip (half each way), no loss, no rate limit.
    pub fn rtt(rtt: Duration) -> Self {
        Self {
            delay: rtt / 2,
            ..Self::default()
        }
    }
}

/// A small deterministic generator (xorshift64*): loss and jitter are random but a run can be
/// repeated, and no dependency is needed for it.
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    /// Seeded (any seed; zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Uniform in [0, 1).
    pub fn roll(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Why a packet did not go on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The link is down.
    Down,
    /// Lost at random.
    Lost,
    /// The queue was full.
    QueueFull,
}

/// One direction of a link: packets wait here until their release time.
#[derive(Debug)]
pub struct LinkQueue {
    waiting: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
    /// When the rate limiter has finished sending what it took so far.
    busy_until: Option<Instant>,
    dice: Dice,
    /// Counters: what went through and what was dropped.
    pub stats: LinkStats,
}

/// What one direction of a link did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets delivered.
    pub delivered: u64,
    /// Packets dropped because the link was down.
    pub down: u64,
    /// Packets lost at random.
    pub lost: u64,
    /// Packets dropped on a full queue.
    pub overflow: u64,
}

impl LinkQueue {
    /// An empty queue whose randomness starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            waiting: VecDeque::new(),
            bytes: 0,
            busy_until: None,
            dice: Dice::new(seed),
            stats: LinkStats::default(),
        }
    }

    /// A packet arrives at `now` under `params`: queued with its release time, or dropped.
    pub fn push(
        &mut self,
        now: Instant,
        packet: Vec<u8>,
        params: &LinkParams,
    ) -> Result<(), Dropped> {
        if params.down {
            self.stats.down += 1;
            return Err(Dropped::Down);
        }
        if params.loss > 0.0 && self.dice.roll() < params.loss {
            self.stats.lost += 1;
            return Err(Dropped::Lost);
        }
        if self.bytes + packet.len() > params.queue_bytes {
            self.stats.overflow += 1;
            return Err(Dropped::QueueFull);
        }
        // Serialisation at the rate: the packet leaves the sender once those before it have.
        let sent = match params.rate_bps {
            Some(rate) if rate > 0 => {
                let start = self.busy_until.map_or(now, |busy| busy.max(now));
                let on_wire = Duration::from_nanos(packet.len() as u64 * 8 * 1_000_000_000 / rate);
                self.busy_until = Some(start + on_wire);
                start + on_wire
            }
            _ => now,
        };
        let jitter = params.jitter.mul_f64(self.dice.roll());
        let mut release = sent + params.delay + jitter;
        // In order: never before the packet ahead of it.
        if let Some((last, _)) = self.waiting.back() {
            release = release.max(*last);
        }
        self.bytes += packet.len();
        self.waiting.push_back((release, packet));
        Ok(())
    }

    /// When the next packet is due, if one waits.
    pub fn next_release(&self) -> Option<Instant> {
        self.waiting.front().map(|(at, _)| *at)
    }

    /// The packets due at `now`, in order.
    pub fn pop_due(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.waiting.front() {
            if *at > now {
                break;
            }
            let (_, packet) = self.waiting.pop_front().expect("front exists");
            self.bytes -= packet.len();
            self.stats.delivered += 1;
            due.push(packet);
        }
        due
    }

    /// Drops everything waiting (a link cut mid-flight loses what was on it).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.bytes = 0;
    }
}

/// A running emulated link between two TUN devices; dropping it stops it.
pub struct Link {
    params: Arc<Mutex<(LinkParams, LinkParams)>>,
    /// What each direction did so far (`a` to `b`, `b` to `a`).
    stats: [Arc<Mutex<LinkStats>>; 2],
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One end of a link: a TUN device made in a namespace.
pub struct LinkEnd {
    /// The namespace's `/proc/PID/ns/net`.
    pub netns: std::path::PathBuf,
    /// The device's name there.
    pub name: String,
    /// Its address (a /30 with the other end).
    pub address: std::net::Ipv4Addr,
}

impl Link {
    /// Makes the two TUN devices (`a` and `b`, each in its namespace, addressed and up) and
    /// starts moving packets between them: `a_to_b` applies to what `a` sends.
    pub fn start(
        a: LinkEnd,
        b: LinkEnd,
        a_to_b: LinkParams,
        b_to_a: LinkParams,
    ) -> anyhow::Result<Self> {
        let params = Arc::new(Mutex::new((a_to_b, b_to_a)));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shared = params.clone();
        let stats: [Arc<Mutex<LinkStats>>; 2] = Default::default();
        let counted = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("link {}-{}", a.name, b.name))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let devices = (|| -> anyhow::Result<_> {
                        Ok((super::in_netns(&a.netns, || tun(&a, &b))??, {
                            super::in_netns(&b.netns, || tun(&b, &a))??
                        }))
                    })();
                    let (tun_a, tun_b) = match devices {
                        Ok(devices) => devices,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let (tun_a, tun_b) = (Arc::new(tun_a), Arc::new(tun_b));
                    let forward =
                        |from: Arc<tokio_tun::Tun>,
                         to: Arc<tokio_tun::Tun>,
                         seed: u64,
                         pick: fn(&(LinkParams, LinkParams)) -> LinkParams,
                         counted: Arc<Mutex<LinkStats>>| {
                            let shared = shared.clone();
                            async move {
                                let ends = Ends {
                                    from: &from,
                                    to: &to,
                                };
                                direction(ends, seed, &shared, pick, &counted).await
                            }
                        };
                    let [a_to_b, b_to_a] = counted;
                    tokio::select! {
                        _ = forward(tun_a.clone(), tun_b.clone(), 1, |p| p.0, a_to_b) => {}
                        _ = forward(tun_b, tun_a, 2, |p| p.1, b_to_a) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the link thread died"))??;
        Ok(Self {
            params,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Changes what the link does, both directions at once.
    pub fn set(&self, params: LinkParams) {
        if let Ok(mut both) = self.params.lock() {
            *both = (params, params);
        }
    }

    /// What each direction did so far: (`a` to `b`, `b` to `a`).
    pub fn stats(&self) -> (LinkStats, LinkStats) {
        let read = |s: &Mutex<LinkStats>| s.lock().map(|s| *s).unwrap_or_default();
        (read(&self.stats[0]), read(&self.stats[1]))
    }

    /// Cuts the link (`true`) or restores it, keeping the other settings.
    pub fn set_down(&self, down: bool) {
        if let Ok(mut both) = self.params.lock() {
            both.0.down = down;
            both.1.down = down;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tun(end: &LinkEnd, other: &LinkEnd) -> anyhow::Result<tokio_tun::Tun> {
    let mut devices = tokio_tun::Tun::builder()
        .name(&end.name)
        .address(end.address)
        .destination(other.address)
        .netmask(std::net::Ipv4Addr::new(255, 255, 255, 252))
        .mtu(1500)
        .up()
        .build()
        .map_err(|e| anyhow::anyhow!("TUN device {}: {e}", end.name))?;
    devices
        .pop()
        .ok_or_else(|| anyhow::anyhow!("TUN device {}: none made", end.name))
}

/// The two devices one direction moves packets between.
struct Ends<'a> {
    from: &'a tokio_tun::Tun,
    to: &'a tokio_tun::Tun,
}

/// Moves packets from `from` to `to` through a [`LinkQueue`] until either device fails, and
/// keeps its counters in `counted` (after each release and each drop, not per packet).
async fn direction(
    Ends { from, to }: Ends<'_>,
    seed: u64,
    shared: &Mutex<(LinkParams, LinkParams)>,
    pick: fn(&(LinkParams, LinkParams)) -> LinkParams,
    counted: &Mutex<LinkStats>,
) {
    let mut queue = LinkQueue::new(seed);
    let mut buf = vec![0u8; 65_536];
    let mut was_down = false;
    loop {
        let next = queue.next_release();
        let wake = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = from.recv(&mut buf) => {
                let Ok(n) = read else { return };
                let params = shared.lock().map(|p| pick(&p)).unwrap_or_default();
                if params.down && !was_down {
                    queue.clear();
                }
                was_down = params.down;
                if queue.push(Instant::now(), buf[..n].to_vec(), &params).is_err()
                    && let Ok(mut stats) = counted.lock()
                {
                    *stats = queue.stats;
                }
            }
            () = wake => {
                for packet in queue.pop_due(Instant::now()) {
                    if to.send(&packet).await.is_err() {
                        return;
                    }
                }
                if let Ok(mut stats) = counted.lock() {
                    *stats = queue.stats;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(n: usize) -> Vec<u8> {
        vec![0; n]
    }

    #[test]
    fn packets_wait_their_delay_and_keep_their_order() {
        let t0 = Instant::now();
        let params = LinkParams {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            ..LinkParams::default()
        };
        let mut queue = LinkQueue::new(7);
        for i in 0..100u8 {
            queue
                .push(t0 + Duration::from_micros(u64::from(i)), vec![i], &params)
                .unwrap();
        }
        assert!(queue.pop_due(t0 + Duration::from_millis(19)).is_empty());
        let all: Vec<u8> = queue
            .pop_due(t0 + Duration::from_millis(31))
            .into_iter()
            .map(|p| p[0])
            .collect();
        assert_eq!(all, (0..100).collect::<Vec<u8>>(), "all due, in order");
    }

    #[test]
    fn the_rate_spaces_packets_and_a_full_queue_drops() {
        let t0 = Instant::now();
        let params = LinkParams {
            rate_bps: Some(8_000_000), // 1 MB/s: a 1,000-byte packet takes 1 ms.
            queue_bytes: 10_000,
            ..LinkParams::default()
        };
        let mut queue = LinkQueue::new(1);
        for _ in 0..10 {
            queue.push(t0, packet(1000), &params).unwrap();
        }
        assert_eq!(
            queue.push(t0, packet(1000), &params),
            Err(Dropped::QueueFull)
        );
        assert_eq!(queue.pop_due(t0 + Duration::from_micros(999)).len(), 0);
        assert_eq!(queue.pop_due(t0 + Duration::from_millis(1)).len(), 1);
        assert_eq!(queue.pop_due(t0 + Duration::from_millis(10)).len(), 9);
    }

    #[test]
    fn loss_is_near_its_share_and_a_cut_link_drops_everything() {
        let t0 = Instant::now();
        let lossy = LinkParams {
            loss: 0.01,
            ..LinkParams::default()
        };
        let mut queue = LinkQueue::new(42);
        for _ in 0..100_000 {
            let _ = queue.push(t0, packet(1), &lossy);
            queue.pop_due(t0);
        }
        assert!(
            (800..1200).contains(&queue.stats.lost),
            "{}",
            queue.stats.lost
        );
        let down = LinkParams {
            down: true,
            ..LinkParams::default()
        };
        assert_eq!(queue.push(t0, packet(1), &down), Err(Dropped::Down));
    }
}
