//! The ancestor's JSON messages, decoded into frames and encoded back.
//!
//! An old producer sends `{"action", "training_id", "payload"}` objects,
//! pretty-printed by `json.dumps(..., indent=2)` or compact, and `debug`
//! messages with a top-level `"value"`. Keys may come in any order and
//! unknown keys are ignored. Python writes `NaN`, `Infinity` and
//! `-Infinity` for non-finite floats, which is not JSON: they are accepted.

use core::fmt;

use heapless::{String, Vec};
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::frame::*;
use crate::limits::*;
use crate::state::TrainingState;
use crate::Error;

/// One decoded legacy message.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // stack-only, no_std: boxing is not an option
pub enum LegacyMessage {
    /// `register_training`; the id is set when an old producer re-registers after a restart.
    Register {
        /// The id the producer asks to keep.
        training_id: Option<u32>,
    },
    /// `training_progress`.
    Progress {
        /// The training.
        training_id: Option<u32>,
        /// The progress, epoch made 0-based.
        progress: Progress,
    },
    /// `training_stats`: metric names in payload order, and their values.
    Stats {
        /// The training.
        training_id: Option<u32>,
        /// Metric names, learned from the payload's keys.
        metrics: MetricNames,
        /// The values.
        stats: Stats,
    },
    /// `debug`: a log line.
    Debug {
        /// The text (cut at [`MAX_LOG_LEN`] bytes).
        text: LogText,
    },
}

impl LegacyMessage {
    /// The training id the message names, if any.
    pub fn training_id(&self) -> Option<u32> {
        match self {
            LegacyMessage::Register { training_id }
            | LegacyMessage::Progress { training_id, .. }
            | LegacyMessage::Stats { training_id, .. } => *training_id,
            LegacyMessage::Debug { .. } => None,
        }
    }

    /// The frames that carry this message into `state` (of training `training_id`):
    /// stats with metric names the state does not have yet are preceded by a
    /// registration of those names. Legacy frames are unsequenced.
    pub fn to_frames(&self, training_id: u32, state: &TrainingState) -> Vec<Frame, 2> {
        let mut frames = Vec::new();
        let mut push = |action| {
            let _ = frames.push(Frame {
                training_id,
                seq: 0,
                action,
            });
        };
        match self {
            LegacyMessage::Register { .. } => push(Action::Register(Register {
                name: state.name().clone(),
                metrics: state.metrics().clone(),
                epochs: state.epochs(),
                ..Default::default()
            })),
            LegacyMessage::Progress { progress, .. } => push(Action::Progress(*progress)),
            LegacyMessage::Stats { metrics, stats, .. } => {
                if metrics != state.metrics() {
                    push(Action::Register(Register {
                        name: state.name().clone(),
                        metrics: metrics.clone(),
                        epochs: state.epochs(),
                        ..Default::default()
                    }));
                }
                push(Action::Stats(stats.clone()));
            }
            LegacyMessage::Debug { text } => push(Action::Log(Log {
                level: Level::Debug,
                text: text.clone(),
            })),
        }
        frames
    }
}

/// Decodes one legacy JSON message.
///
/// ```
/// use watchtrain_protocol::json::{decode, LegacyMessage};
/// let msg = decode(br#"{"action": "register_training", "training_id": null, "payload": ""}"#)?;
/// assert_eq!(msg, LegacyMessage::Register { training_id: None });
/// # Ok::<(), watchtrain_protocol::Error>(())
/// ```
pub fn decode(json: &[u8]) -> Result<LegacyMessage, Error> {
    let mut buf = [0u8; MAX_LEGACY_JSON_LEN];
    let json = replace_python_floats(json, &mut buf)?;
    let (head, _): (Head, usize) =
        serde_json_core::from_slice(json).map_err(|_| Error::JsonMalformed)?;
    let action = head.action.ok_or(Error::JsonMissingAction)?;
    let training_id = head.training_id;
    let bad = |_| Error::JsonBadPayload;
    match action.as_str() {
        "register_training" => Ok(LegacyMessage::Register { training_id }),
        "training_progress" => {
            let (body, _): (Body<ProgressPayload>, usize) =
                serde_json_core::from_slice(json).map_err(bad)?;
            let p = body.payload.ok_or(Error::JsonBadPayload)?;
            let phase = match p.task.as_str() {
                "train" => Phase::Train,
                "valid" => Phase::Valid,
                _ => return Err(Error::JsonBadPayload),
            };
            Ok(LegacyMessage::Progress {
                training_id,
                progress: Progress {
                    phase,
                    epoch: p.epoch_iter.saturating_sub(1),
                    epochs: p.epoch_total,
                    batch: p.batch_iter,
                    batches: p.batch_total,
                },
            })
        }
        "training_stats" => {
            let (body, _): (Body<StatsPayload>, usize) = serde_json_core::from_slice(json)
                .map_err(|e| match e {
                    serde_json_core::de::Error::CustomError => Error::JsonTooManyMetrics,
                    _ => Error::JsonBadPayload,
                })?;
            let p = body.payload.ok_or(Error::JsonBadPayload)?;
            Ok(LegacyMessage::Stats {
                training_id: training_id.or(p.training_id),
                metrics: p.metrics,
                stats: Stats {
                    epoch: p.epoch.ok_or(Error::JsonBadPayload)?,
                    duration_ms: p.duration_ms,
                    values: p.values,
                },
            })
        }
        "debug" => {
            let mut unescaped = [0u8; MAX_LOG_LEN * 4];
            let (debug, _): (DebugBody, usize) =
                serde_json_core::from_slice_escaped(json, &mut unescaped).map_err(bad)?;
            Ok(LegacyMessage::Debug { text: debug.value })
        }
        _ => Err(Error::JsonUnknownAction),
    }
}

/// Copies `json` into `buf`, turning Python's `NaN` into `null` (read back as
/// NaN) and `Infinity` into `1e999` (read back as inf), outside strings.
fn replace_python_floats<'b>(json: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
    let mut out = 0;
    let mut i = 0;
    let mut in_string = false;
    while i < json.len() {
        let rest = &json[i..];
        let (piece, taken): (&[u8], usize) = if in_string {
            match rest[0] {
                b'\\' => (&rest[..rest.len().min(2)], rest.len().min(2)),
                b'"' => {
                    in_string = false;
                    (&rest[..1], 1)
                }
                _ => (&rest[..1], 1),
            }
        } else if rest.starts_with(b"NaN") {
            (b"null", 3)
        } else if rest.starts_with(b"Infinity") {
            (b"1e999", 8)
        } else {
            in_string = rest[0] == b'"';
            (&rest[..1], 1)
        };
        let end = out + piece.len();
        buf.get_mut(out..end)
            .ok_or(Error::JsonTooLong)?
            .copy_from_slice(piece);
        out = end;
        i += taken;
    }
    Ok(&buf[..out])
}

#[derive(Deserialize)]
struct Head {
    action: Option<String<24>>,
    #[serde(default)]
    training_id: Option<u32>,
}

#[derive(Deserialize)]
struct Body<P> {
    payload: Option<P>,
}

#[derive(Deserialize)]
struct ProgressPayload {
    epoch_iter: u32,
    epoch_total: u32,
    batch_iter: u32,
    batch_total: u32,
    task: String<8>,
}

struct DebugBody {
    value: LogText,
}

impl<'de> Deserialize<'de> for DebugBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DebugBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a debug message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DebugBody, A::Error> {
                let mut value = None;
                while let Some(key) = map.next_key::<&str>()? {
                    if key == "value" {
                        value = Some(map.next_value::<Cut<MAX_LOG_LEN>>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                value
                    .map(|value| DebugBody { value })
                    .ok_or_else(|| de::Error::missing_field("value"))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string cut at `N` bytes instead of failing when longer.
struct Cut<const N: usize>(String<N>);

impl<'de, const N: usize> Deserialize<'de> for Cut<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<const N: usize> Visitor<'_> for V<N> {
            type Value = Cut<N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Cut<N>, E> {
                Ok(Cut(truncated(s)))
            }
        }
        d.deserialize_str(V::<N>)
    }
}

/// A metric value: a number, or `null` for NaN.
struct MetricValue(f32);

impl<'de> Deserialize<'de> for MetricValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Option<f64> = Deserialize::deserialize(d)?;
        Ok(MetricValue(v.map_or(f32::NAN, |v| v as f32)))
    }
}

struct StatsPayload {
    training_id: Option<u32>,
    epoch: Option<u32>,
    duration_ms: u32,
    metrics: MetricNames,
    values: Values,
}

impl<'de> Deserialize<'de> for StatsPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatsPayload;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a stats payload")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StatsPayload, A::Error> {
                let mut p = StatsPayload {
                    training_id: None,
                    epoch: None,
                    duration_ms: 0,
                    metrics: Vec::new(),
                    values: Vec::new(),
                };
                while let Some(key) = map.next_key::<&str>()? {
                    match key {
                        "training_id" => p.training_id = map.next_value()?,
                        "epoch" => p.epoch = map.next_value()?,
                        "time" => {
                            let time = map.next_value::<Cut<16>>()?;
                            p.duration_ms = parse_duration_ms(&time.0);
                        }
                        name => {
                            let value = map.next_value::<MetricValue>()?;
                            let name = MetricName::try_from(name)
                                .map_err(|_| de::Error::custom("metric name too long"))?;
                            p.metrics
                                .push(name)
                                .map_err(|_| de::Error::custom("too many metrics"))?;
                            let _ = p.values.push(value.0);
                        }
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// `"mm:ss"` or `"hh:mm:ss"` (fastai's format) in milliseconds; 0 when unreadable.
fn parse_duration_ms(time: &str) -> u32 {
    let mut seconds: u32 = 0;
    for part in time.split(':') {
        match part.trim().parse::<u32>() {
            Ok(n) => seconds = seconds.saturating_mul(60).saturating_add(n),
            Err(_) => return 0,
        }
    }
    seconds.saturating_mul(1000)
}

/// Writes the legacy JSON form of `frame` into `buf` and returns it.
/// Stats take their metric names from `state`; register, progress, stats and
/// log frames have a legacy form, the others are [`Error::JsonNoLegacyForm`].
///
/// ```
/// use watchtrain_protocol::{json, Action, Frame, Phase, Progress, TrainingState};
/// let frame = Frame { training_id: 3, seq: 0, action: Action::Progress(Progress {
///     phase: Phase::Train, epoch: 0, epochs: 3, batch: 5, batches: 48 }) };
/// let mut buf = [0u8; 512];
/// let text = json::encode(&frame, &TrainingState::new(), &mut buf)?;
/// assert_eq!(text, r#"{"action":"training_progress","training_id":3,"payload":{"epoch_iter":1,"epoch_total":3,"batch_iter":5,"batch_total":48,"task":"train"}}"#);
/// # Ok::<(), watchtrain_protocol::Error>(())
/// ```
pub fn encode<'b>(
    frame: &Frame,
    state: &TrainingState,
    buf: &'b mut [u8],
) -> Result<&'b str, Error> {
    let id = frame.training_id;
    let used = match &frame.action {
        Action::Register(_) => to_slice(
            &Message {
                action: "register_training",
                id,
                payload: "",
            },
            buf,
        ),
        Action::Progress(p) => to_slice(
            &Message {
                action: "training_progress",
                id,
                payload: ProgressOut(p),
            },
            buf,
        ),
        Action::Stats(s) => to_slice(
            &Message {
                action: "training_stats",
                id,
                payload: StatsOut {
                    id,
                    stats: s,
                    metrics: state.metrics(),
                },
            },
            buf,
        ),
        Action::Log(log) => to_slice(
            &DebugOut {
                action: "debug",
                value: &log.text,
            },
            buf,
        ),
        _ => return Err(Error::JsonNoLegacyForm),
    }?;
    core::str::from_utf8(&buf[..used]).map_err(|_| Error::EncodeFailed)
}

/// The reply the ancestor's server gave to `register_training`.
pub fn encode_register_reply(
    training_id: u32,
    forced: Option<u32>,
    buf: &mut [u8],
) -> Result<&str, Error> {
    #[derive(Serialize)]
    struct Reply {
        training_id: u32,
        force_training_id: Option<u32>,
    }
    let used = to_slice(
        &Reply {
            training_id,
            force_training_id: forced,
        },
        buf,
    )?;
    core::str::from_utf8(&buf[..used]).map_err(|_| Error::EncodeFailed)
}

fn to_slice<T: Serialize>(value: &T, buf: &mut [u8]) -> Result<usize, Error> {
    serde_json_core::to_slice(value, buf).map_err(|_| Error::EncodeBufferFull)
}

struct Message<P> {
    action: &'static str,
    id: u32,
    payload: P,
}

impl<P: Serialize> Serialize for Message<P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("action", self.action)?;
        map.serialize_entry("training_id", &self.id)?;
        map.serialize_entry("payload", &self.payload)?;
        map.end()
    }
}

struct ProgressOut<'a>(&'a Progress);

impl Serialize for ProgressOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("epoch_iter", &p.epoch.saturating_add(1))?;
        map.serialize_entry("epoch_total", &p.epochs)?;
        map.serialize_entry("batch_iter", &p.batch)?;
        map.serialize_entry("batch_total", &p.batches)?;
        map.serialize_entry(
            "task",
            match p.phase {
                Phase::Train => "train",
                Phase::Valid => "valid",
            },
        )?;
        map.end()
    }
}

struct StatsOut<'a> {
    id: u32,
    stats: &'a Stats,
    metrics: &'a MetricNames,
}

impl Serialize for StatsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("training_id", &self.id)?;
        map.serialize_entry("epoch", &self.stats.epoch)?;
        for (i, value) in self.stats.values.iter().enumerate() {
            // Widened to f64 so that Python's float reads the f32 exactly.
            match self.metrics.get(i) {
                Some(name) => map.serialize_entry(name.as_str(), &f64::from(*value))?,
                None => map.serialize_entry(&MetricIndex(i), &f64::from(*value))?,
            }
        }
        let secs = self.stats.duration_ms / 1000;
        let mut time: String<16> = String::new();
        let _ = fmt::write(&mut time, format_args!("{:02}:{:02}", secs / 60, secs % 60));
        map.serialize_entry("time", time.as_str())?;
        map.end()
    }
}

/// The key of a value whose metric has no registered name: `metric_<i>`.
struct MetricIndex(usize);

impl Serialize for MetricIndex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut key: String<16> = String::new();
        let _ = fmt::write(&mut key, format_args!("metric_{}", self.0));
        s.serialize_str(&key)
    }
}

#[derive(Serialize)]
struct DebugOut<'a> {
    action: &'static str,
    value: &'a str,
}
