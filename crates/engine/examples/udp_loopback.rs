//! Two engines over real UDP sockets on 127.0.0.1: ICE nominates a pair, WireGuard handshakes
//! over it, and one packet goes through the tunnel each way. Proof that the sans-IO core works
//! with real sockets and the real clock.
//!
//! `cargo run -p ember-engine --example udp_loopback`

#![allow(clippy::print_stdout)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ember_engine::{Engine, EngineConfig, Event, Grant, IceCredentials, PeerId, Role};

struct Side {
    engine: Engine,
    socket: UdpSocket,
    local: SocketAddr,
    peer: PeerId,
    received: Vec<Vec<u8>>,
}

fn main() -> std::io::Result<()> {
    let start = Instant::now();
    let mut sides = [
        side(Role::Client, 1, start)?,
        side(Role::Gateway, 2, start)?,
    ];
    let creds = [
        IceCredentials {
            ufrag: "clnt".into(),
            pwd: "client-password-0123456789".into(),
        },
        IceCredentials {
            ufrag: "gtwy".into(),
            pwd: "gateway-password-0123456789".into(),
        },
    ];
    let keys = [sides[0].engine.public_key(), sides[1].engine.public_key()];
    for i in 0..2 {
        let grant = Grant {
            peer: sides[i].peer,
            peer_public_key: keys[1 - i],
            preshared_key: [9; 32],
            local_ice: creds[i].clone(),
            remote_ice: creds[1 - i].clone(),
        };
        sides[i]
            .engine
            .handle_grant(grant, Instant::now())
            .map_err(std::io::Error::other)?;
    }
    let ping = ip_packet(b"ping through WireGuard over ICE");
    let pong = ip_packet(b"pong");
    sides[0]
        .engine
        .handle_tun_packet(PeerId(2), &ping, Instant::now());

    let deadline = start + Duration::from_secs(10);
    let mut replied = false;
    while Instant::now() < deadline {
        for i in 0..2 {
            let (this, other) = if i == 0 {
                let (a, b) = sides.split_at_mut(1);
                (&mut a[0], &mut b[0])
            } else {
                let (a, b) = sides.split_at_mut(1);
                (&mut b[0], &mut a[0])
            };
            drive(this, other)?;
        }
        if !replied && sides[1].received.iter().any(|p| p == &ping) {
            println!(
                "gateway got  {:>4} bytes after {:?}",
                ping.len(),
                start.elapsed()
            );
            sides[1]
                .engine
                .handle_tun_packet(PeerId(1), &pong, Instant::now());
            replied = true;
        }
        if sides[0].received.iter().any(|p| p == &pong) {
            println!(
                "client got   {:>4} bytes after {:?}",
                pong.len(),
                start.elapsed()
            );
            let stats = sides[0].engine.stats(PeerId(2), Instant::now());
            println!("client's view of the connection: {stats:#?}");
            return Ok(());
        }
    }
    Err(std::io::Error::other(
        "no packet through the tunnel within 10 s",
    ))
}

fn side(role: Role, id: u64, now: Instant) -> std::io::Result<Side> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(2)))?;
    let local = socket.local_addr()?;
    let mut key = [0u8; 32];
    key[0] = id as u8;
    key[31] = 0x40;
    let mut engine = Engine::new(EngineConfig::new(role, key, id), now);
    engine.handle_local_addresses(&[local], now);
    Ok(Side {
        engine,
        socket,
        local,
        peer: PeerId(3 - id),
        received: Vec::new(),
    })
}

/// One turn of the canonical loop for one side: drain outputs, read one datagram, timers.
fn drive(this: &mut Side, other: &mut Side) -> std::io::Result<()> {
    while let Some(t) = this.engine.poll_transmit() {
        this.socket.send_to(&t.payload, t.dst)?;
        this.engine.recycle(t.payload);
    }
    while let Some((_, packet)) = this.engine.poll_packet() {
        this.received.push(packet);
    }
    while let Some(event) = this.engine.poll_event() {
        if let Event::LocalCandidate { candidate, .. } = &event {
            // The stub signalling channel: hand the candidate straight to the other side,
            // which knows us by the peer id it was granted.
            let us = other.peer;
            other
                .engine
                .handle_remote_candidate(us, candidate, Instant::now())
                .map_err(std::io::Error::other)?;
        }
        println!("{:?}: {event:?}", this.local);
    }
    let mut buf = [0u8; 2048];
    match this.socket.recv_from(&mut buf) {
        Ok((n, from)) => {
            this.engine
                .handle_network_packet(this.local, from, &buf[..n], Instant::now())
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        Err(e) => return Err(e),
    }
    let now = Instant::now();
    if this.engine.poll_timeout().is_some_and(|(t, _)| t <= now) {
        this.engine.handle_timeout(now);
    }
    Ok(())
}

/// A minimal IPv4 packet carrying `payload`.
fn ip_packet(payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 253;
    p[12..16].copy_from_slice(&[100, 64, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 5]);
    p.extend_from_slice(payload);
    p
}
