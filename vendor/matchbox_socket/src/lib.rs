#![warn(missing_docs)]
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
#[cfg(feature = "ggrs")]
mod ggrs_socket;
mod webrtc_socket;

pub use async_trait;
pub use error::{Error, SignalingError};
pub use matchbox_protocol::PeerId;
pub use webrtc_socket::{
    CandidatePair, CandidateType, ChannelConfig, HANDSHAKE_TIMEOUT, HandshakeFailure,
    MAX_HANDSHAKES, MAX_REMOTE_CANDIDATES, MessageLoopFuture, OPENING_GRACE, Packet, PeerEvent, PeerRequest,
    PeerSignal, PeerReport, PeerState, RtcIceServerConfig, SessionDescriptions, Signaller, SignallerBuilder, WebRtcChannel, Connections,
    WebRtcSocket, WebRtcSocketBuilder, error::ChannelError,
};
#[cfg(not(target_arch = "wasm32"))]
pub use webrtc_socket::{
    sctp_receive_buffer_size, set_sctp_receive_buffer_size, set_udp_buffer_size, udp_buffer_size,
    webrtc_runtime,
};
