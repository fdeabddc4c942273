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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

/// The stream id both sides agree on, as matchbox does for its first channel.
const STREAM: u16 = 0;

struct Peer {
    pc: RTCPeerConnection,
    addr: SocketAddr,
    channel: RTCDataChannelId,
    inbox: VecDeque<(SocketAddr, BytesMut)>,
    open: bool,
    sent: Vec<String>,
    received: Vec<String>,
}

impl Peer {
    fn new(addr: SocketAddr, role: RTCDtlsRole, now: Instant) -> Peer {
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_answering_dtls_role(role)
                    .build(),
            )
            .build(now)
            .unwrap();
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
            .unwrap();
        let init = RTCDataChannelInit {
            ordered: true,
            negotiated: Some(STREAM),
            ..Default::default()
        };
        let channel = pc.create_data_channel("duet", Some(init)).unwrap().id();
        Peer {
            pc,
            addr,
            channel,
            inbox: VecDeque::new(),
            open: false,
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    /// One turn: everything that arrived is read first, then events (the channel opening: say
    /// two things at once), then what arrived for the application. Returns what to send.
    fn turn(&mut self, now: Instant, label: &str) -> Vec<BytesMut> {
        for (from, datagram) in std::mem::take(&mut self.inbox) {
            let _ = self.pc.handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: self.addr,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: datagram,
            });
        }
        let mut out: Vec<BytesMut> = Vec::new();
        while let Some(datagram) = self.pc.poll_write() {
            out.push(datagram.message);
        }
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) = event
                && id == self.channel
            {
                self.open = true;
            }
        }
        if self.open && self.sent.is_empty() {
            for n in 0..2 {
                let text = format!("{label} {n}");
                self.pc
                    .data_channel(self.channel)
                    .unwrap()
                    .send_text(now, text.clone())
                    .unwrap();
                self.sent.push(text);
            }
        }
        while let Some(TaggedRTCMessage {
            message: RTCMessage::DataChannelMessage(_, message),
            ..
        }) = self.pc.poll_read()
        {
            self.received
                .push(String::from_utf8_lossy(&message.data).into_owned());
        }
        while let Some(datagram) = self.pc.poll_write() {
            out.push(datagram.message);
        }
        out
    }
}

#[test]
fn the_first_messages_on_a_negotiated_channel_arrive_whoever_opens_first() {
    let start = Instant::now();
    let mut now = start;
    let mut a = Peer::new("127.0.0.1:50001".parse().unwrap(), RTCDtlsRole::Server, now);
    let mut b = Peer::new("127.0.0.1:50002".parse().unwrap(), RTCDtlsRole::Client, now);
    let offer = a.pc.create_offer(None).unwrap();
    a.pc.set_local_description(now, offer.clone()).unwrap();
    b.pc.set_remote_description(now, offer).unwrap();
    let answer = b.pc.create_answer(None).unwrap();
    b.pc.set_local_description(now, answer.clone()).unwrap();
    a.pc.set_remote_description(now, answer).unwrap();

    let done = |a: &Peer, b: &Peer| a.received.len() >= 2 && b.received.len() >= 2;
    while !done(&a, &b) && now - start < Duration::from_secs(30) {
        for datagram in a.turn(now, "from a") {
            b.inbox.push_back((a.addr, datagram));
        }
        for datagram in b.turn(now, "from b") {
            a.inbox.push_back((b.addr, datagram));
        }
        // Time moves to the next timer only when nothing is in flight.
        if a.inbox.is_empty() && b.inbox.is_empty() {
            let next = [a.pc.poll_timeout(), b.pc.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_millis(10));
            now = next.max(now + Duration::from_millis(1));
            let _ = a.pc.handle_timeout(now);
            let _ = b.pc.handle_timeout(now);
        }
    }
    assert!(
        a.open && b.open,
        "channels open: a {}, b {}",
        a.open,
        b.open
    );
    // Reliable and ordered: everything each side said arrives, in order, although one of them
    // said it before the other had its channel.
    assert_eq!(b.received, a.sent, "what a said, as b got it");
    assert_eq!(a.received, b.sent, "what b said, as a got it");
}
