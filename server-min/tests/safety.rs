//! Bad input, limits, tokens, stalls: every rejection has a status and a message,
//! and nothing a client sends disturbs the others.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use watchtrain_protocol::*;
use watchtrain_relay::Config;

fn error_of(text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    v["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_frames_get_an_error_and_leave_others_untouched() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut good = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut good, 0, "good", "good", &["loss"], 5).await;
    let mut consumer = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let mut state = snapshot_state(&recv_frame(&mut consumer).await);

    let mut bad = connect(&relay.ws("/v1/produce")).await;
    let stats_bytes = stats(id, 1, 0, &[0.5]).to_bytes().unwrap().to_vec();
    let mut wrong_version = stats_bytes.clone();
    wrong_version[0] = 9;
    let cases: Vec<(Message, &str)> = vec![
        (
            Message::Binary(b"\xff\xfe garbage".to_vec().into()),
            "decode",
        ),
        (
            Message::Binary(stats_bytes[..stats_bytes.len() - 2].to_vec().into()),
            "decode",
        ),
        (Message::Binary(wrong_version.into()), "decode"),
        (Message::Binary(Vec::new().into()), "decode"),
        (Message::Binary(vec![1u8; 2000].into()), "decode"),
        (
            Message::Text("{\"action\": \"training_stats\"".into()),
            "bad_request",
        ),
        // Another producer's training.
        (
            Message::Binary(stats(id, 1, 0, &[0.5]).to_bytes().unwrap().to_vec().into()),
            "forbidden",
        ),
        (
            Message::Binary(progress(777, 1, 0, 1).to_bytes().unwrap().to_vec().into()),
            "unknown_training",
        ),
        (
            Message::Binary(progress(0, 1, 0, 1).to_bytes().unwrap().to_vec().into()),
            "unknown_training",
        ),
        (
            Message::Binary(
                Frame {
                    training_id: id,
                    seq: 0,
                    action: Action::Stalled,
                }
                .to_bytes()
                .unwrap()
                .to_vec()
                .into(),
            ),
            "bad_request",
        ),
    ];
    for (msg, want) in cases {
        bad.send(msg).await.unwrap();
        assert_eq!(error_of(&recv_text(&mut bad).await), want);
    }
    // Stats that do not match the training's metrics, from its owner.
    send_frame(&mut good, &stats(id, 1, 0, &[0.5, 0.6])).await;
    assert_eq!(error_of(&recv_text(&mut good).await), "apply");
    // Invalid legacy JSON on the legacy path.
    let mut legacy = connect(&relay.ws("/ws/watchtrain/producer/5")).await;
    for text in [
        "not json",
        "{\"action\": \"metric_image\"}",
        "{\"training_id\": 3}",
    ] {
        legacy.send(Message::Text(text.into())).await.unwrap();
        assert_eq!(error_of(&recv_text(&mut legacy).await), "json");
    }
    // Oversized: the connection is closed with 1009 and a reason.
    bad.send(Message::Binary(vec![0u8; 5000].into()))
        .await
        .unwrap();
    let close = loop {
        match tokio::time::timeout(WAIT, bad.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1009);
    assert!(close.reason.contains("max-frame-bytes"));

    // The good producer and its consumer never noticed.
    send_frame(&mut good, &stats(id, 1, 0, &[0.5])).await;
    wait_ack(&mut good, 1).await;
    recv_until(&mut consumer, &mut state, |s| s.latest_epoch() == Some(0)).await;
    let (_, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("watchtrain_frames_rejected_total{reason=\"decode\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchtrain_frames_rejected_total{reason=\"too_large\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchtrain_frames_rejected_total{reason=\"json\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchtrain_connections{kind=\"consumer\"} 1"),
        "{metrics}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn tokens_keep_strangers_out_and_watches_from_publishing() {
    let relay = Relay::start(Config {
        token: Some("produce-secret".into()),
        consumer_token: Some("watch-secret".into()),
        ..Config::in_memory()
    })
    .await;
    // No token, wrong token, the consumer's token on a producer path.
    assert_eq!(connect_status(&relay.ws("/v1/produce")).await, 401);
    assert_eq!(
        connect_status(&relay.ws("/v1/produce?token=nope")).await,
        403
    );
    assert_eq!(
        connect_status(&relay.ws("/v1/produce?token=watch-secret")).await,
        403
    );
    assert_eq!(
        connect_status(&relay.ws("/ws/watchtrain/producer/1?token=watch-secret")).await,
        403
    );
    assert_eq!(connect_status(&relay.ws("/v1/watch")).await, 401);
    let (status, body) = http(relay.addr, "GET", "/v1/trainings", &[], b"").await;
    assert_eq!(status, 401);
    assert!(body.contains("Bearer"), "{body}");
    let (status, _) = http(
        relay.addr,
        "POST",
        "/v1/trainings/0/frames",
        &[
            ("Authorization", "Bearer watch-secret"),
            ("Content-Type", "application/octet-stream"),
        ],
        b"\x00\x01\x01",
    )
    .await;
    assert_eq!(status, 403);

    // The right tokens: header or query.
    let mut producer = connect(&relay.ws("/v1/produce?token=produce-secret")).await;
    let (id, _) = register(&mut producer, 0, "secret", "s", &["loss"], 2).await;
    let mut watch = connect(&relay.ws("/v1/watch?token=watch%2Dsecret")).await;
    assert_eq!(recv_frame(&mut watch).await.training_id, id);
    let (status, _) = http(
        relay.addr,
        "GET",
        "/v1/trainings",
        &[("Authorization", "Bearer watch-secret")],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http(relay.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200);
    relay.stop().await;
}

#[tokio::test]
async fn limits_answer_with_a_status() {
    let relay = Relay::start(Config {
        max_trainings: 2,
        keep_trainings: 10,
        max_consumers: 1,
        max_fps: 5,
        ..Config::in_memory()
    })
    .await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (a, _) = register(&mut producer, 0, "a", "a", &["loss"], 2).await;
    register(&mut producer, 0, "b", "b", &["loss"], 2).await;
    send_frame(&mut producer, &register_frame(0, "c", "c", &["loss"], 2)).await;
    assert_eq!(error_of(&recv_text(&mut producer).await), "limit");

    let first = connect(&relay.ws(&format!("/v1/trainings/{a}/watch"))).await;
    assert_eq!(
        connect_status(&relay.ws(&format!("/v1/trainings/{a}/watch"))).await,
        503
    );
    // The slot comes back when the consumer leaves.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    while connect_status(&relay.ws(&format!("/v1/trainings/{a}/watch"))).await != 101 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // HTTP producers over --max-fps get 429 and nothing is applied.
    let mut frames = vec![register_frame(a, "a", "a", &["loss"], 2)];
    frames.extend((1..=6).map(|seq| progress(a, seq, 0, seq)));
    let (status, reply) = post_frames(relay.addr, a, &frames).await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(
        get_json(relay.addr, &format!("/v1/trainings/{a}")).await["last_seq"],
        0
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_silent_training_stalls_and_recovers() {
    let relay = Relay::start(Config {
        stall_after: Duration::from_millis(300),
        ..Config::in_memory()
    })
    .await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "sleepy", "z", &["loss"], 2).await;
    let mut consumer = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let mut state = snapshot_state(&recv_frame(&mut consumer).await);
    send_frame(&mut producer, &progress(id, 1, 0, 1)).await;
    recv_until(&mut consumer, &mut state, |s| s.status() == Status::Running).await;
    // Silence: the relay says stalled, live and in the list and in a new snapshot.
    recv_until(&mut consumer, &mut state, |s| s.status() == Status::Stalled).await;
    assert_eq!(
        get_json(relay.addr, "/v1/trainings").await[0]["status"],
        "stalled"
    );
    let mut late = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    assert_eq!(
        snapshot_state(&recv_frame(&mut late).await).status(),
        Status::Stalled
    );
    // A disconnect is not a finish; the next frame makes it run again.
    drop(producer);
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    register(&mut producer, 0, "sleepy", "z", &["loss"], 2).await;
    send_frame(&mut producer, &progress(id, 2, 0, 2)).await;
    recv_until(&mut consumer, &mut state, |s| s.status() == Status::Running).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_dead_peer_is_dropped_by_ping() {
    let relay = Relay::start(Config {
        ping_interval: Duration::from_millis(100),
        ..Config::in_memory()
    })
    .await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "p", "p", &["loss"], 2).await;
    // The producer reads all the time, so it answers pings.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = producer.next().await {} });
    // A consumer that never reads never answers pings.
    let _silent = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let gauge = "watchtrain_connections{kind=\"consumer\"} ";
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
        if metrics.contains(&format!("{gauge}0")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("watchtrain_connections{kind=\"producer\"} 1"),
        "{metrics}"
    );
    reader.abort();
    relay.stop().await;
}

#[tokio::test]
async fn a_fast_websocket_producer_is_slowed_not_dropped() {
    let relay = Relay::start(Config {
        max_fps: 100,
        ..Config::in_memory()
    })
    .await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "fast", "fast", &["loss"], 2).await;
    let started = std::time::Instant::now();
    // One second's burst passes at once; the next 150 frames take about 1.5 s.
    for seq in 1..=250 {
        send_frame(&mut producer, &progress(id, seq, 0, seq)).await;
    }
    wait_ack(&mut producer, 250).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "250 frames at 100/s went through in {:?}",
        started.elapsed()
    );
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(one["last_seq"], 250);
    assert_eq!(one["train"]["done"], 250);
    relay.stop().await;
}

#[tokio::test]
async fn retention_drops_the_oldest_finished_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        db: dir.path().join("relay.sqlite3"),
        keep_trainings: 2,
        ..Config::in_memory()
    };
    let relay = Relay::start(config.clone()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (old, _) = register(&mut producer, 0, "old", "old", &["loss"], 1).await;
    let (done, _) = register(&mut producer, 0, "done", "done", &["loss"], 1).await;
    send_frame(&mut producer, &finished(done, 1)).await;
    wait_ack(&mut producer, 1).await;
    let (new, _) = register(&mut producer, 0, "new", "new", &["loss"], 1).await;
    let ids: Vec<u64> = get_json(relay.addr, "/v1/trainings")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [u64::from(old), u64::from(new)]);
    drop(producer);
    relay.stop().await;
    // And from the database.
    let relay = Relay::start(config).await;
    assert_eq!(
        get_json(relay.addr, "/v1/trainings")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, _) = http(
        relay.addr,
        "GET",
        &format!("/v1/trainings/{done}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 404);
    relay.stop().await;
}
