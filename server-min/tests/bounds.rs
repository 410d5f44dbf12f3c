//! Bounds of issue 12 that need the real binary: the store queue stays within its
//! permits while the database is locked (item 9), and staleness follows a
//! monotonic clock, not the wall clock (item 12; the relay runs under libfaketime,
//! Debian package `faketime`, which scripts/test.d/10-rust installs).

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// Permits of the relay's store queue (`store::QUEUE_PERMITS`): frames taken in
/// and not yet written never exceed it.
const QUEUE_PERMITS: u64 = 1024;

/// Frames a training has taken in (its `last_seq`: stats are numbered from 1).
async fn taken_in(addr: std::net::SocketAddr, id: u64) -> u64 {
    get_json(addr, &format!("/v1/trainings/{id}")).await["last_seq"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_holds_producers_back_and_loses_nothing() {
    const PRODUCERS: u64 = 6;
    const FRAMES: u32 = 300; // 6 × 300 = 1800 stats frames, well past the permits
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.sqlite3");
    let args = ["--db", db.to_str().unwrap(), "--max-fps", "100000000"];
    let relay = Binary::start(&args).await;
    let mut ids = Vec::new();
    for p in 0..PRODUCERS {
        let (name, key) = (format!("bound-{p}"), format!("bound-key-{p}"));
        let (status, reply) = post_frames(
            relay.addr,
            0,
            &[register_frame(0, &name, &key, &["loss"], 1000)],
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        ids.push(reply["training_id"].as_u64().unwrap());
    }

    let (release, lock) = hold_database(db.clone());
    // Each producer POSTs its registration (the proof of ownership) and its frames at once.
    let posts: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let addr = relay.addr;
            tokio::spawn(async move {
                let (name, key) = (format!("bound-{p}"), format!("bound-key-{p}"));
                let mut frames = vec![register_frame(0, &name, &key, &["loss"], 1000)];
                frames.extend((1..=FRAMES).map(|seq| stats(0, seq, seq - 1, &[seq as f32])));
                let path = "/v1/trainings/0/frames";
                let octets = [("Content-Type", "application/octet-stream")];
                let body = post_body(&frames);
                // Longer than `post_octets` waits: the answer comes after the lock.
                let wait = Duration::from_secs(120);
                http_within(addr, "POST", path, &octets, &body, wait).await
            })
        })
        .collect();

    // While locked, the relay takes frames in until its queue is full, then stops:
    // wait until the count holds still for a while.
    let mut total = 0;
    let mut still_since = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut now = 0;
        for &id in &ids {
            now += taken_in(relay.addr, id).await;
        }
        if now != total {
            total = now;
            still_since = tokio::time::Instant::now();
        }
        let still = still_since.elapsed() > Duration::from_secs(2);
        if (still && total > 0) || total > QUEUE_PERMITS || tokio::time::Instant::now() > deadline {
            break;
        }
    }
    assert!(
        total <= QUEUE_PERMITS,
        "{total} frames taken in while the database was locked, past the queue's \
         {QUEUE_PERMITS} permits; logs:\n{}",
        relay.logs()
    );
    assert!(total > 0, "nothing was taken in; logs:\n{}", relay.logs());
    assert!(
        posts.iter().all(|p| !p.is_finished()),
        "a POST was answered while its frames could not be written"
    );

    release.send(()).unwrap();
    lock.join().unwrap();
    for post in posts {
        let (status, reply) = post.await.unwrap();
        assert_eq!(status, 200, "{reply}");
    }
    for &id in &ids {
        assert_eq!(taken_in(relay.addr, id).await, u64::from(FRAMES));
    }
    // Everything acknowledged is on disk: after kill -9, every epoch is there.
    relay.kill9().await;
    let relay = Binary::start(&args).await;
    for &id in &ids {
        let (status, csv) = history_csv(relay.addr, id, &[]).await;
        assert_eq!(status, 200, "{csv}");
        let epochs: Vec<u32> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            epochs,
            (0..FRAMES).collect::<Vec<_>>(),
            "training {id} lost acknowledged epochs"
        );
    }
    relay.kill9().await;
}

/// libfaketime's preload library (Debian package `faketime`).
fn libfaketime() -> std::path::PathBuf {
    std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .chain([std::path::PathBuf::from(
            "/usr/lib/faketime/libfaketime.so.1",
        )])
        .find(|lib| lib.exists())
        .expect("libfaketime is installed (apt-get install faketime)")
}

fn heartbeat(id: u32) -> watchtrain_protocol::Frame {
    watchtrain_protocol::Frame {
        training_id: id,
        seq: 0,
        action: watchtrain_protocol::Action::Heartbeat,
    }
}

/// A producer that registers `name`, starts running and then says nothing more.
async fn silent_producer(relay: &Binary, name: &str) -> (u32, Ws) {
    let mut ws = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut ws, 0, name, name, &["loss"], 5).await;
    send_frame(&mut ws, &progress(id, 1, 0, 1)).await;
    wait_ack(&mut ws, 1).await;
    (id, ws)
}

/// Each training's status and `updated_ms` (the relay's wall clock).
async fn statuses(addr: std::net::SocketAddr) -> std::collections::HashMap<u64, (String, u64)> {
    let list = get_json(addr, "/v1/trainings").await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let status = t["status"].as_str().unwrap().to_owned();
            let updated = t["updated_ms"].as_u64().unwrap_or(0);
            (t["id"].as_u64().unwrap(), (status, updated))
        })
        .collect()
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_jump_neither_stalls_a_live_training_nor_hides_a_stalled_one() {
    const HOUR_MS: u64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    // libfaketime reads the offset of the relay's wall clock from this file at every
    // call; the monotonic clock is left alone, as NTP stepping the clock would.
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let lib = libfaketime();
    let envs = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    let args = ["--db", ":memory:", "--stall-after", "3s"];
    let relay = Binary::start_with(&args, &envs, None).await;

    // A: a live producer, a heartbeat every 250 ms. B: silent from now on.
    let (a, mut a_ws) = silent_producer(&relay, "alive").await;
    let mut watch_a = connect(&relay.ws(&format!("/v1/trainings/{a}/watch"))).await;
    let heartbeats = tokio::spawn(async move {
        loop {
            send_frame(&mut a_ws, &heartbeat(a)).await;
            // Reads what the relay sends (pings answered) until the next heartbeat.
            let _ = tokio::time::timeout(Duration::from_millis(250), a_ws.next()).await;
        }
    });
    let (b, _b_ws) = silent_producer(&relay, "quiet").await;
    let (a_id, b_id) = (u64::from(a), u64::from(b));

    // The wall clock jumps 5 hours ahead. For half of --stall-after nothing is stalled.
    std::fs::write(&offset, "+5h\n").unwrap();
    let jumped = tokio::time::Instant::now();
    let mut ahead = false;
    while jumped.elapsed() < Duration::from_millis(1500) {
        let now = statuses(relay.addr).await;
        assert_eq!(now[&a_id].0, "running", "A after a jump ahead: {now:?}");
        assert_eq!(
            now[&b_id].0, "running",
            "B, silent for less than --stall-after, after a jump ahead: {now:?}"
        );
        ahead |= now[&a_id].1 > wall_ms() + 4 * HOUR_MS;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The relay did see the jump (A's heartbeats are stamped 5 hours ahead).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !ahead {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay's wall clock never jumped (is libfaketime working?); logs:\n{}",
            relay.logs()
        );
        ahead = statuses(relay.addr).await[&a_id].1 > wall_ms() + 4 * HOUR_MS;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // B stalls after --stall-after of silence; A, heard all along, keeps running.
    stalls_while_running(relay.addr, b_id, a_id, "B, silent").await;

    // C goes silent, then the wall clock jumps 10 hours back: C still stalls.
    let (c, _c_ws) = silent_producer(&relay, "hidden").await;
    let c_id = u64::from(c);
    std::fs::write(&offset, "-5h\n").unwrap();
    stalls_while_running(
        relay.addr,
        c_id,
        a_id,
        "C, silent after the wall clock went back",
    )
    .await;
    heartbeats.abort();

    // A's watcher never saw it stalled, not even between two heartbeats.
    loop {
        match tokio::time::timeout(Duration::from_millis(500), watch_a.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                let frame = watchtrain_protocol::Frame::decode(&bytes).unwrap();
                assert_ne!(
                    frame.action,
                    watchtrain_protocol::Action::Stalled,
                    "A was marked stalled while it sent heartbeats"
                );
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    relay.kill9().await;
}

/// Waits up to 30 s for training `silent` to stall, checking all along that
/// `heard`, which keeps sending, stays running.
async fn stalls_while_running(addr: std::net::SocketAddr, silent: u64, heard: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = statuses(addr).await;
        assert_eq!(
            now[&heard].0, "running",
            "{what}: the heard training: {now:?}"
        );
        if now[&silent].0 == "stalled" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never stalled: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
