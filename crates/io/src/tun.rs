//! The TUN device, through `tun-rs` on every OS: a kernel TUN device on Linux, utun on macOS
//! (the kernel picks the name), Wintun on Windows (`wintun.dll` shipped with the app).
//!
//! Packets move in batches: [`Tun::recv`] waits for one packet and then takes whatever else
//! is ready, [`Tun::send`] writes a [`SendBatch`]. On Linux the device has offloads (a
//! virtio header on every read and write): the kernel hands over TCP and UDP segments of up
//! to 64 KiB, which are split here into packets, and takes runs of packets of one flow
//! coalesced into one write. That is one system call per 64 KiB instead of one per packet.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Tunnel MTU: leaves room for WireGuard and UDP/IPv6 headers under a 1420-byte path.
pub const DEFAULT_MTU: u16 = 1280;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Ignored on macOS, where utun devices are numbered by the kernel.
    pub name: String,
    pub mtu: u16,
    pub ipv4: Option<(Ipv4Addr, u8)>,
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// Windows: the absolute path of the `wintun.dll` to load, which the caller has checked
    /// against its pinned hash and keeps locked until `create` returns. Required there: without
    /// it the DLL would be looked up on the search path. Ignored elsewhere.
    pub wintun_dll: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TunError {
    #[error("cannot create the TUN device `{name}`: {source}")]
    Create { name: String, source: io::Error },
}

pub struct Tun {
    device: tun_rs::AsyncDevice,
    name: String,
    index: u32,
    mtu: u16,
    /// The device reads and writes virtio headers (Linux offloads are on).
    offload: bool,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("offload", &self.offload)
            .finish_non_exhaustive()
    }
}

impl Tun {
    /// Creates the device, up, with its addresses (which also route their prefixes into it).
    /// Call inside a tokio runtime.
    pub fn create(config: &TunConfig) -> Result<Self, TunError> {
        let create_err = |source| TunError::Create {
            name: config.name.clone(),
            source,
        };
        let mut builder = tun_rs::DeviceBuilder::new().mtu(config.mtu);
        if !cfg!(target_os = "macos") {
            builder = builder.name(config.name.clone());
        }
        if let Some((addr, prefix)) = config.ipv4 {
            builder = builder.ipv4(addr, prefix, None);
        }
        if let Some((addr, prefix)) = config.ipv6 {
            builder = builder.ipv6(addr, prefix);
        }
        #[cfg(target_os = "linux")]
        {
            builder = builder.offload(true);
        }
        #[cfg(windows)]
        {
            let Some(dll) = &config.wintun_dll else {
                return Err(create_err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no verified wintun.dll was given",
                )));
            };
            builder = builder.wintun_file(dll.to_string_lossy().into_owned());
        }
        let device = builder.build_async().map_err(create_err)?;
        let name = device.name().map_err(create_err)?;
        let index = device.if_index().map_err(create_err)?;
        let offload = platform::has_offload(&device);
        // Its default routes (the internet resource) must never count as the physical way out.
        #[cfg(windows)]
        crate::policy::set_tunnel_interface(index);
        tracing::debug!(%name, offload, "TUN device created");
        Ok(Self {
            device,
            name,
            index,
            mtu: config.mtu,
            offload,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index, for routes through the device.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Buffers for [`Self::recv`], sized for this device.
    pub fn recv_batch(&self) -> RecvBatch {
        RecvBatch::new(self.mtu)
    }

    /// Waits for packets from the kernel, then takes every packet that is ready too, as far as
    /// `batch` has room. A packet the device hands over malformed is dropped, not an error:
    /// errors are the device's own (e.g. it was deleted).
    pub async fn recv(&self, batch: &mut RecvBatch) -> io::Result<()> {
        batch.filled = 0;
        loop {
            self.device.readable().await?;
            while batch.free() >= self.slots_per_read() {
                match platform::try_recv(&self.device, batch) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error().is_none() => {
                        tracing::debug!("Malformed packet from the TUN device dropped: {e}");
                    }
                    Err(e) => return Err(e),
                }
            }
            if batch.filled > 0 {
                return Ok(());
            }
        }
    }

    /// Hands every packet of `batch` to the kernel and empties it. A failed write does not
    /// stop the others; an error is returned once all were tried.
    pub async fn send(&self, batch: &mut SendBatch) -> io::Result<()> {
        let result = platform::send(&self.device, batch).await;
        batch.clear();
        result
    }

    /// Hands one IP packet to the kernel.
    pub async fn send_one(&self, packet: &[u8]) -> io::Result<()> {
        let mut batch = SendBatch::default();
        batch.push(packet);
        self.send(&mut batch).await
    }

    /// Free slots one read needs: a segment of up to 64 KiB splits into many packets.
    fn slots_per_read(&self) -> usize {
        if self.offload { SEGMENT_SLOTS } else { 1 }
    }
}

/// Packets one read may split into: 64 KiB of TCP segments with an MSS of 512 bytes.
const SEGMENT_SLOTS: usize = 128;
/// Packets one [`RecvBatch`] holds: two full segments.
const RECV_SLOTS: usize = 2 * SEGMENT_SLOTS;
/// Room before each packet of a [`SendBatch`] for the virtio header.
const HEADROOM: usize = platform::HEADER_LEN;

/// Packets read from the device in one wake-up, in buffers reused from call to call.
#[derive(Debug)]
pub struct RecvBatch {
    /// One raw read with offloads: the virtio header and a segment of up to 64 KiB.
    #[cfg(target_os = "linux")]
    raw: Vec<u8>,
    buffers: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    filled: usize,
}

impl RecvBatch {
    /// The kernel hands over no packet larger than the device's MTU (larger TCP and UDP
    /// segments come split by `tun-rs`), so one MTU per buffer suffices.
    fn new(mtu: u16) -> Self {
        Self {
            #[cfg(target_os = "linux")]
            raw: vec![0; platform::RAW_LEN],
            buffers: vec![vec![0; usize::from(mtu)]; RECV_SLOTS],
            sizes: vec![0; RECV_SLOTS],
            filled: 0,
        }
    }

    fn free(&self) -> usize {
        RECV_SLOTS - self.filled
    }

    /// The packets of the last [`Tun::recv`], in order; the caller may rewrite them in place.
    pub fn packets_mut(&mut self) -> impl Iterator<Item = &mut [u8]> {
        self.buffers
            .iter_mut()
            .zip(&self.sizes)
            .take(self.filled)
            .map(|(buffer, size)| &mut buffer[..*size])
    }
}

/// Packets waiting to be written to the device, each behind room for a virtio header.
#[derive(Default)]
pub struct SendBatch {
    buffers: Vec<Vec<u8>>,
    len: usize,
    #[cfg(target_os = "linux")]
    gro: tun_rs::GROTable,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl SendBatch {
    /// How many packets make a batch worth writing before more arrive.
    pub const FULL: usize = 2 * SEGMENT_SLOTS;

    /// Queues a copy of `packet`; an empty one is ignored.
    pub fn push(&mut self, packet: &[u8]) {
        if packet.is_empty() {
            return;
        }
        if self.len == self.buffers.len() {
            self.buffers.push(Vec::new());
        }
        let buffer = &mut self.buffers[self.len];
        buffer.clear();
        buffer.resize(HEADROOM, 0);
        buffer.extend_from_slice(packet);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
        // Coalescing appends a whole run to its first packet's buffer; keep the memory of a
        // busy flow, but not without bound.
        for buffer in &mut self.buffers {
            if buffer.capacity() > MAX_KEPT_CAPACITY {
                *buffer = Vec::new();
            }
        }
    }
}

/// A buffer that grew beyond this while coalescing is freed after its batch was written.
const MAX_KEPT_CAPACITY: usize = 128 * 1024;

#[cfg(target_os = "linux")]
mod platform {
    use std::io;

    use super::{RecvBatch, SendBatch};

    pub(super) const HEADER_LEN: usize = tun_rs::VIRTIO_NET_HDR_LEN;
    pub(super) const RAW_LEN: usize = HEADER_LEN + 65_535;

    pub(super) fn has_offload(device: &tun_rs::AsyncDevice) -> bool {
        device.tcp_gso()
    }

    pub(super) fn try_recv(device: &tun_rs::AsyncDevice, batch: &mut RecvBatch) -> io::Result<()> {
        let filled = batch.filled;
        // Without offloads this reads one plain packet into the first buffer.
        let count = device.try_recv_multiple(
            &mut batch.raw,
            &mut batch.buffers[filled..],
            &mut batch.sizes[filled..],
            0,
        )?;
        batch.filled += count;
        Ok(())
    }

    pub(super) async fn send(
        device: &tun_rs::AsyncDevice,
        batch: &mut SendBatch,
    ) -> io::Result<()> {
        if batch.len == 0 {
            return Ok(());
        }
        // Coalesces runs of one flow and writes each with its virtio header (or, without
        // offloads, each packet as it is).
        device
            .send_multiple(&mut batch.gro, &mut batch.buffers[..batch.len], HEADER_LEN)
            .await
            .map(drop)
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    use std::io;

    use super::{RecvBatch, SendBatch};

    pub(super) const HEADER_LEN: usize = 0;

    pub(super) fn has_offload(_device: &tun_rs::AsyncDevice) -> bool {
        false
    }

    pub(super) fn try_recv(device: &tun_rs::AsyncDevice, batch: &mut RecvBatch) -> io::Result<()> {
        let filled = batch.filled;
        batch.sizes[filled] = device.try_recv(&mut batch.buffers[filled])?;
        batch.filled += 1;
        Ok(())
    }

    pub(super) async fn send(
        device: &tun_rs::AsyncDevice,
        batch: &mut SendBatch,
    ) -> io::Result<()> {
        let mut result = Ok(());
        for buffer in &batch.buffers[..batch.len] {
            if let Err(e) = device.send(&buffer[HEADER_LEN..]).await {
                result = result.and(Err(e));
            }
        }
        result
    }
}
