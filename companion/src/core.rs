//! The companion's logic, in plain functions over bytes and milliseconds:
//! relay frames in, watch messages out. No I/O, no clock: the caller passes
//! `now_ms` and sends what comes back, so every rule is tested natively.
//!
//! The watch link is a state synchronization after Mosh's SSP: the watch
//! reports the picture version it has applied; the companion sends the diff
//! from that acknowledged picture to the newest one (never a queue of old
//! pictures), at most one a second while the screen is on, and sends again
//! what the watch has not acknowledged after [`RESEND_MS`]. Alerts and the
//! relay state are state too: kept until the watch reports them.

use watchtrain_protocol::{Action, Frame, Status, TrainingState};

use watchtrain_watch::{format, layout, vector, Scene, Screen, Theme};

use crate::watch::{self, AlertKind, Out, RelayState, Report};

/// Least time between two paints while the screen is on, in milliseconds.
pub const PAINT_INTERVAL_MS: f64 = 1000.0;
/// What the watch has not acknowledged after this long is sent again.
pub const RESEND_MS: f64 = 2000.0;
/// Pictures sent and not yet acknowledged that are remembered (their acks may still come).
const IN_FLIGHT: usize = 4;
/// Alerts kept for a watch that is away; older ones are dropped first.
const PENDING_ALERTS: usize = 8;

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

/// The companion: the followed training's state, what the watch holds, and
/// what it still has to learn.
#[derive(Debug)]
pub struct Core {
    /// Which training to follow.
    follow: Follow,
    /// The followed training's id and state, once a frame of it arrived.
    training: Option<(u32, TrainingState)>,
    /// The relay connection as the companion sees it.
    relay: RelayState,
    /// The watch's messaging socket is open.
    watch_open: bool,
    /// The watch's screen is on (only alerts and the relay state go while it is off).
    screen_on: bool,
    /// The screen of the watch (Versa 3 and Sense: 336x336).
    screen: Screen,
    /// The picture the watch reported, with its scene; `None` when unknown (full repaint next).
    acked: Option<(u16, Scene)>,
    /// Pictures sent and not yet acknowledged, oldest first.
    in_flight: Vec<(u16, Scene)>,
    /// The version of the next picture.
    next_version: u16,
    /// The state changed since the last paint.
    dirty: bool,
    /// When the last paint went out.
    last_paint_ms: f64,
    /// The relay state the watch reports showing.
    watch_relay: Option<RelayState>,
    /// When the relay state last went to the watch.
    relay_sent_ms: f64,
    /// Alerts the watch has not acknowledged, oldest first.
    alerts: Vec<PendingAlert>,
    /// The id of the next alert.
    next_alert: u16,
    /// Alerts already raised for the current training.
    alerted: Alerted,
    /// Relay frames that failed to decode or apply (for the logs and tests).
    pub bad_frames: u32,
    /// The link before state synchronization, for the test that shows it fails:
    /// a picture counts as shown once sent, an alert once sent, and reports are ignored.
    trust_sent: bool,
}

/// An alert the watch has not acknowledged.
#[derive(Debug, Clone)]
struct PendingAlert {
    /// Its id, echoed by the watch's report.
    id: u16,
    /// Why the watch buzzes.
    kind: AlertKind,
    /// What it says.
    text: String,
    /// When it last went out.
    sent_ms: f64,
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
        Core::starting_at(follow, 0.0)
    }

    /// A companion started at `now_ms`: its picture and alert numbers start
    /// there, so a relaunched companion never takes a report of its previous
    /// life for one of its own pictures.
    pub fn starting_at(follow: Follow, now_ms: f64) -> Core {
        let start = ((now_ms / 16.0) as u64 % 0xfff0) as u16 + 1;
        Core {
            follow,
            training: None,
            relay: RelayState::Connecting,
            watch_open: false,
            screen_on: true,
            screen: Screen::VERSA3,
            acked: None,
            in_flight: Vec::new(),
            next_version: start,
            dirty: true,
            last_paint_ms: f64::NEG_INFINITY,
            watch_relay: None,
            relay_sent_ms: f64::NEG_INFINITY,
            alerts: Vec::new(),
            next_alert: start,
            alerted: Alerted::default(),
            bad_frames: 0,
            trust_sent: false,
        }
    }

    /// The link before state synchronization (tests only show that it fails):
    /// pictures and alerts count as delivered once sent, reports are ignored.
    #[doc(hidden)]
    pub fn trust_sent(mut self) -> Core {
        self.trust_sent = true;
        self
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
    pub fn relay_state(&mut self, state: RelayState, now_ms: f64) -> Vec<Out> {
        if state != self.relay {
            self.relay = state;
            self.relay_sent_ms = f64::NEG_INFINITY;
        }
        self.pump(now_ms)
    }

    /// The relay state as the companion sees it.
    pub fn relay(&self) -> RelayState {
        self.relay
    }

    /// The watch's messaging socket closed.
    pub fn watch_closed(&mut self) {
        self.watch_open = false;
    }

    /// The watch's messaging socket is open (its `onopen`, or found open by a
    /// relaunched companion): the relay state, the alerts not acknowledged and
    /// the diff from the acknowledged picture go now (the watch keeps its
    /// picture across a drop; a watch that lost it reports so and gets a full
    /// repaint). Returns the messages to send now.
    pub fn watch_opened(&mut self, now_ms: f64) -> Vec<Out> {
        self.watch_open = true;
        self.watch_relay = None;
        self.relay_sent_ms = f64::NEG_INFINITY;
        for alert in &mut self.alerts {
            alert.sent_ms = f64::NEG_INFINITY;
        }
        self.dirty = true;
        self.last_paint_ms = f64::NEG_INFINITY;
        self.pump(now_ms)
    }

    /// The watch's buffer refused a message: none of what was handed out by the
    /// last call went, so it is due again (sent when the buffer has room).
    pub fn refused(&mut self) {
        if self.in_flight.pop().is_some() {
            self.dirty = true;
            self.last_paint_ms = f64::NEG_INFINITY;
        }
        self.relay_sent_ms = f64::NEG_INFINITY;
        for alert in &mut self.alerts {
            alert.sent_ms = f64::NEG_INFINITY;
        }
    }

    /// A message from the watch, as its numbers: its report
    /// ([`watch::parse_report`]). Returns the messages to send now.
    pub fn watch_message(&mut self, items: &[f64], now_ms: f64) -> Vec<Out> {
        let Some(report) = watch::parse_report(items) else {
            return Vec::new();
        };
        if !self.watch_open {
            self.watch_open = true;
            self.acked = None;
        }
        let screen_turned_on = report.screen_on && !self.screen_on;
        self.screen_on = report.screen_on;
        if self.trust_sent {
            // The old link: a full repaint when the screen turns on, nothing else learnt.
            if screen_turned_on {
                self.acked = None;
                self.dirty = true;
            }
            return self.pump(now_ms);
        }
        self.learn(report);
        self.pump(now_ms)
    }

    /// What the watch's report says it holds.
    fn learn(&mut self, report: Report) {
        let acked_version = self.acked.as_ref().map(|(v, _)| *v);
        if let Some(i) = self
            .in_flight
            .iter()
            .position(|(v, _)| *v == report.picture)
        {
            self.acked = Some(self.in_flight.remove(i));
            self.in_flight.drain(..i);
        } else if acked_version != Some(report.picture) {
            // The watch holds a picture this companion does not know: repaint it whole.
            self.acked = None;
            self.dirty = true;
        }
        if report.picture == 0 {
            self.acked = None;
        }
        let got = |id: u16| (report.alert.wrapping_sub(id) as i16) >= 0 && report.alert != 0;
        self.alerts.retain(|a| !got(a.id));
        self.watch_relay = report.relay;
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
        // Acks are for producers; heartbeats only prove the relay alive (the caller's watchdog).
        if matches!(frame.action, Action::Ack(_) | Action::Heartbeat) {
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
        self.raise_alerts(before.as_ref());
        self.dirty = true;
        self.pump(now_ms)
    }

    /// Keeps the alerts that the change from `before` to the current state
    /// makes until the watch acknowledges them. A state seen for the first
    /// time (a late join) announces nothing: only changes seen by this
    /// companion buzz, each once.
    fn raise_alerts(&mut self, before: Option<&TrainingState>) {
        let Some((_, state)) = &self.training else {
            return;
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
        for (kind, text) in events {
            if self.alerts.len() == PENDING_ALERTS {
                self.alerts.remove(0);
            }
            let id = self.next_alert;
            self.next_alert = self.next_alert.wrapping_add(1).max(1);
            self.alerts.push(PendingAlert {
                id,
                kind,
                text,
                sent_ms: f64::NEG_INFINITY,
            });
        }
    }

    /// When the next coalesced paint is due, if one is waiting: the diff from
    /// the acknowledged picture [`RESEND_MS`] after an unacknowledged one, a
    /// change [`PAINT_INTERVAL_MS`] after the last paint, at once when the
    /// watch's picture is unknown.
    pub fn next_paint_ms(&self) -> Option<f64> {
        if !(self.watch_open && self.screen_on) {
            return None;
        }
        if !self.in_flight.is_empty() {
            // One picture on the air at a time: a diff from an older picture would
            // be refused by a watch that has the one in flight.
            Some(self.last_paint_ms + RESEND_MS)
        } else if self.dirty && self.acked.is_none() {
            Some(f64::NEG_INFINITY)
        } else if self.dirty {
            Some(self.last_paint_ms + PAINT_INTERVAL_MS)
        } else {
            None
        }
    }

    /// When [`Core::pump`] has something to send next, if anything waits.
    pub fn next_wake_ms(&self) -> Option<f64> {
        if !self.watch_open {
            return None;
        }
        let relay =
            (self.watch_relay != Some(self.relay)).then_some(self.relay_sent_ms + RESEND_MS);
        let alerts = self.alerts.iter().map(|a| a.sent_ms + RESEND_MS);
        relay
            .into_iter()
            .chain(alerts)
            .chain(self.next_paint_ms())
            .reduce(f64::min)
    }

    /// Paints if a paint is due at `now_ms`. Call it when [`Core::next_paint_ms`] comes.
    pub fn tick(&mut self, now_ms: f64) -> Vec<Out> {
        self.pump(now_ms)
    }

    /// Everything due at `now_ms`: the relay state and alerts the watch has not
    /// reported, and a paint when one is due. Call it when the watch's buffer
    /// has room again and when [`Core::next_wake_ms`] comes.
    pub fn pump(&mut self, now_ms: f64) -> Vec<Out> {
        let mut out = Vec::new();
        if !self.watch_open {
            return out;
        }
        if self.watch_relay != Some(self.relay) && now_ms >= self.relay_sent_ms + RESEND_MS {
            out.push(Out::Message(watch::relay_message(self.relay)));
            self.relay_sent_ms = now_ms;
            if self.trust_sent {
                self.watch_relay = Some(self.relay);
            }
        }
        for alert in &mut self.alerts {
            if now_ms >= alert.sent_ms + RESEND_MS {
                out.push(Out::Message(watch::alert_message(
                    alert.kind,
                    &alert.text,
                    alert.id,
                )));
                alert.sent_ms = now_ms;
            }
        }
        if self.trust_sent {
            self.alerts.clear();
        }
        if self.next_paint_ms().is_some_and(|due| now_ms >= due) {
            out.extend(self.paint(now_ms));
        }
        out
    }

    /// The face the watch should show now: the followed training's, or an empty one.
    pub fn scene(&self) -> Scene {
        match &self.training {
            Some((_, state)) => layout(state, self.screen, &Theme::dark()),
            None => layout(&TrainingState::new(), self.screen, &Theme::dark()),
        }
    }

    /// The diff from the acknowledged picture to the current face, as paint messages.
    fn paint(&mut self, now_ms: f64) -> Vec<Out> {
        let scene = self.scene();
        self.dirty = false;
        let base = self.acked.as_ref();
        if base.is_some_and(|(_, s)| *s == scene) {
            // The watch has it: nothing in flight matters any more.
            self.in_flight.clear();
            return Vec::new();
        }
        let parts = vector::encode(&scene, base.map(|(_, s)| s));
        let base_version = base.map_or(0, |(v, _)| *v);
        let version = self.next_version;
        self.next_version = self.next_version.wrapping_add(1).max(1);
        self.last_paint_ms = now_ms;
        let count = parts.len();
        let out = parts
            .iter()
            .enumerate()
            .map(|(i, ops)| Out::Paint(watch::paint_message(base_version, version, i, count, ops)))
            .collect();
        if self.trust_sent {
            self.acked = Some((version, scene));
        } else {
            if self.in_flight.len() == IN_FLIGHT {
                self.in_flight.remove(0);
            }
            self.in_flight.push((version, scene));
        }
        out
    }
}
