//! Property tests: every action round-trips, no input panics a decoder, and the
//! reducer keeps its invariants for any frame sequence.

use proptest::prelude::*;
use watchtrain_protocol::*;

fn text<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    ".{0,40}".prop_map(|s: String| truncated(&s))
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<f32>(),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY)
    ]
}

fn metrics() -> impl Strategy<Value = MetricNames> {
    prop::collection::vec(text::<MAX_METRIC_NAME_LEN>(), 0..=MAX_METRICS)
        .prop_map(|v| v.into_iter().collect())
}

fn values(max: usize) -> impl Strategy<Value = Values> {
    prop::collection::vec(any_f32(), 0..=max).prop_map(|v| v.into_iter().collect())
}

fn goals() -> impl Strategy<Value = Goals> {
    prop::collection::vec(
        prop_oneof![Just(Goal::None), Just(Goal::Minimize), Just(Goal::Maximize)],
        0..=MAX_METRICS,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![Just(Phase::Train), Just(Phase::Valid)]
}

fn producer_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (
            text(),
            text(),
            metrics(),
            any::<u32>(),
            any::<u32>(),
            goals()
        )
            .prop_map(|(name, run_key, metrics, epochs, batches, goals)| {
                Action::Register(Register {
                    name,
                    run_key,
                    metrics,
                    epochs,
                    batches,
                    goals,
                })
            }),
        (phase(), 0u32..300, 0u32..300, any::<u32>(), any::<u32>()).prop_map(
            |(phase, epoch, epochs, batch, batches)| {
                Action::Progress(Progress {
                    phase,
                    epoch,
                    epochs,
                    batch,
                    batches,
                })
            }
        ),
        (0u32..400, any::<u32>(), values(MAX_METRICS)).prop_map(|(epoch, duration_ms, values)| {
            Action::Stats(Stats {
                epoch,
                duration_ms,
                values,
            })
        }),
        (0u32..4, text()).prop_map(|(l, text)| Action::Log(Log {
            level: [Level::Debug, Level::Info, Level::Warn, Level::Error][l as usize],
            text
        })),
        (0u32..3, text()).prop_map(|(o, reason)| Action::Finished(Finished {
            outcome: [Outcome::Completed, Outcome::Failed, Outcome::Cancelled][o as usize],
            reason
        })),
        Just(Action::Heartbeat),
        Just(Action::Stalled),
        any::<u32>().prop_map(|seq| Action::Ack(Ack { seq })),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u32>(), any::<u32>(), producer_action()).prop_map(|(training_id, seq, action)| Frame {
        training_id,
        seq,
        action,
    })
}

/// A stream of frames for one training, with small seqs so duplicates happen.
fn stream() -> impl Strategy<Value = Vec<Frame>> {
    prop::collection::vec((0u32..40, producer_action()), 0..120).prop_map(|v| {
        v.into_iter()
            .map(|(seq, action)| Frame {
                training_id: 1,
                seq,
                action,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_action_round_trips(f in frame()) {
        let bytes = f.to_bytes().unwrap();
        prop_assert!(bytes.len() <= MAX_FRAME_LEN);
        let back = Frame::decode(&bytes).unwrap();
        // Re-encoding compares NaN payloads bit for bit, which `==` cannot.
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
        prop_assert_eq!(format!("{back:?}"), format!("{f:?}"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1100)) {
        let _ = Frame::decode(&bytes);
        let _ = json::decode(&bytes);
    }

    #[test]
    fn mutated_frames_decode_or_fail_cleanly(f in frame(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = f.to_bytes().unwrap().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        // Whatever decodes re-encodes (postcard accepts non-canonical varints,
        // so the bytes may differ) to a frame with the same meaning.
        if let Ok(g) = Frame::decode(&bytes) {
            let again = Frame::decode(&g.to_bytes().unwrap()).unwrap();
            prop_assert_eq!(format!("{again:?}"), format!("{g:?}"));
        }
    }

}

proptest! {
    // Each case encodes and decodes a snapshot per frame: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn reducer_keeps_its_invariants_and_snapshots_fit(frames in stream()) {
        let mut state = TrainingState::new();
        for f in &frames {
            let before = state.clone();
            match state.apply(f) {
                Ok(Applied::Duplicate) | Ok(Applied::Ignored) | Err(_) => {
                    prop_assert_eq!(format!("{before:?}"), format!("{state:?}"));
                }
                Ok(Applied::Changed) => {}
            }
            prop_assert!(TrainingState::try_from(state.as_snapshot().clone()).is_ok());
            let snapshot = state.to_snapshot(1).to_bytes().unwrap();
            let mut copy = TrainingState::new();
            copy.apply(&Frame::decode(&snapshot).unwrap()).unwrap();
            prop_assert_eq!(format!("{copy:?}"), format!("{state:?}"));
            let _ = state.eta_ms();
        }
    }

    #[test]
    fn a_reconnect_that_resends_changes_nothing(
        register in producer_action().prop_filter("register", |a| matches!(a, Action::Register(_))),
        actions in prop::collection::vec(producer_action(), 0..80),
        resend_from in any::<prop::sample::Index>(),
    ) {
        // What a producer sends: a registration, then numbered frames.
        let mut frames = vec![Frame { training_id: 1, seq: 0, action: register }];
        frames.extend(actions.into_iter()
            .filter(|a| !matches!(a, Action::Register(_) | Action::Stalled | Action::Ack(_)))
            .enumerate()
            .map(|(i, action)| Frame { training_id: 1, seq: i as u32 + 1, action }));
        let mut once = TrainingState::new();
        for f in &frames { let _ = once.apply(f); }
        let mut again = once.clone();
        // After a reconnect: register again, resend the unacknowledged tail.
        let _ = again.apply(&frames[0]);
        for f in &frames[resend_from.index(frames.len()).max(1)..] { let _ = again.apply(f); }
        prop_assert_eq!(format!("{once:?}"), format!("{again:?}"));
    }
}

#[test]
fn the_largest_snapshot_fits_one_frame() {
    let bar = Bar {
        done: u32::MAX,
        total: u32::MAX,
    };
    let s = Snapshot {
        name: truncated(&"n".repeat(64)),
        metrics: (0..MAX_METRICS)
            .map(|_| truncated(&"m".repeat(64)))
            .collect(),
        epochs: u32::MAX,
        status: Status::Cancelled,
        reason: truncated(&"r".repeat(64)),
        epoch: u32::MAX,
        phase: Phase::Valid,
        train: bar,
        valid: bar,
        stride: 1 << 31,
        history: (0..HISTORY_VALUES).map(|_| f32::NAN).collect(),
        latest_epoch: Some(u32::MAX),
        latest: (0..MAX_METRICS).map(|_| 1.0).collect(),
        best: (0..MAX_METRICS)
            .map(|_| Best {
                epoch: u32::MAX,
                value: 1.0,
            })
            .collect(),
        elapsed_ms: u64::MAX,
        timed_epochs: u32::MAX,
        last_seq: u32::MAX,
        goals: (0..MAX_METRICS).map(|_| Goal::Maximize).collect(),
    };
    let s = TrainingState::try_from(s).unwrap();
    let bytes = s.to_snapshot(u32::MAX).to_bytes().unwrap();
    assert!(bytes.len() <= MAX_FRAME_LEN, "{} bytes", bytes.len());
    println!("largest snapshot: {} bytes", bytes.len());
}
