//! Acknowledged means durable (issue 12): a locked database, a corrupt row,
//! a bounded history. Real SQLite files, the real binary where `kill -9` matters.

mod common;

use std::time::Duration;

use common::*;
use watchtrain_protocol::*;
use watchtrain_relay::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_acknowledged_during_a_locked_database_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.sqlite3");
    let args = ["--db", db.to_str().unwrap()];
    let relay = Binary::start(&args).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "locked", "locked", &["loss"], 5).await;
    send_frame(&mut producer, &stats(id, 1, 0, &[0.9])).await;
    wait_ack(&mut producer, 1).await;

    let lock = lock_database(db.clone(), Duration::from_secs(7));
    send_frame(&mut producer, &stats(id, 2, 1, &[0.8])).await;
    // While the write waits, the relay says it is unhealthy.
    let mut unhealthy = false;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline && !unhealthy {
        let status = http(relay.addr, "GET", "/healthz", &[], b"").await.0;
        seen.push(status);
        unhealthy = status == 503;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A producer resends what was refused or not acknowledged, as a real one does.
    let acked = loop {
        match tokio::time::timeout(Duration::from_secs(30), next_message(&mut producer)).await {
            Ok(tokio_tungstenite::tungstenite::Message::Text(_)) => {
                send_frame(&mut producer, &stats(id, 2, 1, &[0.8])).await;
            }
            Ok(tokio_tungstenite::tungstenite::Message::Binary(b)) => {
                if let Action::Ack(ack) = Frame::decode(&b).unwrap().action {
                    if ack.seq >= 2 {
                        break true;
                    }
                }
            }
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    lock.join().unwrap();
    assert!(
        acked,
        "seq 2 was never acknowledged; logs:\n{}",
        relay.logs()
    );
    assert!(
        unhealthy,
        "/healthz said {seen:?} while writes failed; logs:\n{}",
        relay.logs()
    );
    relay.kill9().await;

    let relay = Binary::start(&args).await;
    let (status, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    assert_eq!(status, 200);
    let epochs: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["0", "1"], "an acknowledged epoch was lost: {csv}");
    relay.kill9().await;
}

#[tokio::test]
async fn a_corrupt_row_is_not_reused_and_history_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        db: dir.path().join("relay.sqlite3"),
        history_epochs: 10,
        ..Config::in_memory()
    };
    let relay = Relay::start(config.clone()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (old, _) = register(&mut producer, 0, "old", "old", &["loss"], 50).await;
    for e in 0..30 {
        send_frame(&mut producer, &stats(old, e + 1, e, &[e as f32])).await;
    }
    wait_ack(&mut producer, 30).await;
    let (_, csv) = history_csv(relay.addr, u64::from(old), &[]).await;
    let epochs: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs.len(), 10, "{csv}");
    assert_eq!(epochs.last(), Some(&"29"), "{csv}");
    drop(producer);
    relay.stop().await;

    let conn = rusqlite::Connection::open(&config.db).unwrap();
    conn.execute("UPDATE trainings SET state = x'00ff'", [])
        .unwrap();
    drop(conn);

    let relay = Relay::start(config).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (new, _) = register(&mut producer, 0, "new", "new", &["loss"], 5).await;
    assert_ne!(new, old, "the unreadable training's id was reused");
    let (_, csv) = history_csv(relay.addr, u64::from(new), &[]).await;
    assert_eq!(
        csv.lines().count(),
        1,
        "the new training inherited old stats: {csv}"
    );
    relay.stop().await;
}

/// Unmounts the tmpfs when dropped, also when the test fails.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// A tmpfs of `size` at a new directory (the test runs as root, as `./scripts/test` does).
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        let point = dir.join("disk");
        std::fs::create_dir(&point).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&point)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs failed: this test needs root"
        );
        Tmpfs(point)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_delays_the_ack_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(dir.path(), "2m");
    let db = disk.0.join("relay.sqlite3");
    let args = ["--db", db.to_str().unwrap()];
    let relay = Binary::start(&args).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "full", "full", &["loss"], 5).await;
    send_frame(&mut producer, &stats(id, 1, 0, &[0.9])).await;
    wait_ack(&mut producer, 1).await;

    // Fill the disk to the last byte.
    let filler = disk.0.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    send_frame(&mut producer, &stats(id, 2, 1, &[0.8])).await;
    let mut unhealthy = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !unhealthy && tokio::time::Instant::now() < deadline {
        unhealthy = http(relay.addr, "GET", "/healthz", &[], b"").await.0 == 503;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        unhealthy,
        "/healthz said ok on a full disk; logs:\n{}",
        relay.logs()
    );
    // No ack while the disk is full.
    let early = tokio::time::timeout(Duration::from_millis(500), wait_ack(&mut producer, 2)).await;
    assert!(early.is_err(), "seq 2 was acknowledged on a full disk");
    // Room again: the kept write goes through and is acknowledged.
    std::fs::remove_file(&filler).unwrap();
    wait_ack(&mut producer, 2).await;
    relay.kill9().await;

    let relay = Binary::start(&args).await;
    let (_, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    let epochs: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["0", "1"], "{csv}");
    relay.kill9().await;
}
