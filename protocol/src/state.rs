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

use crate::frame::{
    Action, Bar, Best, Frame, Goal, Goals, MetricNames, Name, Outcome, Phase, Progress, Reason,
    Register, Snapshot, Stats, Status, Values, NO_BEST,
};
use crate::Error;

/// What applying a frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// The frame's `seq` was already applied: nothing changed.
    Duplicate,
    /// The frame carries nothing for the state (e.g. an [`Ack`](crate::Ack)).
    Ignored,
}

/// The whole state of one training, changed only by [`TrainingState::apply`].
///
/// Its parts always agree (history rows as wide as the metrics, a power-of-two
/// stride, ...): it is built empty, by the reducer, or from a [`Snapshot`]
/// through `TryFrom`, which refuses one whose parts disagree.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainingState {
    /// The state in its wire form; private so that only the reducer changes it.
    s: Snapshot,
}

impl TryFrom<Snapshot> for TrainingState {
    type Error = Error;

    /// The state a snapshot describes, or [`Error::DecodeInconsistentSnapshot`].
    /// A snapshot without goals (of format version 1) gets them from the names,
    /// and no best for a metric without a goal.
    fn try_from(mut snapshot: Snapshot) -> Result<Self, Error> {
        if snapshot.is_consistent() {
            snapshot.default_goals();
            Ok(TrainingState { s: snapshot })
        } else {
            Err(Error::DecodeInconsistentSnapshot)
        }
    }
}

impl From<TrainingState> for Snapshot {
    fn from(state: TrainingState) -> Snapshot {
        state.s
    }
}

impl TrainingState {
    /// A state with nothing applied yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Display name.
    pub fn name(&self) -> &Name {
        &self.s.name
    }

    /// Registered metric names; stats values follow this order.
    pub fn metrics(&self) -> &MetricNames {
        &self.s.metrics
    }

    /// Epochs planned, `0` if unknown.
    pub fn epochs(&self) -> u32 {
        self.s.epochs
    }

    /// Where the training is in its life.
    pub fn status(&self) -> Status {
        self.s.status
    }

    /// Why it finished, when it did.
    pub fn reason(&self) -> &Reason {
        &self.s.reason
    }

    /// The current epoch, 0-based: that of the latest progress, or of the latest
    /// stats when they are further along (a producer may send only stats).
    pub fn epoch(&self) -> u32 {
        self.s.epoch
    }

    /// The phase of the latest progress.
    pub fn phase(&self) -> Phase {
        self.s.phase
    }

    /// Train batch progress of the current epoch.
    pub fn train(&self) -> Bar {
        self.s.train
    }

    /// Valid batch progress of the current epoch.
    pub fn valid(&self) -> Bar {
        self.s.valid
    }

    /// Epoch distance between history rows: a power of two, at least 1.
    pub fn stride(&self) -> u32 {
        self.s.stride
    }

    /// The latest stats epoch, if any.
    pub fn latest_epoch(&self) -> Option<u32> {
        self.s.latest_epoch
    }

    /// The latest stats values: empty before the first stats, else one per metric.
    pub fn latest(&self) -> &Values {
        &self.s.latest
    }

    /// Best value per metric: empty before the first stats, else one per
    /// metric; NaN for a metric without a goal (and before its first value).
    pub fn best(&self) -> &[Best] {
        &self.s.best
    }

    /// The goal of each metric: one per metric, declared by the producer or
    /// defaulted from the name.
    pub fn goals(&self) -> &Goals {
        &self.s.goals
    }

    /// The best of metric `i`, only when it has a goal and a value.
    pub fn best_of(&self, i: usize) -> Option<Best> {
        let goal = self.s.goals.get(i).copied().unwrap_or_default();
        self.s
            .best
            .get(i)
            .copied()
            .filter(|b| goal != Goal::None && !b.value.is_nan())
    }

    /// Sum of the durations of the epochs seen, in milliseconds.
    pub fn elapsed_ms(&self) -> u64 {
        self.s.elapsed_ms
    }

    /// How many epochs [`Self::elapsed_ms`] covers.
    pub fn timed_epochs(&self) -> u32 {
        self.s.timed_epochs
    }

    /// The highest producer `seq` applied.
    pub fn last_seq(&self) -> u32 {
        self.s.last_seq
    }

    /// The state in its wire form.
    pub fn as_snapshot(&self) -> &Snapshot {
        &self.s
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
        if frame.seq != 0 && frame.seq <= self.s.last_seq {
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
                if self.s.status == Status::Stalled {
                    self.s.status = Status::Running;
                }
                Applied::Changed
            }
            Action::Finished(f) => {
                self.s.status = match f.outcome {
                    Outcome::Completed => Status::Completed,
                    Outcome::Failed => Status::Failed,
                    Outcome::Cancelled => Status::Cancelled,
                };
                self.s.reason = f.reason.clone();
                Applied::Changed
            }
            Action::Stalled => {
                if self.s.status.is_finished() {
                    return Ok(Applied::Ignored);
                }
                self.s.status = Status::Stalled;
                Applied::Changed
            }
            Action::Ack(_) => return Ok(Applied::Ignored),
            Action::Snapshot(s) => {
                *self = TrainingState::try_from(s.clone())?;
                return Ok(Applied::Changed);
            }
        };
        self.s.last_seq = self.s.last_seq.max(frame.seq);
        Ok(applied)
    }

    fn register(&mut self, r: &Register) {
        self.s.name = r.name.clone();
        // Progress frames carry newer plans; a registration only fills in the unknown.
        if self.s.epochs == 0 {
            self.s.epochs = r.epochs;
        }
        if r.batches != 0 && self.s.train.total == 0 {
            self.s.train.total = r.batches;
        }
        // Empty metrics keep the registered ones, so a script can send a log or
        // progress under a run key without repeating the metric names.
        if !r.metrics.is_empty() && r.metrics != self.s.metrics {
            // New metric names make the old history meaningless.
            self.s.metrics = r.metrics.clone();
            self.s.goals = Goal::resolve(&self.s.metrics, &r.goals);
            self.s.history.clear();
            self.s.latest.clear();
            self.s.best.clear();
            self.s.latest_epoch = None;
            self.s.stride = 1;
        } else if !r.goals.is_empty() {
            // Declared goals for the same metrics; none declared keeps the known ones.
            let goals = Goal::resolve(&self.s.metrics, &r.goals);
            if goals != self.s.goals {
                self.s.goals = goals;
                self.rebest();
            }
        }
        // A producer registering again is alive; an ended training stays ended
        // (a resent registration must not reopen it), new progress reopens it.
        if self.s.status == Status::Stalled {
            self.s.status = Status::Running;
        }
    }

    /// Makes `epoch` the current one; the bars start over in a different epoch.
    fn enter_epoch(&mut self, epoch: u32) {
        if epoch != self.s.epoch {
            self.s.epoch = epoch;
            self.s.train.done = 0;
            self.s.valid.done = 0;
        }
    }

    fn progress(&mut self, p: &Progress) {
        self.enter_epoch(p.epoch);
        if p.epochs != 0 {
            self.s.epochs = p.epochs;
        }
        self.s.phase = p.phase;
        let bar = match p.phase {
            Phase::Train => &mut self.s.train,
            Phase::Valid => &mut self.s.valid,
        };
        bar.done = p.batch;
        bar.total = p.batches;
        self.s.status = Status::Running;
        self.s.reason.clear();
    }

    fn stats(&mut self, s: &Stats) -> Result<(), Error> {
        if s.values.len() != self.s.metrics.len() {
            return Err(Error::ApplyMetricsMismatch);
        }
        // A producer that sends only stats (no progress) is in the epoch it reports.
        if s.epoch > self.s.epoch {
            self.enter_epoch(s.epoch);
        }
        let is_new_epoch = self.s.latest_epoch.is_none_or(|latest| s.epoch > latest);
        if is_new_epoch {
            self.s.elapsed_ms += u64::from(s.duration_ms);
            self.s.timed_epochs += 1;
            self.s.latest_epoch = Some(s.epoch);
            self.s.latest = s.values.clone();
        } else if self.s.latest_epoch == Some(s.epoch) {
            self.s.latest = s.values.clone();
        }
        self.record_history(s.epoch, &s.values);
        self.record_best(s.epoch, &s.values);
        self.s.status = Status::Running;
        self.s.reason.clear();
        Ok(())
    }

    /// Rows the history can hold for the registered metrics.
    pub fn history_capacity(&self) -> usize {
        self.s.history_capacity()
    }

    fn record_history(&mut self, epoch: u32, values: &[f32]) {
        let width = values.len();
        if width == 0 {
            return;
        }
        if epoch % self.s.stride != 0 {
            return; // between kept rows: only `latest` shows it
        }
        let mut row = (epoch / self.s.stride) as usize;
        while row >= self.history_capacity() {
            self.decimate();
            if epoch % self.s.stride != 0 {
                return;
            }
            row = (epoch / self.s.stride) as usize;
        }
        while self.s.history.len() < row * width {
            // An epoch the producer skipped: a gap.
            let _ = self.s.history.push(f32::NAN);
        }
        let start = row * width;
        for (i, v) in values.iter().enumerate() {
            match self.s.history.get_mut(start + i) {
                Some(slot) => *slot = *v,
                None => {
                    let _ = self.s.history.push(*v);
                }
            }
        }
    }

    /// Doubles the stride and keeps every other row.
    fn decimate(&mut self) {
        let width = self.s.metrics.len().max(1);
        let rows = self.s.history.len() / width;
        let mut kept = 0;
        for row in (0..rows).step_by(2) {
            for i in 0..width {
                self.s.history[kept * width + i] = self.s.history[row * width + i];
            }
            kept += 1;
        }
        self.s.history.truncate(kept * width);
        self.s.stride = self.s.stride.saturating_mul(2);
    }

    /// Finds the bests again from the kept history and the latest values,
    /// after the goals changed.
    fn rebest(&mut self) {
        let s = &mut self.s;
        s.best.clear();
        let width = s.metrics.len().max(1);
        for (i, row) in s.history.chunks_exact(width).enumerate() {
            improve(
                &mut s.best,
                &s.goals,
                (i as u32).saturating_mul(s.stride),
                row,
            );
        }
        if let Some(epoch) = s.latest_epoch {
            improve(&mut s.best, &s.goals, epoch, &s.latest);
        }
    }

    fn record_best(&mut self, epoch: u32, values: &[f32]) {
        improve(&mut self.s.best, &self.s.goals, epoch, values);
    }

    /// The kept history rows as `(epoch, values)`, oldest first.
    pub fn history_rows(&self) -> impl Iterator<Item = (u32, &[f32])> {
        let width = self.s.metrics.len().max(1);
        let stride = self.s.stride;
        self.s
            .history
            .chunks_exact(width)
            .enumerate()
            .map(move |(i, row)| ((i as u32).saturating_mul(stride), row))
    }

    /// Estimated milliseconds to the end: the mean epoch duration times the
    /// epochs left, less the part of the current epoch already done.
    /// `None` until one epoch's duration is known or when epochs are unknown.
    pub fn eta_ms(&self) -> Option<u64> {
        if self.s.status.is_finished() {
            return Some(0);
        }
        if self.s.timed_epochs == 0 || self.s.epochs == 0 {
            return None;
        }
        let mean = self.s.elapsed_ms / u64::from(self.s.timed_epochs);
        let done_epochs = self.s.latest_epoch.map_or(0, |e| u64::from(e) + 1);
        let left = u64::from(self.s.epochs).saturating_sub(done_epochs);
        let mut eta = mean.saturating_mul(left);
        if u64::from(self.s.epoch) == done_epochs && left > 0 && self.s.train.total > 0 {
            let fraction = f64::from(self.s.train.done.min(self.s.train.total))
                / f64::from(self.s.train.total);
            eta = eta.saturating_sub((mean as f64 * fraction) as u64);
        }
        Some(eta)
    }

    /// This state as a snapshot frame of training `training_id`.
    pub fn to_snapshot(&self, training_id: u32) -> Frame {
        Frame {
            training_id,
            seq: 0,
            action: Action::Snapshot(self.s.clone()),
        }
    }
}

/// Takes the values of `epoch` into the bests, following each metric's goal.
fn improve(
    bests: &mut heapless::Vec<Best, { crate::MAX_METRICS }>,
    goals: &[Goal],
    epoch: u32,
    values: &[f32],
) {
    if bests.len() != values.len() {
        bests.clear();
        for _ in values {
            let _ = bests.push(NO_BEST);
        }
    }
    for ((best, value), goal) in bests.iter_mut().zip(values).zip(goals) {
        if value.is_nan() {
            continue;
        }
        let better = match goal {
            Goal::None => false,
            _ if best.value.is_nan() => true,
            Goal::Minimize => *value < best.value,
            Goal::Maximize => *value > best.value,
        };
        if better {
            *best = Best {
                epoch,
                value: *value,
            };
        }
    }
}
