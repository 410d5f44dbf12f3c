//! The frames: what every side of Watchtrain sends and receives.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::limits::*;

/// A training's display name.
pub type Name = String<MAX_NAME_LEN>;
/// A metric's name, e.g. `valid_loss`.
pub type MetricName = String<MAX_METRIC_NAME_LEN>;
/// The producer-chosen key of a run.
pub type RunKey = String<MAX_RUN_KEY_LEN>;
/// The registered metric names, in the order stats values follow.
pub type MetricNames = Vec<MetricName, MAX_METRICS>;
/// One value per registered metric (NaN and inf are legal).
pub type Values = Vec<f32, MAX_METRICS>;
/// A log line.
pub type LogText = String<MAX_LOG_LEN>;
/// Why a training finished.
pub type Reason = String<MAX_REASON_LEN>;
/// One [`Goal`] per metric, in metric order.
pub type Goals = Vec<Goal, MAX_METRICS>;

/// Which way a metric improves: what its "best" means, and whether it has one.
/// On the wire a varint: 0, 1 or 2, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Goal {
    /// No direction (a learning rate, a momentum, a time): no best.
    #[default]
    None,
    /// Lower is better: losses, errors, perplexity.
    Minimize,
    /// Higher is better: accuracy, F1, AUC, precision, recall, IoU, Dice, BLEU.
    Maximize,
}

/// The (de)serialization of a goals list. A list of varints below 128 is the
/// same bytes as a postcard byte string (length, then one byte each): read
/// and written as one, it costs the browser's wasm about 3 KB less than
/// serde's derived list-of-enum code.
mod goal_list {
    use super::{Goal, Goals};
    use core::fmt;
    use serde::de::{Error, Visitor};

    const GOALS: [Goal; 3] = [Goal::None, Goal::Minimize, Goal::Maximize];

    pub fn serialize<S: serde::Serializer>(goals: &Goals, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = [0u8; crate::MAX_METRICS];
        for (b, g) in bytes.iter_mut().zip(goals) {
            *b = *g as u8;
        }
        s.serialize_bytes(&bytes[..goals.len()])
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Goals, D::Error> {
        struct List;
        impl Visitor<'_> for List {
            type Value = Goals;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of goals")
            }
            fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Goals, E> {
                let mut goals = Goals::new();
                for b in bytes {
                    let goal = GOALS
                        .get(usize::from(*b))
                        .ok_or_else(|| E::custom("unknown goal"))?;
                    goals.push(*goal).map_err(|_| E::custom("too many goals"))?;
                }
                Ok(goals)
            }
        }
        d.deserialize_bytes(List)
    }
}

impl Goal {
    /// The default goal of a metric from its name, for producers that declare none.
    ///
    /// ```
    /// use watchtrain_protocol::Goal;
    /// assert_eq!(Goal::from_name("valid_loss"), Goal::Minimize);
    /// assert_eq!(Goal::from_name("val_MAE"), Goal::Minimize);
    /// assert_eq!(Goal::from_name("val_accuracy"), Goal::Maximize);
    /// assert_eq!(Goal::from_name("mIoU"), Goal::Maximize);
    /// assert_eq!(Goal::from_name("lr"), Goal::None);
    /// assert_eq!(Goal::from_name("learning_rate"), Goal::None);
    /// assert_eq!(Goal::from_name("previous_momentum"), Goal::None);
    /// ```
    pub fn from_name(name: &str) -> Goal {
        const MINIMIZED: [&str; 8] = [
            "loss",
            "err",
            "mse",
            "mae",
            "rmse",
            "perplexity",
            "wer",
            "cer",
        ];
        const MAXIMIZED: [&str; 10] = [
            "acc",
            "f1",
            "auc",
            "auroc",
            "precision",
            "recall",
            "iou",
            "dice",
            "bleu",
            "rouge",
        ];
        // Anywhere in the name: `val_loss`, `trainerror`.
        let contains = |word: &str| {
            name.as_bytes()
                .windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
        };
        if MINIMIZED.iter().any(|w| contains(w)) {
            return Goal::Minimize;
        }
        // By word, at its start or end (`val_acc`, `top1-accuracy`, `mIoU`), so that
        // `previous` is no `iou`.
        let maximized = name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| {
                MAXIMIZED.iter().any(|m| {
                    let (w, m) = (word.as_bytes(), m.as_bytes());
                    w.len() >= m.len()
                        && (w[..m.len()].eq_ignore_ascii_case(m)
                            || w[w.len() - m.len()..].eq_ignore_ascii_case(m))
                })
            });
        if maximized {
            Goal::Maximize
        } else {
            Goal::None
        }
    }

    /// The goals of `metrics`: `declared[i]` where the producer declared one,
    /// else the default from the name. A shorter list leaves the rest to the
    /// names; entries past the metrics are ignored.
    pub fn resolve(metrics: &[MetricName], declared: &[Goal]) -> Goals {
        metrics
            .iter()
            .enumerate()
            .map(|(i, name)| {
                declared
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| Goal::from_name(name))
            })
            .collect()
    }

    /// The goals of `metrics` from goals declared by metric name (the last
    /// declaration of a name wins), the rest from the names; empty when
    /// nothing is declared, so that the relay keeps what the training has.
    ///
    /// ```
    /// use watchtrain_protocol::{truncated, Goal};
    /// let metrics = [truncated("loss"), truncated("score"), truncated("lr")];
    /// let goals = Goal::by_name(&metrics, &[("score", Goal::Maximize)]);
    /// assert_eq!(goals.as_slice(), [Goal::Minimize, Goal::Maximize, Goal::None]);
    /// assert!(Goal::by_name(&metrics, &[] as &[(&str, Goal)]).is_empty());
    /// ```
    pub fn by_name(metrics: &[MetricName], declared: &[(impl AsRef<str>, Goal)]) -> Goals {
        if declared.is_empty() {
            return Goals::new();
        }
        let named = |m: &str| declared.iter().rev().find(|(name, _)| name.as_ref() == m);
        metrics
            .iter()
            .map(|m| named(m).map_or_else(|| Goal::from_name(m), |(_, g)| *g))
            .collect()
    }

    /// A lower-case word for people and JSON: `none`, `min`, `max`.
    pub fn as_str(self) -> &'static str {
        match self {
            Goal::None => "none",
            Goal::Minimize => "min",
            Goal::Maximize => "max",
        }
    }
}

/// `none`, `min`/`minimize` or `max`/`maximize`, as the CLI, the relay's JSON
/// endpoint and the Python package take them.
impl core::str::FromStr for Goal {
    type Err = UnknownGoal;

    fn from_str(word: &str) -> Result<Goal, UnknownGoal> {
        match word {
            "none" => Ok(Goal::None),
            "min" | "minimize" => Ok(Goal::Minimize),
            "max" | "maximize" => Ok(Goal::Maximize),
            _ => Err(UnknownGoal),
        }
    }
}

/// A goal word that is none of `none`, `min`, `minimize`, `max`, `maximize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownGoal;

impl core::fmt::Display for UnknownGoal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a goal is min, max or none")
    }
}

/// One unit on the wire: which training, which producer sequence number, what happened.
///
/// `seq` numbers a producer's frames from 1 so that a resent buffer creates no
/// duplicates; `0` means unsequenced (registration, heartbeats, frames the
/// relay makes itself, legacy messages) and is always applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The relay-assigned training id; `0` in a registration asks for one.
    pub training_id: u32,
    /// Producer sequence number, `0` for unsequenced.
    pub seq: u32,
    /// What the frame says.
    pub action: Action,
}

/// What a frame says. The variant order is the wire tag: append only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // a snapshot is the point of a snapshot frame
pub enum Action {
    /// A training starts (or a restarted producer announces itself again).
    Register(Register),
    /// Batch progress within an epoch.
    Progress(Progress),
    /// The values of one finished epoch.
    Stats(Stats),
    /// A log line.
    Log(Log),
    /// The training ended.
    Finished(Finished),
    /// The producer is alive and has nothing else to say.
    Heartbeat,
    /// Sent by the relay: nothing arrived from the producer for too long.
    Stalled,
    /// Sent by the relay to a producer: every frame up to `seq` is applied.
    Ack(Ack),
    /// The whole state of one training, for a consumer that joins late.
    Snapshot(Snapshot),
}

/// A training's registration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Register {
    /// Display name.
    pub name: Name,
    /// Producer-chosen key, so that a restarted relay maps the same run to the same id.
    pub run_key: RunKey,
    /// Metric names; stats values follow this order. Empty keeps the names a
    /// registration of the same training gave before.
    pub metrics: MetricNames,
    /// Epochs planned, `0` if unknown.
    pub epochs: u32,
    /// Train batches per epoch, `0` if unknown.
    pub batches: u32,
    /// The goal of each metric, in metric order; missing ones (all, when empty)
    /// default from the names ([`Goal::resolve`]). Format version 2.
    #[serde(with = "goal_list")]
    pub goals: Goals,
}

/// The phase of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Phase {
    /// Training batches.
    #[default]
    Train,
    /// Validation batches.
    Valid,
}

/// Where a training is: epoch `epoch` (0-based) of `epochs`, batch `batch` of `batches`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Train or valid.
    pub phase: Phase,
    /// Current epoch, 0-based.
    pub epoch: u32,
    /// Epochs planned, `0` if unknown.
    pub epochs: u32,
    /// Batches done in this phase of this epoch.
    pub batch: u32,
    /// Batches in this phase of this epoch, `0` if unknown.
    pub batches: u32,
}

/// The values of one finished epoch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// The epoch, 0-based.
    pub epoch: u32,
    /// How long the epoch took, in milliseconds.
    pub duration_ms: u32,
    /// One value per registered metric, in registration order.
    pub values: Values,
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Level {
    /// Details.
    Debug,
    /// Normal.
    #[default]
    Info,
    /// Something looks wrong.
    Warn,
    /// Something is wrong.
    Error,
}

/// A log line.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Log {
    /// How loud.
    pub level: Level,
    /// The text.
    pub text: LogText,
}

/// How a training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It ran to the end.
    Completed,
    /// It raised or crashed.
    Failed,
    /// Someone stopped it.
    Cancelled,
}

/// The end of a training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// A short reason, e.g. the exception's name.
    pub reason: Reason,
}

/// The relay's acknowledgement to a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ack {
    /// The highest sequence number applied to the training.
    pub seq: u32,
}

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

/// The best of a metric without a goal, or before its first value.
pub(crate) const NO_BEST: Best = Best {
    epoch: 0,
    value: f32::NAN,
};

/// A training's whole state as it travels: the payload of [`Action::Snapshot`].
/// Field order is the wire order (`WIRE.md`).
///
/// This is plain wire data. [`Frame::decode`] refuses a snapshot whose parts
/// disagree, and the reducer's `TrainingState` is built from one only through
/// `TryFrom<Snapshot>`, which checks the same, so a state cannot be inconsistent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Display name.
    pub name: Name,
    /// Registered metric names.
    pub metrics: MetricNames,
    /// Epochs planned, `0` if unknown.
    pub epochs: u32,
    /// Where the training is in its life.
    pub status: Status,
    /// Why it finished, when it did.
    pub reason: Reason,
    /// The current epoch, 0-based: of the latest progress, or of the latest stats when further.
    pub epoch: u32,
    /// The phase of the latest progress.
    pub phase: Phase,
    /// Train batch progress of the current epoch.
    pub train: Bar,
    /// Valid batch progress of the current epoch.
    pub valid: Bar,
    /// Epoch distance between history rows: a power of two, at least 1.
    pub stride: u32,
    /// History rows, `metrics.len()` values each: row `i` is epoch `i * stride`.
    pub history: Vec<f32, HISTORY_VALUES>,
    /// The latest stats epoch, if any.
    pub latest_epoch: Option<u32>,
    /// The latest stats values: empty, or one per metric.
    pub latest: Values,
    /// Best value per metric: empty, or one per metric.
    pub best: Vec<Best, MAX_METRICS>,
    /// Sum of the durations of the epochs seen, in milliseconds.
    pub elapsed_ms: u64,
    /// How many epochs `elapsed_ms` covers.
    pub timed_epochs: u32,
    /// The highest producer `seq` applied.
    pub last_seq: u32,
    /// The goal of each metric: empty, or one per metric (a state always has
    /// one per metric). Format version 2.
    #[serde(with = "goal_list")]
    pub goals: Goals,
}

impl Default for Snapshot {
    /// The snapshot of a training nothing was applied to.
    fn default() -> Self {
        Snapshot {
            name: Name::new(),
            metrics: MetricNames::new(),
            epochs: 0,
            status: Status::Waiting,
            reason: Reason::new(),
            epoch: 0,
            phase: Phase::Train,
            train: Bar::default(),
            valid: Bar::default(),
            stride: 1,
            history: Vec::new(),
            latest_epoch: None,
            latest: Values::new(),
            best: Vec::new(),
            elapsed_ms: 0,
            timed_epochs: 0,
            last_seq: 0,
            goals: Vec::new(),
        }
    }
}

impl Snapshot {
    /// Rows the history can hold for these metrics.
    pub fn history_capacity(&self) -> usize {
        HISTORY_VALUES / self.metrics.len().max(1)
    }

    /// Gives a snapshot without goals (format version 1) the defaults from the
    /// names, and no best for a metric without a goal.
    pub(crate) fn default_goals(&mut self) {
        if self.goals.is_empty() {
            self.goals = Goal::resolve(&self.metrics, &[]);
            for (best, goal) in self.best.iter_mut().zip(&self.goals) {
                if *goal == Goal::None {
                    *best = NO_BEST;
                }
            }
        }
    }

    /// Whether the parts agree with each other, so that no reader of the state can misbehave.
    pub(crate) fn is_consistent(&self) -> bool {
        let width = self.metrics.len();
        self.stride.is_power_of_two()
            && (width == 0 || self.history.len() % width == 0)
            && (width != 0 || self.history.is_empty())
            && (self.latest.is_empty() || self.latest.len() == width)
            && (self.best.is_empty() || self.best.len() == width)
            && (self.goals.is_empty() || self.goals.len() == width)
            && self.history.len() / width.max(1) <= self.history_capacity()
    }
}

/// Copies `s` into a bounded string, cutting at a character boundary when it is too long.
pub fn truncated<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}
