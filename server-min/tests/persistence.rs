//! SQLite persistence: a restart, graceful or `kill -9`, keeps every acknowledged frame.

mod common;

use common::*;
use watchtrain_protocol::*;
use watchtrain_relay::Config;

async fn snapshot(url: &str) -> TrainingState {
    let mut consumer = connect(url).await;
    snapshot_state(&recv_frame(&mut consumer).await)
}

#[tokio::test]
async fn a_graceful_restart_restores_the_same_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        db: dir.path().join("relay.sqlite3"),
        ..Config::in_memory()
    };
    let relay = Relay::start(config.clone()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "persist", "run-p", &["loss", "acc"], 8).await;
    for e in 0..3 {
        send_frame(
            &mut producer,
            &stats(id, e + 1, e, &[1.0 / (e + 1) as f32, 0.1 * e as f32]),
        )
        .await;
    }
    send_frame(&mut producer, &progress(id, 4, 3, 6)).await;
    wait_ack(&mut producer, 4).await;
    let url = format!("/v1/trainings/{id}/watch");
    let before = snapshot(&relay.ws(&url)).await;
    assert_eq!(before.train().done, 6);
    drop(producer);
    relay.stop().await;

    let relay = Relay::start(config).await;
    let after = snapshot(&relay.ws(&url)).await;
    assert_eq!(after, before);
    let (_, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    assert_eq!(csv.lines().count(), 4);
    // The same run key gets the same id and learns where to continue.
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    assert_eq!(
        register(&mut producer, 0, "persist", "run-p", &["loss", "acc"], 8).await,
        (id, 4)
    );
    relay.stop().await;
}

#[tokio::test]
async fn kill_dash_nine_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.sqlite3");
    let db = db.to_str().unwrap();
    let relay = Binary::start(&["--db", db]).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register_killed(&mut producer).await;
    let mut seq = 0;
    for epoch in 0..40 {
        for batch in 0..5 {
            seq += 1;
            send_frame(&mut producer, &progress(id, seq, epoch, batch)).await;
        }
        seq += 1;
        send_frame(
            &mut producer,
            &stats(
                id,
                seq,
                epoch,
                &[1.0 / (epoch + 1) as f32, epoch as f32, f32::NAN],
            ),
        )
        .await;
    }
    // Each stats frame is acked once it is on disk; wait for the last one.
    wait_ack(&mut producer, seq).await;
    let url = format!("/v1/trainings/{id}/watch");
    let before = snapshot(&relay.ws(&url)).await;
    assert_eq!(before.latest_epoch(), Some(39));
    relay.kill9().await;

    let relay = Binary::start(&["--db", db]).await;
    let after = snapshot(&relay.ws(&url)).await;
    assert_eq!(
        format!("{after:?}"),
        format!("{before:?}"),
        "NaN-aware equality"
    );
    let (_, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    assert_eq!(csv.lines().count(), 41, "every acknowledged stats frame");
    assert!(
        csv.lines()
            .nth(40)
            .unwrap()
            .starts_with("39,1000,0.025,39,NaN"),
        "{csv}"
    );

    // The producer resumes after last_seq; a resend of its buffer adds nothing.
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (again, last_seq) = register_killed(&mut producer).await;
    assert_eq!((again, last_seq), (id, seq));
    send_frame(&mut producer, &stats(id, seq, 39, &[5.0, 5.0, 5.0])).await;
    send_frame(&mut producer, &stats(id, seq + 1, 40, &[0.01, 40.0, 0.5])).await;
    wait_ack(&mut producer, seq + 1).await;
    let (_, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    assert_eq!(csv.lines().count(), 42);
    assert!(!csv.contains(",5,5,5"));
    relay.kill9().await;
}

/// Registers (again) the training that `kill_dash_nine_loses_nothing_acknowledged` kills.
async fn register_killed(producer: &mut Ws) -> (u32, u32) {
    register(producer, 0, "killed", "run-k", &["loss", "acc", "f1"], 100).await
}
