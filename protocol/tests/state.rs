//! The reducer, one behaviour at a time.

use watchtrain_protocol::*;

fn f(seq: u32, action: Action) -> Frame {
    Frame {
        training_id: 1,
        seq,
        action,
    }
}

fn register(metrics: &[&str], epochs: u32) -> Action {
    Action::Register(Register {
        name: truncated("t"),
        metrics: metrics.iter().map(|m| truncated(m)).collect(),
        epochs,
        ..Default::default()
    })
}

fn stats(epoch: u32, values: &[f32]) -> Action {
    Action::Stats(Stats {
        epoch,
        duration_ms: 1000,
        values: Values::from_slice(values).unwrap(),
    })
}

fn progress(phase: Phase, epoch: u32, batch: u32, batches: u32) -> Action {
    Action::Progress(Progress {
        phase,
        epoch,
        epochs: 10,
        batch,
        batches,
    })
}

#[test]
fn register_then_waiting_then_running() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss"], 5))).unwrap();
    assert_eq!((s.status(), s.epochs()), (Status::Waiting, 5));
    s.apply(&f(1, progress(Phase::Train, 0, 3, 10))).unwrap();
    assert_eq!(s.status(), Status::Running);
    assert_eq!(s.train(), Bar { done: 3, total: 10 });
}

#[test]
fn stats_without_progress_move_the_current_epoch() {
    // `watchtrain tail`, `send` and `log_epoch` without `track` send only stats.
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss"], 5))).unwrap();
    for e in 0..5 {
        s.apply(&f(e + 1, stats(e, &[1.0]))).unwrap();
        assert_eq!(s.epoch(), e, "after the stats of epoch {e}");
    }
    // A late stats of an older epoch does not move it back.
    s.apply(&f(6, stats(2, &[0.5]))).unwrap();
    assert_eq!(s.epoch(), 4);
}

#[test]
fn stats_of_a_later_epoch_reset_the_bars_and_of_the_current_one_keep_them() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss"], 10))).unwrap();
    s.apply(&f(1, progress(Phase::Train, 1, 7, 10))).unwrap();
    s.apply(&f(2, stats(1, &[1.0]))).unwrap();
    assert_eq!((s.epoch(), s.train()), (1, Bar { done: 7, total: 10 }));
    s.apply(&f(3, stats(3, &[1.0]))).unwrap();
    assert_eq!((s.epoch(), s.train()), (3, Bar { done: 0, total: 10 }));
}

#[test]
fn progress_of_a_new_epoch_resets_both_bars() {
    let mut s = TrainingState::new();
    s.apply(&f(1, progress(Phase::Train, 0, 10, 10))).unwrap();
    s.apply(&f(2, progress(Phase::Valid, 0, 4, 4))).unwrap();
    s.apply(&f(3, progress(Phase::Train, 1, 2, 10))).unwrap();
    assert_eq!((s.epoch(), s.phase()), (1, Phase::Train));
    assert_eq!(s.train(), Bar { done: 2, total: 10 });
    assert_eq!(s.valid().done, 0);
}

#[test]
fn stats_must_match_registered_metrics_and_errors_change_nothing() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss", "acc"], 5))).unwrap();
    let before = s.clone();
    assert_eq!(
        s.apply(&f(1, stats(0, &[1.0]))),
        Err(Error::ApplyMetricsMismatch)
    );
    assert_eq!(s, before);
}

#[test]
fn duplicates_by_seq_change_nothing_and_unsequenced_always_apply() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss"], 5))).unwrap();
    assert_eq!(s.apply(&f(1, stats(0, &[0.5]))), Ok(Applied::Changed));
    assert_eq!(s.apply(&f(1, stats(0, &[0.9]))), Ok(Applied::Duplicate));
    assert_eq!(s.latest()[0], 0.5);
    assert_eq!((s.timed_epochs(), s.last_seq()), (1, 1));
    assert_eq!(s.apply(&f(0, Action::Heartbeat)), Ok(Applied::Changed));
}

#[test]
fn best_is_lowest_for_minimized_and_highest_for_maximized_and_ignores_nan() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["valid_loss", "accuracy"], 5)))
        .unwrap();
    s.apply(&f(1, stats(0, &[0.5, 0.7]))).unwrap();
    s.apply(&f(2, stats(1, &[0.3, f32::NAN]))).unwrap();
    s.apply(&f(3, stats(2, &[0.4, 0.6]))).unwrap();
    assert_eq!(
        s.best()[0],
        Best {
            epoch: 1,
            value: 0.3
        }
    );
    assert_eq!(
        s.best()[1],
        Best {
            epoch: 0,
            value: 0.7
        }
    );
    assert_eq!(s.goals().as_slice(), [Goal::Minimize, Goal::Maximize]);
    assert_eq!(Goal::from_name("Train_Loss"), Goal::Minimize);
    assert_eq!(Goal::from_name("val_mae"), Goal::Minimize);
    assert_eq!(Goal::from_name("f1"), Goal::Maximize);
}

fn register_with_goals(metrics: &[&str], goals: &[Goal]) -> Action {
    Action::Register(Register {
        name: truncated("t"),
        metrics: metrics.iter().map(|m| truncated(m)).collect(),
        goals: Goals::from_slice(goals).unwrap(),
        ..Default::default()
    })
}

#[test]
fn a_metric_without_a_goal_has_no_best() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss", "lr"], 5))).unwrap();
    assert_eq!(s.goals().as_slice(), [Goal::Minimize, Goal::None]);
    s.apply(&f(1, stats(0, &[0.5, 0.1]))).unwrap();
    s.apply(&f(2, stats(1, &[0.4, 0.01]))).unwrap();
    assert_eq!(
        s.best_of(0),
        Some(Best {
            epoch: 1,
            value: 0.4
        })
    );
    assert!(s.best()[1].value.is_nan());
    assert_eq!(s.best_of(1), None);
}

#[test]
fn declared_goals_override_the_names_and_missing_ones_default() {
    let mut s = TrainingState::new();
    // `score` has no default; `error_rate` would be minimized by its name; `acc` is not declared.
    s.apply(&f(
        0,
        register_with_goals(
            &["score", "error_rate", "acc"],
            &[Goal::Maximize, Goal::None],
        ),
    ))
    .unwrap();
    assert_eq!(
        s.goals().as_slice(),
        [Goal::Maximize, Goal::None, Goal::Maximize]
    );
    s.apply(&f(1, stats(0, &[1.0, 0.5, 0.1]))).unwrap();
    s.apply(&f(2, stats(1, &[3.0, 0.2, 0.3]))).unwrap();
    s.apply(&f(3, stats(2, &[2.0, 0.1, 0.2]))).unwrap();
    assert_eq!(
        s.best_of(0),
        Some(Best {
            epoch: 1,
            value: 3.0
        })
    );
    assert_eq!(s.best_of(1), None);
    assert_eq!(
        s.best_of(2),
        Some(Best {
            epoch: 1,
            value: 0.3
        })
    );
}

#[test]
fn a_registration_without_goals_keeps_the_declared_ones_and_new_goals_find_the_best_again() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register_with_goals(&["score"], &[Goal::Minimize])))
        .unwrap();
    s.apply(&f(1, stats(0, &[1.0]))).unwrap();
    s.apply(&f(2, stats(1, &[3.0]))).unwrap();
    s.apply(&f(3, stats(2, &[2.0]))).unwrap();
    // A resent registration (a `watchtrain send` call) that declares nothing.
    s.apply(&f(0, register(&["score"], 5))).unwrap();
    assert_eq!(s.goals().as_slice(), [Goal::Minimize]);
    assert_eq!(
        s.best_of(0),
        Some(Best {
            epoch: 0,
            value: 1.0
        })
    );
    s.apply(&f(0, register_with_goals(&["score"], &[Goal::Maximize])))
        .unwrap();
    assert_eq!(
        s.best_of(0),
        Some(Best {
            epoch: 1,
            value: 3.0
        })
    );
    s.apply(&f(0, register_with_goals(&[], &[Goal::None])))
        .unwrap();
    assert_eq!(s.best_of(0), None);
}

#[test]
fn history_decimates_evenly_over_the_whole_run() {
    let mut s = TrainingState::new();
    let names = ["a", "b", "c", "d"];
    s.apply(&f(0, register(&names, 200))).unwrap();
    for e in 0..200 {
        s.apply(&f(e + 1, stats(e, &[e as f32; 4]))).unwrap();
    }
    assert_eq!(s.history_capacity(), HISTORY_VALUES / 4);
    assert_eq!(s.stride(), 8);
    let rows: Vec<(u32, f32)> = s.history_rows().map(|(e, v)| (e, v[0])).collect();
    assert_eq!(rows.len(), 25);
    // Each kept row is the epoch it claims to be, spread over the whole run.
    assert!(rows.iter().all(|(e, v)| *v == *e as f32));
    assert_eq!(rows.first().unwrap().0, 0);
    assert_eq!(rows.last().unwrap().0, 192);
    assert_eq!((s.latest_epoch(), s.latest()[0]), (Some(199), 199.0));
}

#[test]
fn skipped_epochs_are_gaps_and_late_epochs_overwrite_their_row() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss"], 10))).unwrap();
    s.apply(&f(1, stats(0, &[1.0]))).unwrap();
    s.apply(&f(2, stats(3, &[0.5]))).unwrap();
    let rows: Vec<f32> = s.history_rows().map(|(_, v)| v[0]).collect();
    assert_eq!(rows.len(), 4);
    assert!(rows[1].is_nan() && rows[2].is_nan());
    s.apply(&f(3, stats(1, &[0.8]))).unwrap();
    assert_eq!(s.history_rows().nth(1).unwrap().1, &[0.8]);
    assert_eq!(
        s.latest_epoch(),
        Some(3),
        "an older epoch does not become the latest"
    );
}

#[test]
fn new_metric_names_reset_the_history_but_the_same_names_do_not() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss"], 10))).unwrap();
    s.apply(&f(1, stats(0, &[1.0]))).unwrap();
    s.apply(&f(0, register(&["loss"], 10))).unwrap();
    assert_eq!(s.history_rows().count(), 1);
    s.apply(&f(0, register(&[], 10))).unwrap();
    assert_eq!(
        (s.metrics().len(), s.history_rows().count()),
        (1, 1),
        "empty metrics keep the registered ones"
    );
    s.apply(&f(0, register(&["loss", "acc"], 10))).unwrap();
    assert!(s.history_rows().next().is_none() && s.latest_epoch().is_none());
}

#[test]
fn finish_stall_and_recovery() {
    let mut s = TrainingState::new();
    s.apply(&f(1, progress(Phase::Train, 0, 1, 10))).unwrap();
    s.apply(&f(0, Action::Stalled)).unwrap();
    assert_eq!(s.status(), Status::Stalled);
    s.apply(&f(0, Action::Heartbeat)).unwrap();
    assert_eq!(s.status(), Status::Running);
    let fin = Finished {
        outcome: Outcome::Failed,
        reason: truncated("ValueError"),
    };
    s.apply(&f(2, Action::Finished(fin))).unwrap();
    assert_eq!(
        (s.status(), s.reason().as_str()),
        (Status::Failed, "ValueError")
    );
    assert_eq!(s.apply(&f(0, Action::Stalled)), Ok(Applied::Ignored));
    assert_eq!(s.status(), Status::Failed);
    assert_eq!(s.eta_ms(), Some(0));
}

#[test]
fn eta_uses_mean_epoch_time_and_current_batch_progress() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss"], 10))).unwrap();
    assert_eq!(s.eta_ms(), None);
    s.apply(&f(
        1,
        Action::Stats(Stats {
            epoch: 0,
            duration_ms: 10_000,
            values: Values::from_slice(&[1.0]).unwrap(),
        }),
    ))
    .unwrap();
    s.apply(&f(
        2,
        Action::Stats(Stats {
            epoch: 1,
            duration_ms: 20_000,
            values: Values::from_slice(&[1.0]).unwrap(),
        }),
    ))
    .unwrap();
    assert_eq!(s.eta_ms(), Some(8 * 15_000));
    s.apply(&f(3, progress(Phase::Train, 2, 5, 10))).unwrap();
    assert_eq!(s.eta_ms(), Some(8 * 15_000 - 7_500));
}

#[test]
fn a_snapshot_replaces_the_state_and_an_inconsistent_one_is_refused() {
    let mut s = TrainingState::new();
    s.apply(&f(0, register(&["loss"], 10))).unwrap();
    s.apply(&f(5, stats(0, &[1.0]))).unwrap();
    let mut other = TrainingState::new();
    other.apply(&s.to_snapshot(1)).unwrap();
    assert_eq!(other, s);
    let bad = Snapshot {
        stride: 0,
        ..s.as_snapshot().clone()
    };
    assert_eq!(
        TrainingState::try_from(bad.clone()),
        Err(Error::DecodeInconsistentSnapshot)
    );
    let frame = Frame {
        training_id: 1,
        seq: 0,
        action: Action::Snapshot(bad),
    };
    assert_eq!(other.apply(&frame), Err(Error::DecodeInconsistentSnapshot));
    assert_eq!(other, s, "a refused snapshot changes nothing");
}
