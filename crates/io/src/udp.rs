//! A UDP socket that receives many datagrams per system call and sends runs of equal-sized
//! datagrams as one segmented write, where the OS supports it.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;

/// How many receive buffers one [`RecvBatch`] holds.
pub const BATCH_SIZE: usize = 32;
/// The most bytes one segmented send may carry (the IPv4 payload limit, less headers).
pub const MAX_SEGMENTED_LEN: usize = 65_000;
/// Large enough for a GRO-coalesced run of datagrams.
const RECV_BUFFER_LEN: usize = 64 * 1024;
/// Kernel socket buffers, as wireguard-go sizes them: the default (≈200 KiB) overflows while
/// the loop writes one batch to the TUN device, and every datagram lost there is a TCP loss
/// inside the tunnel.
const SOCKET_BUFFER_LEN: usize = 7 << 20;

#[derive(Debug)]
pub struct UdpSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

/// Datagrams to send to one destination: `contents` holds one datagram, or several of
/// `segment_size` bytes each (the last may be shorter) when the socket can segment. A
/// segmented send is one UDP write for the kernel, so it cannot exceed [`MAX_SEGMENTED_LEN`].
#[derive(Debug, Clone, Copy)]
pub struct Transmit<'a> {
    pub destination: SocketAddr,
    pub contents: &'a [u8],
    pub segment_size: Option<usize>,
}

impl UdpSocket {
    /// Binds a socket; call inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(addr)?;
        Self::from_std(socket)
    }

    /// Wraps a socket made elsewhere (e.g. in another network namespace). Either way the
    /// socket carries Ember's mark, so its packets never enter the tunnel.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        if let Err(e) = crate::policy::mark_socket(&socket) {
            tracing::warn!(
                "Cannot mark the tunnel's UDP socket (its packets could be routed into the tunnel): {e}"
            );
        }
        grow_buffers(&socket);
        let state = UdpSocketState::new((&socket).into())?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        Ok(Self {
            io: tokio::net::UdpSocket::from_std(socket)?,
            state,
            local,
        })
    }

    /// Marks the socket again after the network changed: on macOS and Windows the mark is the
    /// interface of the default route (outside the tunnel), which may be another one now
    /// (elsewhere this changes nothing). A failure was already warned about when the socket
    /// was made.
    pub fn mark_again(&self) {
        if let Err(e) = crate::policy::mark_socket(&self.io) {
            tracing::debug!("Cannot mark the tunnel's UDP socket again: {e}");
        }
    }

    /// The address the socket is bound to (read once, at creation).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// How many segments one [`Transmit`] may carry (1 without GSO).
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    pub async fn send(&self, transmit: Transmit<'_>) -> io::Result<()> {
        let transmit = quinn_udp::Transmit {
            destination: transmit.destination,
            ecn: None,
            contents: transmit.contents,
            segment_size: transmit.segment_size,
            src_ip: None,
        };
        self.io
            .async_io(Interest::WRITABLE, || {
                self.state.try_send((&self.io).into(), &transmit)
            })
            .await
    }

    /// Waits for datagrams and fills `batch` with as many as one system call returns.
    pub async fn recv(&self, batch: &mut RecvBatch) -> io::Result<()> {
        batch.filled = 0;
        let filled = self
            .io
            .async_io(Interest::READABLE, || {
                let mut slices: Vec<IoSliceMut<'_>> = batch
                    .buffers
                    .iter_mut()
                    .map(|b| IoSliceMut::new(b))
                    .collect();
                self.state
                    .recv((&self.io).into(), &mut slices, &mut batch.meta)
            })
            .await?;
        batch.filled = filled;
        Ok(())
    }
}

/// Raises the socket's buffers to [`SOCKET_BUFFER_LEN`]; as root past the system's limit
/// (`net.core.rmem_max`), otherwise as far as that limit allows. Failing is not fatal: the
/// socket works, only with more loss under load.
fn grow_buffers(socket: &std::net::UdpSocket) {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt};
        let forced = setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER_LEN)
            .and_then(|()| setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER_LEN));
        if forced.is_ok() {
            return;
        }
    }
    let socket = socket2::SockRef::from(socket);
    if let Err(e) = socket
        .set_recv_buffer_size(SOCKET_BUFFER_LEN)
        .and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER_LEN))
    {
        tracing::debug!("Cannot grow the UDP socket's buffers: {e}");
    }
}

/// Receive buffers, reused from call to call so a steady stream allocates nothing.
#[derive(Debug)]
pub struct RecvBatch {
    buffers: Vec<Box<[u8]>>,
    meta: Vec<RecvMeta>,
    filled: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            buffers: (0..BATCH_SIZE)
                .map(|_| vec![0; RECV_BUFFER_LEN].into_boxed_slice())
                .collect(),
            meta: vec![RecvMeta::default(); BATCH_SIZE],
            filled: 0,
        }
    }
}

impl RecvBatch {
    /// Like [`Self::datagrams`], with the local address each datagram was sent to (when the
    /// OS reports it), for sockets bound to the unspecified address.
    pub fn datagrams_with_destination(
        &self,
    ) -> impl Iterator<Item = (SocketAddr, Option<std::net::IpAddr>, &[u8])> {
        self.meta[..self.filled]
            .iter()
            .zip(&self.buffers)
            .flat_map(|(meta, buffer)| {
                let stride = meta.stride.max(1);
                buffer[..meta.len]
                    .chunks(stride)
                    .map(move |datagram| (meta.addr, meta.dst_ip, datagram))
            })
    }

    /// Every datagram of the last receive, a coalesced run split back into its datagrams.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.datagrams_with_destination()
            .map(|(from, _, datagram)| (from, datagram))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn segmented_sends_arrive_as_separate_datagrams_in_order() {
        let receiver = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let destination = receiver.local_addr().unwrap();

        const COUNT: usize = 64;
        const LEN: usize = 1200;
        let payload: Vec<u8> = (0..COUNT)
            .flat_map(|i| std::iter::repeat_n(i as u8, LEN))
            .collect();
        let per_send = sender.max_segments().min(MAX_SEGMENTED_LEN / LEN);
        for run in payload.chunks(per_send * LEN) {
            sender
                .send(Transmit {
                    destination,
                    contents: run,
                    segment_size: (per_send > 1).then_some(LEN),
                })
                .await
                .unwrap();
        }

        let mut batch = RecvBatch::default();
        let mut received = Vec::new();
        while received.len() < COUNT {
            tokio::time::timeout(std::time::Duration::from_secs(2), receiver.recv(&mut batch))
                .await
                .expect("all datagrams arrive on loopback")
                .unwrap();
            for (from, datagram) in batch.datagrams() {
                assert_eq!(from, sender.local_addr().unwrap());
                assert_eq!(datagram.len(), LEN);
                assert!(datagram.iter().all(|b| *b == datagram[0]));
                received.push(datagram[0]);
            }
        }
        assert_eq!(received, (0..COUNT as u8).collect::<Vec<_>>());
    }
}
