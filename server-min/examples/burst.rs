//! Benchmark of the persist path: a producer POSTs bursts of stats frames
//! (a registration and `N` epochs per request) to a relay in this process
//! with a database file, and waits for the answer, which comes once every
//! frame is durable. Prints the median time of a burst and frames/s.
//!
//! ```text
//! cargo run --release -p watchtrain-relay --example burst [frames per burst...]
//! ```
//!
//! Only loopback addresses are used. It prints figures and asserts nothing about speed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use watchtrain_protocol::*;
use watchtrain_relay::{run, Config};

/// Bursts per size; the median is printed.
const BURSTS: usize = 40;

/// The body of one burst: a registration (which makes the request the
/// training's owner), then `n` stats frames from `epoch` on.
fn body(seq: &mut u32, epoch: &mut u32, n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |action: Action, seq: &mut u32| {
        *seq += 1;
        let frame = Frame {
            training_id: 0,
            seq: *seq,
            action,
        };
        let bytes = frame.to_bytes().unwrap();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    };
    let mut metrics = MetricNames::new();
    for name in ["loss", "val_loss", "accuracy", "f1"] {
        metrics.push(truncated(name)).unwrap();
    }
    let register = Register {
        name: truncated("burst"),
        run_key: truncated("burst-bench"),
        metrics,
        epochs: 1_000_000,
        batches: 100,
        ..Default::default()
    };
    push(Action::Register(register), seq);
    for _ in 0..n {
        let e = *epoch as f32;
        let values = Values::from_slice(&[1.0 / (e + 1.0), 1.1 / (e + 1.0), e / 1e6, 0.5]).unwrap();
        push(
            Action::Stats(Stats {
                epoch: *epoch,
                duration_ms: 1000,
                values,
            }),
            seq,
        );
        *epoch += 1;
    }
    out
}

/// POSTs `body` and returns the status line's code once the whole answer is read.
async fn post(addr: SocketAddr, body: &[u8]) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/trainings/0/frames HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let mut sizes: Vec<u32> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![1, 64, 512];
    }
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        db: dir.path().join("burst.sqlite3"),
        max_fps: u32::MAX,
        ..Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(run(listener, config, async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut seq, mut epoch) = (0, 0);
    println!("persist burst: POST of 1 registration + N stats frames, answered once durable ({BURSTS} bursts, median)");
    println!("{:>6} {:>12} {:>14}", "N", "burst ms", "frames/s");
    for n in sizes {
        let mut times = Vec::with_capacity(BURSTS);
        for _ in 0..BURSTS {
            let body = body(&mut seq, &mut epoch, n);
            let start = Instant::now();
            let status = post(addr, &body).await;
            times.push(start.elapsed());
            assert_eq!(status, 200, "the relay refused a burst");
        }
        times.sort();
        let median = times[BURSTS / 2];
        println!(
            "{n:>6} {:>12.3} {:>14.0}",
            median.as_secs_f64() * 1e3,
            f64::from(n + 1) / median.as_secs_f64()
        );
    }
    let _ = stop.send(());
    relay.await.unwrap().unwrap();
}
