//! The binary protocol end to end: a real relay on a loopback port, real WebSocket clients.

mod common;

use common::*;
use watchtrain_protocol::*;
use watchtrain_relay::Config;

#[tokio::test]
async fn register_progress_stats_finished_reach_a_consumer() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, last_seq) = register(
        &mut producer,
        0,
        "mnist",
        "run-a",
        &["train_loss", "accuracy"],
        3,
    )
    .await;
    assert_ne!(id, 0);
    assert_eq!(last_seq, 0);

    let mut consumer = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let mut state = snapshot_state(&recv_frame(&mut consumer).await);
    assert_eq!(state.name().as_str(), "mnist");
    assert_eq!(state.status(), Status::Waiting);

    // Producer frames may name the training or leave 0 after registering.
    send_frame(&mut producer, &progress(0, 1, 0, 5)).await;
    send_frame(&mut producer, &stats(id, 2, 0, &[0.9, 0.5])).await;
    wait_ack(&mut producer, 2).await;
    send_frame(&mut producer, &progress(id, 3, 1, 2)).await;
    send_frame(&mut producer, &stats(id, 4, 1, &[0.7, 0.6])).await;
    send_frame(&mut producer, &finished(id, 5)).await;
    wait_ack(&mut producer, 5).await;

    recv_until(&mut consumer, &mut state, |s| {
        s.status() == Status::Completed
    })
    .await;
    assert_eq!(state.latest_epoch(), Some(1));
    assert_eq!(state.latest().as_slice(), &[0.7, 0.6]);
    assert_eq!(state.best()[0].value, 0.7);
    assert_eq!(state.last_seq(), 5);

    // The JSON views agree.
    let list = get_json(relay.addr, "/v1/trainings").await;
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["status"], "completed");
    assert_eq!(list[0]["name"], "mnist");
    assert!((list[0]["latest"]["accuracy"].as_f64().unwrap() - 0.6).abs() < 1e-6);
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(one["last_seq"], 5);
    assert_eq!(one["history"].as_array().unwrap().len(), 2);
    assert_eq!(one["eta_ms"], 0);

    let (status, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        csv,
        "epoch,duration_ms,train_loss,accuracy\n0,1000,0.9,0.5\n1,1000,0.7,0.6\n"
    );

    let (status, body) = http(relay.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = http(relay.addr, "GET", "/v1/trainings/999", &[], b"").await;
    assert_eq!(status, 404);
    relay.stop().await;
}

#[tokio::test]
async fn late_joiner_gets_the_snapshot_and_two_trainings_stay_apart() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut a = connect(&relay.ws("/v1/produce")).await;
    let mut b = connect(&relay.ws("/v1/produce")).await;
    let (ia, _) = register(&mut a, 0, "a", "key-a", &["loss"], 10).await;
    let (ib, _) = register(&mut b, 0, "b", "key-b", &["loss", "acc"], 5).await;
    assert_ne!(ia, ib);
    for epoch in 0..4 {
        send_frame(
            &mut a,
            &stats(ia, epoch + 1, epoch, &[1.0 / (epoch + 1) as f32]),
        )
        .await;
        send_frame(&mut b, &stats(ib, epoch + 1, epoch, &[2.0, epoch as f32])).await;
    }
    wait_ack(&mut a, 4).await;
    wait_ack(&mut b, 4).await;

    // A consumer that joins now sees everything so far in one frame.
    let mut late = connect(&relay.ws(&format!("/v1/trainings/{ia}/watch"))).await;
    let snap = recv_frame(&mut late).await;
    assert_eq!(snap.training_id, ia);
    let state = snapshot_state(&snap);
    assert_eq!(state.latest_epoch(), Some(3));
    assert_eq!(state.history_rows().count(), 4);
    assert_eq!(state.metrics().len(), 1);

    // Live frames of b never reach a's consumer.
    send_frame(&mut b, &progress(ib, 5, 4, 1)).await;
    send_frame(&mut a, &progress(ia, 5, 4, 7)).await;
    let next = recv_frame(&mut late).await;
    assert_eq!(next.training_id, ia);
    assert!(matches!(
        next.action,
        Action::Progress(Progress { batch: 7, .. })
    ));
    relay.stop().await;
}

#[tokio::test]
async fn duplicates_and_a_resent_buffer_change_nothing() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "dup", "run-dup", &["loss"], 10).await;
    let sent: Vec<Frame> = (0..5)
        .map(|e| stats(id, e + 1, e, &[10.0 - e as f32]))
        .collect();
    for f in &sent {
        send_frame(&mut producer, f).await;
    }
    send_frame(&mut producer, &sent[2]).await; // the same seq again
    wait_ack(&mut producer, 5).await;
    drop(producer);

    // The producer restarts: registers with its run key, learns last_seq, resends its buffer.
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (again, last_seq) = register(&mut producer, 0, "dup", "run-dup", &["loss"], 10).await;
    assert_eq!((again, last_seq), (id, 5));
    for f in &sent {
        send_frame(&mut producer, f).await;
    }
    send_frame(&mut producer, &stats(id, 6, 5, &[4.0])).await;
    wait_ack(&mut producer, 6).await;

    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(one["last_seq"], 6);
    assert_eq!(one["history"].as_array().unwrap().len(), 6);
    let (_, csv) = history_csv(relay.addr, u64::from(id), &[]).await;
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    let (_, metrics) = http(relay.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("watchtrain_frames_duplicate_total 6"),
        "{metrics}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn watch_follows_the_latest_training() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut follower = connect(&relay.ws("/v1/watch")).await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (first, _) = register(&mut producer, 0, "first", "k1", &["loss"], 2).await;
    let snap = recv_frame(&mut follower).await;
    assert_eq!(snap.training_id, first);
    send_frame(&mut producer, &progress(first, 1, 0, 3)).await;
    assert_eq!(recv_frame(&mut follower).await.training_id, first);

    let mut other = connect(&relay.ws("/v1/produce")).await;
    let (second, _) = register(&mut other, 0, "second", "k2", &["loss"], 2).await;
    // Either the live registration or the snapshot of the new training comes; then only it.
    loop {
        let frame = recv_frame(&mut follower).await;
        if frame.training_id == second && matches!(frame.action, Action::Snapshot(_)) {
            break;
        }
    }
    send_frame(&mut producer, &progress(first, 2, 0, 4)).await;
    send_frame(&mut other, &progress(second, 1, 0, 9)).await;
    let frame = recv_frame(&mut follower).await;
    assert_eq!(frame.training_id, second);
    relay.stop().await;
}

#[tokio::test]
async fn http_post_frames() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut body = Vec::new();
    for frame in [
        register_frame(0, "script", "post-1", &["loss"], 3),
        stats(0, 1, 0, &[0.5]),
        stats(0, 2, 1, &[0.25]),
        stats(0, 2, 1, &[0.25]),
    ] {
        let bytes = frame.to_bytes().unwrap();
        body.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        body.extend_from_slice(&bytes);
    }
    let octets = [("Content-Type", "application/octet-stream")];
    let (status, reply) = http(relay.addr, "POST", "/v1/trainings/0/frames", &octets, &body).await;
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["applied"], 3);
    assert_eq!(reply["duplicates"], 1);
    assert_eq!(reply["last_seq"], 2);
    let id = reply["training_id"].as_u64().unwrap();
    let one = get_json(relay.addr, &format!("/v1/trainings/{id}")).await;
    assert_eq!(one["latest_epoch"], 1);

    // A cut body is refused whole.
    let (status, reply) = http(
        relay.addr,
        "POST",
        &format!("/v1/trainings/{id}/frames"),
        &octets,
        &body[..5],
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("\"error\":\"decode\""), "{reply}");
    relay.stop().await;
}

#[tokio::test]
async fn the_dashboard_is_served() {
    let relay = Relay::start(Config::in_memory()).await;
    let (status, body) = http(relay.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(body.contains("<html"));
    let (status, _) = http(relay.addr, "GET", "/no-such-file.js", &[], b"").await;
    assert_eq!(status, 404);
    relay.stop().await;
}

/// A shell script's `curl -d '{"epoch":1,"loss":0.3}' .../v1/trainings/NAME/stats`
/// (curl's default form content type), then `/finish`: the same frames, the same
/// rules (token, Origin), and durable before the answer.
#[tokio::test]
async fn a_shell_script_posts_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        db: dir.path().join("relay.sqlite3"),
        token: Some("s3cret".into()),
        ..Config::in_memory()
    };
    let relay = Relay::start(config.clone()).await;
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let auth = ("Authorization", "Bearer s3cret");
    let path = "/v1/trainings/nightly%20sweep/stats";
    let (status, reply) = http(
        relay.addr,
        "POST",
        path,
        &[form],
        br#"{"epoch":0,"loss":0.5}"#,
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    let evil = ("Origin", "http://evil.example");
    let (status, reply) = http(
        relay.addr,
        "POST",
        path,
        &[form, auth, evil],
        br#"{"epoch":0,"loss":0.5}"#,
    )
    .await;
    assert_eq!(status, 403, "{reply}");
    for (epoch, body) in [
        (0, r#"{"epoch":0,"loss":0.5,"acc":0.25,"epochs":3}"#),
        (1, r#"{"epoch":1,"loss":0.25,"acc":null}"#),
    ] {
        let (status, reply) = http(relay.addr, "POST", path, &[form, auth], body.as_bytes()).await;
        assert_eq!(status, 200, "{reply}");
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["epoch"], epoch);
    }
    let (status, reply) = http(relay.addr, "POST", path, &[form, auth], br#"{"loss":0.1}"#).await;
    assert_eq!((status, reply.contains("epoch")), (400, true), "{reply}");
    let (status, reply) = http(relay.addr, "POST", path, &[form, auth], b"not json").await;
    assert_eq!(status, 400, "{reply}");
    let finish = "/v1/trainings/nightly%20sweep/finish";
    let (status, reply) = http(
        relay.addr,
        "POST",
        finish,
        &[auth],
        br#"{"outcome":"failed","reason":"NaN loss"}"#,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let id = serde_json::from_str::<serde_json::Value>(&reply).unwrap()["training_id"]
        .as_u64()
        .unwrap();
    relay.stop().await;

    // Durable: a new relay on the same file has it all.
    let relay = Relay::start(config).await;
    let auth = [("Authorization", "Bearer s3cret")];
    let (_, one) = http(
        relay.addr,
        "GET",
        &format!("/v1/trainings/{id}"),
        &auth,
        b"",
    )
    .await;
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["name"], "nightly sweep");
    assert_eq!(one["status"], "failed");
    assert_eq!(one["epochs"], 3);
    // Metrics in name order; null is NaN, shown as null.
    assert_eq!(one["metrics"], serde_json::json!(["acc", "loss"]));
    assert_eq!(one["values"], serde_json::json!([null, 0.25]));
    let (_, csv) = history_csv(relay.addr, id, &auth).await;
    assert_eq!(csv.lines().count(), 3, "{csv}");
    relay.stop().await;
}
