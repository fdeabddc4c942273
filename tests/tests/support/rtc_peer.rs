//! Two sans-I/O `rtc` peer connections driven in one thread on a virtual clock, exchanging
//! datagrams in memory (the addresses are labels; no socket is opened). Shared by the tests of
//! the vendored WebRTC stack.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

/// The stream id both sides agree on, as matchbox does for its first channel.
pub const STREAM: u16 = 0;

/// One side: its connection, its negotiated channel, and datagrams waiting to be read.
pub struct Peer {
    pub pc: RTCPeerConnection,
    pub addr: SocketAddr,
    pub channel: RTCDataChannelId,
    pub inbox: VecDeque<(SocketAddr, BytesMut)>,
    pub open: bool,
}

impl Peer {
    /// A connection with one host candidate at `addr` and matchbox's negotiated channel.
    pub fn new(addr: SocketAddr, role: RTCDtlsRole, now: Instant) -> Peer {
        Self::with_receive_buffer(addr, role, now, None)
    }

    /// [`Peer::new`], with SCTP's receive buffer (`None`: rtc-sctp's 1 MiB).
    pub fn with_receive_buffer(
        addr: SocketAddr,
        role: RTCDtlsRole,
        now: Instant,
        receive_buffer: Option<u32>,
    ) -> Peer {
        let mut settings = SettingEngineBuilder::new().with_answering_dtls_role(role);
        if let Some(bytes) = receive_buffer {
            settings = settings.with_sctp_max_receive_buffer_size(bytes);
        }
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings.build())
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
        }
    }

    /// Offer from `a`, answer from `b`.
    pub fn negotiate(a: &mut Peer, b: &mut Peer, now: Instant) {
        let offer = a.pc.create_offer(None).unwrap();
        a.pc.set_local_description(now, offer.clone()).unwrap();
        b.pc.set_remote_description(now, offer).unwrap();
        let answer = b.pc.create_answer(None).unwrap();
        b.pc.set_local_description(now, answer.clone()).unwrap();
        a.pc.set_remote_description(now, answer).unwrap();
    }

    /// Reads every datagram that arrived.
    pub fn read_inbox(&mut self, now: Instant) {
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
    }

    /// Pumps events; notes the channel opening.
    pub fn pump_events(&mut self) {
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) = event
                && id == self.channel
            {
                self.open = true;
            }
        }
    }

    /// Datagrams to send.
    pub fn writes(&mut self) -> Vec<BytesMut> {
        let mut out = Vec::new();
        while let Some(datagram) = self.pc.poll_write() {
            out.push(datagram.message);
        }
        out
    }
}
