//! A native model of the watch app (fitbit-app/app/index.js): it applies paints
//! whole or not at all, buzzes each alert id once, and reports what it holds.

#![allow(dead_code)]

use watchtrain_companion::watch::{Out, Value};
use watchtrain_protocol::{Action, Frame};
use watchtrain_watch::limits::PAINT_HEADER_LEN;
use watchtrain_watch::vector;

/// What the watch holds.
#[derive(Default)]
pub struct Watch {
    /// The element pool.
    pub pool: vector::Pool,
    /// The picture version shown, 0 for none.
    pub picture: u16,
    /// The last alert id received.
    pub last_alert: u16,
    /// Alert ids that buzzed, in order, with their kind.
    pub buzzed: Vec<(u16, i64)>,
    /// The relay code shown, -1 for none.
    pub relay: i64,
    /// The screen is on.
    pub screen_off: bool,
    /// The parts of a paint received so far: (base, target, count, parts).
    assembly: Option<(u16, u16, u8, Vec<Vec<u8>>)>,
}

impl Watch {
    pub fn new() -> Watch {
        Watch {
            relay: -1,
            ..Watch::default()
        }
    }

    /// Receives one message, as the watch app does.
    pub fn receive(&mut self, out: &Out) {
        match out {
            Out::Paint(b) => self.paint_part(b),
            Out::Message(Value::Array(items)) => match items.as_slice() {
                [Value::Int(2), Value::Int(code)] => self.relay = *code,
                [Value::Int(3), Value::Int(kind), Value::Str(_), Value::Int(id)] => {
                    let id = *id as u16;
                    self.last_alert = id;
                    if !self.buzzed.iter().any(|(b, _)| *b == id) {
                        self.buzzed.push((id, *kind));
                    }
                }
                other => panic!("unknown message {other:?}"),
            },
            other => panic!("unknown message {other:?}"),
        }
    }

    fn paint_part(&mut self, b: &[u8]) {
        let base = u16::from_le_bytes([b[0], b[1]]);
        let target = u16::from_le_bytes([b[2], b[3]]);
        let (part, count) = (b[4], b[5]);
        if part == 0 {
            self.assembly = Some((base, target, count, Vec::new()));
        }
        let Some(a) = self.assembly.as_mut() else {
            return;
        };
        if a.1 != target || a.3.len() != part as usize {
            return;
        }
        a.3.push(b[PAINT_HEADER_LEN..].to_vec());
        if a.3.len() < a.2 as usize {
            return;
        }
        let (base_want, target, _, parts) = self.assembly.take().unwrap();
        if base_want != 0 && base_want != self.picture {
            return;
        }
        for ops in parts {
            self.pool.apply(&ops).expect("well-formed ops");
        }
        self.picture = target;
    }

    /// The watch's report, as the companion reads it.
    pub fn report(&self) -> [f64; 5] {
        [
            1.0,
            if self.screen_off { 0.0 } else { 1.0 },
            self.picture.into(),
            self.last_alert.into(),
            self.relay as f64,
        ]
    }
}

/// A relay frame's bytes.
pub fn frame_bytes(training_id: u32, seq: u32, action: Action) -> Vec<u8> {
    Frame {
        training_id,
        seq,
        action,
    }
    .to_bytes()
    .unwrap()
    .to_vec()
}
