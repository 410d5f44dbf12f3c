//! Frame sequences for the interesting states of a face: the golden images,
//! the wasm-vs-native test, the benchmark and the README's pictures use them.
//! Test fixtures, not the face's API: tests take it with `mod scenarios;`,
//! examples with `#[path]`.
//!
//! Values are made by a small deterministic formula (no randomness), so every
//! run and every target sees the same frames.

// Each test and example compiles its own copy and uses part of it.
#![allow(dead_code)]

use watchtrain_protocol::{
    truncated, Action, Finished, Frame, Outcome, Phase, Progress, Register, Stats, Values,
};

/// Every scenario's name, in a stable order.
pub const NAMES: [&str; 10] = [
    "no_data",
    "first_epoch",
    "mid_epoch",
    "decimated_200",
    "nan_metric",
    "stalled",
    "finished",
    "failed",
    "long_names",
    "lr_schedule",
];

/// The frames of scenario `name`, or `None` for an unknown name.
pub fn frames(name: &str) -> Option<Vec<Frame>> {
    let three = ["train_loss", "valid_loss", "accuracy"];
    Some(match name {
        "no_data" => Run::new("mnist lenet", &three, 10, 0).frames,
        "first_epoch" => {
            let mut r = Run::new("mnist lenet", &three, 10, 0);
            r.progress(Phase::Train, 0, 37, 120);
            r.frames
        }
        "mid_epoch" => {
            let mut r = Run::new("resnet18 pets", &three, 10, 0);
            r.epochs(0..4, 1.0);
            r.progress(Phase::Train, 4, 120, 120);
            r.progress(Phase::Valid, 4, 9, 30);
            r.frames
        }
        "decimated_200" => {
            let mut r = Run::new(
                "gpt-nano shakespeare",
                &["train_loss", "valid_loss", "perplexity", "accuracy"],
                200,
                0,
            );
            r.epochs(0..200, 1.0);
            r.progress(Phase::Train, 199, 1, 1);
            r.finish(Outcome::Completed, "");
            r.frames
        }
        "nan_metric" => {
            let mut r = Run::new("unet lr=3e-2", &three, 20, 0);
            r.epochs(0..5, 1.0);
            r.stats(5, &[f32::NAN, 1.9, 0.41]);
            r.epochs(6..9, 1.0);
            r.stats(9, &[f32::INFINITY, f32::NAN, 0.12]);
            r.stats(10, &[f32::NAN, f32::NAN, 0.10]);
            r.progress(Phase::Train, 11, 40, 120);
            r.frames
        }
        "stalled" => {
            let mut r = Run::new("resnet18 pets", &three, 10, 0);
            r.epochs(0..6, 1.0);
            r.progress(Phase::Train, 6, 75, 120);
            r.push(Action::Stalled, 0);
            r.frames
        }
        "finished" => {
            let mut r = Run::new("resnet18 pets", &three, 10, 0);
            r.epochs(0..10, 1.0);
            r.finish(Outcome::Completed, "");
            r.frames
        }
        "failed" => {
            let mut r = Run::new("vit-b16 imagenet", &three, 30, 0);
            r.epochs(0..7, 1.0);
            r.progress(Phase::Train, 7, 311, 5004);
            r.finish(Outcome::Failed, "CUDA out of memory");
            r.frames
        }
        "long_names" => {
            let names = [
                "train_cross_entropy_loss",
                "validation_cross_entropy",
                "validation_top1_accuracy",
                "validation_top5_accuracy",
                "train_mean_squared_error",
                "learning_rate_schedule_x",
                "gradient_global_norm_l2",
                "f1_score_macro_averaged_",
            ];
            let mut r = Run::new("a very long training name that is cut", &names, 40, 0);
            r.epochs(0..13, 1.0);
            r.progress(Phase::Valid, 13, 2, 50);
            r.frames
        }
        "lr_schedule" => {
            let mut r = Run::new(
                "convnext cifar10",
                &["train_loss", "valid_loss", "accuracy", "lr"],
                20,
                0,
            );
            r.epochs(0..13, 1.0);
            r.progress(Phase::Train, 13, 150, 390);
            r.frames
        }
        _ => return None,
    })
}

/// Builds a producer's frames.
struct Run {
    frames: Vec<Frame>,
    metrics: usize,
    names: Vec<&'static str>,
    seq: u32,
    epochs: u32,
}

impl Run {
    fn new(name: &str, metrics: &[&'static str], epochs: u32, batches: u32) -> Run {
        let mut r = Run {
            frames: Vec::new(),
            metrics: metrics.len(),
            names: metrics.to_vec(),
            seq: 0,
            epochs,
        };
        let register = Register {
            name: truncated(name),
            run_key: truncated("scenario"),
            metrics: metrics.iter().map(|m| truncated(m)).collect(),
            epochs,
            batches,
            goals: Default::default(),
        };
        r.push(Action::Register(register), 0);
        r
    }

    fn push(&mut self, action: Action, seq: u32) {
        self.frames.push(Frame {
            training_id: 1,
            seq,
            action,
        });
    }

    fn next(&mut self, action: Action) {
        self.seq += 1;
        let seq = self.seq;
        self.push(action, seq);
    }

    fn progress(&mut self, phase: Phase, epoch: u32, batch: u32, batches: u32) {
        self.next(Action::Progress(Progress {
            phase,
            epoch,
            epochs: self.epochs,
            batch,
            batches,
        }));
    }

    fn stats(&mut self, epoch: u32, values: &[f32]) {
        let values = Values::from_slice(values).unwrap_or_default();
        self.next(Action::Stats(Stats {
            epoch,
            duration_ms: 41_000 + (epoch % 7) * 900,
            values,
        }));
    }

    /// Plausible curves: losses fall, accuracies rise, with a little wobble;
    /// valid loss turns up near the end (overfitting), so the best epoch is not the last.
    fn epochs(&mut self, range: core::ops::Range<u32>, scale: f32) {
        for e in range {
            let t = e as f32 / self.epochs.max(1) as f32;
            let wobble = ((e * 7919 % 13) as f32 / 13.0 - 0.5) * 0.06;
            let values: Vec<f32> = (0..self.metrics)
                .map(|i| {
                    let name = self.names[i];
                    let k = i as f32 * 0.13;
                    let v = if watchtrain_protocol::Goal::from_name(name)
                        == watchtrain_protocol::Goal::Minimize
                    {
                        let base = 2.3 * (1.0 - t).powi(3) + 0.25 + k;
                        if name.contains("val") {
                            base + 0.9 * (t - 0.55).max(0.0).powi(2) + wobble
                        } else {
                            base + wobble * 0.5
                        }
                    } else if name == "lr" {
                        // One cycle: up tenfold over the first quarter, then down two decades.
                        if t < 0.25 {
                            1e-3 + 9e-3 * t / 0.25
                        } else {
                            1e-2 * 10f32.powf(-2.0 * (t - 0.25) / 0.75)
                        }
                    } else if name.contains("rate") {
                        0.01 * (1.0 - t)
                    } else if name.contains("norm") {
                        3.0 + 2.0 * (1.0 - t) + wobble * 10.0
                    } else {
                        (0.98 - k * 0.3) - 0.8 * (1.0 - t).powi(2) + wobble * 0.5
                    };
                    v * scale
                })
                .collect();
            self.stats(e, &values);
        }
    }

    fn finish(&mut self, outcome: Outcome, reason: &str) {
        self.next(Action::Finished(Finished {
            outcome,
            reason: truncated(reason),
        }));
    }
}

/// The state after applying every frame of scenario `name`.
pub fn state(name: &str) -> Option<watchtrain_protocol::TrainingState> {
    let mut state = watchtrain_protocol::TrainingState::new();
    for f in frames(name)? {
        // Scenario frames are made to apply; a failure would show in the goldens.
        let _ = state.apply(&f);
    }
    Some(state)
}
