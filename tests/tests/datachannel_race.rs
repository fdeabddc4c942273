//! The first messages on a freshly opened data channel are not lost (the vendored `rtc` patch).
//!
//! Duet's channels are negotiated out of band (matchbox creates them with a fixed stream id on
//! both sides), and each side speaks the moment its channel opens: the authenticated hello goes
//! out at once. The side that finishes the SCTP handshake first (it reads COOKIE-ECHO) opens and
//! sends before the other side has even read the COOKIE-ACK. When the other side reads that
//! COOKIE-ACK and the first data before it pumps its events, stock rtc 0.21.1 has not yet
//! dialed its channel and drops the data ("data channel not existed") although the channel is
//! reliable. That is what left two clients stuck on "connecting" in CI, one run in a few dozen.
//!
//! Here two sans-I/O peer connections are driven in one thread on a virtual clock, exchanging
//! datagrams in memory (the addresses are labels; no socket is opened), with the adversarial
//! but legal schedule fixed: every datagram that arrived is read before events are pumped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::sansio::Protocol;

#[path = "support/rtc_peer.rs"]
mod rtc_peer;

/// One side, and what it said and heard.
struct Peer {
    inner: rtc_peer::Peer,
    sent: Vec<String>,
    received: Vec<String>,
}

impl Peer {
    fn new(addr: SocketAddr, role: RTCDtlsRole, now: Instant) -> Peer {
        Peer {
            inner: rtc_peer::Peer::new(addr, role, now),
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    /// One turn: everything that arrived is read first, then events (the channel opening: say
    /// two things at once), then what arrived for the application. Returns what to send.
    fn turn(&mut self, now: Instant, label: &str) -> Vec<bytes::BytesMut> {
        self.inner.read_inbox(now);
        let mut out = self.inner.writes();
        self.inner.pump_events();
        if self.inner.open && self.sent.is_empty() {
            for n in 0..2 {
                let text = format!("{label} {n}");
                self.inner
                    .pc
                    .data_channel(self.inner.channel)
                    .unwrap()
                    .send_text(now, text.clone())
                    .unwrap();
                self.sent.push(text);
            }
        }
        while let Some(TaggedRTCMessage {
            message: RTCMessage::DataChannelMessage(_, message),
            ..
        }) = self.inner.pc.poll_read()
        {
            self.received
                .push(String::from_utf8_lossy(&message.data).into_owned());
        }
        out.extend(self.inner.writes());
        out
    }
}

#[test]
fn the_first_messages_on_a_negotiated_channel_arrive_whoever_opens_first() {
    let start = Instant::now();
    let mut now = start;
    let mut a = Peer::new("127.0.0.1:50001".parse().unwrap(), RTCDtlsRole::Server, now);
    let mut b = Peer::new("127.0.0.1:50002".parse().unwrap(), RTCDtlsRole::Client, now);
    rtc_peer::Peer::negotiate(&mut a.inner, &mut b.inner, now);

    let done = |a: &Peer, b: &Peer| a.received.len() >= 2 && b.received.len() >= 2;
    while !done(&a, &b) && now - start < Duration::from_secs(30) {
        for datagram in a.turn(now, "from a") {
            b.inner.inbox.push_back((a.inner.addr, datagram));
        }
        for datagram in b.turn(now, "from b") {
            a.inner.inbox.push_back((b.inner.addr, datagram));
        }
        // Time moves to the next timer only when nothing is in flight.
        if a.inner.inbox.is_empty() && b.inner.inbox.is_empty() {
            let next = [a.inner.pc.poll_timeout(), b.inner.pc.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_millis(10));
            now = next.max(now + Duration::from_millis(1));
            let _ = a.inner.pc.handle_timeout(now);
            let _ = b.inner.pc.handle_timeout(now);
        }
    }
    assert!(
        a.inner.open && b.inner.open,
        "channels open: a {}, b {}",
        a.inner.open,
        b.inner.open
    );
    // Reliable and ordered: everything each side said arrives, in order, although one of them
    // said it before the other had its channel.
    assert_eq!(b.received, a.sent, "what a said, as b got it");
    assert_eq!(a.received, b.sent, "what b said, as a got it");
}
