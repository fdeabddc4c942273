//! Duet patch: larger kernel buffers for webrtc-rs's UDP sockets (opt-in, process-wide).
//!
//! Why: a data channel pushes SCTP packets in bursts. With Linux's default 208 KiB receive buffer
//! a burst of ~128 KiB of payload (plus per-datagram overhead) overflows it whenever the receiving
//! task is a little late, the kernel drops datagrams (`RcvbufErrors`) and SCTP stalls on
//! retransmits (Duet's measurements: `docs/bench/transfer.md` in its repository). Stock matchbox gives no access to the sockets, so
//! this wraps the runtime matchbox already uses and sizes each socket before webrtc-rs wraps it.
//! The default (0) leaves the sockets exactly as stock matchbox does.

use std::{
    future::Future,
    io,
    net::{SocketAddr, UdpSocket},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
};

static UDP_BUFFER_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Asks for `bytes` of kernel send and receive buffer on every UDP socket that peer connections
/// created after this call open (the kernel may cap it, e.g. at `net.core.rmem_max` on Linux).
/// `0` restores the operating system's default. Native only; a no-op in the browser.
pub fn set_udp_buffer_size(bytes: usize) {
    UDP_BUFFER_BYTES.store(bytes, Ordering::Relaxed);
}

/// The requested buffer size (0 = operating-system default).
pub fn udp_buffer_size() -> usize {
    UDP_BUFFER_BYTES.load(Ordering::Relaxed)
}

/// Delegates everything to the wrapped runtime except socket wrapping, which first sizes the
/// socket's buffers.
pub(crate) struct SizedUdpRuntime<R>(pub R);

impl<R: Runtime> std::fmt::Debug for SizedUdpRuntime<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SizedUdpRuntime").field(&self.0.name()).finish()
    }
}

impl<R: Runtime> Runtime for SizedUdpRuntime<R> {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.0.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.0.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let bytes = udp_buffer_size();
        if bytes > 0 {
            let sock = socket2::SockRef::from(&socket);
            // Best effort: a refused size leaves the default, which still works (just slower).
            if let Err(e) = sock.set_recv_buffer_size(bytes) {
                log::warn!("could not enlarge UDP receive buffer: {e}");
            }
            if let Err(e) = sock.set_send_buffer_size(bytes) {
                log::warn!("could not enlarge UDP send buffer: {e}");
            }
        }
        self.0.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.0.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.0.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.0.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.0.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.yield_now()
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }
}
