//! The messages between the companion and the watch.
//!
//! Fitbit messaging carries CBOR-encoded JavaScript values, at most about
//! 1 KiB each. Companion to watch:
//!
//! | message | JS value |
//! |---|---|
//! | paint | an `ArrayBuffer`: one message of the watch face's vector ops (`watch-wasm/README.md`, at most 1024 bytes) |
//! | relay | `[2, code]`: 0 connecting, 1 online, 2 offline, 3 no relay URL set |
//! | alert | `[3, kind, text]`: kinds in [`AlertKind`] |
//!
//! Watch to companion: `[1, screen_on]`, sent when the watch's socket opens
//! and whenever its display turns on or off. The companion answers it with
//! the relay state and a full repaint.

use watchtrain_watch::limits::MAX_ALERT_LEN;
/// Largest message the watch accepts, CBOR included (Fitbit's `MAX_MESSAGE_SIZE` is about 1 KiB).
pub use watchtrain_watch::limits::MAX_WATCH_MESSAGE as MAX_MESSAGE_BYTES;

/// Type of a relay-state message.
pub const MSG_RELAY: i64 = 2;
/// Type of an alert message.
pub const MSG_ALERT: i64 = 3;
/// Type of the watch's hello / display message.
pub const MSG_HELLO: i64 = 1;

/// What the companion knows of the relay connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Opening the WebSocket (or not configured yet).
    Connecting = 0,
    /// Connected; frames flow.
    Online = 1,
    /// The relay went away; reconnecting with backoff.
    Offline = 2,
    /// No relay URL in the settings.
    Unconfigured = 3,
}

/// Why the watch buzzes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The training completed.
    Completed = 1,
    /// The training failed.
    Failed = 2,
    /// The relay says nothing arrived for too long.
    Stalled = 3,
    /// A metric turned NaN or infinite.
    NotFinite = 4,
    /// Someone stopped the training.
    Cancelled = 5,
}

/// One message to the watch.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Vector ops, sent as an `ArrayBuffer`.
    Paint(Vec<u8>),
    /// A relay state or an alert, sent as a JS array.
    Message(Value),
}

impl Out {
    /// Its size in CBOR bytes as the watch's messaging carries it.
    pub fn cbor_len(&self) -> usize {
        match self {
            Out::Paint(bytes) => head_len(bytes.len() as u64) + bytes.len(),
            Out::Message(v) => v.cbor_len(),
        }
    }
}

/// One JavaScript value of a message (what CBOR carries).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Value>),
}

impl Value {
    /// The value's size in CBOR bytes (integers as CBOR integers, definite lengths).
    pub fn cbor_len(&self) -> usize {
        match self {
            Value::Int(n) => head_len(if *n < 0 { !(*n as u64) } else { *n as u64 }),
            Value::Str(s) => head_len(s.len() as u64) + s.len(),
            Value::Array(items) => {
                head_len(items.len() as u64) + items.iter().map(Value::cbor_len).sum::<usize>()
            }
        }
    }

    /// The value as JSON text, for `JSON.parse` on the JavaScript side.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                            let mut units = [0u16; 2];
                            for u in c.encode_utf16(&mut units) {
                                out.push_str(&format!("\\u{:04x}", u));
                            }
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
        }
    }
}

/// Bytes of a CBOR head (major type + argument) for argument `n`.
fn head_len(n: u64) -> usize {
    match n {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// A relay-state message.
pub fn relay_message(state: RelayState) -> Value {
    Value::Array(vec![Value::Int(MSG_RELAY), Value::Int(state as i64)])
}

/// An alert message; the text is cut to the watch's text length.
pub fn alert_message(kind: AlertKind, text: &str) -> Value {
    let mut text = text.to_string();
    if text.len() > MAX_ALERT_LEN {
        let mut end = MAX_ALERT_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Value::Array(vec![
        Value::Int(MSG_ALERT),
        Value::Int(kind as i64),
        Value::Str(text),
    ])
}

/// Reads a message from the watch: `Some(screen_on)` for a hello / display message.
pub fn parse_hello(items: &[f64]) -> Option<bool> {
    match items {
        [t, on, ..] if *t as i64 == MSG_HELLO => Some(*on != 0.0),
        _ => None,
    }
}
