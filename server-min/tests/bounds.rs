//! Bounds of issue 12 that need the real binary: the store queue stays within its
//! permits while the database is locked (item 9), and staleness follows a
//! monotonic clock, not the wall clock (item 12).

mod common;

use std::time::Duration;

use common::*;

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
