//! [`Prefix`]: an IPv4 or IPv6 network, the one CIDR type every crate uses. The portal sends
//! CIDR resources as text (`10.20.0.0/16`); they are parsed here, once, with one grammar.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A destination prefix, host bits cleared so equal networks compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// `None` when `len` is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(v4) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::from((u32::from(v4) & mask).to_be_bytes())
            }
            IpAddr::V6(v6) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::from((u128::from(v6) & mask).to_be_bytes())
            }
            _ => return None,
        };
        Some(Self { addr, len })
    }

    /// The prefix of exactly `ip`: `/32` or `/128`.
    pub fn host(ip: IpAddr) -> Self {
        Self {
            addr: ip,
            len: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Prefix::new(ip, self.len).is_some_and(|p| p == *self)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CIDR prefix (address/length): {0:?}")]
pub struct BadPrefix(pub String);

/// `address/length`, surrounding spaces allowed; host bits are cleared.
impl FromStr for Prefix {
    type Err = BadPrefix;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPrefix(text.chars().take(64).collect());
        let (addr, len) = text.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Prefix::new(addr, len).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_with_host_bits_cleared() {
        let prefix: Prefix = " 10.20.3.4/16 ".parse().unwrap();
        assert_eq!(prefix.to_string(), "10.20.0.0/16");
        assert!(prefix.contains("10.20.255.1".parse().unwrap()));
        assert!(!prefix.contains("10.21.0.1".parse().unwrap()));
        let v6: Prefix = "fd00::1/64".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00::/64");
        assert_eq!(Prefix::host("10.0.0.1".parse().unwrap()).len(), 32);
    }

    #[test]
    fn anything_but_address_slash_length_is_refused() {
        for bad in [
            "10.0.0.1",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/",
            "/8",
            "",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
    }
}
