//! The ancestor's JSON, byte for byte as its fastai callback sent it in a real training.

use watchtrain_protocol::json::{self, LegacyMessage};
use watchtrain_protocol::*;

fn fixture_texts(name: &str) -> Vec<String> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["text"].as_str().map(str::to_owned)
        })
        .collect()
}

#[test]
fn every_fastai_message_decodes_and_builds_the_state() {
    let mut state = TrainingState::new();
    let texts = fixture_texts("fastai-callback.jsonl");
    assert_eq!(texts.len(), 78);
    let (mut progress, mut stats, mut debug) = (0, 0, 0);
    for text in &texts {
        let msg = json::decode(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
        match &msg {
            LegacyMessage::Progress { .. } => progress += 1,
            LegacyMessage::Stats { .. } => stats += 1,
            LegacyMessage::Debug { .. } => debug += 1,
            LegacyMessage::Register { training_id } => assert_eq!(*training_id, None),
        }
        for frame in msg.to_frames(1, &state) {
            state.apply(&frame).unwrap();
        }
    }
    assert_eq!((progress, stats, debug), (72, 3, 2));
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
    assert_eq!(state.history_rows().count(), 3);
    assert_eq!(state.latest()[0], 0.272_073_95_f32);
    assert_eq!(state.epochs(), 3);
    assert_eq!(
        (state.epoch(), state.valid()),
        (
            2,
            Bar {
                done: 12,
                total: 12
            }
        )
    );
    assert_eq!(
        state.train(),
        Bar {
            done: 48,
            total: 48
        }
    );
    // Loss: lowest is best; accuracy: highest.
    assert_eq!(state.best()[0].epoch, 2);
    assert_eq!(state.best()[2].value, 0.882_812_5);
}

#[test]
fn legacy_progress_round_trips_to_the_same_shape() {
    let text = &fixture_texts("fastai-callback.jsonl")[3];
    let msg = json::decode(text.as_bytes()).unwrap();
    let frames = msg.to_frames(1, &TrainingState::new());
    let mut buf = [0u8; 512];
    let out = json::encode(&frames[0], &TrainingState::new(), &mut buf).unwrap();
    let a: serde_json::Value = serde_json::from_str(text).unwrap();
    let b: serde_json::Value = serde_json::from_str(out).unwrap();
    assert_eq!(a, b);
}

#[test]
fn legacy_stats_encode_like_the_old_server_sent_them() {
    let texts = fixture_texts("fastai-callback.jsonl");
    let stats_text = texts.iter().find(|t| t.contains("training_stats")).unwrap();
    let mut state = TrainingState::new();
    let msg = json::decode(stats_text.as_bytes()).unwrap();
    let frames = msg.to_frames(1, &state);
    for f in &frames {
        state.apply(f).unwrap();
    }
    let mut buf = [0u8; 1024];
    let out = json::encode(frames.last().unwrap(), &state, &mut buf).unwrap();
    let sent: serde_json::Value = serde_json::from_str(stats_text).unwrap();
    let ours: serde_json::Value = serde_json::from_str(out).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v["payload"].as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(&sent), keys(&ours));
    assert_eq!(ours["action"], "training_stats");
    // Losses were f32 in the training: they come back exactly.
    assert_eq!(ours["payload"]["train_loss"], sent["payload"]["train_loss"]);
    assert_eq!(ours["payload"]["time"], "00:00");
}

#[test]
fn python_non_finite_floats_are_accepted() {
    let text = br#"{"action": "training_stats", "training_id": 4, "payload": {"epoch": 1, "train_loss": NaN, "valid_loss": Infinity, "acc": -Infinity, "time": "01:05"}}"#;
    let LegacyMessage::Stats {
        training_id,
        metrics,
        stats,
    } = json::decode(text).unwrap()
    else {
        panic!("not stats")
    };
    assert_eq!(training_id, Some(4));
    assert_eq!(metrics.len(), 3);
    assert!(stats.values[0].is_nan());
    assert_eq!(stats.values[1], f32::INFINITY);
    assert_eq!(stats.values[2], f32::NEG_INFINITY);
    assert_eq!(stats.duration_ms, 65_000);
}

#[test]
fn keys_in_any_order_and_unknown_keys_ignored() {
    let text = br#"{"payload": {"task": "valid", "extra": [1, {"a": null}], "batch_total": 12, "batch_iter": 3, "epoch_total": 5, "epoch_iter": 2}, "zzz": "x", "training_id": 9, "action": "training_progress"}"#;
    let msg = json::decode(text).unwrap();
    assert_eq!(
        msg,
        LegacyMessage::Progress {
            training_id: Some(9),
            progress: Progress {
                phase: Phase::Valid,
                epoch: 1,
                epochs: 5,
                batch: 3,
                batches: 12
            }
        }
    );
}

#[test]
fn malformed_messages_say_what_was_wrong() {
    let cases: &[(&[u8], Error)] = &[
        (b"", Error::JsonMalformed),
        (b"not json", Error::JsonMalformed),
        (b"{\"action\": \"training_progress\"", Error::JsonMalformed),
        (b"{\"training_id\": 1}", Error::JsonMissingAction),
        (b"{\"action\": \"metric_image\"}", Error::JsonUnknownAction),
        (b"{\"action\": \"training_progress\", \"payload\": {\"epoch_iter\": 1}}", Error::JsonBadPayload),
        (b"{\"action\": \"training_progress\", \"payload\": {\"epoch_iter\": 1, \"epoch_total\": 1, \"batch_iter\": 1, \"batch_total\": 1, \"task\": \"test\"}}", Error::JsonBadPayload),
        (b"{\"action\": \"training_stats\", \"payload\": {\"train_loss\": 1.0}}", Error::JsonBadPayload),
        (b"{\"action\": \"training_stats\", \"payload\": {\"epoch\": 0, \"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1}}", Error::JsonTooManyMetrics),
    ];
    for (text, want) in cases {
        assert_eq!(
            json::decode(text).err(),
            Some(*want),
            "{}",
            String::from_utf8_lossy(text)
        );
    }
    let long = vec![b' '; MAX_LEGACY_JSON_LEN + 1];
    assert_eq!(json::decode(&long).err(), Some(Error::JsonTooLong));
}

#[test]
fn debug_and_register_reply() {
    let msg = json::decode(br#"{"action": "debug", "value": "BEFORE \"FIT\""}"#).unwrap();
    assert_eq!(
        msg,
        LegacyMessage::Debug {
            text: truncated("BEFORE \"FIT\"")
        }
    );
    let mut buf = [0u8; 128];
    assert_eq!(
        json::encode_register_reply(1, None, &mut buf).unwrap(),
        r#"{"training_id":1,"force_training_id":null}"#
    );
}
