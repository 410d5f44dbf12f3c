//! The ancestor's paths: its fastai callback's real messages, byte for byte, and a legacy watch.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use watchtrain_protocol::*;
use watchtrain_relay::Config;

fn fixture(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/../protocol/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .unwrap();
}

/// Same keys in the same order; numbers equal to f32 precision, the rest exactly.
fn assert_same_shape(ours: &Value, theirs: &Value, path: &str) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<_> = a.keys().collect();
            let kb: Vec<_> = b.keys().collect();
            assert_eq!(ka, kb, "keys at {path}");
            for (k, v) in a {
                assert_same_shape(v, &b[k], &format!("{path}.{k}"));
            }
        }
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{path}: {a} vs {b}"
            );
        }
        _ => assert_eq!(ours, theirs, "at {path}"),
    }
}

#[tokio::test]
async fn fastai_callback_replayed_byte_for_byte_reaches_a_legacy_watch() {
    let relay = Relay::start(Config::in_memory()).await;
    let mut watch = connect(&relay.ws("/ws/watchtrain/watch/123")).await;
    let mut verbose = connect(&relay.ws("/ws/watchtrain/verbose/123")).await;
    let sent_to_watch = fixture("ancestor-server-to-watch.jsonl");
    // Before any training: the ancestor's made-up progress, byte for byte.
    let placeholder = sent_to_watch[1]["text"].as_str().unwrap();
    assert_eq!(recv_text(&mut watch).await, placeholder);
    assert_eq!(recv_text(&mut verbose).await, placeholder);

    let mut producer = connect(&relay.ws("/ws/watchtrain/producer/12345")).await;
    let messages = fixture("fastai-callback.jsonl");
    assert_eq!(messages.len(), 78);
    let register = messages[0]["text"].as_str().unwrap();
    let started = Instant::now();
    send_text(&mut producer, register).await;
    let reply = recv_text(&mut producer).await;
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "the register reply is held"
    );
    assert_eq!(reply, r#"{"training_id":1,"force_training_id":null}"#);
    for m in &messages[1..] {
        send_text(&mut producer, m["text"].as_str().unwrap()).await;
    }

    // The watch gets every progress and stats message the old server sent, same shapes.
    let expected: Vec<Value> = sent_to_watch[2..]
        .iter()
        .filter_map(|l| l["text"].as_str())
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(expected.len(), 75);
    for (i, want) in expected.iter().enumerate() {
        let got: Value = serde_json::from_str(&recv_text(&mut watch).await).unwrap();
        assert_same_shape(&got, want, &format!("message {i}"));
    }

    // The verbose path also gets the debug lines.
    let mut debug = Vec::new();
    while debug.len() < 2 {
        let text = recv_text(&mut verbose).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["action"] == "debug" {
            debug.push(v["value"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(debug[0], "BEFORE FIT");

    // And a binary consumer sees the same training through the reducer.
    let mut consumer = connect(&relay.ws("/v1/trainings/1/watch")).await;
    let state = snapshot_state(&recv_frame(&mut consumer).await);
    let names: Vec<&str> = state.metrics().iter().map(|m| m.as_str()).collect();
    assert_eq!(
        names,
        [
            "train_loss",
            "valid_loss",
            "accuracy",
            "recall_score",
            "precision_score"
        ]
    );
    assert_eq!(state.latest_epoch(), Some(2));
    assert_eq!(state.latest()[0], 0.272_073_95);
    assert_eq!(
        state.valid(),
        Bar {
            done: 12,
            total: 12
        }
    );
    relay.stop().await;
}

#[tokio::test]
async fn an_old_producer_keeps_its_id_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        db: dir.path().join("relay.sqlite3"),
        ..Config::in_memory()
    };
    let relay = Relay::start(config.clone()).await;
    let mut producer = connect(&relay.ws("/ws/watchtrain/producer/1")).await;
    send_text(
        &mut producer,
        r#"{"action": "register_training", "training_id": null, "payload": ""}"#,
    )
    .await;
    let reply: Value = serde_json::from_str(&recv_text(&mut producer).await).unwrap();
    let id = reply["training_id"].as_u64().unwrap();
    send_text(&mut producer, &format!(r#"{{"action": "training_stats", "training_id": {id}, "payload": {{"epoch": 0, "train_loss": 0.5, "time": "00:07"}}}}"#)).await;
    // Legacy has no ack: wait until the relay shows it.
    while get_json(relay.addr, &format!("/v1/trainings/{id}")).await["latest_epoch"] != 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(producer);
    relay.stop().await;

    let relay = Relay::start(config).await;
    let mut producer = connect(&relay.ws("/ws/watchtrain/producer/1")).await;
    send_text(
        &mut producer,
        &format!(r#"{{"action": "register_training", "training_id": {id}, "payload": ""}}"#),
    )
    .await;
    let reply: Value = serde_json::from_str(&recv_text(&mut producer).await).unwrap();
    assert_eq!(reply["training_id"], id);
    assert_eq!(reply["force_training_id"], id);
    send_text(&mut producer, &format!(r#"{{"action": "training_stats", "training_id": {id}, "payload": {{"epoch": 1, "train_loss": 0.25, "time": "00:07"}}}}"#)).await;
    let mut consumer = connect(&relay.ws(&format!("/v1/trainings/{id}/watch"))).await;
    let mut state = snapshot_state(&recv_frame(&mut consumer).await);
    recv_until(&mut consumer, &mut state, |s| s.latest_epoch() == Some(1)).await;
    assert_eq!(state.history_rows().count(), 2);
    assert_eq!(state.elapsed_ms(), 14_000);
    relay.stop().await;
}

#[tokio::test]
async fn stats_for_an_unknown_id_recreate_the_training() {
    // The old server was restarted without its state: the callback keeps its old id.
    let relay = Relay::start(Config::in_memory()).await;
    let mut producer = connect(&relay.ws("/ws/watchtrain/producer/9")).await;
    send_text(&mut producer, r#"{"action": "training_progress", "training_id": 41, "payload": {"epoch_iter": 2, "epoch_total": 5, "batch_iter": 3, "batch_total": 9, "task": "train"}}"#).await;
    send_text(&mut producer, r#"{"action": "training_stats", "training_id": 41, "payload": {"training_id": 41, "epoch": 1, "train_loss": NaN, "accuracy": 0.5, "time": "01:02"}}"#).await;
    wait_training(relay.addr, 41).await;
    let mut consumer = connect(&relay.ws("/v1/trainings/41/watch")).await;
    let mut state = TrainingState::new();
    let first = recv_frame(&mut consumer).await;
    state.apply(&first).unwrap();
    recv_until(&mut consumer, &mut state, |s| s.latest_epoch() == Some(1)).await;
    assert!(state.latest()[0].is_nan());
    assert_eq!(state.epochs(), 5);
    // New trainings get ids past it.
    let mut other = connect(&relay.ws("/ws/watchtrain/producer/10")).await;
    send_text(
        &mut other,
        r#"{"action": "register_training", "training_id": null, "payload": ""}"#,
    )
    .await;
    let reply: Value = serde_json::from_str(&recv_text(&mut other).await).unwrap();
    assert_eq!(reply["training_id"], 42);
    relay.stop().await;
}
