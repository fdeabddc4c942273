//! A hostile peer's SCTP against the vendored stack (`rtc-sctp`, under every native data
//! channel). Whoever holds the other end of a connection's DTLS writes whatever SCTP packets
//! it likes, before Duet's hello and identity check have run: a stranger who takes the free
//! seat is such a peer. So the victim here is a real `rtc-sctp` association, and the attacker
//! a real one too for the handshake, whose packets the test then forges (valid checksum, the
//! victim's verification tag) exactly as a patched peer would send them inside DTLS.
//!
//! What must hold: the victim's memory stays bounded whatever arrives (counted by this
//! binary's allocator), a forged packet ends at most its own association, and nothing panics.

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rtc::sctp::{
    Association, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Payload, ServerConfig,
    TransportConfig,
};
use rtc::shared::TransportProtocol;

/// Counts the bytes live on the heap, all threads together: the tests below run one at a time.
#[global_allocator]
static ALLOCATOR: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

/// The allocator's count is shared: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// SCTP's receive buffer, as Duet's native client sets it (`tests/sctp_wan.rs`).
const RECEIVE_BUFFER: u32 = 4 << 20;

/// What the victim may hold for one hostile association, beyond what it held before: twice
/// its receive buffer (`rtc-sctp`'s hard bound while it takes repairs into a full buffer) and
/// a little for the association's own bookkeeping.
const HELD_AT_MOST: isize = 2 * RECEIVE_BUFFER as isize + (4 << 20);

const VICTIM: &str = "10.0.0.1:5000";
const ATTACKER: &str = "10.0.0.2:5000";

/// What the attacker learns from the handshake it took part in: enough to forge any packet.
#[derive(Clone, Copy, Debug)]
struct Forge {
    source_port: u16,
    destination_port: u16,
    /// The victim's verification tag: the victim drops a packet without it.
    tag: u32,
    /// The first TSN the attacker's DATA may carry.
    first_tsn: u32,
}

/// One DATA chunk as the attacker writes it.
struct Data<'a> {
    tsn: u32,
    ssn: u16,
    /// B and E: the first and the last fragment of a message.
    begins: bool,
    ends: bool,
    bytes: &'a [u8],
}

impl Forge {
    /// One SCTP packet holding `chunks` (each: type, flags, value), with a valid CRC32c.
    fn packet(&self, chunks: &[(u8, u8, Vec<u8>)]) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u16(self.source_port);
        out.put_u16(self.destination_port);
        out.put_u32(self.tag);
        out.put_u32(0);
        for (kind, flags, value) in chunks {
            out.put_u8(*kind);
            out.put_u8(*flags);
            out.put_u16(4 + value.len() as u16);
            out.put_slice(value);
            while !out.len().is_multiple_of(4) {
                out.put_u8(0);
            }
        }
        let crc = crc32c::crc32c(&out);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        out.freeze()
    }

    fn data(&self, chunks: &[Data<'_>]) -> Bytes {
        self.data_on(0, chunks)
    }

    /// DATA chunks on stream `stream`.
    fn data_on(&self, stream: u16, chunks: &[Data<'_>]) -> Bytes {
        let chunks: Vec<_> = chunks
            .iter()
            .map(|d| {
                let mut value = Vec::with_capacity(12 + d.bytes.len());
                value.extend_from_slice(&d.tsn.to_be_bytes());
                value.extend_from_slice(&stream.to_be_bytes());
                value.extend_from_slice(&d.ssn.to_be_bytes());
                value.extend_from_slice(&53u32.to_be_bytes());
                value.extend_from_slice(d.bytes);
                let flags = u8::from(d.begins) << 1 | u8::from(d.ends);
                (0u8, flags, value)
            })
            .collect();
        self.packet(&chunks)
    }

    /// A SACK: the cumulative point, the window, gap blocks (offsets from the point).
    fn sack(&self, cumulative: u32, blocks: &[(u16, u16)]) -> Bytes {
        let mut value = Vec::new();
        value.extend_from_slice(&cumulative.to_be_bytes());
        value.extend_from_slice(&RECEIVE_BUFFER.to_be_bytes());
        value.extend_from_slice(&(blocks.len() as u16).to_be_bytes());
        value.extend_from_slice(&0u16.to_be_bytes());
        for (start, end) in blocks {
            value.extend_from_slice(&start.to_be_bytes());
            value.extend_from_slice(&end.to_be_bytes());
        }
        self.packet(&[(3, 0, value)])
    }
}

/// The victim's side: its endpoint and its one association, fed by hand.
struct Victim {
    endpoint: Endpoint,
    association: Association,
    now: Instant,
    /// What it sent, taken off the wire: the first TSN of its own DATA, SACKs seen.
    sent: Vec<Bytes>,
    /// The heap before the attack, and the most above it seen after a delivery.
    baseline: isize,
    peak: isize,
}

impl Victim {
    fn deliver(&mut self, datagram: Bytes) {
        let from: SocketAddr = ATTACKER.parse().unwrap();
        if let Some((_, DatagramEvent::AssociationEvent(event))) =
            self.endpoint.handle(self.now, from, None, datagram)
        {
            self.association.handle_event(event);
        }
        self.flush();
        self.peak = self.peak.max(live() - self.baseline);
    }

    /// Takes what the association wants to send and its events, as its driver does.
    fn flush(&mut self) {
        while let Some(transmit) = self.association.poll_transmit(self.now) {
            if let Payload::RawEncode(packets) = transmit.message {
                self.sent.extend(packets);
            }
        }
        while self.association.poll().is_some() {}
        while self.association.poll_endpoint_event().is_some() {}
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        if self
            .association
            .poll_timeout()
            .is_some_and(|at| at <= self.now)
        {
            self.association.handle_timeout(self.now);
        }
        self.flush();
    }
}

/// A victim and an attacker that completed a real handshake in memory; the attacker's
/// association is then dropped: from here on every packet is forged.
fn meet() -> (Victim, Forge) {
    let now = Instant::now();
    let victim_addr: SocketAddr = VICTIM.parse().unwrap();
    let attacker_addr: SocketAddr = ATTACKER.parse().unwrap();
    let transport = || TransportConfig::default().with_max_receive_buffer_size(RECEIVE_BUFFER);
    let config = Arc::new(EndpointConfig::default());
    let mut victim_endpoint =
        Endpoint::new(victim_addr, TransportProtocol::UDP, config.clone(), None);
    let mut attacker_endpoint = Endpoint::new(
        attacker_addr,
        TransportProtocol::UDP,
        config,
        Some(Arc::new(ServerConfig::new(transport()))),
    );
    let (_, mut victim) = victim_endpoint
        .connect(now, ClientConfig::new(transport()), attacker_addr)
        .unwrap();
    let mut attacker: Option<Association> = None;
    let mut forge = None;
    for _ in 0..10 {
        let mut to_attacker = Vec::new();
        while let Some(t) = victim.poll_transmit(now) {
            if let Payload::RawEncode(p) = t.message {
                to_attacker.extend(p);
            }
        }
        for datagram in to_attacker {
            match attacker_endpoint.handle(now, victim_addr, None, datagram) {
                Some((_, DatagramEvent::NewAssociation(a))) => attacker = Some(a),
                Some((_, DatagramEvent::AssociationEvent(e))) => {
                    attacker.as_mut().unwrap().handle_event(e)
                }
                _ => {}
            }
        }
        let Some(a) = attacker.as_mut() else { continue };
        let mut to_victim = Vec::new();
        while let Some(t) = a.poll_transmit(now) {
            if let Payload::RawEncode(p) = t.message {
                to_victim.extend(p);
            }
        }
        for datagram in to_victim {
            // The INIT-ACK: the ports, the victim's tag, and the attacker's first TSN.
            if forge.is_none() && datagram.len() >= 32 && datagram[12] == 2 {
                let be32 = |at: usize| u32::from_be_bytes(datagram[at..at + 4].try_into().unwrap());
                forge = Some(Forge {
                    source_port: u16::from_be_bytes([datagram[0], datagram[1]]),
                    destination_port: u16::from_be_bytes([datagram[2], datagram[3]]),
                    tag: be32(4),
                    first_tsn: be32(28),
                });
            }
            if let Some((_, DatagramEvent::AssociationEvent(e))) =
                victim_endpoint.handle(now, attacker_addr, None, datagram)
            {
                victim.handle_event(e);
            }
        }
    }
    while victim.poll().is_some() {}
    assert!(!victim.is_handshaking(), "the handshake did not complete");
    let victim = Victim {
        endpoint: victim_endpoint,
        association: victim,
        now,
        sent: Vec::new(),
        baseline: 0,
        peak: 0,
    };
    (victim, forge.expect("no INIT-ACK seen"))
}

fn live() -> isize {
    ALLOCATOR.allocated() as isize
}

/// Runs `attack` on a fresh victim and asserts that what it held above its heap before the
/// attack, at the peak, stays within [`HELD_AT_MOST`].
fn stays_bounded(what: &str, attack: impl FnOnce(&mut Victim, &Forge)) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut victim, forge) = meet();
    victim.baseline = live();
    attack(&mut victim, &forge);
    let peak = victim.peak;
    eprintln!("the victim held at most {} KiB", peak >> 10);
    assert!(
        peak <= HELD_AT_MOST,
        "the victim held {} MiB {what}",
        peak >> 20
    );
}

/// Data the victim can never read (its first TSN never comes), sent as "repairs": one chunk
/// far ahead first, so that every later one falls below the highest TSN held. A receiver
/// takes such chunks into a full buffer, to let a real repair in.
#[test]
fn data_behind_a_hole_posing_as_repairs_stays_bounded() {
    stays_bounded(
        "for a peer that sent 48 MiB it can never read",
        |victim, forge| {
            let kib = [7u8; 1024];
            let first = forge.first_tsn;
            victim.deliver(forge.data(&[Data {
                tsn: first.wrapping_add(60_000),
                ssn: 60_000,
                begins: true,
                ends: true,
                bytes: &kib,
            }]));
            // 48 MiB: twelve receive buffers.
            for n in 1..=49_152u32 {
                victim.deliver(forge.data(&[Data {
                    tsn: first.wrapping_add(n),
                    ssn: n as u16,
                    begins: true,
                    ends: true,
                    bytes: &kib,
                }]));
            }
            victim.tick(Duration::from_millis(250));
        },
    );
}

/// One message that never ends: every fragment is the next in sequence, so each one "unblocks
/// reassembly" in the receiver's eyes, and nothing ever becomes readable.
#[test]
fn a_message_that_never_ends_stays_bounded() {
    stays_bounded("of one message that never ends", |victim, forge| {
        let kib = [9u8; 1024];
        for n in 0..49_152u32 {
            victim.deliver(forge.data(&[Data {
                tsn: forge.first_tsn.wrapping_add(n),
                ssn: 0,
                begins: n == 0,
                ends: false,
                bytes: &kib,
            }]));
        }
    });
}

/// Tiny chunks: a window counted in payload bytes holds millions of them, and each costs the
/// receiver far more than its byte (its record, its place in two queues, the datagram it was
/// cut from).
#[test]
fn tiny_chunks_behind_a_hole_stay_bounded() {
    stays_bounded("for 240 KB of one-byte chunks", |victim, forge| {
        let one = [1u8];
        // 60 one-byte chunks per packet, 4,000 packets: 240,000 chunks, 240 KB of payload.
        let mut tsn = forge.first_tsn.wrapping_add(1);
        for _ in 0..4_000 {
            let chunks: Vec<_> = (0..60)
                .map(|i| Data {
                    tsn: tsn.wrapping_add(i),
                    ssn: 1,
                    begins: false,
                    ends: false,
                    bytes: &one,
                })
                .collect();
            tsn = tsn.wrapping_add(60);
            victim.deliver(forge.data(&chunks));
        }
    });
}

/// Every DATA chunk on a stream id of its own: each one creates a stream at the receiver.
#[test]
fn data_on_sixty_thousand_streams_stays_bounded() {
    stays_bounded(
        "for 60,000 one-byte messages on as many streams",
        |victim, forge| {
            for n in 0..60_000u32 {
                victim.deliver(forge.data_on(
                    n as u16,
                    &[Data {
                        tsn: forge.first_tsn.wrapping_add(n),
                        ssn: 0,
                        begins: true,
                        ends: true,
                        bytes: &[1],
                    }],
                ));
            }
        },
    );
}

/// A DATA chunk with no user data is a protocol violation (RFC 9260 6.2: "No User Data"); it
/// would otherwise cost the receiver a record per chunk and nothing of its window.
#[test]
fn data_with_no_user_data_ends_the_association() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut victim, forge) = meet();
    victim.deliver(forge.data(&[Data {
        tsn: forge.first_tsn.wrapping_add(1),
        ssn: 0,
        begins: true,
        ends: true,
        bytes: &[],
    }]));
    assert!(
        victim.association.is_closed(),
        "an empty DATA chunk was taken"
    );
}

/// The victim sends; the attacker acknowledges what was never sent, or sends gap blocks
/// that make the victim walk its whole queue many times over.
fn sending_victim() -> (Victim, Forge, u32) {
    let (mut victim, forge) = meet();
    let mut stream = victim
        .association
        .open_stream(0, rtc::sctp::PayloadProtocolIdentifier::Binary)
        .unwrap();
    for _ in 0..64 {
        stream.write(victim.now, &[3u8; 16 << 10]).unwrap();
    }
    victim.flush();
    // The victim's first TSN, from its first DATA on the wire.
    let first = victim
        .sent
        .iter()
        .find(|p| p.len() > 16 && p[12] == 0)
        .map(|p| u32::from_be_bytes(p[16..20].try_into().unwrap()))
        .expect("the victim sent no DATA");
    (victim, forge, first)
}

#[test]
fn an_acknowledgement_of_data_never_sent_ends_the_association() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut victim, forge, first) = sending_victim();
    victim.deliver(forge.sack(first.wrapping_add(1_000_000), &[]));
    assert!(victim.association.is_closed());

    let (mut victim, forge, first) = sending_victim();
    victim.deliver(forge.sack(first.wrapping_sub(1), &[(1, 60_000)]));
    assert!(victim.association.is_closed());
}

/// A FORWARD TSN (partial reliability) may move the receiver's cumulative point past data
/// it gave up on; moved 2^31 ahead, the receiver walked there one TSN at a time.
#[test]
fn a_forward_tsn_far_ahead_ends_the_association() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut victim, forge) = meet();
    let far = forge.first_tsn.wrapping_add(0x7fff_fff0);
    victim.deliver(forge.packet(&[(192, 0, far.to_be_bytes().to_vec())]));
    assert!(victim.association.is_closed());
}
