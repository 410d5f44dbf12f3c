//! The watch link on a harsh link, natively: messages lost both ways,
//! disconnects, a relaunched companion, the screen off and on. At the end the
//! watch shows the face of the training's state and each event buzzed once;
//! the link of before (a picture counts as shown once sent) does not get there.

mod common;

use common::Watch;
use watchtrain_companion::watch::Out;
use watchtrain_companion::{Core, Follow};
use watchtrain_protocol::*;
use watchtrain_watch::vector;

const ID: u32 = 7;

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, percent: u64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 100 < percent
    }
}

fn bytes(seq: u32, action: Action) -> Vec<u8> {
    common::frame_bytes(ID, seq, action)
}

/// The relay's frames of a 50-epoch training with a NaN, a stall and a finish, one a second.
fn training() -> Vec<Vec<u8>> {
    let metrics = ["loss", "acc"].iter().map(|m| truncated(m)).collect();
    let mut frames = vec![bytes(
        0,
        Action::Register(Register {
            name: truncated("chaos"),
            run_key: truncated("c"),
            metrics,
            epochs: 50,
            batches: 4,
            goals: Default::default(),
        }),
    )];
    let mut seq = 1;
    for epoch in 0..50u32 {
        for batch in 1..=4 {
            frames.push(bytes(
                seq,
                Action::Progress(Progress {
                    phase: Phase::Train,
                    epoch,
                    epochs: 50,
                    batch,
                    batches: 4,
                }),
            ));
            seq += 1;
        }
        let loss = if epoch == 20 {
            f32::NAN
        } else {
            1.0 / (epoch as f32 + 1.0)
        };
        frames.push(bytes(
            seq,
            Action::Stats(Stats {
                epoch,
                duration_ms: 4_000,
                values: Values::from_slice(&[loss, epoch as f32 / 50.0]).unwrap(),
            }),
        ));
        seq += 1;
        if epoch == 35 {
            frames.push(bytes(0, Action::Stalled));
        }
    }
    frames.push(bytes(
        seq,
        Action::Finished(Finished {
            outcome: Outcome::Completed,
            reason: truncated(""),
        }),
    ));
    frames
}

/// Runs the training through `make`'s companion over a lossy link; returns the
/// watch and the face it should show.
fn run(make: fn(f64) -> Core, seed: u64) -> (Watch, Core) {
    let mut rng = Rng(seed);
    let mut watch = Watch::new();
    let mut core = make(0.0);
    let mut open = true;
    let frames = training();
    let mut t = 0.0;
    let steps = frames.len() + 40;
    for step in 0..steps {
        t += 1_000.0;
        let mut out = match frames.get(step) {
            Some(f) => core.relay_frame(f, t),
            None => Vec::new(),
        };
        out.extend(core.pump(t));
        let report = deliver(out, &mut watch, open, &mut rng);
        // The watch reports after what it got, and every few seconds anyway.
        if let Some(report) = report {
            let out = core.watch_message(&report, t + 100.0);
            deliver(out, &mut watch, open, &mut rng);
        }
        match step % 60 {
            // The phone goes out of reach for a few seconds.
            10 => {
                open = false;
                core.watch_closed();
            }
            14 => {
                open = true;
                let out = core.watch_opened(t);
                deliver(out, &mut watch, open, &mut rng);
            }
            // The screen turns off, and on again.
            30 => watch.screen_off = true,
            40 => watch.screen_off = false,
            _ => {}
        }
        // The phone unloads the companion; the next one finds the socket open.
        if step == 120 {
            // It joins late: the relay's snapshot first.
            let snapshot = core.training().unwrap().1.to_snapshot(ID);
            let mut fresh = make(t);
            fresh.relay_frame(&snapshot.to_bytes().unwrap(), t);
            core = fresh;
            let out = core.watch_opened(t);
            deliver(out, &mut watch, open, &mut rng);
        }
    }
    // The link heals: the last reports arrive and the last paints get through.
    for _ in 0..5 {
        t += 3_000.0;
        let out = core.watch_message(&watch.report(), t);
        out.iter().for_each(|m| watch.receive(m));
    }
    (watch, core)
}

/// Hands `out` to the watch over the lossy link; returns the report it sends back, if it gets through.
fn deliver(out: Vec<Out>, watch: &mut Watch, open: bool, rng: &mut Rng) -> Option<[f64; 5]> {
    for m in out {
        // 15% of the messages to the watch are lost, and all while it is away.
        if open && !rng.chance(15) {
            watch.receive(&m);
        }
    }
    // 15% of its reports are lost too.
    (open && !rng.chance(15)).then(|| watch.report())
}

fn face_shown(watch: &Watch, core: &Core) -> bool {
    let mut want = vector::Pool::default();
    for m in vector::encode(&core.scene(), None) {
        want.apply(&m).unwrap();
    }
    want == watch.pool
}

#[test]
fn the_watch_ends_on_the_face_and_each_event_buzzes_once() {
    for seed in [1, 2, 3, 0x5eed] {
        let (watch, core) = run(|t| Core::starting_at(Follow::Latest, t), seed);
        assert!(
            face_shown(&watch, &core),
            "seed {seed}: the watch shows another face"
        );
        let kinds: Vec<i64> = watch.buzzed.iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            vec![4, 3, 1],
            "seed {seed}: NaN, stall, finish, once each"
        );
    }
}

#[test]
fn the_link_of_before_fails_the_same_run() {
    let failed = [1, 2, 3, 0x5eed].into_iter().any(|seed| {
        let (watch, core) = run(|t| Core::starting_at(Follow::Latest, t).trust_sent(), seed);
        let kinds: Vec<i64> = watch.buzzed.iter().map(|(_, k)| *k).collect();
        !face_shown(&watch, &core) || kinds != vec![4, 3, 1]
    });
    assert!(
        failed,
        "trusting what was sent should lose pictures or alerts"
    );
}
