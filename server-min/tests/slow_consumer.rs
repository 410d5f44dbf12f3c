//! A consumer that never reads, and one that reads slowly, while 100,000 frames
//! flow: the relay's memory stays bounded, the slow reader is resynced with
//! snapshots, and a normal consumer gets every frame.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use watchtrain_protocol::*;

const FRAMES: u32 = 100_000;

/// A WebSocket client whose socket receive buffer is tiny, so the relay feels it at once.
async fn small_buffer_client(addr: std::net::SocketAddr, path: &str) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    ws
}

fn log(seq: u32) -> Frame {
    Frame {
        training_id: 0,
        seq,
        action: Action::Log(Log {
            level: Level::Info,
            text: truncated(&format!("{seq:>8} {}", "x".repeat(80))),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_never_slow_the_others_and_memory_stays_bounded() {
    let relay = Binary::start(&[
        "--db",
        ":memory:",
        "--max-fps",
        "10000000",
        // A queue the normal consumer can keep within on a loaded machine (debug build,
        // 100,000 frames as fast as they go), while the slow reader falls far behind it.
        "--consumer-queue",
        "4096",
        "--ping-interval",
        "60s",
    ])
    .await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "firehose", "f", &["loss"], 1).await;
    let path = format!("/v1/trainings/{id}/watch");

    let _never_reads = small_buffer_client(relay.addr, &path).await;
    let mut slow = small_buffer_client(relay.addr, &path).await;
    let mut fast = connect(&relay.ws(&path)).await;
    let fast_task = tokio::spawn(async move {
        // Every log frame, in order, after the one snapshot it got on joining.
        let (mut logs, mut snapshots) = (0u32, 0u32);
        while logs < FRAMES {
            let frame = recv_frame(&mut fast).await;
            match frame.action {
                Action::Snapshot(_) => snapshots += 1,
                Action::Log(_) => {
                    logs += 1;
                    assert_eq!(frame.seq, logs, "the fast consumer missed a frame");
                }
                _ => {}
            }
        }
        (logs, snapshots)
    });
    let slow_task = tokio::spawn(async move {
        let mut state = TrainingState::new();
        let (mut frames, mut snapshots) = (0u32, 0u32);
        while state.last_seq() < FRAMES {
            let frame = recv_frame(&mut slow).await;
            if matches!(frame.action, Action::Snapshot(_)) {
                snapshots += 1;
            }
            state.apply(&frame).unwrap();
            frames += 1;
            // Slow until resynced once (its first snapshot is the one on joining).
            if frames % 64 == 0 && snapshots < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (frames, snapshots)
    });
    let rss_before = relay.rss_kib();

    // The producer sends as fast as the relay takes them.
    let (mut sink, mut acks) = producer.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = acks.next().await {} });
    use futures_util::SinkExt;
    for seq in 1..=FRAMES {
        let bytes = log(seq).to_bytes().unwrap().to_vec();
        sink.feed(Message::Binary(bytes.into())).await.unwrap();
        if seq % 256 == 0 {
            sink.flush().await.unwrap();
        }
    }
    sink.flush().await.unwrap();

    let (fast_frames, fast_snapshots) = tokio::time::timeout(Duration::from_secs(60), fast_task)
        .await
        .expect("the normal consumer gets everything")
        .unwrap();
    let (slow_frames, slow_snapshots) = tokio::time::timeout(Duration::from_secs(60), slow_task)
        .await
        .expect("the slow reader catches up")
        .unwrap();
    let rss_after = relay.rss_kib();
    println!(
        "fast consumer: {fast_frames} frames; slow reader: {slow_frames} frames, {slow_snapshots} snapshots; relay RSS {rss_before} -> {rss_after} KiB"
    );
    assert_eq!(fast_frames, FRAMES, "the fast consumer got every frame");
    assert_eq!(fast_snapshots, 1, "the fast consumer was never resynced");
    assert!(
        slow_snapshots >= 2,
        "the slow reader was resynced by snapshot (besides the one on joining)"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "relay memory grew from {rss_before} to {rss_after} KiB"
    );
    let (_, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    let resyncs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("watchtrain_resyncs_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(resyncs >= 1, "{metrics}");
    drain.abort();
    relay.kill9().await;
}
