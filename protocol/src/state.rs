//! `TrainingState`: everything a consumer needs, built by a pure reducer over frames.
//!
//! # History and decimation
//!
//! The history holds one row of values per kept epoch, at most
//! [`HISTORY_VALUES`] values in all (so 32 rows for 4 metrics). Row `i` holds
//! epoch `i * stride`. When an epoch's row would not fit, the stride doubles
//! and every other row is dropped, so the kept epochs stay evenly spread over
//! the whole run (0, 2, 4, ... then 0, 4, 8, ...). The latest epoch's values
//! are always kept in [`TrainingState::latest`], so a chart draws the kept
//! rows and then the latest point. An epoch skipped by the producer leaves a
//! row of NaN: a gap, not a made-up value.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::frame::*;
use crate::limits::*;
use crate::Error;

/// Where a training is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Status {
    /// Registered (or only seen), no progress or stats yet.
    #[default]
    Waiting,
    /// Frames are arriving.
    Running,
    /// Nothing arrived for too long (the relay says so).
    Stalled,
    /// Ended normally.
    Completed,
    /// Ended with an error.
    Failed,
    /// Stopped by someone.
    Cancelled,
}

impl Status {
    /// True once the training has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    /// A lower-case word for people and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Stalled => "stalled",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Batch progress of one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bar {
    /// Batches done.
    pub done: u32,
    /// Batches in all, `0` if unknown.
    pub total: u32,
}

/// The best value a metric reached so far.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Best {
    /// The epoch it was reached in.
    pub epoch: u32,
    /// The value (NaN until a finite value arrives).
    pub value: f32,
}

/// What applying a frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// The frame's `seq` was already applied: nothing changed.
    Duplicate,
    /// The frame carries nothing for the state (e.g. an [`Ack`]).
    Ignored,
}

/// The whole state of one training. Field order is the snapshot's wire order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainingState {
    /// Display name.
    pub name: Name,
    /// Registered metric names.
    pub metrics: Metrics,
    /// Epochs planned, `0` if unknown.
    pub epochs: u32,
    /// Where the training is in its life.
    pub status: Status,
    /// Why it finished, when it did.
    pub reason: Reason,
    /// The epoch the latest progress is in, 0-based.
    pub epoch: u32,
    /// The phase of the latest progress.
    pub phase: Phase,
    /// Train batch progress of the current epoch.
    pub train: Bar,
    /// Valid batch progress of the current epoch.
    pub valid: Bar,
    /// Epoch distance between history rows: a power of two, at least 1.
    pub stride: u32,
    /// History rows, `metrics.len()` values each (see the module docs).
    pub history: Vec<f32, HISTORY_VALUES>,
    /// The latest stats epoch, if any.
    pub latest_epoch: Option<u32>,
    /// The latest stats values.
    pub latest: Values,
    /// Best value per metric (lowest for losses and errors, highest otherwise).
    pub best: Vec<Best, MAX_METRICS>,
    /// Sum of the durations of the epochs seen, in milliseconds.
    pub elapsed_ms: u64,
    /// How many epochs `elapsed_ms` covers.
    pub timed_epochs: u32,
    /// The highest producer `seq` applied.
    pub last_seq: u32,
}

/// True for metric names where lower is better (losses, errors, perplexity).
pub fn lower_is_better(name: &str) -> bool {
    [
        "loss",
        "err",
        "mse",
        "mae",
        "rmse",
        "perplexity",
        "wer",
        "cer",
    ]
    .iter()
    .any(|word| contains_ignore_case(name, word))
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

impl TrainingState {
    /// A state with nothing applied yet.
    pub fn new() -> Self {
        TrainingState {
            stride: 1,
            ..Default::default()
        }
    }

    /// Applies one frame. Pure and deterministic: the same frames in the same
    /// order give the same state, and a frame whose `seq` was already applied
    /// changes nothing. On error the state is unchanged.
    ///
    /// ```
    /// use watchtrain_protocol::*;
    /// let mut state = TrainingState::new();
    /// let metrics = [truncated("train_loss"), truncated("accuracy")].into_iter().collect();
    /// let register = Register { name: truncated("mnist"), metrics, epochs: 10, ..Default::default() };
    /// state.apply(&Frame { training_id: 1, seq: 0, action: Action::Register(register) })?;
    /// let stats = Stats { epoch: 0, duration_ms: 12_000, values: Values::from_slice(&[0.5, 0.8]).unwrap() };
    /// let frame = Frame { training_id: 1, seq: 1, action: Action::Stats(stats) };
    /// assert_eq!(state.apply(&frame)?, Applied::Changed);
    /// assert_eq!(state.apply(&frame)?, Applied::Duplicate);
    /// assert_eq!(state.eta_ms(), Some(9 * 12_000));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn apply(&mut self, frame: &Frame) -> Result<Applied, Error> {
        if frame.seq != 0 && frame.seq <= self.last_seq {
            return Ok(Applied::Duplicate);
        }
        let applied = match &frame.action {
            Action::Register(r) => {
                self.register(r);
                Applied::Changed
            }
            Action::Progress(p) => {
                self.progress(p);
                Applied::Changed
            }
            Action::Stats(s) => {
                self.stats(s)?;
                Applied::Changed
            }
            Action::Log(_) | Action::Heartbeat => {
                if self.status == Status::Stalled {
                    self.status = Status::Running;
                }
                Applied::Changed
            }
            Action::Finished(f) => {
                self.status = match f.outcome {
                    Outcome::Completed => Status::Completed,
                    Outcome::Failed => Status::Failed,
                    Outcome::Cancelled => Status::Cancelled,
                };
                self.reason = f.reason.clone();
                Applied::Changed
            }
            Action::Stalled => {
                if self.status.is_finished() {
                    return Ok(Applied::Ignored);
                }
                self.status = Status::Stalled;
                Applied::Changed
            }
            Action::Ack(_) => return Ok(Applied::Ignored),
            Action::Snapshot(s) => {
                s.check()?;
                *self = s.clone();
                return Ok(Applied::Changed);
            }
        };
        self.last_seq = self.last_seq.max(frame.seq);
        Ok(applied)
    }

    fn register(&mut self, r: &Register) {
        self.name = r.name.clone();
        // Progress frames carry newer plans; a registration only fills in the unknown.
        if self.epochs == 0 {
            self.epochs = r.epochs;
        }
        if r.batches != 0 && self.train.total == 0 {
            self.train.total = r.batches;
        }
        // Empty metrics keep the registered ones, so a script can send a log or
        // progress under a run key without repeating the metric names.
        if !r.metrics.is_empty() && r.metrics != self.metrics {
            // New metric names make the old history meaningless.
            self.metrics = r.metrics.clone();
            self.history.clear();
            self.latest.clear();
            self.best.clear();
            self.latest_epoch = None;
            self.stride = 1;
        }
        // A producer registering again is alive; an ended training stays ended
        // (a resent registration must not reopen it), new progress reopens it.
        if self.status == Status::Stalled {
            self.status = Status::Running;
        }
    }

    fn progress(&mut self, p: &Progress) {
        if p.epoch != self.epoch {
            self.epoch = p.epoch;
            self.train.done = 0;
            self.valid.done = 0;
        }
        if p.epochs != 0 {
            self.epochs = p.epochs;
        }
        self.phase = p.phase;
        let bar = match p.phase {
            Phase::Train => &mut self.train,
            Phase::Valid => &mut self.valid,
        };
        bar.done = p.batch;
        bar.total = p.batches;
        self.status = Status::Running;
        self.reason.clear();
    }

    fn stats(&mut self, s: &Stats) -> Result<(), Error> {
        if s.values.len() != self.metrics.len() {
            return Err(Error::ApplyMetricsMismatch);
        }
        let is_new_epoch = self.latest_epoch.is_none_or(|latest| s.epoch > latest);
        if is_new_epoch {
            self.elapsed_ms += u64::from(s.duration_ms);
            self.timed_epochs += 1;
            self.latest_epoch = Some(s.epoch);
            self.latest = s.values.clone();
        } else if self.latest_epoch == Some(s.epoch) {
            self.latest = s.values.clone();
        }
        self.record_history(s.epoch, &s.values);
        self.record_best(s.epoch, &s.values);
        self.status = Status::Running;
        self.reason.clear();
        Ok(())
    }

    /// Rows the history can hold for the registered metrics.
    pub fn history_capacity(&self) -> usize {
        HISTORY_VALUES / self.metrics.len().max(1)
    }

    fn record_history(&mut self, epoch: u32, values: &[f32]) {
        let width = values.len();
        if width == 0 {
            return;
        }
        if epoch % self.stride != 0 {
            return; // between kept rows: only `latest` shows it
        }
        let mut row = (epoch / self.stride) as usize;
        while row >= self.history_capacity() {
            self.decimate();
            if epoch % self.stride != 0 {
                return;
            }
            row = (epoch / self.stride) as usize;
        }
        while self.history.len() < row * width {
            // An epoch the producer skipped: a gap.
            let _ = self.history.push(f32::NAN);
        }
        let start = row * width;
        for (i, v) in values.iter().enumerate() {
            match self.history.get_mut(start + i) {
                Some(slot) => *slot = *v,
                None => {
                    let _ = self.history.push(*v);
                }
            }
        }
    }

    /// Doubles the stride and keeps every other row.
    fn decimate(&mut self) {
        let width = self.metrics.len().max(1);
        let rows = self.history.len() / width;
        let mut kept = 0;
        for row in (0..rows).step_by(2) {
            for i in 0..width {
                self.history[kept * width + i] = self.history[row * width + i];
            }
            kept += 1;
        }
        self.history.truncate(kept * width);
        self.stride = self.stride.saturating_mul(2);
    }

    fn record_best(&mut self, epoch: u32, values: &[f32]) {
        if self.best.len() != values.len() {
            self.best.clear();
            for _ in values {
                let _ = self.best.push(Best {
                    epoch: 0,
                    value: f32::NAN,
                });
            }
        }
        for ((best, value), name) in self.best.iter_mut().zip(values).zip(&self.metrics) {
            if value.is_nan() {
                continue;
            }
            let better = if best.value.is_nan() {
                true
            } else if lower_is_better(name) {
                *value < best.value
            } else {
                *value > best.value
            };
            if better {
                *best = Best {
                    epoch,
                    value: *value,
                };
            }
        }
    }

    /// The kept history rows as `(epoch, values)`, oldest first.
    pub fn history_rows(&self) -> impl Iterator<Item = (u32, &[f32])> {
        let width = self.metrics.len().max(1);
        let stride = self.stride;
        self.history
            .chunks_exact(width)
            .enumerate()
            .map(move |(i, row)| ((i as u32).saturating_mul(stride), row))
    }

    /// Estimated milliseconds to the end: the mean epoch duration times the
    /// epochs left, less the part of the current epoch already done.
    /// `None` until one epoch's duration is known or when epochs are unknown.
    pub fn eta_ms(&self) -> Option<u64> {
        if self.status.is_finished() {
            return Some(0);
        }
        if self.timed_epochs == 0 || self.epochs == 0 {
            return None;
        }
        let mean = self.elapsed_ms / u64::from(self.timed_epochs);
        let done_epochs = self.latest_epoch.map_or(0, |e| u64::from(e) + 1);
        let left = u64::from(self.epochs).saturating_sub(done_epochs);
        let mut eta = mean.saturating_mul(left);
        if u64::from(self.epoch) == done_epochs && left > 0 && self.train.total > 0 {
            let fraction =
                f64::from(self.train.done.min(self.train.total)) / f64::from(self.train.total);
            eta = eta.saturating_sub((mean as f64 * fraction) as u64);
        }
        Some(eta)
    }

    /// Checks that the parts of a (decoded) state agree, so no accessor can misbehave.
    pub fn check(&self) -> Result<(), Error> {
        let width = self.metrics.len();
        let consistent = self.stride.is_power_of_two()
            && (width == 0 || self.history.len() % width == 0)
            && (width != 0 || self.history.is_empty())
            && (self.latest.is_empty() || self.latest.len() == width)
            && (self.best.is_empty() || self.best.len() == width)
            && self.history.len() / width.max(1) <= self.history_capacity();
        if consistent {
            Ok(())
        } else {
            Err(Error::DecodeInconsistentSnapshot)
        }
    }

    /// This state as a snapshot frame of training `training_id`.
    pub fn to_snapshot(&self, training_id: u32) -> Frame {
        Frame {
            training_id,
            seq: 0,
            action: Action::Snapshot(self.clone()),
        }
    }
}
