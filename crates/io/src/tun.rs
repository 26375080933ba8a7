//! The TUN device, through `tun-rs` on every OS: a kernel TUN device on Linux, utun on macOS
//! (the kernel picks the name), Wintun on Windows (`wintun.dll` shipped with the app).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Tunnel MTU: leaves room for WireGuard and UDP/IPv6 headers under a 1420-byte path.
pub const DEFAULT_MTU: u16 = 1280;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Ignored on macOS, where utun devices are numbered by the kernel.
    pub name: String,
    pub mtu: u16,
    pub ipv4: Option<(Ipv4Addr, u8)>,
    pub ipv6: Option<(Ipv6Addr, u8)>,
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
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
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
        let device = builder.build_async().map_err(create_err)?;
        let name = device.name().map_err(create_err)?;
        let index = device.if_index().map_err(create_err)?;
        Ok(Self {
            device,
            name,
            index,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index, for routes through the device.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Reads one IP packet from the kernel.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.recv(buf).await
    }

    /// Hands one IP packet to the kernel.
    pub async fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.device.send(packet).await.map(drop)
    }
}
