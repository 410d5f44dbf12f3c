//! # watchtrain-protocol
//!
//! The wire format every part of Watchtrain speaks: producers (trainings),
//! the relay, the browser dashboard, the Fitbit companion and the watch.
//! `no_std`, no allocation, no panics on any input.
//!
//! It is: the [`Frame`]s and their postcard encoding ([`Frame::encode`],
//! [`Frame::decode`]), the ancestor's legacy JSON ([`json`]), and the pure
//! reducer [`TrainingState::apply`] whose snapshot fits one 1 KiB frame.
//! It is not: a transport, a clock or a renderer.
//!
//! A producer encodes a frame; a consumer decodes it and applies it:
//!
//! ```
//! use watchtrain_protocol::*;
//!
//! // Producer side.
//! let metrics: MetricNames = ["train_loss", "valid_loss", "accuracy"].iter().map(|m| truncated(m)).collect();
//! let register = Frame { training_id: 1, seq: 0, action: Action::Register(Register {
//!     name: truncated("resnet18 pets"), metrics, epochs: 10, ..Default::default() }) };
//! let stats = Frame { training_id: 1, seq: 1, action: Action::Stats(Stats {
//!     epoch: 0, duration_ms: 30_000, values: Values::from_slice(&[0.9, 0.7, 0.61]).unwrap() }) };
//! let mut buf = [0u8; MAX_FRAME_LEN];
//! let wire = stats.encode(&mut buf)?.to_vec();
//! assert_eq!(wire.len(), 21);
//!
//! // Consumer side.
//! let mut state = TrainingState::new();
//! state.apply(&register)?;
//! state.apply(&Frame::decode(&wire)?)?;
//! assert_eq!(state.latest_epoch(), Some(0));
//! assert_eq!(state.best()[2].value, 0.61);
//! assert_eq!(state.eta_ms(), Some(9 * 30_000));
//!
//! // A late joiner gets the whole state in one frame.
//! let snapshot = state.to_snapshot(1);
//! assert!(snapshot.encode(&mut buf)?.len() <= MAX_FRAME_LEN);
//! # Ok::<(), Error>(())
//! ```
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]

mod codec;
mod error;
pub mod format;
mod frame;
pub mod json;
pub mod limits;
mod state;
mod v1;

pub use error::Error;
pub use frame::{
    truncated, Ack, Action, Bar, Best, Finished, Frame, Goal, Goals, Level, Log, LogText,
    MetricName, MetricNames, Name, Outcome, Phase, Progress, Reason, Register, RunKey, Snapshot,
    Stats, Status, Values,
};
pub use limits::{
    FORMAT_VERSION, HISTORY_VALUES, MAX_FRAME_LEN, MAX_LEGACY_JSON_LEN, MAX_LOG_LEN, MAX_METRICS,
    MAX_METRIC_NAME_LEN, MAX_NAME_LEN, MAX_REASON_LEN, MAX_RUN_KEY_LEN,
};
pub use state::{Applied, TrainingState};
