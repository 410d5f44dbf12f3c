//! Every action against bytes written by hand from `WIRE.md`'s tables, not
//! produced by the crate: a change of the encoding fails here even when the
//! generated vectors are re-blessed along with it.

use watchtrain_protocol::*;

/// Encodes `frame` and compares with `bytes`, then decodes `bytes` and compares
/// with `frame` (by `Debug`, so that a NaN equals itself).
#[track_caller]
fn loopback(frame: Frame, bytes: &[u8]) {
    let mut buf = [0xa5u8; MAX_FRAME_LEN];
    assert_eq!(
        frame.encode(&mut buf).unwrap(),
        bytes,
        "encoding of {frame:?}"
    );
    let decoded = Frame::decode(bytes).unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{frame:?}"), "decoding");
}

fn frame(training_id: u32, seq: u32, action: Action) -> Frame {
    Frame {
        training_id,
        seq,
        action,
    }
}

/// The registration of the register tests, version 2 and version 1.
fn mnist() -> Register {
    Register {
        name: truncated("mnist"),
        run_key: truncated("k1"),
        metrics: [truncated("loss"), truncated("acc")].into_iter().collect(),
        epochs: 10,
        batches: 300,
        goals: Goals::new(),
    }
}

#[test]
fn register() {
    let action = Action::Register(mnist());
    #[rustfmt::skip]
    let bytes = [
        0x02, // format version
        0x00, // training_id 0: assign one
        0x00, // seq 0
        0x00, // tag 0: Register
        0x05, b'm', b'n', b'i', b's', b't', // name
        0x02, b'k', b'1', // run_key
        0x02, 0x04, b'l', b'o', b's', b's', 0x03, b'a', b'c', b'c', // metrics
        0x0a, // epochs 10
        0xac, 0x02, // batches 300: varint, low 7 bits first
        0x00, // goals: none declared, defaults from the names
    ];
    loopback(frame(0, 0, action), &bytes);
}

#[test]
fn register_with_goals() {
    let action = Action::Register(Register {
        name: truncated("m"),
        run_key: truncated(""),
        metrics: [truncated("score"), truncated("lr"), truncated("err")]
            .into_iter()
            .collect(),
        epochs: 3,
        batches: 0,
        goals: Goals::from_slice(&[Goal::Maximize, Goal::None, Goal::Minimize]).unwrap(),
    });
    #[rustfmt::skip]
    let bytes = [
        0x02, 0x00, 0x00,
        0x00, // Register
        0x01, b'm', // name
        0x00, // run_key
        0x03, 0x05, b's', b'c', b'o', b'r', b'e', 0x02, b'l', b'r', 0x03, b'e', b'r', b'r', // metrics
        0x03, // epochs
        0x00, // batches
        0x03, 0x02, 0x00, 0x01, // goals: maximize, none, minimize
    ];
    loopback(frame(0, 0, action), &bytes);
}

#[test]
fn a_version_1_register_decodes_without_goals() {
    // Version 1 had no goals field: the frame ends after `batches`.
    #[rustfmt::skip]
    let bytes = [
        0x01, 0x00, 0x00, 0x00,
        0x05, b'm', b'n', b'i', b's', b't', 0x02, b'k', b'1',
        0x02, 0x04, b'l', b'o', b's', b's', 0x03, b'a', b'c', b'c',
        0x0a, 0xac, 0x02,
    ];
    assert_eq!(
        Frame::decode(&bytes).unwrap().action,
        Action::Register(mnist())
    );
    // Other actions of version 1 are the same bytes after the version.
    assert_eq!(
        Frame::decode(&[0x01, 0x07, 0x2a, 0x01, 0x00, 0x02, 0x0a, 0x11, 0x5c]).unwrap(),
        Frame::decode(&[0x02, 0x07, 0x2a, 0x01, 0x00, 0x02, 0x0a, 0x11, 0x5c]).unwrap(),
    );
    // A version 1 register with a goals list is one byte too long.
    let mut long = bytes.to_vec();
    long.push(0x00);
    assert_eq!(Frame::decode(&long), Err(Error::DecodeTrailingBytes));
}

#[test]
fn register_with_nothing_known_and_the_largest_ids() {
    #[rustfmt::skip]
    let bytes = [
        0x02,
        0xff, 0xff, 0xff, 0xff, 0x0f, // training_id u32::MAX
        0xff, 0xff, 0xff, 0xff, 0x0f, // seq u32::MAX
        0x00, // Register
        0x00, 0x00, 0x00, 0x00, 0x00, // empty name, run_key, metrics; epochs and batches 0
        0x00, // no goals
    ];
    loopback(
        frame(u32::MAX, u32::MAX, Action::Register(Register::default())),
        &bytes,
    );
}

#[test]
fn progress() {
    // WIRE.md's example: training 7, seq 42, train, epoch 2 of 10, batch 17 of 92.
    let action = Action::Progress(Progress {
        phase: Phase::Train,
        epoch: 2,
        epochs: 10,
        batch: 17,
        batches: 92,
    });
    loopback(
        frame(7, 42, action),
        &[0x02, 0x07, 0x2a, 0x01, 0x00, 0x02, 0x0a, 0x11, 0x5c],
    );
    let valid = Action::Progress(Progress {
        phase: Phase::Valid,
        epoch: 0,
        epochs: 0,
        batch: 128,
        batches: 0,
    });
    loopback(
        frame(7, 43, valid),
        &[0x02, 0x07, 0x2b, 0x01, 0x01, 0x00, 0x00, 0x80, 0x01, 0x00],
    );
}

#[test]
fn stats() {
    let action = Action::Stats(Stats {
        epoch: 0,
        duration_ms: 12_345,
        values: Values::from_slice(&[1.0, -2.5, f32::NAN, f32::INFINITY]).unwrap(),
    });
    #[rustfmt::skip]
    let bytes = [
        0x02, 0x07, 0x2b,
        0x02, // Stats
        0x00, // epoch 0
        0xb9, 0x60, // duration_ms 12345
        0x04, // four values, f32 little-endian
        0x00, 0x00, 0x80, 0x3f, // 1.0
        0x00, 0x00, 0x20, 0xc0, // -2.5
        0x00, 0x00, 0xc0, 0x7f, // NaN
        0x00, 0x00, 0x80, 0x7f, // inf
    ];
    loopback(frame(7, 43, action), &bytes);
}

#[test]
fn log() {
    let action = Action::Log(Log {
        level: Level::Warn,
        text: truncated("hi"),
    });
    loopback(
        frame(7, 44, action),
        &[0x02, 0x07, 0x2c, 0x03, 0x02, 0x02, b'h', b'i'],
    );
}

#[test]
fn finished() {
    let cases: [(Outcome, &str, &[u8]); 3] = [
        (Outcome::Completed, "", &[0x04, 0x00, 0x00]),
        (
            Outcome::Failed,
            "OOM",
            &[0x04, 0x01, 0x03, b'O', b'O', b'M'],
        ),
        (Outcome::Cancelled, "", &[0x04, 0x02, 0x00]),
    ];
    for (outcome, reason, payload) in cases {
        let action = Action::Finished(Finished {
            outcome,
            reason: truncated(reason),
        });
        loopback(
            frame(7, 45, action),
            &[&[0x02, 0x07, 0x2d], payload].concat(),
        );
    }
}

#[test]
fn heartbeat_stalled_and_ack() {
    loopback(frame(7, 0, Action::Heartbeat), &[0x02, 0x07, 0x00, 0x05]);
    loopback(frame(7, 0, Action::Stalled), &[0x02, 0x07, 0x00, 0x06]);
    loopback(
        frame(7, 0, Action::Ack(Ack { seq: 49 })),
        &[0x02, 0x07, 0x00, 0x07, 0x31],
    );
}

#[test]
fn snapshot() {
    let snapshot = Snapshot {
        name: truncated("t"),
        metrics: [truncated("l")].into_iter().collect(),
        epochs: 3,
        status: Status::Running,
        reason: truncated(""),
        epoch: 1,
        phase: Phase::Valid,
        train: Bar { done: 5, total: 10 },
        valid: Bar { done: 2, total: 4 },
        stride: 1,
        history: heapless::Vec::from_slice(&[0.5, 0.25]).unwrap(),
        latest_epoch: Some(1),
        latest: Values::from_slice(&[0.25]).unwrap(),
        best: heapless::Vec::from_slice(&[Best {
            epoch: 1,
            value: 0.25,
        }])
        .unwrap(),
        elapsed_ms: 2000,
        timed_epochs: 2,
        last_seq: 300,
        goals: Goals::from_slice(&[Goal::Minimize]).unwrap(),
    };
    #[rustfmt::skip]
    let bytes = [
        0x02, 0x09, 0x00,
        0x08, // Snapshot
        0x01, b't', // name
        0x01, 0x01, b'l', // metrics
        0x03, // epochs
        0x01, // status running
        0x00, // reason ""
        0x01, // epoch
        0x01, // phase valid
        0x05, 0x0a, // train 5 of 10
        0x02, 0x04, // valid 2 of 4
        0x01, // stride
        0x02, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0x3e, // history [0.5, 0.25]
        0x01, 0x01, // latest_epoch Some(1)
        0x01, 0x00, 0x00, 0x80, 0x3e, // latest [0.25]
        0x01, 0x01, 0x00, 0x00, 0x80, 0x3e, // best [(epoch 1, 0.25)]
        0xd0, 0x0f, // elapsed_ms 2000 (u64 varint)
        0x02, // timed_epochs
        0xac, 0x02, // last_seq 300
        0x01, 0x01, // goals [minimize]
    ];
    loopback(frame(9, 0, Action::Snapshot(snapshot.clone())), &bytes);

    // The same snapshot in version 1 (no goals): the goals come from the
    // names, and `l`, which has none, loses its best.
    let mut v1 = bytes[..bytes.len() - 2].to_vec();
    v1[0] = 0x01;
    let Action::Snapshot(old) = Frame::decode(&v1).unwrap().action else {
        panic!("not a snapshot");
    };
    assert_eq!(old.goals.as_slice(), [Goal::None]);
    assert!(old.best[0].value.is_nan());
    let state = TrainingState::try_from(old.clone()).unwrap();
    assert_eq!(state.best_of(0), None);
    let rest = Snapshot {
        goals: old.goals.clone(),
        best: old.best.clone(),
        ..snapshot
    };
    assert_eq!(format!("{old:?}"), format!("{rest:?}"));
}

#[test]
fn every_status_is_the_varint_of_its_table_row() {
    let statuses = [
        Status::Waiting,
        Status::Running,
        Status::Stalled,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];
    for (index, status) in statuses.into_iter().enumerate() {
        let snapshot = Snapshot {
            status,
            ..Snapshot::default()
        };
        #[rustfmt::skip]
        let bytes = [
            0x02, 0x01, 0x00, 0x08,
            0x00, 0x00, 0x00, // name, metrics, epochs
            index as u8, // status
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reason, epoch, phase, train, valid
            0x01, // stride
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // history .. last_seq
            0x00, // goals
        ];
        loopback(frame(1, 0, Action::Snapshot(snapshot)), &bytes);
    }
}
