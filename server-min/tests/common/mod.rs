//! Helpers shared by the integration tests: a real relay on a loopback port,
//! real WebSocket clients, a tiny HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use watchtrain_protocol::*;
use watchtrain_relay::{run, Config, RelayError};

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// A relay running in this process on 127.0.0.1:<random port>.
pub struct Relay {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RelayError>>,
}

impl Relay {
    pub async fn start(config: Config) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, config, async {
            let _ = stopped.await;
        }));
        Relay {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("relay stops in time")
            .unwrap()
            .unwrap();
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    ws
}

/// Connects and returns the HTTP status of a refused handshake.
pub async fn connect_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

pub async fn send_frame(ws: &mut Ws, frame: &Frame) {
    let bytes = frame.to_bytes().unwrap().to_vec();
    ws.send(Message::Binary(bytes.into())).await.unwrap();
}

/// The next data message (pings answered and skipped).
pub async fn next_message(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        match msg {
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            msg => return msg,
        }
    }
}

pub async fn recv_frame(ws: &mut Ws) -> Frame {
    match next_message(ws).await {
        Message::Binary(bytes) => Frame::decode(&bytes).unwrap(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

pub async fn recv_text(ws: &mut Ws) -> String {
    match next_message(ws).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Receives frames until `pred` holds for the state they build (starting from `state`).
pub async fn recv_until(
    ws: &mut Ws,
    state: &mut TrainingState,
    pred: impl Fn(&TrainingState) -> bool,
) {
    while !pred(state) {
        let frame = recv_frame(ws).await;
        state.apply(&frame).unwrap();
    }
}

pub fn metrics(names: &[&str]) -> MetricNames {
    names.iter().map(|m| truncated(m)).collect()
}

pub fn register_frame(id: u32, name: &str, run_key: &str, names: &[&str], epochs: u32) -> Frame {
    Frame {
        training_id: id,
        seq: 0,
        action: Action::Register(Register {
            name: truncated(name),
            run_key: truncated(run_key),
            metrics: metrics(names),
            epochs,
            batches: 10,
            goals: Default::default(),
        }),
    }
}

/// Registers and returns (training id, last_seq) from the relay's ack.
pub async fn register(
    ws: &mut Ws,
    id: u32,
    name: &str,
    run_key: &str,
    names: &[&str],
    epochs: u32,
) -> (u32, u32) {
    send_frame(ws, &register_frame(id, name, run_key, names, epochs)).await;
    loop {
        let frame = recv_frame(ws).await;
        if let Action::Ack(ack) = frame.action {
            return (frame.training_id, ack.seq);
        }
    }
}

/// Waits for the ack covering `seq`.
pub async fn wait_ack(ws: &mut Ws, seq: u32) {
    loop {
        let frame = recv_frame(ws).await;
        if let Action::Ack(ack) = frame.action {
            if ack.seq >= seq {
                return;
            }
        }
    }
}

pub fn progress(id: u32, seq: u32, epoch: u32, batch: u32) -> Frame {
    Frame {
        training_id: id,
        seq,
        action: Action::Progress(Progress {
            phase: Phase::Train,
            epoch,
            epochs: 0,
            batch,
            batches: 10,
        }),
    }
}

pub fn stats(id: u32, seq: u32, epoch: u32, values: &[f32]) -> Frame {
    Frame {
        training_id: id,
        seq,
        action: Action::Stats(Stats {
            epoch,
            duration_ms: 1000,
            values: Values::from_slice(values).unwrap(),
        }),
    }
}

pub fn finished(id: u32, seq: u32) -> Frame {
    Frame {
        training_id: id,
        seq,
        action: Action::Finished(Finished {
            outcome: Outcome::Completed,
            reason: truncated("done"),
        }),
    }
}

/// The state of a snapshot frame.
pub fn snapshot_state(frame: &Frame) -> TrainingState {
    match &frame.action {
        Action::Snapshot(s) => TrainingState::try_from(s.clone()).expect("a consistent snapshot"),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// A plain HTTP/1.1 request; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    http_within(addr, method, path, headers, body, WAIT).await
}

/// `http`, waiting up to `wait` for the answer.
pub async fn http_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    wait: Duration,
) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(wait, tcp.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", path, &[], b"").await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until the relay lists training `id`.
pub async fn wait_training(addr: SocketAddr, id: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while http(addr, "GET", &format!("/v1/trainings/{id}"), &[], b"")
        .await
        .0
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "training {id} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The real `watchtrain-relay` binary, started on a loopback port with `args`.
pub struct Binary {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// Everything the relay wrote to stderr so far (its logs), for assertions and failure messages.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Binary {
    pub async fn start(args: &[&str]) -> Binary {
        Binary::start_with(args, &[], None).await
    }

    /// Starts it with extra environment variables and, if given, a descriptor limit.
    pub async fn start_with(args: &[&str], envs: &[(&str, &str)], nofile: Option<u32>) -> Binary {
        use tokio::io::AsyncBufReadExt;
        let exe = env!("CARGO_BIN_EXE_watchtrain-relay");
        let mut command = match nofile {
            Some(n) => {
                let mut c = tokio::process::Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(exe);
                c
            }
            None => tokio::process::Command::new(exe),
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("relay prints its address")
            .unwrap();
        let Some(first) = first else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            panic!("the relay exited at start: {}", stderr.lock().unwrap());
        };
        let addr = first
            .strip_prefix("watchtrain-relay listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first}"))
            .parse()
            .unwrap();
        // Keep reading stdout so the relay never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Binary {
            child,
            addr,
            stderr,
        }
    }

    /// Its logs so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (at most `WAIT`) for the exit status.
    pub async fn sigterm(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "the relay did not exit after SIGTERM; logs:\n{}",
                self.logs()
            ),
        }
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Resident memory of the relay process in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// SIGKILL, no goodbye.
    pub async fn kill9(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Runs the relay binary with `args`, expecting it to refuse to start: its exit
/// status (`None` when it was still running after a few seconds) and stderr.
pub fn run_binary(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Option<std::process::ExitStatus>, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_watchtrain-relay"))
        .args(["--listen", "127.0.0.1:0", "--db", ":memory:"])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    (status, stderr)
}

/// Sends `request` as is from source address `from` and reads the answer until
/// the relay closes; returns the status (0 when closed without one) and body.
pub async fn raw(addr: SocketAddr, from: std::net::Ipv4Addr, request: &[u8]) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("the relay answers and closes in time");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// A WebSocket handshake with extra headers: the socket, or the HTTP status of a refusal.
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// A POST body: each frame preceded by its length (2 bytes, big-endian).
pub fn post_body(frames: &[Frame]) -> Vec<u8> {
    let mut body = Vec::new();
    for frame in frames {
        let bytes = frame.to_bytes().unwrap();
        body.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        body.extend_from_slice(&bytes);
    }
    body
}

/// POSTs frames as `application/octet-stream`.
pub async fn post_frames(addr: SocketAddr, id: u32, frames: &[Frame]) -> (u16, String) {
    post_octets(addr, id, &post_body(frames)).await
}

/// POSTs a body of frames (or anything) as `application/octet-stream`.
pub async fn post_octets(addr: SocketAddr, id: u32, body: &[u8]) -> (u16, String) {
    let path = format!("/v1/trainings/{id}/frames");
    let octets = [("Content-Type", "application/octet-stream")];
    http(addr, "POST", &path, &octets, body).await
}

/// `GET /v1/trainings/{id}/history.csv` with `headers`.
pub async fn history_csv(addr: SocketAddr, id: u64, headers: &[(&str, &str)]) -> (u16, String) {
    let path = format!("/v1/trainings/{id}/history.csv");
    http(addr, "GET", &path, headers, b"").await
}

/// Holds an exclusive lock on the database for `hold`, from another connection
/// (another process would do the same).
pub fn lock_database(path: std::path::PathBuf, hold: Duration) -> std::thread::JoinHandle<()> {
    let (release, lock) = hold_database(path);
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        drop(release);
        lock.join().unwrap();
    })
}

/// Holds an exclusive lock on the database until the returned sender is used or
/// dropped; returns once the lock is held.
pub fn hold_database(
    path: std::path::PathBuf,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (locked, is_locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked.send(()).unwrap();
        let _ = released.recv();
        conn.execute_batch("COMMIT").unwrap();
    });
    is_locked.recv().unwrap();
    (release, thread)
}
