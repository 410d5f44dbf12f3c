//! Every capacity of the protocol, in one place.
//!
//! The bounds are chosen so that the largest frame, a snapshot of a training
//! with every field at its maximum, still fits in [`MAX_FRAME_LEN`] bytes: a
//! Fitbit message is limited to about 1 KiB.

/// The format version, the first byte of every frame an encoder writes.
/// Version 2 added metric goals; decoders also read version 1.
pub const FORMAT_VERSION: u8 = 2;
/// Largest encoded frame in bytes, snapshot included.
pub const MAX_FRAME_LEN: usize = 1024;
/// Most metrics (losses and metrics together) a training can register.
pub const MAX_METRICS: usize = 8;
/// Longest training display name, in UTF-8 bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Longest metric name, in UTF-8 bytes.
pub const MAX_METRIC_NAME_LEN: usize = 24;
/// Longest producer-chosen run key, in UTF-8 bytes.
pub const MAX_RUN_KEY_LEN: usize = 32;
/// Longest log line, in UTF-8 bytes.
pub const MAX_LOG_LEN: usize = 96;
/// Longest reason of a finished training, in UTF-8 bytes.
pub const MAX_REASON_LEN: usize = 40;
/// History capacity in values (epochs kept x metrics): 16 epochs of 8
/// metrics, 32 of 4, 128 of 1. Past it the history is decimated.
pub const HISTORY_VALUES: usize = 128;
/// Longest legacy JSON message accepted, in bytes.
pub const MAX_LEGACY_JSON_LEN: usize = 4096;
