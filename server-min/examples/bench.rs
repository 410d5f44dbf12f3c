//! Benchmark: 1 producer -> 1, 100 and 1,000 consumers on loopback, through
//! the real relay binary and through Mosquitto (MQTT over TCP, QoS 0), with
//! the same payload: a real progress frame. Prints delivered frames/s,
//! latency from send to receipt at 1,000 frames/s, and server RSS.
//!
//! Run it with `server-min/bench.sh` (installs Mosquitto, builds in release,
//! raises the file limit), or by hand:
//!
//! ```text
//! cargo build --release -p watchtrain-relay --bin watchtrain-relay --example bench
//! ulimit -n 65536; target/release/examples/bench [consumer counts...]
//! ```
//!
//! Only loopback addresses are used.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use watchtrain_protocol::*;

/// Frames sent at 1,000 frames/s for the latency figures.
const LATENCY_FRAMES: u32 = 3_000;
/// Frames per second of the latency phase.
const LATENCY_RATE: u32 = 1_000;

/// When any consumer last received anything (µs, see `now_us`).
static LAST_RX: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Waits until no consumer received anything for `quiet`, at most `limit`.
async fn wait_quiet(quiet: Duration, limit: Duration) {
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let last = LAST_RX.load(std::sync::atomic::Ordering::Relaxed);
        let silent = Duration::from_micros(u64::from(now_us().wrapping_sub(last)));
        if silent >= quiet || start.elapsed() >= limit {
            return;
        }
    }
}

fn now_us() -> u32 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u32
}

/// A progress frame carrying its send time (µs) in `batch`; `epoch` is the phase.
fn frame(training_id: u32, seq: u32, phase: u32) -> Vec<u8> {
    Frame {
        training_id,
        seq,
        action: Action::Progress(Progress {
            phase: Phase::Train,
            epoch: phase,
            epochs: 10,
            batch: now_us(),
            batches: 1_000_000,
        }),
    }
    .to_bytes()
    .unwrap()
    .to_vec()
}

/// What one consumer saw.
#[derive(Default)]
struct Seen {
    /// Latencies (µs) of the latency phase.
    latencies: Vec<u32>,
    /// Frames of the throughput phase.
    burst: u64,
    /// When the last throughput frame (or a snapshot replacing some) came.
    last_burst: Option<Instant>,
    /// Snapshots received in the throughput phase (the relay resyncing a consumer behind).
    snapshots: u64,
}

impl Seen {
    fn on_frame(&mut self, bytes: &[u8]) {
        LAST_RX.store(now_us(), std::sync::atomic::Ordering::Relaxed);
        let p = match Frame::decode(bytes) {
            Ok(Frame {
                action: Action::Progress(p),
                ..
            }) => p,
            Ok(Frame {
                action: Action::Snapshot(s),
                ..
            }) if s.epoch == 1 => {
                self.snapshots += 1;
                self.last_burst = Some(Instant::now());
                return;
            }
            _ => return,
        };
        match p.epoch {
            0 => self.latencies.push(now_us().wrapping_sub(p.batch)),
            _ => {
                self.burst += 1;
                self.last_burst = Some(Instant::now());
            }
        }
    }
}

/// Figures of one run.
struct Figures {
    delivered_fps: f64,
    p50_us: u32,
    p99_us: u32,
    latency_delivered: f64,
    peak_rss_kib: u64,
    snapshots: u64,
    server_cpu: f64,
    clients_cpu: f64,
}

/// CPU seconds (user + system) a process used so far (Linux, 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The transport under test.
trait Transport {
    /// Sends one payload from the producer.
    async fn publish(&mut self, payload: Vec<u8>);
}

struct MqttProducer(TcpStream);

impl Transport for MqttProducer {
    async fn publish(&mut self, payload: Vec<u8>) {
        self.0
            .write_all(&mqtt::publish("watchtrain/1", &payload))
            .await
            .unwrap();
    }
}

/// Sends the two phases and gathers what the consumers saw.
async fn drive<T: Transport>(
    producer: &mut T,
    training_id: u32,
    consumers: Vec<tokio::task::JoinHandle<Seen>>,
    stop: watch::Sender<bool>,
    burst_frames: u32,
    server_pid: u32,
) -> Figures {
    let n = consumers.len() as u64;
    let cpu_start = cpu_seconds(server_pid);
    let clients_start = cpu_seconds(std::process::id());
    // Latency: a steady 1,000 frames/s.
    let start = tokio::time::Instant::now();
    let mut seq = 1;
    for i in 0..LATENCY_FRAMES {
        tokio::time::sleep_until(
            start + Duration::from_micros(u64::from(i) * 1_000_000 / u64::from(LATENCY_RATE)),
        )
        .await;
        producer.publish(frame(training_id, seq, 0)).await;
        seq += 1;
    }
    // Let the latency phase drain completely, so the next phase starts clean.
    wait_quiet(Duration::from_millis(500), Duration::from_secs(60)).await;
    // Throughput: as fast as the server takes them.
    let t0 = Instant::now();
    for _ in 0..burst_frames {
        producer.publish(frame(training_id, seq, 1)).await;
        seq += 1;
    }
    // Let deliveries finish: until nothing came for a second.
    wait_quiet(Duration::from_secs(1), Duration::from_secs(120)).await;
    let peak_rss_kib = rss_kib(server_pid, "VmHWM:");
    let server_cpu = cpu_seconds(server_pid) - cpu_start;
    let clients_cpu = cpu_seconds(std::process::id()) - clients_start;
    let _ = stop.send(true);
    let mut latencies = Vec::new();
    let (mut burst, mut last, mut snapshots) = (0u64, t0, 0);
    for c in consumers {
        let seen = c.await.unwrap();
        latencies.extend(seen.latencies);
        burst += seen.burst;
        snapshots += seen.snapshots;
        if let Some(l) = seen.last_burst {
            last = last.max(l);
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Figures {
        delivered_fps: burst as f64 / (last - t0).as_secs_f64().max(1e-6),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        latency_delivered: latencies.len() as f64 / (n * u64::from(LATENCY_FRAMES)) as f64,
        peak_rss_kib,
        snapshots,
        server_cpu,
        clients_cpu,
    }
}

/// Starts a server and waits for its line holding `ready`; on failure, what it printed.
async fn spawn_server(mut cmd: Command, ready: &str) -> Result<(Child, String), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("server starts");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    for stream in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line).await;
            }
        });
    }
    // Only the readers hold a sender now: a server that exits ends the wait at once.
    drop(tx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut printed = String::new();
    let ready_line = loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) if line.contains(ready) => break line,
            Ok(Some(line)) => printed += &format!("{line}\n"),
            _ => {
                return Err(format!(
                    "server did not print {ready:?}; it printed:\n{printed}"
                ))
            }
        }
    };
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    Ok((child, ready_line))
}

/// Mosquitto cannot listen on port 0 and say which port it got (`listener 0` is a
/// Unix socket), so it is handed a pseudo-random port below Linux's ephemeral range
/// (32768 and up, where no client socket holds it) and retried on another when taken.
fn candidate_port(attempt: u64) -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        ^ u64::from(std::process::id()).wrapping_mul(7919)
        ^ attempt.wrapping_mul(104_729);
    20_000 + (seed % 12_000) as u16
}

async fn bench_relay(relay: &str, n: usize, burst_frames: u32) -> Figures {
    let mut cmd = Command::new(relay);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--db",
        ":memory:",
        "--max-consumers",
        "100000",
        "--max-fps",
        "100000000",
        // 1,000 consumers from one address: past the per-address and global defaults.
        "--max-connections",
        "100000",
        "--max-connections-per-ip",
        "100000",
    ]);
    cmd.env("RUST_LOG", "warn");
    // Port 0: the relay's first line says the address it bound.
    let (server, line) = spawn_server(cmd, "watchtrain-relay listening on ")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr: SocketAddr = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let (mut producer, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/v1/produce"), None, true)
            .await
            .unwrap();
    let register = Frame {
        training_id: 0,
        seq: 0,
        action: Action::Register(Register {
            name: truncated("bench"),
            run_key: truncated("bench"),
            metrics: MetricNames::new(),
            epochs: 10,
            batches: 0,
            goals: Default::default(),
        }),
    };
    producer
        .send(Message::Binary(
            register.to_bytes().unwrap().to_vec().into(),
        ))
        .await
        .unwrap();
    let id = loop {
        if let Some(Ok(Message::Binary(b))) = producer.next().await {
            break Frame::decode(&b).unwrap().training_id;
        }
    };
    let (producer_sink, mut producer_stream) = producer.split();
    tokio::spawn(async move { while let Some(Ok(_)) = producer_stream.next().await {} });
    let (stop, stopped) = watch::channel(false);
    let mut consumers = Vec::new();
    for _ in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{addr}/v1/trainings/{id}/watch"),
            None,
            true,
        )
        .await
        .unwrap();
        let _snapshot = ws.next().await;
        let mut stopped = stopped.clone();
        consumers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            loop {
                tokio::select! {
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Binary(b))) => seen.on_frame(&b),
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = stopped.changed() => break,
                }
            }
            seen
        }));
    }
    let mut producer = WsSink(producer_sink);
    let pid = server.id().unwrap();
    let figures = drive(&mut producer, id, consumers, stop, burst_frames, pid).await;
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        let _ = tcp.read_to_string(&mut out).await;
        eprintln!("{out}");
    }
    drop(server);
    figures
}

struct WsSink(
    futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
        Message,
    >,
);

impl Transport for WsSink {
    async fn publish(&mut self, payload: Vec<u8>) {
        self.0.send(Message::Binary(payload.into())).await.unwrap();
    }
}

async fn start_mosquitto(mosquitto: &str, port: u16) -> Result<(Child, SocketAddr), String> {
    let dir = std::env::temp_dir().join(format!("watchtrain-bench-mosquitto-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\nlog_type warning\nlog_type notice\n"),
    )
    .unwrap();
    let mut cmd = Command::new(mosquitto);
    cmd.args(["-c", conf.to_str().unwrap(), "-v"]);
    let started = spawn_server(cmd, "running").await;
    // Mosquitto has read its configuration once it runs (or has given up).
    let _ = std::fs::remove_dir_all(dir);
    Ok((started?.0, ([127, 0, 0, 1], port).into()))
}

async fn bench_mosquitto(mosquitto: &str, n: usize, burst_frames: u32) -> Figures {
    let mut started = Err(String::new());
    for attempt in 0..20 {
        started = start_mosquitto(mosquitto, candidate_port(attempt)).await;
        if started.is_ok() {
            break;
        }
    }
    let (server, addr) = started.unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = watch::channel(false);
    let mut consumers = Vec::new();
    for i in 0..n {
        let mut tcp = mqtt::connect(addr, &format!("c{i}")).await;
        mqtt::subscribe(&mut tcp, "watchtrain/1").await;
        let mut stopped = stopped.clone();
        consumers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut reader = BufReader::new(tcp);
            loop {
                tokio::select! {
                    packet = mqtt::read_packet(&mut reader) => match packet {
                        Some((0x30, body)) => {
                            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                            seen.on_frame(&body[2 + topic_len..]);
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = stopped.changed() => break,
                }
            }
            seen
        }));
    }
    let mut producer = MqttProducer(mqtt::connect(addr, "producer").await);
    let pid = server.id().unwrap();
    let figures = drive(&mut producer, 1, consumers, stop, burst_frames, pid).await;
    drop(server);
    figures
}

/// Just enough MQTT 3.1.1 for QoS 0 publish and subscribe.
mod mqtt {
    use super::*;

    fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let mut byte = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if n == 0 {
                break;
            }
        }
    }

    fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        remaining_length(body.len(), &mut out);
        out.extend_from_slice(body);
        out
    }

    fn string(s: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    pub async fn connect(addr: SocketAddr, client_id: &str) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut body = Vec::new();
        string("MQTT", &mut body);
        body.extend_from_slice(&[4, 0x02, 0, 60]);
        string(client_id, &mut body);
        tcp.write_all(&packet(0x10, &body)).await.unwrap();
        let mut connack = [0u8; 4];
        tcp.read_exact(&mut connack).await.unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK");
        tcp
    }

    pub async fn subscribe(tcp: &mut TcpStream, topic: &str) {
        let mut body = vec![0, 1];
        string(topic, &mut body);
        body.push(0);
        tcp.write_all(&packet(0x82, &body)).await.unwrap();
        let mut suback = [0u8; 5];
        tcp.read_exact(&mut suback).await.unwrap();
        assert_eq!(suback[0], 0x90, "SUBACK");
    }

    pub fn publish(topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(2 + topic.len() + payload.len());
        string(topic, &mut body);
        body.extend_from_slice(payload);
        packet(0x30, &body)
    }

    /// One packet: (type nibble << 4, body).
    pub async fn read_packet(r: &mut BufReader<TcpStream>) -> Option<(u8, Vec<u8>)> {
        let kind = r.read_u8().await.ok()?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = r.read_u8().await.ok()?;
            len |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await.ok()?;
        Some((kind & 0xf0, body))
    }
}

fn find_mosquitto() -> Option<String> {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(|p| p.to_string())
}

#[tokio::main]
async fn main() {
    let relay = std::env::var("WATCHTRAIN_RELAY_BIN").unwrap_or_else(|_| {
        format!(
            "{}/../target/release/watchtrain-relay",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1, 100, 1000]
    } else {
        counts
    };
    let mosquitto = find_mosquitto();
    let size = frame(1, 1, 0).len();
    println!("payload: a progress frame, {size} bytes; latency at {LATENCY_RATE} frames/s for {LATENCY_FRAMES} frames; loopback only");
    println!(
        "{:>9} | {:<9} | {:>14} | {:>9} | {:>9} | {:>10} | {:>13} | {:>9} | {:>12} | {:>13}",
        "consumers",
        "server",
        "delivered f/s",
        "p50 ms",
        "p99 ms",
        "delivered",
        "peak RSS MiB",
        "resyncs",
        "server CPU s",
        "clients CPU s"
    );
    let mut rows = Vec::new();
    for &n in &counts {
        let burst = (2_000_000 / n as u32).clamp(2_000, 50_000);
        let ours = bench_relay(&relay, n, burst).await;
        print_row(n, "relay", &ours);
        let theirs = match mosquitto
            .as_ref()
            .filter(|_| std::env::var_os("BENCH_RELAY_ONLY").is_none())
        {
            Some(m) => {
                let f = bench_mosquitto(m, n, burst).await;
                print_row(n, "mosquitto", &f);
                Some(f)
            }
            None => None,
        };
        rows.push((n, ours, theirs));
    }
    println!();
    println!(
        "ratios relay/mosquitto (throughput: higher is better; latency and RSS: lower is better)"
    );
    for (n, ours, theirs) in &rows {
        match theirs {
            Some(t) => println!(
                "{n:>5} consumers: delivered f/s x{}, p99 x{:.2}, peak RSS x{:.2}",
                if t.delivered_fps > 0.0 {
                    format!("{:.2}", ours.delivered_fps / t.delivered_fps)
                } else {
                    "inf (mosquitto delivered none)".to_owned()
                },
                f64::from(ours.p99_us) / f64::from(t.p99_us.max(1)),
                ours.peak_rss_kib as f64 / t.peak_rss_kib.max(1) as f64
            ),
            None => println!("{n:>5} consumers: mosquitto not installed"),
        }
    }
}

fn print_row(n: usize, server: &str, f: &Figures) {
    println!(
        "{:>9} | {:<9} | {:>14.0} | {:>9.3} | {:>9.3} | {:>9.1}% | {:>13.1} | {:>9} | {:>12.2} | {:>13.2}",
        n,
        server,
        f.delivered_fps,
        f64::from(f.p50_us) / 1000.0,
        f64::from(f.p99_us) / 1000.0,
        f.latency_delivered * 100.0,
        f.peak_rss_kib as f64 / 1024.0,
        f.snapshots,
        f.server_cpu,
        f.clients_cpu
    );
}
