//! The companion's logic, in plain functions over bytes and milliseconds:
//! relay frames in, watch messages out. No I/O, no clock: the caller passes
//! `now_ms` and sends what comes back, so every rule is tested natively.

use watchtrain_protocol::{Action, Frame, Status, TrainingState};

use watchtrain_watch::{format, layout, vector, Scene, Screen, Theme};

use crate::watch::{self, AlertKind, Out, RelayState};

/// Least time between two paints while the screen is on, in milliseconds.
pub const PAINT_INTERVAL_MS: f64 = 1000.0;

/// Which training the watch follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The newest training the relay reports (highest id).
    Latest,
    /// One training, by id.
    Id(u32),
}

impl Follow {
    /// Reads the settings value: `"latest"`, empty, or a training id.
    pub fn parse(s: &str) -> Follow {
        match s.trim().parse::<u32>() {
            Ok(id) if id > 0 => Follow::Id(id),
            _ => Follow::Latest,
        }
    }
}

/// The companion: the followed training's state, what the watch shows, and
/// which alerts were already sent.
#[derive(Debug)]
pub struct Core {
    /// Which training to follow.
    follow: Follow,
    /// The followed training's id and state, once a frame of it arrived.
    training: Option<(u32, TrainingState)>,
    /// What the companion last told the watch about the relay.
    relay: RelayState,
    /// The watch's messaging socket is open.
    watch_open: bool,
    /// The watch's screen is on (only alerts go while it is off).
    screen_on: bool,
    /// The screen of the watch (Versa 3 and Sense: 336x336).
    screen: Screen,
    /// The scene the watch shows; `None` when unknown (full repaint next).
    shown: Option<Scene>,
    /// The state changed since the last paint.
    dirty: bool,
    /// When the last paint went out.
    last_paint_ms: f64,
    /// Alerts already sent for the current training.
    alerted: Alerted,
    /// Relay frames that failed to decode or apply (for the logs and tests).
    pub bad_frames: u32,
}

/// The alert memory of one training: each event buzzes once.
#[derive(Debug, Default, Clone, Copy)]
struct Alerted {
    /// The training's end was announced.
    finished: bool,
    /// The current stall was announced.
    stalled: bool,
    /// Metrics (bit per index) whose latest value is non-finite and were announced.
    not_finite: u32,
}

impl Core {
    /// A companion following `follow`, with the relay not yet connected and no watch.
    pub fn new(follow: Follow) -> Core {
        Core {
            follow,
            training: None,
            relay: RelayState::Connecting,
            watch_open: false,
            screen_on: true,
            screen: Screen::VERSA3,
            shown: None,
            dirty: true,
            last_paint_ms: f64::NEG_INFINITY,
            alerted: Alerted::default(),
            bad_frames: 0,
        }
    }

    /// The followed training's id and state.
    pub fn training(&self) -> Option<(u32, &TrainingState)> {
        self.training.as_ref().map(|(id, s)| (*id, s))
    }

    /// What the companion follows.
    pub fn follow(&self) -> Follow {
        self.follow
    }

    /// Changes which training to follow; forgets the current one if it no longer matches.
    pub fn set_follow(&mut self, follow: Follow) {
        if self.follow != follow {
            self.follow = follow;
            if let (Follow::Id(want), Some((id, _))) = (follow, &self.training) {
                if *id != want {
                    self.training = None;
                }
            }
            self.alerted = Alerted::default();
            self.dirty = true;
        }
    }

    /// The relay connection changed. Returns the messages to send now.
    pub fn relay_state(&mut self, state: RelayState) -> Vec<Out> {
        if state == self.relay {
            return Vec::new();
        }
        self.relay = state;
        if self.watch_open {
            vec![Out::Message(watch::relay_message(state))]
        } else {
            Vec::new()
        }
    }

    /// The watch's messaging socket closed: it will say hello when it is back.
    pub fn watch_closed(&mut self) {
        self.watch_open = false;
        self.shown = None;
    }

    /// A message from the watch, as its numbers (`[1, screen_on]`).
    /// Returns the messages to send now: the relay state and a full repaint.
    pub fn watch_message(&mut self, items: &[f64], now_ms: f64) -> Vec<Out> {
        let Some(screen_on) = watch::parse_hello(items) else {
            return Vec::new();
        };
        self.watch_open = true;
        self.screen_on = screen_on;
        self.shown = None;
        self.dirty = true;
        let mut out = vec![Out::Message(watch::relay_message(self.relay))];
        if screen_on {
            out.extend(self.paint(now_ms));
        }
        out
    }

    /// One binary frame from the relay. Returns the messages to send now:
    /// alerts at once, a paint when the last one is at least
    /// [`PAINT_INTERVAL_MS`] old (otherwise [`Core::next_paint_ms`] says when).
    pub fn relay_frame(&mut self, bytes: &[u8], now_ms: f64) -> Vec<Out> {
        let frame = match Frame::decode(bytes) {
            Ok(frame) => frame,
            Err(_) => {
                self.bad_frames += 1;
                return Vec::new();
            }
        };
        if matches!(frame.action, Action::Ack(_)) {
            return Vec::new();
        }
        let id = frame.training_id;
        // Following the latest, the relay's snapshot of another training means it
        // switched; other frames switch only to a newer (higher) id.
        let snapshot = matches!(frame.action, Action::Snapshot(_));
        let switch = match (&self.training, self.follow) {
            (_, Follow::Id(want)) if want != id => return Vec::new(),
            (None, _) => true,
            (Some((current, _)), Follow::Latest) if id < *current && !snapshot => {
                return Vec::new()
            }
            (Some((current, _)), _) => id != *current,
        };
        if switch {
            self.training = Some((id, TrainingState::new()));
            self.alerted = Alerted::default();
        }
        let Some((_, state)) = self.training.as_mut() else {
            return Vec::new();
        };
        let before = (!switch).then(|| state.clone());
        match state.apply(&frame) {
            Ok(watchtrain_protocol::Applied::Changed) => {}
            Ok(_) => return Vec::new(),
            Err(_) => {
                self.bad_frames += 1;
                return Vec::new();
            }
        }
        let mut out = self.alerts(before.as_ref());
        self.dirty = true;
        out.extend(self.tick(now_ms));
        out
    }

    /// The alerts that the change from `before` to the current state makes.
    /// A state seen for the first time (a late join) announces nothing: only
    /// changes seen by this companion buzz, each once.
    fn alerts(&mut self, before: Option<&TrainingState>) -> Vec<Out> {
        let Some((_, state)) = &self.training else {
            return Vec::new();
        };
        let mut events = Vec::new();
        let name = state.name().as_str();
        // Finished.
        if state.status().is_finished() {
            let was_running = before.is_some_and(|b| !b.status().is_finished());
            if was_running && !self.alerted.finished {
                let kind = match state.status() {
                    Status::Completed => AlertKind::Completed,
                    Status::Failed => AlertKind::Failed,
                    _ => AlertKind::Cancelled,
                };
                let mut text = format!("{name} {}", state.status().as_str());
                if !state.reason().is_empty() {
                    text = format!("{text}: {}", state.reason());
                }
                events.push((kind, text));
            }
            self.alerted.finished = true;
        } else {
            self.alerted.finished = false;
        }
        // Stalled.
        if state.status() == Status::Stalled {
            let was_moving = before.is_some_and(|b| b.status() != Status::Stalled);
            if was_moving && !self.alerted.stalled {
                events.push((AlertKind::Stalled, format!("{name} stalled")));
            }
            self.alerted.stalled = true;
        } else {
            self.alerted.stalled = false;
        }
        // A metric turned NaN or infinite.
        let mut mask = 0u32;
        for (i, v) in state.latest().iter().enumerate() {
            if !v.is_finite() {
                mask |= 1 << i;
            }
        }
        let fresh = mask & !self.alerted.not_finite;
        if fresh != 0 && before.is_some() {
            let i = fresh.trailing_zeros() as usize;
            let metric = state.metrics().get(i).map_or("metric", |m| m.as_str());
            let value = format::value(state.latest()[i]);
            events.push((AlertKind::NotFinite, format!("{metric} is {value}")));
        }
        self.alerted.not_finite = mask;
        if !self.watch_open {
            return Vec::new();
        }
        events
            .into_iter()
            .map(|(kind, text)| Out::Message(watch::alert_message(kind, &text)))
            .collect()
    }

    /// When the next coalesced paint is due, if one is waiting.
    pub fn next_paint_ms(&self) -> Option<f64> {
        (self.dirty && self.watch_open && self.screen_on)
            .then_some(self.last_paint_ms + PAINT_INTERVAL_MS)
    }

    /// Paints if a paint is due at `now_ms`. Call it when [`Core::next_paint_ms`] comes.
    pub fn tick(&mut self, now_ms: f64) -> Vec<Out> {
        match self.next_paint_ms() {
            Some(due) if now_ms >= due || self.shown.is_none() => self.paint(now_ms),
            _ => Vec::new(),
        }
    }

    /// The watch's picture is unknown (e.g. a message was lost): repaint it whole.
    pub fn resync(&mut self) {
        self.shown = None;
        self.dirty = true;
    }

    /// The face the watch should show now: the followed training's, or an empty one.
    pub fn scene(&self) -> Scene {
        match &self.training {
            Some((_, state)) => layout(state, self.screen, &Theme::dark()),
            None => layout(&TrainingState::new(), self.screen, &Theme::dark()),
        }
    }

    /// The face of the current state as vector-op messages against what the watch shows.
    fn paint(&mut self, now_ms: f64) -> Vec<Out> {
        let scene = self.scene();
        let messages = vector::encode(&scene, self.shown.as_ref());
        self.shown = Some(scene);
        self.dirty = false;
        self.last_paint_ms = now_ms;
        messages.into_iter().map(Out::Paint).collect()
    }
}
