//! A producer's connection to the relay: registration handshake, numbered
//! frames kept until the relay has them, resend after a reconnect.
//!
//! Single-threaded and poll-driven: the caller pushes frames and calls
//! [`Producer::pump`] from its loop; nothing here blocks for longer than the
//! configured timeout.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;
use watchtrain_protocol::{Ack, Action, Frame, Register};

/// The relay's default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8555";
/// Frames kept for the relay at most; past it the oldest already sent go first.
pub const BUFFER_LIMIT: usize = 4096;

/// Where the relay is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://host:port`, `https://host:port` (or `ws://`, `wss://`); a path prefix is kept.
    pub url: String,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Connect, handshake and write timeout.
    pub timeout: Duration,
    /// PEM certificates to trust for `https://` (default: `SSL_CERT_FILE`, else the system bundle).
    pub ca_file: Option<PathBuf>,
}

/// The system's certificate bundle on Debian and its relatives.
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A connection to the relay: plain TCP or TLS over TCP.
pub enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://` (rustls).
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }

    /// Sets the socket's read timeout (reads then end in `WouldBlock` or `TimedOut`).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Endpoint {
    /// The WebSocket URL of `path` on the relay, and whether it is TLS.
    pub fn ws_url(&self, path: &str) -> Result<(String, bool), String> {
        let url = self.url.trim_end_matches('/');
        let (rest, tls) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, true)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (rest, true)
        } else if url.contains("://") {
            return Err(format!("{url}: unsupported URL scheme"));
        } else {
            (url, false)
        };
        let scheme = if tls { "wss" } else { "ws" };
        Ok((format!("{scheme}://{rest}{path}"), tls))
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let file = self
            .ca_file
            .clone()
            .or_else(|| std::env::var_os("SSL_CERT_FILE").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_FILE));
        let mut roots = rustls::RootCertStore::empty();
        let certs =
            CertificateDer::pem_file_iter(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", file.display()))?;
            let _ = roots.add(cert); // a bundle may hold certificates rustls does not take
        }
        if roots.is_empty() {
            return Err(format!("{}: no usable certificate", file.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Opens a WebSocket to `path` with the token and timeouts applied.
    pub fn connect(&self, path: &str) -> Result<WebSocket<Stream>, String> {
        let (url, tls) = self.ws_url(path)?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("{url}: {e}"))?;
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| "bad token".to_string())?;
            request.headers_mut().insert("authorization", value);
        }
        let uri = request.uri();
        let host = uri
            .host()
            .unwrap_or("127.0.0.1")
            .trim_matches(['[', ']'])
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("{host}:{port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}:{port}: no address"))?;
        let tcp =
            TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| format!("{addr}: {e}"))?;
        tcp.set_read_timeout(Some(self.timeout))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(self.timeout))
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let stream = if tls {
            let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
            let connection = rustls::ClientConnection::new(self.tls_config()?, name)
                .map_err(|e| format!("{url}: {e}"))?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(connection, tcp)))
        } else {
            Stream::Plain(tcp)
        };
        let (ws, _) = tungstenite::client(request, stream).map_err(|e| format!("{url}: {e}"))?;
        Ok(ws)
    }
}

/// One frame waiting for the relay.
#[derive(Debug)]
struct Entry {
    /// The producer sequence number, `0` for an unsequenced frame.
    seq: u32,
    /// What to send (the training id is filled in when sending).
    action: Action,
    /// Sent on the current connection.
    sent: bool,
}

/// Reads the next message, `None` when none is waiting.
pub fn try_read(ws: &mut WebSocket<Stream>) -> Result<Option<Message>, String> {
    match ws.read() {
        Ok(m) => Ok(Some(m)),
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A training's producer side.
pub struct Producer {
    /// The relay.
    endpoint: Endpoint,
    /// The latest registration, sent on every (re)connect.
    register: Register,
    /// Assigned by the relay, `0` until the first handshake.
    training_id: u32,
    /// The last sequence number given to a frame.
    seq: u32,
    /// The first handshake is done (later ones only trim, never renumber).
    handshaken: bool,
    /// Frames the relay may not have yet, oldest first.
    pending: VecDeque<Entry>,
    /// The connection, when up.
    ws: Option<WebSocket<Stream>>,
    /// No reconnect before this.
    next_attempt: Instant,
    /// The wait after the next failure.
    backoff: Duration,
    /// Failures since the last good connection (only the first is reported).
    failures: u32,
}

impl Producer {
    /// A producer that will register `register`; it connects on the first [`Producer::pump`].
    pub fn new(endpoint: Endpoint, register: Register) -> Self {
        Producer {
            endpoint,
            register,
            training_id: 0,
            seq: 0,
            handshaken: false,
            pending: VecDeque::new(),
            ws: None,
            next_attempt: Instant::now(),
            backoff: Duration::from_millis(200),
            failures: 0,
        }
    }

    /// The relay-assigned id, `0` before the first handshake.
    pub fn training_id(&self) -> u32 {
        self.training_id
    }

    /// True while a registered connection is up.
    pub fn connected(&self) -> bool {
        self.ws.is_some()
    }

    /// Frames not yet known to be at the relay.
    pub fn backlog(&self) -> usize {
        self.pending.len()
    }

    /// The current registration.
    pub fn registration(&self) -> &Register {
        &self.register
    }

    /// Changes the registration and sends it in order with the other frames.
    pub fn reregister(&mut self, register: Register) {
        self.register = register.clone();
        self.enqueue(0, Action::Register(register));
    }

    /// Queues a numbered frame (stats, log, finished): it is sent until the relay has it.
    pub fn push(&mut self, action: Action) {
        self.seq += 1;
        self.enqueue(self.seq, action);
    }

    /// Queues an unsequenced frame (progress, heartbeat): sent once, in order.
    pub fn push_unsequenced(&mut self, action: Action) {
        self.enqueue(0, action);
    }

    fn enqueue(&mut self, seq: u32, action: Action) {
        if self.pending.len() >= BUFFER_LIMIT {
            let victim = self.pending.iter().position(|e| e.sent).unwrap_or(0);
            self.pending.remove(victim);
        }
        self.pending.push_back(Entry {
            seq,
            action,
            sent: false,
        });
    }

    fn trim(&mut self, acked: u32) {
        while let Some(front) = self.pending.front() {
            if front.seq <= acked && (front.seq != 0 || front.sent) {
                self.pending.pop_front();
            } else {
                break;
            }
        }
    }

    /// Connects if due, sends what is waiting, reads acknowledgements.
    /// Returns an error text when the connection failed or broke (it is retried on a later pump).
    pub fn pump(&mut self) -> Result<(), String> {
        if self.ws.is_none() {
            if Instant::now() < self.next_attempt {
                return Err("waiting to reconnect".into());
            }
            match self.handshake() {
                Ok(ws) => {
                    self.ws = Some(ws);
                    self.failures = 0;
                    self.backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    self.failed();
                    return Err(e);
                }
            }
        }
        match self.send_and_read() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.ws = None;
                self.failed();
                Err(e)
            }
        }
    }

    fn failed(&mut self) {
        self.failures += 1;
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
    }

    /// Failures since the last good connection.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn handshake(&mut self) -> Result<WebSocket<Stream>, String> {
        let mut ws = self.endpoint.connect("/v1/produce")?;
        let hello = Frame {
            training_id: self.training_id,
            seq: 0,
            action: Action::Register(self.register.clone()),
        };
        let bytes = hello.to_bytes().map_err(|e| e.to_string())?;
        ws.send(Message::binary(bytes.to_vec()))
            .map_err(|e| e.to_string())?;
        let give_up = Instant::now() + self.endpoint.timeout;
        let (id, last) = loop {
            if Instant::now() >= give_up {
                return Err("no answer to the registration".into());
            }
            match try_read(&mut ws)? {
                Some(Message::Binary(data)) => {
                    if let Ok(Frame {
                        training_id,
                        action: Action::Ack(Ack { seq }),
                        ..
                    }) = Frame::decode(&data)
                    {
                        break (training_id, seq);
                    }
                }
                Some(Message::Close(_)) => return Err("the relay closed the connection".into()),
                _ => {}
            }
        };
        self.training_id = id;
        if !self.handshaken {
            // A new process for a run the relay knows: continue after its last seq.
            let first = self.pending.iter().find(|e| e.seq != 0).map(|e| e.seq);
            if last != 0 && first.is_some_and(|f| f <= last) {
                let mut next = last;
                for entry in self.pending.iter_mut().filter(|e| e.seq != 0) {
                    next += 1;
                    entry.seq = next;
                }
                self.seq = next;
            } else {
                self.seq = self.seq.max(last);
            }
            self.handshaken = true;
        }
        for entry in self.pending.iter_mut() {
            entry.sent = false;
        }
        self.trim(last);
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(1)))
            .map_err(|e| e.to_string())?;
        Ok(ws)
    }

    fn send_and_read(&mut self) -> Result<(), String> {
        let ws = self.ws.as_mut().ok_or("not connected")?;
        let id = self.training_id;
        let mut i = 0;
        while i < self.pending.len() {
            let entry = &mut self.pending[i];
            if !entry.sent {
                let frame = Frame {
                    training_id: id,
                    seq: entry.seq,
                    action: entry.action.clone(),
                };
                let bytes = frame.to_bytes().map_err(|e| e.to_string())?;
                ws.send(Message::binary(bytes.to_vec()))
                    .map_err(|e| e.to_string())?;
                entry.sent = true;
                if entry.seq == 0 {
                    self.pending.remove(i);
                    continue;
                }
            }
            i += 1;
        }
        let mut acked = None;
        while let Some(message) = try_read(ws)? {
            match message {
                Message::Binary(data) => {
                    if let Ok(Frame {
                        action: Action::Ack(Ack { seq }),
                        ..
                    }) = Frame::decode(&data)
                    {
                        acked = Some(seq);
                    }
                }
                Message::Close(_) => return Err("the relay closed the connection".into()),
                _ => {}
            }
        }
        if let Some(seq) = acked {
            self.trim(seq);
        }
        Ok(())
    }

    /// Pumps until everything is sent, then closes the connection cleanly (the
    /// relay's close answer means it read every frame). Returns true when delivered.
    pub fn flush(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let _ = self.pump();
            if self.ws.is_some() && self.pending.iter().all(|e| e.sent) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let Some(mut ws) = self.ws.take() else {
            return false;
        };
        if !self.pending.iter().all(|e| e.sent) {
            return false;
        }
        if ws.close(None).is_err() {
            return false;
        }
        let _ = ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(50)));
        while Instant::now() < deadline {
            match ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => {
                    self.pending.clear();
                    return true;
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // The relay dropped the connection after our close: it read everything before it.
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => {
                    self.pending.clear();
                    return true;
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // The same over TLS: the relay closed the socket without a TLS goodbye.
                    self.pending.clear();
                    return true;
                }
                Err(_) => return false,
            }
        }
        false
    }
}
