//! The messages between the companion and the watch, and how a change of the
//! pool becomes messages of at most [`MAX_MESSAGE_BYTES`].
//!
//! Fitbit messaging carries CBOR-encoded JavaScript values. Every message is
//! an array whose first item is its type; numbers are integers, so CBOR
//! spends 1 byte on 0..23, 2 on 24..255, 3 on 256..65535.
//!
//! Companion to watch:
//!
//! | message | items |
//! |---|---|
//! | paint | `[1, full, rects, lines, texts, images]` |
//! | relay | `[2, code]`: 0 connecting, 1 online, 2 offline |
//! | alert | `[3, kind, text]`: kinds in [`AlertKind`] |
//!
//! In a paint, `full` is 1 when the watch must hide every pool element first
//! (the first message of a full repaint), and each pool list is flat, with a
//! fixed stride per element (`color` -1 hides the element):
//!
//! | list | stride | items |
//! |---|---|---|
//! | rects | 6 | `i, x, y, w, h, color` |
//! | lines | 7 | `i, x1, y1, x2, y2, width, color` |
//! | texts | 7 | `i, x, y, size, anchor, color, text` (anchor 0 start, 1 middle, 2 end) |
//! | images | 4 | `i, x, y, icon` (icon -1 hides) |
//!
//! Watch to companion: `[1, screen_on]`, sent when the watch's socket opens
//! and whenever its display turns on or off. The companion answers it with
//! the relay state and a full repaint.

use crate::pool::{Image, Line, Pool, Rect, Text};

/// Largest message the watch accepts, in CBOR bytes (Fitbit's `MAX_MESSAGE_SIZE` is about 1 KiB).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Type of a paint message.
pub const MSG_PAINT: i64 = 1;
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
    if text.len() > 48 {
        let mut end = 48;
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

fn color(c: u32) -> Value {
    Value::Int(i64::from(c & 0xff_ffff))
}

fn rect_items(i: usize, r: Option<&Rect>) -> Vec<Value> {
    let i = Value::Int(i as i64);
    match r {
        Some(r) => vec![
            i,
            Value::Int(r.x.into()),
            Value::Int(r.y.into()),
            Value::Int(r.w.into()),
            Value::Int(r.h.into()),
            color(r.color),
        ],
        None => vec![
            i,
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(-1),
        ],
    }
}

fn line_items(i: usize, l: Option<&Line>) -> Vec<Value> {
    let i = Value::Int(i as i64);
    match l {
        Some(l) => vec![
            i,
            Value::Int(l.x1.into()),
            Value::Int(l.y1.into()),
            Value::Int(l.x2.into()),
            Value::Int(l.y2.into()),
            Value::Int(l.width.into()),
            color(l.color),
        ],
        None => {
            let mut v = vec![i];
            v.extend([0, 0, 0, 0, 0, -1].map(Value::Int));
            v
        }
    }
}

fn text_items(i: usize, t: Option<&Text>) -> Vec<Value> {
    let i = Value::Int(i as i64);
    match t {
        Some(t) => vec![
            i,
            Value::Int(t.x.into()),
            Value::Int(t.y.into()),
            Value::Int(t.size.into()),
            Value::Int(t.anchor as i64),
            color(t.color),
            Value::Str(t.text.clone()),
        ],
        None => {
            let mut v = vec![i];
            v.extend([0, 0, 0, 0, -1].map(Value::Int));
            v.push(Value::Str(String::new()));
            v
        }
    }
}

fn image_items(i: usize, m: Option<&Image>) -> Vec<Value> {
    let i = Value::Int(i as i64);
    match m {
        Some(m) => vec![
            i,
            Value::Int(m.x.into()),
            Value::Int(m.y.into()),
            Value::Int(m.icon.into()),
        ],
        None => vec![i, Value::Int(0), Value::Int(0), Value::Int(-1)],
    }
}

/// One element's update: which list it goes in and its items.
struct Op {
    list: usize,
    items: Vec<Value>,
    bytes: usize,
}

/// The paint messages that turn `prev` into `next` on the watch.
///
/// With `prev` = `None` (the watch's picture is unknown: it just connected or
/// its screen turned on) this is a full repaint: the first message has
/// `full` = 1 and only shown elements are sent. Otherwise only the elements
/// that differ are sent, and nothing at all when nothing differs. Every
/// message is at most [`MAX_MESSAGE_BYTES`] CBOR bytes.
pub fn paint_messages(prev: Option<&Pool>, next: &Pool) -> Vec<Value> {
    let mut ops = Vec::new();
    let full = prev.is_none();
    fn diff<T: PartialEq>(
        ops: &mut Vec<Op>,
        list: usize,
        prev: Option<&[Option<T>]>,
        next: &[Option<T>],
        items: fn(usize, Option<&T>) -> Vec<Value>,
    ) {
        for (i, n) in next.iter().enumerate() {
            let changed = match prev {
                None => n.is_some(),
                Some(p) => p.get(i).map(Option::as_ref) != Some(n.as_ref()),
            };
            if changed {
                let items = items(i, n.as_ref());
                let bytes = items.iter().map(Value::cbor_len).sum();
                ops.push(Op { list, items, bytes });
            }
        }
    }
    diff(
        &mut ops,
        0,
        prev.map(|p| &p.rects[..]),
        &next.rects,
        rect_items,
    );
    diff(
        &mut ops,
        1,
        prev.map(|p| &p.lines[..]),
        &next.lines,
        line_items,
    );
    diff(
        &mut ops,
        2,
        prev.map(|p| &p.texts[..]),
        &next.texts,
        text_items,
    );
    diff(
        &mut ops,
        3,
        prev.map(|p| &p.images[..]),
        &next.images,
        image_items,
    );
    if ops.is_empty() && !full {
        return Vec::new();
    }

    let mut messages = Vec::new();
    let mut lists: [Vec<Value>; 4] = Default::default();
    let mut counts = [0usize; 4];
    let mut payload = 0usize;
    let size = |counts: &[usize; 4], payload: usize| {
        // [1, full, r, l, t, i]: array head, type, flag, four list heads, items.
        1 + 1 + 1 + counts.iter().map(|c| head_len(*c as u64)).sum::<usize>() + payload
    };
    let mut first = true;
    for op in ops {
        let mut next_counts = counts;
        next_counts[op.list] += op.items.len();
        if size(&next_counts, payload + op.bytes) > MAX_MESSAGE_BYTES && payload > 0 {
            messages.push(paint(full && first, std::mem::take(&mut lists)));
            first = false;
            counts = [0; 4];
            payload = 0;
            next_counts = counts;
            next_counts[op.list] += op.items.len();
        }
        counts = next_counts;
        payload += op.bytes;
        lists[op.list].extend(op.items);
    }
    if payload > 0 || (full && first) {
        messages.push(paint(full && first, lists));
    }
    messages
}

fn paint(full: bool, lists: [Vec<Value>; 4]) -> Value {
    let mut items = vec![Value::Int(MSG_PAINT), Value::Int(i64::from(full))];
    items.extend(lists.into_iter().map(Value::Array));
    Value::Array(items)
}

/// Applies paint messages to a pool, as the watch does: the reference the tests check against.
pub fn apply_paint(pool: &mut Pool, message: &Value) -> Option<()> {
    let Value::Array(items) = message else {
        return None;
    };
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    if int(items.first()?)? != MSG_PAINT {
        return None;
    }
    if int(items.get(1)?)? == 1 {
        *pool = Pool::new();
    }
    let list = |k: usize| match items.get(2 + k) {
        Some(Value::Array(v)) => Some(v),
        _ => None,
    };
    let n = |v: &[Value], k: usize| v.get(k).and_then(int).unwrap_or(0) as i32;
    for c in list(0)?.chunks_exact(6) {
        let i = n(c, 0) as usize;
        let shown = n(c, 5) >= 0;
        *pool.rects.get_mut(i)? = shown.then(|| Rect {
            x: n(c, 1),
            y: n(c, 2),
            w: n(c, 3),
            h: n(c, 4),
            color: n(c, 5) as u32,
        });
    }
    for c in list(1)?.chunks_exact(7) {
        let i = n(c, 0) as usize;
        let shown = n(c, 6) >= 0;
        *pool.lines.get_mut(i)? = shown.then(|| Line {
            x1: n(c, 1),
            y1: n(c, 2),
            x2: n(c, 3),
            y2: n(c, 4),
            width: n(c, 5),
            color: n(c, 6) as u32,
        });
    }
    for c in list(2)?.chunks_exact(7) {
        let i = n(c, 0) as usize;
        let shown = n(c, 5) >= 0;
        let text = match &c[6] {
            Value::Str(s) => s.clone(),
            _ => String::new(),
        };
        let anchor = match n(c, 4) {
            1 => crate::pool::Anchor::Middle,
            2 => crate::pool::Anchor::End,
            _ => crate::pool::Anchor::Start,
        };
        *pool.texts.get_mut(i)? = shown.then(|| Text {
            x: n(c, 1),
            y: n(c, 2),
            size: n(c, 3),
            anchor,
            color: n(c, 5) as u32,
            text,
        });
    }
    for c in list(3)?.chunks_exact(4) {
        let i = n(c, 0) as usize;
        let shown = n(c, 3) >= 0;
        *pool.images.get_mut(i)? = shown.then(|| Image {
            x: n(c, 1),
            y: n(c, 2),
            icon: n(c, 3) as u8,
        });
    }
    Some(())
}
