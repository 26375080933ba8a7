//! The real coturn relay with shared-secret REST credentials, and a STUN binding probe.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac as _};

use crate::{Error, Node, Result, Testbed, netns_command};

pub const TURN_PORT: u16 = 3478;
const REALM: &str = "ember.test";

/// A running `turnserver`; it stops with the testbed.
#[derive(Debug, Clone)]
pub struct Coturn {
    pub addr: SocketAddr,
    /// The `turnserver` process (stop or restart it with [`Coturn::restart`]).
    pub pid: u32,
    node: Node,
    secret: String,
    /// coturn's own log, for when a test needs to know why the relay refused something.
    pub log: std::path::PathBuf,
}

/// Time-limited TURN credentials as coturn's `use-auth-secret` expects them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
}

impl Coturn {
    /// Starts coturn on `node` and waits until it answers a STUN binding request.
    pub fn start(testbed: &mut Testbed, node: &Node, secret: &str) -> Result<Self> {
        let addr = node.addr.to_string();
        let log = std::env::temp_dir().join(format!("{}-coturn.log", node.ns));
        let log_file = std::fs::File::create(&log).map_err(|source| Error::Spawn {
            command: format!("create {}", log.display()),
            source,
        })?;
        let child = netns_command(&node.ns, "turnserver")
            .args(["-n"])
            .args([
                &format!("--listening-ip={addr}"),
                &format!("--relay-ip={addr}"),
                &format!("--listening-port={TURN_PORT}"),
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                &format!("--realm={REALM}"),
                "--fingerprint",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-multicast-peers",
                "--min-port=49152",
                "--max-port=49999",
                "--log-file=stdout",
                "--simple-log",
                "--verbose",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                command: "turnserver".into(),
                source,
            })?;
        let pid = child.id();
        testbed.track(child);
        let coturn = Self {
            addr: SocketAddr::V4(SocketAddrV4::new(node.addr, TURN_PORT)),
            pid,
            node: node.clone(),
            secret: secret.to_owned(),
            log,
        };
        let server = coturn.addr;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answered = testbed.in_ns(&node.ns, move || {
                let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
                stun_binding(&socket, server, Duration::from_millis(200))
            })?;
            if answered.is_some() {
                return Ok(coturn);
            }
            if Instant::now() > deadline {
                return Err(Error::Other("coturn did not answer within 10 s".into()));
            }
        }
    }

    /// Kills the relay (every allocation is lost, as in a crash) and starts it again on the
    /// same address with the same secret.
    pub fn restart(&mut self, testbed: &mut Testbed) -> Result<()> {
        testbed.kill(
            self.pid,
            nix::sys::signal::Signal::SIGKILL,
            Duration::from_secs(5),
        )?;
        *self = Self::start(testbed, &self.node.clone(), &self.secret.clone())?;
        Ok(())
    }

    /// REST credentials: username `<expiry unix time>:<id>`, password base64(HMAC-SHA1(secret, username)).
    pub fn credentials(&self, id: &str, valid_for: Duration, now: SystemTime) -> TurnCredentials {
        let expiry = now
            .checked_add(valid_for)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let username = format!("{expiry}:{id}");
        let mut mac = <Hmac<sha1::Sha1>>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(username.as_bytes());
        let password =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        TurnCredentials { username, password }
    }
}

/// Sends a STUN binding request and returns the XOR-MAPPED-ADDRESS the server saw, i.e. the
/// address a NAT mapped `socket` to for that server.
pub fn stun_binding(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> Option<SocketAddrV4> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    let mut request = [0u8; 20];
    request[1] = 0x01; // binding request
    request[4..8].copy_from_slice(&MAGIC);
    let transaction: [u8; 12] = rand_transaction();
    request[8..20].copy_from_slice(&transaction);
    socket.set_read_timeout(Some(timeout)).ok()?;
    socket.send_to(&request, server).ok()?;
    let mut buf = [0u8; 576];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    let response = buf.get(..len)?;
    if response.get(..2)? != [0x01, 0x01] || response.get(8..20)? != transaction {
        return None;
    }
    let mut attributes = response.get(20..)?;
    while attributes.len() >= 4 {
        let kind = u16::from_be_bytes([attributes[0], attributes[1]]);
        let length = usize::from(u16::from_be_bytes([attributes[2], attributes[3]]));
        let value = attributes.get(4..4 + length)?;
        if kind == 0x0020 && length == 8 && value[1] == 0x01 {
            let port = u16::from_be_bytes([value[2] ^ MAGIC[0], value[3] ^ MAGIC[1]]);
            let ip = Ipv4Addr::new(
                value[4] ^ MAGIC[0],
                value[5] ^ MAGIC[1],
                value[6] ^ MAGIC[2],
                value[7] ^ MAGIC[3],
            );
            return Some(SocketAddrV4::new(ip, port));
        }
        attributes = attributes.get(4 + length.next_multiple_of(4)..)?;
    }
    None
}

/// Unique enough for a test's handful of requests; STUN only needs it to match the answer.
fn rand_transaction() -> [u8; 12] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = [0u8; 12];
    id.copy_from_slice(&nanos.to_le_bytes()[..12]);
    id
}
