//! The limits the Rust crates share with the Fitbit app, the Python producers
//! and the tests, and their one generated copy, `protocol/vectors/limits.json`
//! ([`json`], written by `cargo run -p watchtrain-watch --example limits`,
//! checked by `tests/limits.rs`). Other languages read that file; nobody
//! copies a number or scrapes Rust source.

/// Largest `peerSocket` message, CBOR encoding included, in bytes: Fitbit's
/// `MAX_MESSAGE_SIZE` is about 1 KiB, so we never go past 1 KiB.
pub const MAX_WATCH_MESSAGE: usize = 1024;
/// CBOR head of a byte string of 256 to 65535 bytes (major type 2, two length bytes).
pub const CBOR_BYTES_HEAD: usize = 3;
/// Largest vector-op message: it travels as an `ArrayBuffer`, so as CBOR bytes.
pub const MAX_OPS_LEN: usize = MAX_WATCH_MESSAGE - CBOR_BYTES_HEAD;
/// Longest alert text in UTF-8 bytes (two lines of the watch's alert banner).
pub const MAX_ALERT_LEN: usize = 48;

/// Every shared limit as JSON, the content of `protocol/vectors/limits.json`.
#[cfg(feature = "std")]
pub fn json() -> String {
    use crate::scene::{MAX_IMAGES, MAX_LINES, MAX_RECTS, MAX_TEXTS, MAX_TEXT_LEN};
    use watchtrain_protocol::limits as protocol;
    let protocol = [
        ("format_version", usize::from(protocol::FORMAT_VERSION)),
        ("max_frame_len", protocol::MAX_FRAME_LEN),
        ("max_metrics", protocol::MAX_METRICS),
        ("max_name_len", protocol::MAX_NAME_LEN),
        ("max_metric_name_len", protocol::MAX_METRIC_NAME_LEN),
        ("max_run_key_len", protocol::MAX_RUN_KEY_LEN),
        ("max_log_len", protocol::MAX_LOG_LEN),
        ("max_reason_len", protocol::MAX_REASON_LEN),
        ("history_values", protocol::HISTORY_VALUES),
        ("max_legacy_json_len", protocol::MAX_LEGACY_JSON_LEN),
    ];
    let watch = [
        ("max_message_size", MAX_WATCH_MESSAGE),
        ("cbor_bytes_head", CBOR_BYTES_HEAD),
        ("max_ops_len", MAX_OPS_LEN),
        ("max_alert_len", MAX_ALERT_LEN),
        ("max_text_len", MAX_TEXT_LEN),
        ("rects", MAX_RECTS),
        ("lines", MAX_LINES),
        ("texts", MAX_TEXTS),
        ("images", MAX_IMAGES),
    ];
    let object = |pairs: &[(&str, usize)]| {
        let fields: Vec<_> = pairs
            .iter()
            .map(|(k, v)| format!("    \"{k}\": {v}"))
            .collect();
        format!("{{\n{}\n  }}", fields.join(",\n"))
    };
    format!(
        "{{\n  \"protocol\": {},\n  \"watch\": {}\n}}\n",
        object(&protocol),
        object(&watch)
    )
}
