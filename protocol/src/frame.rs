//! The frames: what every side of Watchtrain sends and receives.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::limits::*;
use crate::state::TrainingState;

/// A training's display name.
pub type Name = String<MAX_NAME_LEN>;
/// A metric's name, e.g. `valid_loss`.
pub type MetricName = String<MAX_METRIC_NAME_LEN>;
/// The producer-chosen key of a run.
pub type RunKey = String<MAX_RUN_KEY_LEN>;
/// The registered metric names, in the order stats values follow.
pub type Metrics = Vec<MetricName, MAX_METRICS>;
/// One value per registered metric (NaN and inf are legal).
pub type Values = Vec<f32, MAX_METRICS>;
/// A log line.
pub type LogText = String<MAX_LOG_LEN>;
/// Why a training finished.
pub type Reason = String<MAX_REASON_LEN>;

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
    Snapshot(TrainingState),
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
    pub metrics: Metrics,
    /// Epochs planned, `0` if unknown.
    pub epochs: u32,
    /// Train batches per epoch, `0` if unknown.
    pub batches: u32,
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
