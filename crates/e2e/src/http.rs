//! A small HTTP/1.1 server for the resource host, running on threads of the test process with
//! its listening socket opened inside the resource's namespace.
//!
//! `GET /` answers `ember e2e resource <local address>` (so a test sees which of the host's
//! addresses it reached); `GET /<name>` answers the named file; anything else is a 404. Every
//! response closes the connection.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ember_testbed::Testbed;

use crate::{Result, io_error};

/// A file the server offers at `/{name}`.
#[derive(Debug, Clone)]
pub struct File {
    pub name: String,
    pub bytes: Arc<Vec<u8>>,
}

#[derive(Debug)]
pub struct HttpServer {
    ns: String,
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on `0.0.0.0:port` inside `ns`.
    pub fn start(testbed: &Testbed, ns: &str, port: u16, files: Vec<File>) -> Result<Self> {
        let listener = testbed.in_ns(ns, || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))?;
        let listener = listener.map_err(io_error(format!("listen on port {port} in {ns}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let files = Arc::new(files);
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("http-{port}"))
                .spawn(move || accept_loop(&listener, &stop, &files))
                .map_err(io_error("start the HTTP server thread"))?
        };
        Ok(Self {
            ns: ns.to_owned(),
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops accepting: wakes the accept loop with one last connection from inside the
    /// namespace, then joins it.
    pub fn stop(&mut self, testbed: &Testbed) {
        self.stop.store(true, Ordering::SeqCst);
        let port = self.port;
        let _ = testbed.in_ns(&self.ns, || {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_secs(1),
            )
        });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, files: &Arc<Vec<File>>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let files = files.clone();
        let _ = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &files) {
                    tracing::debug!("HTTP connection ended: {e}");
                }
            });
    }
}

fn serve(mut stream: TcpStream, files: &[File]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let _ = stream.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            return respond(&mut stream, "431 Request Header Fields Too Large", b"");
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("/"),
    );
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", b"");
    }
    if path == "/" {
        let local = stream.local_addr()?;
        let body = format!("ember e2e resource {local}\n");
        return respond(&mut stream, "200 OK", body.as_bytes());
    }
    match files
        .iter()
        .find(|f| path.strip_prefix('/') == Some(f.name.as_str()))
    {
        Some(file) => respond(&mut stream, "200 OK", &file.bytes),
        None => respond(&mut stream, "404 Not Found", b"not found\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    for chunk in body.chunks(256 * 1024) {
        stream.write_all(chunk)?;
    }
    stream.flush()
}

/// `len` bytes of a fixed pseudo-random sequence (xorshift64*), the same in every run.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
