//! The companion's rules, natively: frames in, watch messages out.

mod common;

use watchtrain_companion::watch::{Out, Value, MAX_MESSAGE_BYTES};
use watchtrain_companion::{Core, Follow};
use watchtrain_protocol::*;
use watchtrain_watch::limits::PAINT_HEADER_LEN;
use watchtrain_watch::{layout, render, vector, Framebuffer, Screen, Theme};

const ID: u32 = 4;

fn frame(seq: u32, action: Action) -> Vec<u8> {
    common::frame_bytes(ID, seq, action)
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
            goals: Default::default(),
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
fn replay(pool: &mut vector::Pool, messages: &[Out]) {
    for m in messages {
        if let Out::Paint(bytes) = m {
            pool.apply(&bytes[PAINT_HEADER_LEN..])
                .expect("well-formed paint");
        }
    }
}

fn kinds(messages: &[Out]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| match m {
            Out::Paint(_) => 1,
            Out::Message(Value::Array(items)) => match items.first() {
                Some(Value::Int(k)) => *k,
                _ => -1,
            },
            _ => -1,
        })
        .collect()
}

fn alerts(messages: &[Out]) -> Vec<(i64, String)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Out::Message(Value::Array(items)) if items.first() == Some(&Value::Int(3)) => {
                match (&items[1], &items[2]) {
                    (Value::Int(k), Value::Str(s)) => Some((*k, s.clone())),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

fn picture(pool: &vector::Pool) -> Framebuffer {
    let mut fb = Framebuffer::new(336, 336);
    pool.draw(&mut fb).unwrap();
    fb
}

/// Largest channel difference (RGB565 rounding makes up to 4).
fn max_difference(a: &Framebuffer, b: &Framebuffer) -> u8 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[test]
fn a_full_repaint_fits_messages_and_draws_the_face() {
    let state = busy_state();
    let mut core = Core::new(Follow::Latest);
    core.relay_frame(&state.to_snapshot(ID).to_bytes().unwrap(), 0.0);
    let out = core.watch_message(&[1.0, 1.0], 10.0);
    assert_eq!(kinds(&out)[0], 2, "the relay state first");
    assert!(out.len() >= 2, "the relay state and the paint");
    for m in &out {
        if let Out::Paint(bytes) = m {
            assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
        }
    }
    // A watch showing another face ends up with exactly this one.
    let mut watch = vector::Pool::default();
    let other = layout(&TrainingState::new(), Screen::VERSA3, &Theme::dark());
    for m in vector::encode(&other, None) {
        watch.apply(&m).unwrap();
    }
    replay(&mut watch, &out);
    let raster = render(&state, Screen::VERSA3, &Theme::dark());
    assert!(max_difference(&picture(&watch), &raster) <= 4);
}

#[test]
fn a_diff_sends_only_what_changed() {
    let mut core = Core::new(Follow::Latest);
    let mut watch = common::Watch::new();
    // Delivers everything and lets the watch report; returns what was sent.
    let mut deliver = |core: &mut Core, out: Vec<Out>, t: f64| {
        out.iter().for_each(|m| watch.receive(m));
        let report = watch.report();
        assert!(
            core.watch_message(&report, t).is_empty(),
            "all acknowledged"
        );
        out
    };
    let hello = core.watch_message(&[1.0, 1.0], 0.0);
    deliver(&mut core, hello, 0.0);
    let frames = [
        register(10),
        stats(1, 0, [0.9, 0.8, 0.5]),
        stats(2, 1, [0.7, 0.7, 0.6]),
    ];
    for (i, bytes) in frames.iter().enumerate() {
        let t = 10_000.0 * (i as f64 + 1.0);
        let out = core.relay_frame(bytes, t);
        deliver(&mut core, out, t);
    }
    let full: usize = vector::encode(&core.scene(), None)
        .iter()
        .map(Vec::len)
        .sum();
    let out = core.relay_frame(&progress(3, 2, 24), 100_000.0);
    let out = deliver(&mut core, out, 100_000.0);
    assert_eq!(kinds(&out), vec![1]);
    let bytes = out[0].cbor_len();
    assert!(bytes * 3 < full, "diff {bytes} B vs full {full} B");
    let (_, state) = core.training().unwrap();
    let raster = render(state, Screen::VERSA3, &Theme::dark());
    assert!(max_difference(&picture(&watch.pool), &raster) <= 4);
    // The same seq again: nothing changed, nothing sent.
    assert!(core.relay_frame(&progress(3, 2, 24), 200_000.0).is_empty());
}

#[test]
fn paints_are_coalesced_to_one_a_second() {
    let mut core = Core::new(Follow::Latest);
    let mut watch = common::Watch::new();
    let hello = core.watch_message(&watch.report(), 0.0);
    assert_eq!(
        kinds(&hello),
        vec![2, 1],
        "relay state, then a full repaint"
    );
    hello.iter().for_each(|m| watch.receive(m));
    assert!(core.watch_message(&watch.report(), 100.0).is_empty());
    let register = core.relay_frame(&register(10), 1_000.0);
    assert_eq!(
        kinds(&register),
        vec![1],
        "the first change after a quiet second goes at once"
    );
    register.iter().for_each(|m| watch.receive(m));
    assert!(core.watch_message(&watch.report(), 1_050.0).is_empty());
    assert!(core.relay_frame(&progress(1, 0, 1), 1_100.0).is_empty());
    assert!(core.relay_frame(&progress(2, 0, 2), 1_500.0).is_empty());
    assert_eq!(core.next_paint_ms(), Some(2_000.0));
    assert!(core.tick(1_999.0).is_empty());
    let paint = core.tick(2_000.0);
    assert_eq!(kinds(&paint), vec![1]);
    assert_eq!(
        core.next_paint_ms(),
        Some(4_000.0),
        "unacknowledged: sent again after RESEND_MS"
    );
    paint.iter().for_each(|m| watch.receive(m));
    assert!(core.watch_message(&watch.report(), 2_100.0).is_empty());
    assert_eq!(
        core.next_paint_ms(),
        None,
        "nothing waits once acknowledged"
    );
}

#[test]
fn screen_off_sends_only_alerts_and_screen_on_repaints() {
    let mut core = Core::new(Follow::Latest);
    let mut watch = common::Watch::new();
    let mut deliver = |core: &mut Core, out: Vec<Out>, t: f64| {
        out.iter().for_each(|m| watch.receive(m));
        let report = watch.report();
        [out, core.watch_message(&report, t)].concat()
    };
    let hello = core.watch_message(&[1.0, 1.0], 0.0);
    deliver(&mut core, hello, 0.0);
    let out = core.relay_frame(&register(10), 1_000.0);
    deliver(&mut core, out, 1_000.0);
    assert!(core
        .watch_message(&[1.0, 0.0, watch.picture.into(), 0.0, 0.0], 2_000.0)
        .is_empty());
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
        vec![(2, "resnet pets failed:\nCUDA out of memory".into())]
    );
    // Screen on: the diff from the picture the watch holds, not a full repaint.
    let on = core.watch_message(&[1.0, 1.0, watch.picture.into(), 0.0, 0.0], 7_000.0);
    assert_eq!(
        kinds(&on),
        vec![1],
        "a paint (the alert goes again after RESEND_MS)"
    );
    let Out::Paint(diff) = &on[0] else {
        unreachable!()
    };
    let full: usize = vector::encode(&core.scene(), None)
        .iter()
        .map(Vec::len)
        .sum();
    assert!(
        diff.len() < full,
        "a diff ({} B), not a full repaint ({full} B)",
        diff.len()
    );
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
    assert!(alerts(&out).is_empty(), "no alert");
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

#[test]
fn alerts_fit_the_banner_in_one_or_two_lines() {
    use watchtrain_companion::watch::{fit_alert, system_width, ALERT_FONT_PX, ALERT_LINE_PX};
    let fits = |line: &str| system_width(line, ALERT_FONT_PX) <= ALERT_LINE_PX;
    assert_eq!(fit_alert("mnist completed"), "mnist completed");
    let two = fit_alert("resnet18 pets failed: CUDA out of memory");
    let lines: Vec<&str> = two.split('\n').collect();
    assert_eq!(lines.len(), 2, "{two:?}");
    assert!(lines.iter().all(|l| fits(l)), "{two:?}");
    assert_eq!(
        two.replace('\n', " "),
        "resnet18 pets failed: CUDA out of memory"
    );
    // Longer than two lines: the second ends with an ellipsis.
    let long = fit_alert(&"WWWW ".repeat(20));
    let lines: Vec<&str> = long.split('\n').collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[1].ends_with('\u{2026}') && lines.iter().all(|l| fits(l)),
        "{long:?}"
    );
    // No space to break at: cut mid-word.
    let word = fit_alert(&"x".repeat(80));
    assert!(word.split('\n').all(fits), "{word:?}");
}
