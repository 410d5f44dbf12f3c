//! The messages between the companion and the watch.
//!
//! Fitbit messaging carries CBOR-encoded JavaScript values, at most about
//! 1 KiB each. The link is a state synchronization (Mosh's SSP): the watch
//! reports what it holds, the companion sends what differs. Companion to watch:
//!
//! | message | JS value |
//! |---|---|
//! | paint | an `ArrayBuffer`: the paint header `base u16, target u16, part u8, count u8` (little-endian), then one message of the watch face's vector ops (`watch-wasm/README.md`) |
//! | relay | `[2, code]`: 0 connecting, 1 online, 2 offline, 3 no relay URL set |
//! | alert | `[3, kind, text, id]`: kinds in [`AlertKind`]; `text` is one or two lines (`\n`) |
//!
//! A paint turns picture `base` (0: any picture, a full repaint) into picture
//! `target`; its `count` parts are applied together once all arrived, or not
//! at all. Watch to companion, the watch's report `[1, screen_on, picture,
//! alert, relay]`: the picture version it shows (0: none), the last alert id
//! it got (0: none) and the relay code it shows (-1: none). It is sent when
//! the watch's socket opens, after each message applied, when the display
//! turns on or off, and every few seconds while the screen is on.

/// Largest message the watch accepts, CBOR included (Fitbit's `MAX_MESSAGE_SIZE` is about 1 KiB).
pub use watchtrain_watch::limits::MAX_WATCH_MESSAGE as MAX_MESSAGE_BYTES;
use watchtrain_watch::limits::{MAX_ALERT_LEN, PAINT_HEADER_LEN};

/// Type of a relay-state message.
pub const MSG_RELAY: i64 = 2;
/// Type of an alert message.
pub const MSG_ALERT: i64 = 3;
/// Type of the watch's report.
pub const MSG_REPORT: i64 = 1;

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

impl RelayState {
    /// The state of a relay code, `None` for an unknown one.
    pub fn from_code(code: i64) -> Option<RelayState> {
        [
            RelayState::Connecting,
            RelayState::Online,
            RelayState::Offline,
            RelayState::Unconfigured,
        ]
        .into_iter()
        .find(|s| *s as i64 == code)
    }
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

/// An alert message with its id; the text is fitted to the watch's alert banner.
pub fn alert_message(kind: AlertKind, text: &str, id: u16) -> Value {
    Value::Array(vec![
        Value::Int(MSG_ALERT),
        Value::Int(kind as i64),
        Value::Str(fit_alert(text)),
        Value::Int(id.into()),
    ])
}

/// Font size of the watch's alert banner (`System-Bold`, `fitbit-app/tools/gen-view.js`).
pub const ALERT_FONT_PX: u32 = 26;
/// Width a line of the alert banner may take, in pixels (336 less the screen's rounded corners).
pub const ALERT_LINE_PX: u32 = 296;

/// Width of `text` in the watch's proportional System-Bold font at `px`, estimated
/// from character classes (a `<text>` element does not wrap: too wide is clipped).
/// A generous estimate: a real device may show it narrower, never wider.
pub fn system_width(text: &str, px: u32) -> u32 {
    let em_hundredths: u32 = text
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 30,
            ' ' | 'f' | 't' | 'r' | 'I' | '(' | ')' | '-' => 40,
            'm' | 'w' => 88,
            'M' | 'W' => 98,
            '0'..='9' => 60,
            'A'..='Z' => 72,
            _ => 60,
        })
        .sum();
    (em_hundredths * px).div_ceil(100)
}

/// `text` fitted to the alert banner: one line, or two split at a space (`\n`
/// between them), the second cut with an ellipsis when even two are too few;
/// at most [`MAX_ALERT_LEN`] bytes a line.
pub fn fit_alert(text: &str) -> String {
    let fits =
        |s: &str| system_width(s, ALERT_FONT_PX) <= ALERT_LINE_PX && s.len() <= MAX_ALERT_LEN;
    let text = text.trim();
    if fits(text) {
        return text.to_string();
    }
    // The longest first line that fits, ending at a space when there is one.
    let mut cut = 0;
    let mut last_space = None;
    for (i, c) in text.char_indices() {
        if !fits(&text[..i + c.len_utf8()]) {
            break;
        }
        cut = i + c.len_utf8();
        if c == ' ' {
            last_space = Some(i);
        }
    }
    let cut = last_space.filter(|&i| i > 0).unwrap_or(cut);
    let (first, rest) = text.split_at(cut);
    let rest = rest.trim_start();
    let mut second = rest.to_string();
    while !fits(&second) {
        second.pop();
        while second.ends_with(' ') {
            second.pop();
        }
        if fits(&format!("{second}\u{2026}")) {
            second.push('\u{2026}');
            break;
        }
    }
    format!("{}\n{second}", first.trim_end())
}

/// A paint message: the header, then `ops` (one vector-op message).
pub fn paint_message(base: u16, target: u16, part: usize, count: usize, ops: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAINT_HEADER_LEN + ops.len());
    out.extend(base.to_le_bytes());
    out.extend(target.to_le_bytes());
    out.push(part as u8);
    out.push(count as u8);
    out.extend(ops);
    out
}

/// The watch's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Its screen is on.
    pub screen_on: bool,
    /// The picture version it shows, 0 for none.
    pub picture: u16,
    /// The last alert id it got, 0 for none.
    pub alert: u16,
    /// The relay state it shows.
    pub relay: Option<RelayState>,
}

/// Reads a message from the watch: its report (fields it leaves out read as "nothing").
pub fn parse_report(items: &[f64]) -> Option<Report> {
    let field = |i: usize| items.get(i).copied().unwrap_or(0.0);
    if items.len() < 2 || field(0) as i64 != MSG_REPORT {
        return None;
    }
    let relay = match items.get(4) {
        Some(code) => RelayState::from_code(*code as i64),
        None => None,
    };
    Some(Report {
        screen_on: field(1) != 0.0,
        picture: field(2) as u16,
        alert: field(3) as u16,
        relay,
    })
}
