//! Real parts for the notification and MQTT tests: a loopback HTTP receiver
//! that records what it gets (and can hang or fail), a Mosquitto broker
//! process, and an MQTT subscriber.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    /// Path and query.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body as text.
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A loopback HTTP server on port 0 that records every request. Paths under
/// `/hang/` never get an answer, under `/fail/` get 500, anything else 200.
pub struct Receiver {
    pub addr: SocketAddr,
    got: mpsc::UnboundedReceiver<Got>,
    /// Requests that arrived while another path was awaited, oldest first.
    held: Vec<Got>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_with(None).await
    }

    /// A receiver serving HTTPS with the PEM certificate and key (the relay's own TLS listener).
    pub async fn start_tls(cert: &Path, key: &Path) -> Receiver {
        Receiver::start_with(Some((cert, key))).await
    }

    async fn start_with(tls: Option<(&Path, &Path)>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, got) = mpsc::unbounded_channel();
        let app = Router::new().fallback(record).with_state(tx);
        match tls {
            Some((cert, key)) => {
                let listener = TlsIncoming::new(listener, cert, key);
                tokio::spawn(async move { axum::serve(listener, app).await });
            }
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await });
            }
        }
        Receiver {
            addr,
            got,
            held: Vec::new(),
        }
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The next request whose path starts with `prefix` (others are kept for later calls).
    pub async fn next(&mut self, prefix: &str) -> Got {
        if let Some(i) = self.held.iter().position(|g| g.path.starts_with(prefix)) {
            return self.held.remove(i);
        }
        loop {
            let got = tokio::time::timeout(WAIT, self.got.recv())
                .await
                .unwrap_or_else(|_| panic!("no request to {prefix} in time"))
                .expect("receiver running");
            if got.path.starts_with(prefix) {
                return got;
            }
            self.held.push(got);
        }
    }

    /// Every request held, and those that arrive within `quiet` of the previous one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Got> {
        let mut out = std::mem::take(&mut self.held);
        while let Ok(Some(got)) = tokio::time::timeout(quiet, self.got.recv()).await {
            out.push(got);
        }
        out
    }
}

/// HTTPS for the receiver: rustls over the TCP listener, handshakes in the accept loop.
struct TlsIncoming {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TlsIncoming {
    fn new(tcp: TcpListener, cert: &Path, key: &Path) -> TlsIncoming {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        TlsIncoming {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        }
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

async fn record(
    State(tx): State<mpsc::UnboundedSender<Got>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let _ = tx.send(Got {
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if path.starts_with("/hang/") {
        std::future::pending::<()>().await;
    }
    if path.starts_with("/fail/") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// A fresh self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`: (cert, key).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, private) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&private, key.signing_key.serialize_pem()).unwrap();
    (cert, private)
}

/// Waits until the relay's `/metrics` text satisfies `pred`; fails with the text after [`WAIT`].
pub async fn wait_metrics(relay: SocketAddr, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, text) = crate::common::http(relay, "GET", "/metrics", &[], b"").await;
        if pred(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never matched: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a metric without labels in `/metrics` text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// A Mosquitto broker process on a loopback port, killed when dropped.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    dir: PathBuf,
    /// What the broker wrote, for the failure message.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Mosquitto {
    /// Starts a broker on a free port. Mosquitto cannot listen on port 0 (`listener 0`
    /// means a Unix socket) nor report a port it picked, so a random high port is
    /// tried, and another one when that one is taken (the broker then exits).
    pub async fn start(dir: &Path) -> Mosquitto {
        Mosquitto::start_with(dir, "").await
    }

    /// [`Mosquitto::start`] with more lines for its listener (e.g. TLS files).
    pub async fn start_with(dir: &Path, listener: &str) -> Mosquitto {
        for attempt in 0u64..20 {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
                ^ u64::from(std::process::id()).wrapping_mul(7919)
                ^ attempt.wrapping_mul(104_729);
            // Below Linux's ephemeral range (32768 and up), so no client socket holds it.
            let port = 20_000 + (seed % 12_000) as u16;
            if let Some(broker) = Mosquitto::start_on(dir, port, listener).await {
                return broker;
            }
        }
        panic!("mosquitto did not start on any of 20 ports");
    }

    /// Starts a broker on `port`; `None` when the port is taken.
    pub async fn start_on(dir: &Path, port: u16, listener: &str) -> Option<Mosquitto> {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{listener}\n\
                 log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n{}",
                // As root, Mosquitto would become user `mosquitto`, who cannot read the test's files.
                if is_root() { "user root\n" } else { "" }
            ),
        )
        .unwrap();
        // Debian puts it in /usr/sbin, which a user's PATH may lack.
        let program = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let mut child = Command::new(program)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto is installed (scripts/test.d/05-mosquitto installs it)");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("mosquitto silent: {}", log.lock().unwrap()))
                .unwrap();
            let Some(line) = line else {
                // It exited: the port is taken, or something else is wrong.
                let text = log.lock().unwrap().clone();
                let _ = child.wait().await;
                if text.contains("Address already in use") {
                    return None;
                }
                panic!("mosquitto failed on port {port}: {text}");
            };
            log.lock().unwrap().push_str(&line);
            log.lock().unwrap().push('\n');
            if line.contains(" running") {
                break;
            }
        }
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().unwrap().push_str(&line);
                keep.lock().unwrap().push('\n');
            }
        });
        Some(Mosquitto {
            port,
            child,
            dir: dir.to_owned(),
            log,
        })
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("mqtt://127.0.0.1:{}/{prefix}", self.port)
    }

    /// Kills the broker (everything it held is gone: it keeps no persistence).
    pub async fn kill(mut self) -> (PathBuf, u16) {
        self.child.kill().await.unwrap();
        (self.dir.clone(), self.port)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// A real MQTT client subscribed to `filter`, collecting what it gets.
pub struct Subscriber {
    rx: mpsc::UnboundedReceiver<(String, String, bool)>,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub async fn start(port: u16, filters: &[&str]) -> Subscriber {
        let id = format!(
            "test-sub-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let options = MqttOptions::new(id, "127.0.0.1", port);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        for filter in filters {
            client.subscribe(*filter, QoS::AtLeastOnce).await.unwrap();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload = String::from_utf8_lossy(&p.payload).into_owned();
                        let topic = p.topic.clone();
                        if tx.send((topic, payload, p.retain)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Subscriber { rx, client, task }
    }

    /// The next message on `topic` for which `pred` holds: (payload, retained).
    pub async fn until(&mut self, topic: &str, pred: impl Fn(&str) -> bool) -> (String, bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (t, payload, retain) = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("nothing matching on {topic} in time"))
                .expect("subscriber running");
            if t == topic && pred(&payload) {
                return (payload, retain);
            }
        }
    }

    /// Everything that arrives until `quiet` passes without a message: topic to (payload, retained), the last wins.
    pub async fn collect(&mut self, quiet: Duration) -> HashMap<String, (String, bool)> {
        let mut out = HashMap::new();
        while let Ok(Some((t, p, r))) = tokio::time::timeout(quiet, self.rx.recv()).await {
            out.insert(t, (p, r));
        }
        out
    }

    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        self.task.abort();
    }
}
