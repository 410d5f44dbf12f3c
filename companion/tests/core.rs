//! The companion's rules, natively: frames in, watch messages out.

use watchtrain_companion::face::{bar_width, face, BAR};
use watchtrain_companion::pool::Pool;
use watchtrain_companion::watch::{apply_paint, paint_messages, Value, MAX_MESSAGE_BYTES};
use watchtrain_companion::{Core, Follow};
use watchtrain_protocol::*;

const ID: u32 = 4;

fn frame(seq: u32, action: Action) -> Vec<u8> {
    Frame {
        training_id: ID,
        seq,
        action,
    }
    .to_bytes()
    .unwrap()
    .to_vec()
}

fn register(epochs: u32) -> Vec<u8> {
    let metrics = ["train_loss", "valid_loss", "accuracy"]
        .iter()
        .map(|m| truncated(m))
        .collect();
    frame(
        0,
        Action::Register(Register {
            name: truncated("resnet pets"),
            run_key: truncated("k"),
            metrics,
            epochs,
            batches: 48,
        }),
    )
}

fn progress(seq: u32, epoch: u32, batch: u32) -> Vec<u8> {
    frame(
        seq,
        Action::Progress(Progress {
            phase: Phase::Train,
            epoch,
            epochs: 10,
            batch,
            batches: 48,
        }),
    )
}

fn stats(seq: u32, epoch: u32, values: [f32; 3]) -> Vec<u8> {
    frame(
        seq,
        Action::Stats(Stats {
            epoch,
            duration_ms: 30_000,
            values: Values::from_slice(&values).unwrap(),
        }),
    )
}

/// A state with many epochs, so the chart uses much of the line pool.
fn busy_state() -> TrainingState {
    let mut state = TrainingState::new();
    state.apply(&Frame::decode(&register(40)).unwrap()).unwrap();
    for e in 0..40u32 {
        let x = e as f32;
        let f = Frame::decode(&stats(
            e + 1,
            e,
            [1.0 / (x + 1.0), 1.2 / (x + 1.0), x / 40.0],
        ))
        .unwrap();
        state.apply(&f).unwrap();
    }
    state
}

/// What a watch that applies every paint message shows.
fn replay(pool: &mut Pool, messages: &[Value]) {
    for m in messages {
        if let Value::Array(items) = m {
            if items.first() == Some(&Value::Int(1)) {
                apply_paint(pool, m).expect("well-formed paint");
            }
        }
    }
}

fn kinds(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| match m {
            Value::Array(items) => match items.first() {
                Some(Value::Int(k)) => *k,
                _ => -1,
            },
            _ => -1,
        })
        .collect()
}

fn alerts(messages: &[Value]) -> Vec<(i64, String)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Value::Array(items) if items.first() == Some(&Value::Int(3)) => {
                match (&items[1], &items[2]) {
                    (Value::Int(k), Value::Str(s)) => Some((*k, s.clone())),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

#[test]
fn full_repaint_fits_messages_and_rebuilds_the_face() {
    let state = busy_state();
    let pool = face(Some(&state));
    assert!(
        pool.shown() > 100,
        "a busy face uses the pool: {}",
        pool.shown()
    );
    let messages = paint_messages(None, &pool);
    assert!(messages.len() >= 2, "a busy face needs several messages");
    for m in &messages {
        assert!(m.cbor_len() <= MAX_MESSAGE_BYTES, "{} bytes", m.cbor_len());
    }
    // Only the first message clears the watch.
    let fulls: Vec<_> = messages
        .iter()
        .map(|m| match m {
            Value::Array(items) => items[1].clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(fulls[0], Value::Int(1));
    assert!(fulls[1..].iter().all(|f| *f == Value::Int(0)));
    // A watch showing garbage ends up with exactly the face.
    let mut watch = face(Some(&busy_state()));
    watch.texts[0] = None;
    watch.lines[150] = watch.lines[3].clone();
    replay(&mut watch, &messages);
    assert_eq!(watch, pool);
}

#[test]
fn a_diff_sends_only_what_changed() {
    let mut state = busy_state();
    let before = face(Some(&state));
    assert!(paint_messages(Some(&before), &before).is_empty());
    state
        .apply(&Frame::decode(&progress(100, 40, 24)).unwrap())
        .unwrap();
    let after = face(Some(&state));
    let messages = paint_messages(Some(&before), &after);
    assert_eq!(messages.len(), 1);
    let mut watch = before.clone();
    replay(&mut watch, &messages);
    assert_eq!(watch, after);
    // A progress update is a few small ops, far from a full repaint.
    let bytes = messages[0].cbor_len();
    let full: usize = paint_messages(None, &after)
        .iter()
        .map(Value::cbor_len)
        .sum();
    assert!(bytes * 10 < full, "diff {bytes} B vs full {full} B");
}

#[test]
fn hidden_elements_are_hidden_by_a_diff() {
    let state = busy_state();
    let before = face(Some(&state));
    let after = face(None);
    let mut watch = before.clone();
    replay(&mut watch, &paint_messages(Some(&before), &after));
    assert_eq!(watch, after);
}

#[test]
fn the_batch_bar_is_as_wide_as_the_progress() {
    let mut core = Core::new(Follow::Latest);
    let mut watch = Pool::new();
    replay(&mut watch, &core.watch_message(&[1.0, 1.0], 0.0));
    replay(&mut watch, &core.relay_frame(&register(10), 10_000.0));
    replay(&mut watch, &core.relay_frame(&progress(1, 0, 12), 20_000.0));
    let (_, width) = BAR;
    let widths: Vec<i32> = watch.rects.iter().flatten().map(|r| r.w).collect();
    assert!(widths.contains(&bar_width(12, 48, width)), "{widths:?}");
    assert_eq!(bar_width(12, 48, 256), 64);
    assert_eq!(bar_width(50, 48, 256), 256);
    assert_eq!(bar_width(1, 0, 256), 0);
}

#[test]
fn paints_are_coalesced_to_one_a_second() {
    let mut core = Core::new(Follow::Latest);
    let hello = core.watch_message(&[1.0, 1.0], 0.0);
    assert_eq!(
        kinds(&hello),
        vec![2, 1],
        "relay state, then a full repaint"
    );
    assert!(!core.relay_frame(&register(10), 1_000.0).is_empty());
    assert!(core.relay_frame(&progress(1, 0, 1), 1_100.0).is_empty());
    assert!(core.relay_frame(&progress(2, 0, 2), 1_500.0).is_empty());
    assert_eq!(core.next_paint_ms(), Some(2_000.0));
    assert!(core.tick(1_999.0).is_empty());
    let paint = core.tick(2_000.0);
    assert_eq!(kinds(&paint), vec![1]);
    assert_eq!(core.next_paint_ms(), None, "nothing waits after the paint");
}

#[test]
fn screen_off_sends_only_alerts_and_screen_on_repaints() {
    let mut core = Core::new(Follow::Latest);
    core.watch_message(&[1.0, 1.0], 0.0);
    core.relay_frame(&register(10), 1_000.0);
    assert_eq!(kinds(&core.watch_message(&[1.0, 0.0], 2_000.0)), vec![2]);
    assert!(core.relay_frame(&progress(1, 0, 5), 5_000.0).is_empty());
    assert_eq!(core.next_paint_ms(), None);
    let finished = frame(
        2,
        Action::Finished(Finished {
            outcome: Outcome::Failed,
            reason: truncated("CUDA out of memory"),
        }),
    );
    let out = core.relay_frame(&finished, 6_000.0);
    assert_eq!(kinds(&out), vec![3]);
    assert_eq!(
        alerts(&out),
        vec![(2, "resnet pets failed: CUDA out of memory".into())]
    );
    let on = core.watch_message(&[1.0, 1.0], 7_000.0);
    assert_eq!(kinds(&on), vec![2, 1]);
    match &on[1] {
        Value::Array(items) => assert_eq!(items[1], Value::Int(1), "a full repaint"),
        _ => unreachable!(),
    }
}

#[test]
fn each_alert_fires_once_per_event() {
    let mut core = Core::new(Follow::Latest);
    core.watch_message(&[1.0, 1.0], 0.0);
    let mut all = Vec::new();
    let mut t = 0.0;
    let mut feed = |core: &mut Core, bytes: Vec<u8>| {
        t += 100.0;
        all.extend(alerts(&core.relay_frame(&bytes, t)));
    };
    feed(&mut core, register(10));
    feed(&mut core, stats(1, 0, [0.9, 0.8, 0.5]));
    feed(&mut core, stats(2, 1, [f32::NAN, 0.7, 0.6]));
    feed(&mut core, stats(3, 2, [f32::NAN, 0.6, 0.7])); // still NaN: no new alert
    feed(&mut core, frame(0, Action::Stalled));
    feed(&mut core, frame(0, Action::Stalled)); // the same stall
    feed(&mut core, progress(4, 3, 1)); // running again
    feed(&mut core, stats(5, 3, [0.5, f32::INFINITY, 0.7])); // another metric: new event
                                                             // The relay restarts: its snapshot of the same state buzzes nothing.
    let snapshot = {
        let (_, state) = core.training().unwrap();
        state.to_snapshot(ID).to_bytes().unwrap().to_vec()
    };
    feed(&mut core, snapshot.clone());
    feed(
        &mut core,
        frame(
            6,
            Action::Finished(Finished {
                outcome: Outcome::Completed,
                reason: truncated(""),
            }),
        ),
    );
    feed(
        &mut core,
        frame(
            7,
            Action::Finished(Finished {
                outcome: Outcome::Completed,
                reason: truncated(""),
            }),
        ),
    );
    let kinds: Vec<i64> = all.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, vec![4, 3, 4, 1], "{all:?}");
    assert_eq!(all[0].1, "train_loss is NaN");
    assert_eq!(all[2].1, "valid_loss is inf");
    assert_eq!(all[3].1, "resnet pets completed");
}

#[test]
fn a_late_join_to_a_finished_training_does_not_buzz() {
    let mut state = busy_state();
    state
        .apply(&Frame {
            training_id: ID,
            seq: 99,
            action: Action::Finished(Finished {
                outcome: Outcome::Completed,
                reason: truncated(""),
            }),
        })
        .unwrap();
    let mut core = Core::new(Follow::Latest);
    core.watch_message(&[1.0, 1.0], 0.0);
    let out = core.relay_frame(&state.to_snapshot(ID).to_bytes().unwrap(), 5_000.0);
    assert!(alerts(&out).is_empty());
    assert!(kinds(&out).iter().all(|k| *k == 1), "paints only");
}

#[test]
fn follows_the_latest_or_the_chosen_training() {
    let other = |id: u32| {
        Frame {
            training_id: id,
            seq: 0,
            action: Action::Register(Register {
                name: truncated("other"),
                ..Default::default()
            }),
        }
        .to_bytes()
        .unwrap()
        .to_vec()
    };
    let mut latest = Core::new(Follow::Latest);
    latest.relay_frame(&register(10), 0.0);
    latest.relay_frame(&other(2), 0.0);
    assert_eq!(
        latest.training().unwrap().0,
        ID,
        "an older training is ignored"
    );
    latest.relay_frame(&other(9), 0.0);
    assert_eq!(latest.training().unwrap().0, 9, "a newer one is followed");

    let mut chosen = Core::new(Follow::parse("2"));
    chosen.relay_frame(&register(10), 0.0);
    assert!(chosen.training().is_none());
    chosen.relay_frame(&other(2), 0.0);
    assert_eq!(chosen.training().unwrap().0, 2);
    assert_eq!(Follow::parse("latest"), Follow::Latest);
    assert_eq!(Follow::parse(""), Follow::Latest);
}

#[test]
fn bad_frames_are_counted_not_applied() {
    let mut core = Core::new(Follow::Latest);
    assert!(core.relay_frame(&[9, 9, 9], 0.0).is_empty());
    assert!(core.relay_frame(&[], 0.0).is_empty());
    core.relay_frame(&register(10), 0.0);
    // Stats with the wrong number of values.
    let wrong = frame(
        1,
        Action::Stats(Stats {
            epoch: 0,
            duration_ms: 1,
            values: Values::from_slice(&[1.0]).unwrap(),
        }),
    );
    core.relay_frame(&wrong, 0.0);
    assert_eq!(core.bad_frames, 3);
}

#[test]
fn json_and_cbor_sizes() {
    let v = Value::Array(vec![
        Value::Int(1),
        Value::Int(-1),
        Value::Int(24),
        Value::Int(300),
        Value::Int(0xffffff),
        Value::Str("a\"b\\c\u{e9}\n".into()),
    ]);
    assert_eq!(
        v.to_json(),
        r#"[1,-1,24,300,16777215,"a\"b\\c\u00e9\u000a"]"#
    );
    // 1 (head) + 1 + 1 + 2 + 3 + 5 + (1 + 8: the e-acute is two bytes)
    assert_eq!(v.cbor_len(), 22);
}
