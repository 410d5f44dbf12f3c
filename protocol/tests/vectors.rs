//! Language-neutral test vectors: `protocol/vectors/*.json`, one per action and
//! edge case (`hex` bytes + `frame` meaning), and `reject.json`, inputs that must be
//! rejected with the named error. The Python and JavaScript sides check the same
//! files. This test fails when the checked-in files differ from what the crate
//! produces; `WATCHTRAIN_BLESS=1 cargo test -p watchtrain-protocol --test vectors`
//! rewrites them.

use serde_json::{json, Value};
use watchtrain_protocol::*;

fn float(v: f32) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f32::INFINITY {
        json!("inf")
    } else if v == f32::NEG_INFINITY {
        json!("-inf")
    } else {
        json!(v)
    }
}

fn floats(values: &[f32]) -> Value {
    values.iter().copied().map(float).collect()
}

fn strings<const N: usize>(names: &[heapless::String<N>]) -> Value {
    names.iter().map(|n| json!(n.as_str())).collect()
}

fn goals(goals: &[Goal]) -> Value {
    goals.iter().map(|g| json!(g.as_str())).collect()
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Train => "train",
        Phase::Valid => "valid",
    }
}

fn snapshot_meaning(s: &Snapshot) -> Value {
    json!({
        "name": s.name.as_str(),
        "metrics": strings(&s.metrics),
        "epochs": s.epochs,
        "status": s.status.as_str(),
        "reason": s.reason.as_str(),
        "epoch": s.epoch,
        "phase": phase(s.phase),
        "train": {"done": s.train.done, "total": s.train.total},
        "valid": {"done": s.valid.done, "total": s.valid.total},
        "stride": s.stride,
        "history": floats(&s.history),
        "latest_epoch": s.latest_epoch,
        "latest": floats(&s.latest),
        "best": s.best.iter().map(|b| json!({"epoch": b.epoch, "value": float(b.value)})).collect::<Value>(),
        "elapsed_ms": s.elapsed_ms,
        "timed_epochs": s.timed_epochs,
        "last_seq": s.last_seq,
        "goals": goals(&s.goals),
    })
}

/// The meaning of a frame as plain JSON: action names in snake_case, floats as
/// numbers or "NaN" / "inf" / "-inf".
fn meaning(f: &Frame) -> Value {
    let (action, body) = match &f.action {
        Action::Register(r) => (
            "register",
            json!({
            "name": r.name.as_str(), "run_key": r.run_key.as_str(), "metrics": strings(&r.metrics),
            "epochs": r.epochs, "batches": r.batches, "goals": goals(&r.goals)}),
        ),
        Action::Progress(p) => (
            "progress",
            json!({
            "phase": phase(p.phase), "epoch": p.epoch, "epochs": p.epochs, "batch": p.batch, "batches": p.batches}),
        ),
        Action::Stats(s) => (
            "stats",
            json!({"epoch": s.epoch, "duration_ms": s.duration_ms, "values": floats(&s.values)}),
        ),
        Action::Log(l) => (
            "log",
            json!({"level": format!("{:?}", l.level).to_lowercase(), "text": l.text.as_str()}),
        ),
        Action::Finished(x) => (
            "finished",
            json!({
            "outcome": format!("{:?}", x.outcome).to_lowercase(), "reason": x.reason.as_str()}),
        ),
        Action::Heartbeat => ("heartbeat", Value::Null),
        Action::Stalled => ("stalled", Value::Null),
        Action::Ack(a) => ("ack", json!({"seq": a.seq})),
        Action::Snapshot(s) => ("snapshot", snapshot_meaning(s)),
    };
    let mut m = json!({"training_id": f.training_id, "seq": f.seq, "action": action});
    if !body.is_null() {
        m[action] = body;
    }
    m
}

fn names(list: &[&str]) -> MetricNames {
    list.iter().map(|n| truncated(n)).collect()
}

fn frame(training_id: u32, seq: u32, action: Action) -> Frame {
    Frame {
        training_id,
        seq,
        action,
    }
}

fn stats(epoch: u32, duration_ms: u32, values: &[f32]) -> Action {
    Action::Stats(Stats {
        epoch,
        duration_ms,
        values: Values::from_slice(values).unwrap(),
    })
}

/// A 100-epoch, 4-metric training, the snapshot the benchmark measures too.
fn hundred_epochs() -> TrainingState {
    let mut s = TrainingState::new();
    let r = Register {
        name: truncated("resnet50 imagenette"),
        run_key: truncated("run-2026-11-27"),
        metrics: names(&["train_loss", "valid_loss", "accuracy", "f1"]),
        epochs: 100,
        batches: 300,
        goals: Goals::new(),
    };
    s.apply(&frame(3, 0, Action::Register(r))).unwrap();
    for e in 0..100u32 {
        let x = e as f32;
        let v = [
            1.0 / (1.0 + x),
            1.1 / (1.0 + 0.9 * x),
            1.0 - 0.5 / (1.0 + x),
            0.9 - 0.4 / (1.0 + x),
        ];
        s.apply(&frame(3, e + 1, stats(e, 31_000 + e * 7, &v)))
            .unwrap();
    }
    s
}

fn vectors() -> Vec<(&'static str, &'static str, Frame)> {
    let long_name: String = "n".repeat(MAX_NAME_LEN);
    let long_metric: String = "m".repeat(MAX_METRIC_NAME_LEN);
    let eight: Vec<String> = (0..MAX_METRICS)
        .map(|i| format!("{}{i}", &long_metric[1..]))
        .collect();
    let eight_refs: Vec<&str> = eight.iter().map(String::as_str).collect();
    vec![
        (
            "register",
            "register a training with three metrics",
            frame(
                0,
                0,
                Action::Register(Register {
                    name: truncated("pets resnet34"),
                    run_key: truncated("a1b2c3"),
                    metrics: names(&["train_loss", "valid_loss", "accuracy"]),
                    epochs: 10,
                    batches: 92,
                    goals: Goals::new(),
                }),
            ),
        ),
        (
            "register_goals",
            "register with declared goals: score maximized, lr without a goal, the third from its name",
            frame(
                0,
                0,
                Action::Register(Register {
                    name: truncated("sweep 7"),
                    run_key: truncated("s7"),
                    metrics: names(&["score", "lr", "valid_loss"]),
                    epochs: 20,
                    batches: 0,
                    goals: Goals::from_slice(&[Goal::Maximize, Goal::None]).unwrap(),
                }),
            ),
        ),
        (
            "register_empty_metrics",
            "register with no metrics, nothing known",
            frame(0, 0, Action::Register(Register::default())),
        ),
        (
            "register_max_lengths",
            "every string and list at its bound",
            frame(
                u32::MAX,
                u32::MAX,
                Action::Register(Register {
                    name: truncated(&long_name),
                    run_key: truncated(&"k".repeat(MAX_RUN_KEY_LEN)),
                    metrics: names(&eight_refs),
                    epochs: u32::MAX,
                    batches: u32::MAX,
                    goals: (0..MAX_METRICS).map(|_| Goal::Maximize).collect(),
                }),
            ),
        ),
        (
            "register_unicode",
            "unicode names (UTF-8 bytes count against the bounds)",
            frame(
                5,
                0,
                Action::Register(Register {
                    name: truncated("Übung 🚀 模型"),
                    run_key: truncated("ключ"),
                    metrics: names(&["損失", "précision"]),
                    epochs: 3,
                    batches: 0,
                    goals: Goals::new(),
                }),
            ),
        ),
        (
            "progress_train",
            "train progress, epoch 3 of 10 (0-based 2), batch 17 of 92",
            frame(
                7,
                42,
                Action::Progress(Progress {
                    phase: Phase::Train,
                    epoch: 2,
                    epochs: 10,
                    batch: 17,
                    batches: 92,
                }),
            ),
        ),
        (
            "progress_valid_large",
            "valid progress with multi-byte varints",
            frame(
                300,
                70_000,
                Action::Progress(Progress {
                    phase: Phase::Valid,
                    epoch: 199,
                    epochs: 200,
                    batch: 5_000,
                    batches: 20_000,
                }),
            ),
        ),
        (
            "stats",
            "4-metric stats of epoch 0",
            frame(
                7,
                43,
                stats(0, 12_345, &[0.595_065_9, 0.398_478_9, 0.872_395_8, 0.5]),
            ),
        ),
        (
            "stats_non_finite",
            "NaN and infinities are legal values",
            frame(
                7,
                44,
                stats(1, 0, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0]),
            ),
        ),
        (
            "stats_empty",
            "stats of a training without metrics",
            frame(1, 1, stats(0, 1, &[])),
        ),
        (
            "log",
            "an info log line",
            frame(
                7,
                45,
                Action::Log(Log {
                    level: Level::Info,
                    text: truncated("lr finder: 3e-3"),
                }),
            ),
        ),
        (
            "log_max",
            "a log line at its bound",
            frame(
                7,
                46,
                Action::Log(Log {
                    level: Level::Error,
                    text: truncated(&"é".repeat(MAX_LOG_LEN / 2)),
                }),
            ),
        ),
        (
            "finished_completed",
            "completed",
            frame(
                7,
                47,
                Action::Finished(Finished {
                    outcome: Outcome::Completed,
                    reason: truncated(""),
                }),
            ),
        ),
        (
            "finished_failed",
            "failed with a reason",
            frame(
                7,
                48,
                Action::Finished(Finished {
                    outcome: Outcome::Failed,
                    reason: truncated("RuntimeError: CUDA out of memory"),
                }),
            ),
        ),
        (
            "finished_cancelled",
            "cancelled",
            frame(
                7,
                49,
                Action::Finished(Finished {
                    outcome: Outcome::Cancelled,
                    reason: truncated("KeyboardInterrupt"),
                }),
            ),
        ),
        ("heartbeat", "heartbeat", frame(7, 0, Action::Heartbeat)),
        (
            "stalled",
            "the relay says nothing came for too long",
            frame(7, 0, Action::Stalled),
        ),
        (
            "ack",
            "the relay's answer to a registration: id 7, continue after seq 49",
            frame(7, 0, Action::Ack(Ack { seq: 49 })),
        ),
        (
            "snapshot_empty",
            "snapshot of a training nothing was applied to",
            TrainingState::new().to_snapshot(9),
        ),
        (
            "snapshot_100_epochs",
            "snapshot of a 100-epoch 4-metric training (decimated to stride 4)",
            hundred_epochs().to_snapshot(3),
        ),
    ]
}

fn rejects() -> Vec<(&'static str, Vec<u8>, Error)> {
    let inconsistent = Snapshot {
        metrics: names(&["a", "b"]),
        history: heapless::Vec::from_slice(&[1.0, 2.0, 3.0]).unwrap(),
        ..Snapshot::default()
    };
    let bad_stride = Snapshot {
        stride: 3,
        ..Snapshot::default()
    };
    let unchecked = |s: &Snapshot| {
        let mut buf = vec![FORMAT_VERSION];
        buf.extend(raw::encode_unchecked(&(
            9u32,
            0u32,
            Action::Snapshot(s.clone()),
        )));
        buf
    };
    let over: Vec<u8> = [vec![2, 1, 1, 3, 3], vec![0x80; 1]].concat();
    vec![
        ("empty", vec![], Error::DecodeEmpty),
        (
            "wrong_version",
            vec![3, 1, 1, 5],
            Error::DecodeUnsupportedVersion,
        ),
        (
            "truncated",
            vec![2, 7, 42, 1, 0, 2, 10],
            Error::DecodeTruncated,
        ),
        (
            "unknown_action",
            vec![2, 7, 0, 9],
            Error::DecodeUnknownAction,
        ),
        ("trailing", vec![2, 7, 0, 5, 0], Error::DecodeTrailingBytes),
        (
            "too_many_metrics",
            [vec![2, 1, 1, 2, 0, 0, 9], vec![0; 36]].concat(),
            Error::DecodeOverCapacity,
        ),
        (
            "bad_utf8",
            vec![2, 1, 1, 3, 1, 2, 0xff, 0xfe],
            Error::DecodeMalformed,
        ),
        (
            "overlong_varint",
            [vec![2], vec![0xff; 6], vec![0, 5]].concat(),
            Error::DecodeMalformed,
        ),
        ("truncated_varint", over, Error::DecodeTruncated),
        ("too_long", vec![1; MAX_FRAME_LEN + 1], Error::DecodeTooLong),
        (
            "unknown_goal",
            vec![2, 0, 0, 0, 0, 0, 1, 1, b'a', 0, 0, 1, 3],
            Error::DecodeOverCapacity,
        ),
        (
            "too_many_goals",
            [vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 9], vec![0; 9]].concat(),
            Error::DecodeOverCapacity,
        ),
        (
            "snapshot_ragged_history",
            unchecked(&inconsistent),
            Error::DecodeInconsistentSnapshot,
        ),
        (
            "snapshot_bad_stride",
            unchecked(&bad_stride),
            Error::DecodeInconsistentSnapshot,
        ),
    ]
}

mod raw {
    /// Encodes without the crate's checks, to build invalid snapshots.
    pub fn encode_unchecked<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let used = ::postcard::to_slice(v, &mut buf).unwrap().len();
        buf.truncate(used);
        buf
    }
}

/// Metric names whose default goal other languages must compute alike.
const GOAL_NAMES: [&str; 24] = [
    "valid_loss",
    "Train_Loss",
    "val_mae",
    "rmse",
    "error_rate",
    "trainerror",
    "perplexity",
    "wer",
    "accuracy",
    "val_acc",
    "top1-accuracy",
    "mIoU",
    "f1",
    "AUROC",
    "precision",
    "recall_at_5",
    "BLEU-4",
    "dice",
    "lr",
    "learning_rate",
    "previous_momentum",
    "score",
    "epoch_time",
    "Übung_acc",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_or_bless(path: &std::path::Path, want: &Value, stale: &mut Vec<String>) {
    let want = serde_json::to_string_pretty(want).unwrap() + "\n";
    let bless = std::env::var_os("WATCHTRAIN_BLESS").is_some();
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have != want {
        if bless {
            std::fs::write(path, want).unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
}

#[test]
fn checked_in_vectors_match_the_crate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    std::fs::create_dir_all(&dir).unwrap();
    let mut stale = Vec::new();
    // limits.json is not a vector: watch-wasm writes it and its own test checks it.
    let mut expected_files = vec![
        "reject.json".to_string(),
        "limits.json".to_string(),
        "goals.json".to_string(),
    ];
    // goals.json: the default goal of metric names, for producers that fill in undeclared goals.
    let defaults: Vec<Value> = GOAL_NAMES
        .iter()
        .map(|n| json!({"name": n, "goal": Goal::from_name(n).as_str()}))
        .collect();
    let goals = json!({
        "description": "the default goal of a metric from its name (Goal::from_name)",
        "defaults": defaults,
    });
    check_or_bless(&dir.join("goals.json"), &goals, &mut stale);
    for (name, description, frame) in vectors() {
        let bytes = frame.to_bytes().unwrap();
        // Every vector decodes back to itself (compare re-encoded bytes: NaN != NaN).
        let back = Frame::decode(&bytes).unwrap();
        assert_eq!(back.to_bytes().unwrap(), bytes, "{name}");
        let vector = json!({
            "name": name, "description": description, "hex": hex(&bytes), "frame": meaning(&frame),
        });
        check_or_bless(&dir.join(format!("{name}.json")), &vector, &mut stale);
        expected_files.push(format!("{name}.json"));
    }
    let mut rejected = Vec::new();
    for (name, bytes, error) in rejects() {
        assert_eq!(Frame::decode(&bytes).err(), Some(error), "{name}");
        rejected.push(json!({"name": name, "hex": hex(&bytes), "error": format!("{error:?}")}));
    }
    let reject = json!({
        "description": "inputs every decoder must reject; `error` is the Rust crate's error name",
        "reject": rejected,
    });
    check_or_bless(&dir.join("reject.json"), &reject, &mut stale);
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    expected_files.sort();
    assert_eq!(
        on_disk, expected_files,
        "unexpected files in protocol/vectors/"
    );
    assert!(stale.is_empty(), "vectors differ from the crate (rerun with WATCHTRAIN_BLESS=1 and review the diff): {stale:?}");
}

#[test]
fn bench_snapshot_is_decimated_and_fits() {
    let s = hundred_epochs();
    assert_eq!(s.stride(), 4);
    assert_eq!(s.history_rows().count(), 25);
    assert_eq!(s.history_rows().last().unwrap().0, 96);
    assert_eq!(s.latest_epoch(), Some(99));
    assert!(s.to_snapshot(3).to_bytes().unwrap().len() <= MAX_FRAME_LEN);
}
