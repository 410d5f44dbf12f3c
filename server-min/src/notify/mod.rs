//! Telling the world: when a training finishes, fails, goes NaN, stalls or
//! resumes, the relay notifies people (ntfy and JSON webhooks, `--notify`)
//! and a lab's MQTT broker ([`crate::mqtt`], `--mqtt`).
//!
//! The hub only calls [`Outlet::saw`] after a frame changed a training; that
//! puts the training's state on a bounded broadcast channel and returns. The
//! notifier and the bridge are tasks of their own that read the channel, so
//! a slow, dead or failing receiver never slows the relay: each URL has its
//! own bounded queue, every request a timeout, a few retries with backoff,
//! and what is given up is counted in `/metrics`.
//!
//! Each event is told at most once per training: the notifier remembers what
//! it told in its own table of the relay's database, so a restart (which
//! sees every silent training stall again) repeats nothing.

pub mod web;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use watchtrain_protocol::{Action, Goal, Status, TrainingState};

use crate::config::Config;
use crate::error::RelayError;
use crate::hub::{Hub, Training};
use web::Target;

/// Changes the channel holds for a notifier or bridge that is behind.
const CHANGES_QUEUE: usize = 1024;
/// Notifications queued per URL; more while it is slow are given up.
const TARGET_QUEUE: usize = 64;
/// Tries per notification (the first and the retries).
const ATTEMPTS: u32 = 4;
/// The wait before the first retry; it doubles for each next one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What happened to a training that people may want to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Happening {
    /// It ended: completed, or cancelled by someone.
    Finished,
    /// It ended with an error.
    Failed,
    /// A stats frame carried NaN or infinity.
    Nan,
    /// Nothing arrived for `--stall-after`.
    Stalled,
    /// Frames arrive again after a stall.
    Resumed,
}

impl Happening {
    /// Every event, in the order the docs list them.
    pub const ALL: [Happening; 5] = [
        Happening::Finished,
        Happening::Failed,
        Happening::Nan,
        Happening::Stalled,
        Happening::Resumed,
    ];

    /// The events a URL gets without `?events=`: all but `resumed`, which would be noise.
    pub const DEFAULT: [Happening; 4] = [
        Happening::Finished,
        Happening::Failed,
        Happening::Nan,
        Happening::Stalled,
    ];

    /// The word in URLs, JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Happening::Finished => "finished",
            Happening::Failed => "failed",
            Happening::Nan => "nan",
            Happening::Stalled => "stalled",
            Happening::Resumed => "resumed",
        }
    }

    /// The event named `word`.
    pub fn parse(word: &str) -> Option<Happening> {
        Happening::ALL.into_iter().find(|h| h.as_str() == word)
    }

    /// What a frame that took a training from `before` to `state` means, if anything.
    fn of(before: Status, action: &Action, state: &TrainingState) -> Option<Happening> {
        let after = state.status();
        if after != before {
            match after {
                Status::Completed | Status::Cancelled => return Some(Happening::Finished),
                Status::Failed => return Some(Happening::Failed),
                Status::Stalled => return Some(Happening::Stalled),
                _ => {}
            }
        }
        // NaN first: a stalled training that comes back with NaN went NaN, above all.
        if matches!(action, Action::Stats(s) if s.values.iter().any(|v| !v.is_finite())) {
            return Some(Happening::Nan);
        }
        (before == Status::Stalled && matches!(after, Status::Running | Status::Waiting))
            .then_some(Happening::Resumed)
    }
}

/// A training's state after a change worth passing on: an epoch's stats, a
/// registration, a status change, or an event.
#[derive(Debug, Clone)]
pub struct Change {
    /// The training's id.
    pub id: u32,
    /// Unix ms of its creation: with the id, it names the training in the notifier's table.
    pub created_ms: u64,
    /// Unix ms of the last frame from its producer.
    pub updated_ms: u64,
    /// Its state after the change.
    pub state: TrainingState,
    /// The event, when the change is one.
    pub event: Option<Happening>,
    /// True when an ended training runs again: its events may be told again.
    pub reopened: bool,
}

impl Change {
    /// A training's state as it is, without an event (for the bridge's catch-ups).
    pub fn current(id: u32, updated_ms: u64, state: TrainingState) -> Change {
        Change {
            id,
            created_ms: 0,
            updated_ms,
            state,
            event: None,
            reopened: false,
        }
    }
}

/// Counters of what the notifier and the bridge did, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Notifications a receiver accepted (2xx).
    pub sent: AtomicU64,
    /// Notifications given up after every retry, or because a URL's queue was full.
    pub given_up: AtomicU64,
    /// Changes missed because the notifier or the bridge fell behind.
    pub lagged: AtomicU64,
    /// MQTT messages handed to the client.
    pub mqtt_published: AtomicU64,
    /// MQTT messages dropped because the client's queue was full (broker down).
    pub mqtt_dropped: AtomicU64,
    /// 1 while the bridge is connected to the broker.
    pub mqtt_connected: AtomicI64,
}

/// The hub's side: where it drops changes for the notifier and the bridge.
pub struct Outlet {
    /// Fan-out to the notifier and the bridge; nobody listens when both are off.
    tx: broadcast::Sender<Arc<Change>>,
    /// What they did.
    pub counters: Arc<Counters>,
}

impl Default for Outlet {
    fn default() -> Self {
        Outlet {
            tx: broadcast::channel(CHANGES_QUEUE).0,
            counters: Arc::default(),
        }
    }
}

impl Outlet {
    /// Called by the hub after `action` took `training` from status `before`
    /// to its current state. Never blocks; costs nothing when nobody listens.
    pub fn saw(&self, training: &Training, before: Status, action: &Action) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let event = Happening::of(before, action, &training.state);
        let worth = event.is_some()
            || before != training.state.status()
            || matches!(action, Action::Stats(_) | Action::Register(_));
        if worth {
            let _ = self.tx.send(Arc::new(Change {
                id: training.id,
                created_ms: training.created_ms,
                updated_ms: training.updated_ms,
                state: training.state.clone(),
                event,
                reopened: before.is_finished() && !training.state.status().is_finished(),
            }));
        }
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }
}

/// The facts of a training told to people and brokers, read from its state in this one place.
pub struct Facts {
    /// The training's id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// Why it ended, when it did.
    pub reason: String,
    /// Epochs with stats (the latest stats epoch + 1).
    pub epochs_done: u32,
    /// Epochs planned, 0 if unknown.
    pub epochs: u32,
    /// Time spent in the epochs seen, in ms.
    pub elapsed_ms: u64,
    /// Time to the end, when known.
    pub eta_ms: Option<u64>,
    /// The metric names.
    pub metrics: Vec<String>,
    /// The latest values, aligned to `metrics` (empty before any stats).
    pub latest: Vec<f32>,
    /// The best value per metric and its epoch (0-based), aligned to `metrics`;
    /// NaN for a metric without a goal.
    pub best: Vec<(u32, f32)>,
    /// Which way each metric improves, aligned to `metrics`.
    pub goals: Vec<Goal>,
    /// Unix ms of the last frame from the producer.
    pub updated_ms: u64,
    /// The dashboard showing this training.
    pub link: String,
}

impl Facts {
    /// The facts of `change`, with a link under `dashboard` (the relay's base URL).
    pub fn of(change: &Change, dashboard: &str) -> Facts {
        let s = &change.state;
        Facts {
            id: change.id,
            name: s.name().as_str().to_owned(),
            status: s.status(),
            reason: s.reason().as_str().to_owned(),
            epochs_done: s.latest_epoch().map_or(0, |e| e.saturating_add(1)),
            epochs: s.epochs(),
            elapsed_ms: s.elapsed_ms(),
            eta_ms: s.eta_ms(),
            metrics: s.metrics().iter().map(|m| m.as_str().to_owned()).collect(),
            latest: s.latest().to_vec(),
            best: (0..s.metrics().len())
                .map(|i| s.best_of(i).map_or((0, f32::NAN), |b| (b.epoch, b.value)))
                .collect(),
            goals: s.goals().to_vec(),
            updated_ms: change.updated_ms,
            link: format!("{}/#{}", dashboard.trim_end_matches('/'), change.id),
        }
    }

    /// The metric that says most about the run: a minimized validation metric
    /// (a validation loss) if there is one, else another minimized one that is
    /// not the training's, else any minimized one, else the first maximized one,
    /// else the first.
    pub fn main_metric(&self) -> Option<usize> {
        let m = &self.metrics;
        let goal = |i: usize| self.goals.get(i).copied().unwrap_or_default();
        let find = |pred: &dyn Fn(Goal, &str) -> bool| (0..m.len()).find(|&i| pred(goal(i), &m[i]));
        let min = Goal::Minimize;
        find(&|g, n| g == min && n.contains("valid"))
            .or_else(|| find(&|g, n| g == min && !n.contains("train")))
            .or_else(|| find(&|g, _| g == min))
            .or_else(|| find(&|g, _| g == Goal::Maximize))
            .or(if m.is_empty() { None } else { Some(0) })
    }

    /// "3/10 epochs", "1 epoch" when the plan is unknown.
    fn epochs_text(&self) -> String {
        let unit = if self.epochs == 1 || (self.epochs == 0 && self.epochs_done == 1) {
            "epoch"
        } else {
            "epochs"
        };
        if self.epochs > 0 {
            format!("{}/{} {unit}", self.epochs_done, self.epochs)
        } else {
            format!("{} {unit}", self.epochs_done)
        }
    }

    /// ", best valid_loss 0.183 at epoch 8, accuracy 0.947": the main metric's
    /// best and the latest of the metrics where higher is better.
    fn results_text(&self) -> String {
        let mut out = String::new();
        let main = self.main_metric();
        if let Some((epoch, value)) = main.and_then(|i| self.best.get(i)) {
            if value.is_finite() {
                let name = &self.metrics[main.unwrap_or(0)];
                let _ = write!(
                    out,
                    ", best {name} {} at epoch {}",
                    number(*value),
                    epoch + 1
                );
            }
        }
        for (i, name) in self.metrics.iter().enumerate() {
            if Some(i) == main || self.goals.get(i) == Some(&Goal::Minimize) {
                continue;
            }
            if let Some(v) = self.latest.get(i) {
                let _ = write!(out, ", {name} {}", number(*v));
            }
        }
        out
    }

    /// A title for `event`: the name and what happened, e.g. `resnet18 pets finished`.
    pub fn title(&self, event: Happening) -> String {
        let what = match event {
            Happening::Finished if self.status == Status::Cancelled => "was cancelled",
            Happening::Finished => "finished",
            Happening::Failed => "failed",
            Happening::Nan => "went NaN",
            Happening::Stalled => "stalled",
            Happening::Resumed => "resumed",
        };
        format!("{} {what}", self.name)
    }

    /// One line that reads like a person wrote it, e.g.
    /// `resnet18 pets finished: 10/10 epochs in 42m, best valid_loss 0.183 at epoch 8, accuracy 0.947`.
    pub fn summary(&self, event: Happening, now_ms: u64) -> String {
        let head = self.title(event);
        let epochs = self.epochs_text();
        let took = duration(self.elapsed_ms);
        let results = self.results_text();
        match event {
            Happening::Finished if self.status == Status::Cancelled => {
                format!("{head} after {epochs} ({took}){results}")
            }
            Happening::Finished => format!("{head}: {epochs} in {took}{results}"),
            Happening::Failed => {
                let why = if self.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", self.reason)
                };
                format!("{head} after {epochs} ({took}){why}{results}")
            }
            Happening::Nan => {
                let bad: Vec<String> = self
                    .metrics
                    .iter()
                    .zip(&self.latest)
                    .filter(|(_, v)| !v.is_finite())
                    .map(|(n, v)| format!("{n} {}", number(*v)))
                    .collect();
                format!(
                    "{head} in epoch {}: {}",
                    self.epoch_of_total(),
                    bad.join(", ")
                )
            }
            Happening::Stalled => format!(
                "{head} after {epochs}: nothing heard for {}",
                duration(now_ms.saturating_sub(self.updated_ms))
            ),
            Happening::Resumed => format!("{head} after {epochs}{results}"),
        }
    }

    /// "4/10" (the latest stats epoch, counted from 1), or "4" when the plan is unknown.
    fn epoch_of_total(&self) -> String {
        if self.epochs > 0 {
            format!("{}/{}", self.epochs_done, self.epochs)
        } else {
            self.epochs_done.to_string()
        }
    }

    /// The facts as JSON: the webhook body (with `event`, `text` and
    /// `content` added) and the MQTT state (with progress and ETA added).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut latest = Map::new();
        let mut best = Map::new();
        for (i, name) in self.metrics.iter().enumerate() {
            if let Some(v) = self.latest.get(i) {
                latest.insert(name.clone(), finite(*v));
            }
            if let Some((epoch, v)) = self.best.get(i).filter(|(_, v)| v.is_finite()) {
                best.insert(
                    name.clone(),
                    json!({"value": finite(*v), "epoch": epoch + 1}),
                );
            }
        }
        let json = json!({
            "id": self.id,
            "name": self.name,
            "status": self.status.as_str(),
            "epoch": self.epochs_done,
            "epochs": self.epochs,
            "duration_s": self.elapsed_ms / 1000,
            "latest": latest,
            "best": best,
            "reason": self.reason,
            "url": self.link,
        });
        match json {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// A value for JSON: NaN and infinity become `null`, the rest keeps about 6 digits.
pub fn finite(v: f32) -> Value {
    if v.is_finite() {
        // Through the shortest decimal text, so 0.183f32 is 0.183 and not 0.18299999833106995.
        v.to_string()
            .parse::<f64>()
            .map_or(Value::Null, Value::from)
    } else {
        Value::Null
    }
}

/// A metric value for people: three decimals below 10, fewer above.
fn number(v: f32) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A duration for people: `35s`, `42m`, `2h 05m`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else {
        format!("{}h {:02}m", s / 3600, s / 60 % 60)
    }
}

/// What the notifier remembers having told, in its own table of the relay's database.
#[derive(Clone)]
struct Told {
    /// Its own connection (the store thread has the relay's; SQLite's WAL lets both in).
    conn: Arc<Mutex<Connection>>,
}

impl Told {
    fn open(db: &Path) -> Result<Told, String> {
        let conn = if db.as_os_str() == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(db)
        }
        .map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS notified (
                 training_id INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL,
                 event TEXT NOT NULL,
                 at_ms INTEGER NOT NULL,
                 PRIMARY KEY (training_id, created_ms, event)
             );",
        )
        .map_err(|e| e.to_string())?;
        // Forget trainings the relay dropped; a failure here (e.g. `:memory:`, which has
        // no trainings table on this connection) only leaves a few rows behind.
        let _ = conn.execute(
            "DELETE FROM notified WHERE training_id NOT IN (SELECT id FROM trainings)",
            [],
        );
        Ok(Told {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Forgets what was told about a training, when it runs again after it ended.
    async fn forget(&self, id: u32, created_ms: u64) {
        let conn = self.conn.clone();
        let done = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute(
                "DELETE FROM notified WHERE training_id = ?1 AND created_ms = ?2",
                params![id, created_ms as i64],
            )
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "cannot forget the notifications of a reopened training");
        }
    }

    /// Records `event` for the training; true when it was not recorded before.
    /// A database error says true: telling twice beats never telling.
    async fn first_time(&self, id: u32, created_ms: u64, event: Happening) -> bool {
        let conn = self.conn.clone();
        let done = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.execute(
                "INSERT OR IGNORE INTO notified (training_id, created_ms, event, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, created_ms as i64, event.as_str(), crate::hub::now_ms() as i64],
            )
        })
        .await;
        match done {
            Ok(Ok(rows)) => rows == 1,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot record a notification; sending anyway");
                true
            }
            Err(_) => true,
        }
    }
}

/// What `--notify` and `--mqtt` asked for, checked before the relay starts.
pub struct Plan {
    /// Where notifications go.
    targets: Vec<Target>,
    /// The broker, when `--mqtt` is given.
    mqtt: Option<crate::mqtt::Broker>,
}

impl Plan {
    /// Reads `--notify`, `--notify-file` and `--mqtt`; a bad URL is an error naming it (without secrets).
    pub fn from_config(config: &Config) -> Result<Plan, RelayError> {
        let mut urls = config.notify.clone();
        if let Some(file) = &config.notify_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                RelayError::Outbound(format!("--notify-file {}: {e}", file.display()))
            })?;
            urls.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        let targets = urls
            .iter()
            .filter(|u| !u.trim().is_empty())
            .map(|u| {
                Target::parse(u.trim()).map_err(|e| RelayError::Outbound(format!("--notify: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mqtt = config
            .mqtt
            .as_deref()
            .map(crate::mqtt::Broker::parse)
            .transpose()
            .map_err(|e| RelayError::Outbound(format!("--mqtt: {e}")))?;
        Ok(Plan { targets, mqtt })
    }

    /// Starts the notifier and the bridge (those asked for). `listening` is
    /// the relay's address, for the dashboard links when `--public-url` is not given.
    pub fn start(
        self,
        hub: &Arc<Hub>,
        listening: SocketAddr,
        tls: bool,
    ) -> Result<Outbound, RelayError> {
        let dashboard = hub
            .config
            .public_url
            .clone()
            .unwrap_or_else(|| guess_public_url(listening, tls));
        let mut tasks = Vec::new();
        if !self.targets.is_empty() {
            let told = Told::open(&hub.config.db).map_err(|e| {
                RelayError::Outbound(format!("--notify: cannot open the database: {e}"))
            })?;
            for t in &self.targets {
                tracing::info!(url = %t.redacted, events = ?t.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(), "notifying");
            }
            tasks.push(tokio::spawn(notifier(
                hub.outlet.subscribe(),
                self.targets,
                told,
                dashboard.clone(),
                hub.outlet.counters.clone(),
                hub.config.notify_timeout,
            )));
        }
        let bridge = self
            .mqtt
            .map(|broker| crate::mqtt::start(broker, hub.clone(), dashboard))
            .transpose()
            .map_err(RelayError::Outbound)?;
        Ok(Outbound { tasks, bridge })
    }
}

/// The running notifier and bridge.
pub struct Outbound {
    /// The notifier and its senders.
    tasks: Vec<JoinHandle<()>>,
    /// The MQTT bridge.
    bridge: Option<crate::mqtt::Bridge>,
}

impl Outbound {
    /// Stops them; the bridge first says `offline` to the broker.
    pub async fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
        if let Some(bridge) = self.bridge {
            bridge.stop().await;
        }
    }
}

/// `http://<first LAN address>:<port>` when listening on every address, else the address itself.
fn guess_public_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = if addr.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.ip())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
            .unwrap_or(addr.ip())
    } else {
        addr.ip()
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// One notification, built once for every URL that wants it.
pub struct Notice {
    /// The event.
    pub event: Happening,
    /// The facts.
    pub facts: Facts,
    /// The one-line summary.
    pub text: String,
}

impl Notice {
    /// The notice of `event` for `change`.
    pub fn new(event: Happening, change: &Change, dashboard: &str) -> Notice {
        let facts = Facts::of(change, dashboard);
        let text = facts.summary(event, crate::hub::now_ms());
        Notice { event, facts, text }
    }

    /// The webhook body: the facts, the event, and the summary as `text`, `content` and `body`.
    pub fn json(&self) -> Value {
        let mut map = self.facts.to_json();
        map.insert("event".into(), self.event.as_str().into());
        // The summary under the names chat services read: Slack `text`, Discord
        // `content`, apprise-api `body` (with its `title` and `type`).
        for key in ["text", "content", "body"] {
            map.insert(key.into(), self.text.clone().into());
        }
        map.insert("title".into(), self.facts.title(self.event).into());
        let kind = match self.event {
            Happening::Finished if self.facts.status == Status::Cancelled => "warning",
            Happening::Finished => "success",
            Happening::Failed | Happening::Nan => "failure",
            Happening::Stalled => "warning",
            Happening::Resumed => "info",
        };
        map.insert("type".into(), kind.into());
        Value::Object(map)
    }
}

/// Reads changes, keeps the events, and hands each to the URLs that want it, once per training.
async fn notifier(
    mut changes: broadcast::Receiver<Arc<Change>>,
    targets: Vec<Target>,
    told: Told,
    dashboard: String,
    counters: Arc<Counters>,
    timeout: Duration,
) {
    let client = web::Client::new();
    let queues: Vec<(Vec<Happening>, mpsc::Sender<Arc<Notice>>)> = targets
        .into_iter()
        .map(|target| {
            let (tx, rx) = mpsc::channel(TARGET_QUEUE);
            let events = target.events.clone();
            tokio::spawn(deliver(
                target,
                rx,
                client.clone(),
                counters.clone(),
                timeout,
            ));
            (events, tx)
        })
        .collect();
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                counters.lagged.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(missed = n, "notifier fell behind");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if change.reopened {
            told.forget(change.id, change.created_ms).await;
        }
        let Some(event) = change.event else { continue };
        let wanted: Vec<_> = queues
            .iter()
            .filter(|(events, _)| events.contains(&event))
            .collect();
        if wanted.is_empty() || !told.first_time(change.id, change.created_ms, event).await {
            continue;
        }
        let notice = Arc::new(Notice::new(event, &change, &dashboard));
        tracing::info!(
            id = change.id,
            event = event.as_str(),
            "notifying: {}",
            notice.text
        );
        for (_, queue) in wanted {
            if queue.try_send(notice.clone()).is_err() {
                counters.given_up.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    id = change.id,
                    "a notification URL is behind; notification given up"
                );
            }
        }
    }
}

/// Sends one URL's notifications in order, with a timeout each and retries with backoff.
async fn deliver(
    target: Target,
    mut queue: mpsc::Receiver<Arc<Notice>>,
    client: web::Client,
    counters: Arc<Counters>,
    timeout: Duration,
) {
    while let Some(notice) = queue.recv().await {
        let request = target.request(&notice);
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let result = match tokio::time::timeout(timeout, client.send(&target, &request)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            match result {
                Ok(()) => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) if attempt == ATTEMPTS => {
                    counters.given_up.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(url = %target.redacted, error = %e, attempts = ATTEMPTS, "notification given up");
                }
                Err(e) => {
                    tracing::info!(url = %target.redacted, error = %e, retry_in = ?backoff, "notification failed");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchtrain_protocol::*;

    fn state(name: &str, metrics: &[&str], epochs: u32, rows: &[&[f32]]) -> TrainingState {
        let mut s = TrainingState::new();
        let register = Register {
            name: truncated(name),
            metrics: metrics.iter().map(|m| truncated(m)).collect(),
            epochs,
            ..Default::default()
        };
        s.apply(&Frame {
            training_id: 1,
            seq: 1,
            action: Action::Register(register),
        })
        .unwrap();
        for (i, row) in rows.iter().enumerate() {
            let stats = Stats {
                epoch: i as u32,
                duration_ms: 252_000,
                values: Values::from_slice(row).unwrap(),
            };
            s.apply(&Frame {
                training_id: 1,
                seq: 2 + i as u32,
                action: Action::Stats(stats),
            })
            .unwrap();
        }
        s
    }

    fn change(state: TrainingState, updated_ms: u64) -> Change {
        Change::current(7, updated_ms, state)
    }

    #[test]
    fn a_finished_run_reads_like_a_person_wrote_it() {
        let valid = [0.9, 0.6, 0.4, 0.3, 0.25, 0.21, 0.19, 0.183, 0.185, 0.19];
        let rows: Vec<[f32; 3]> = valid
            .iter()
            .enumerate()
            .map(|(i, v)| [1.0 / (i as f32 + 1.0), *v, 0.9 + i as f32 * 0.005])
            .collect();
        let rows: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let mut s = state(
            "resnet18 pets",
            &["train_loss", "valid_loss", "accuracy"],
            10,
            &rows,
        );
        s.apply(&Frame {
            training_id: 1,
            seq: 100,
            action: Action::Finished(Finished {
                outcome: Outcome::Completed,
                reason: truncated(""),
            }),
        })
        .unwrap();
        let facts = Facts::of(&change(s, 0), "http://relay:8555/");
        assert_eq!(
            facts.summary(Happening::Finished, 0),
            "resnet18 pets finished: 10/10 epochs in 42m, best valid_loss 0.183 at epoch 8, accuracy 0.945"
        );
        assert_eq!(facts.link, "http://relay:8555/#7");
        let json = Value::Object(facts.to_json());
        assert_eq!(
            json["best"]["valid_loss"],
            json!({"value": 0.183, "epoch": 8})
        );
        assert_eq!(json["latest"]["accuracy"], json!(0.945));
        assert_eq!(json["duration_s"], json!(2520));
    }

    #[test]
    fn the_main_metric_follows_the_goals_and_a_learning_rate_has_no_best() {
        // `lr` first: before goals it was the main metric, with a "best" learning rate.
        let s = state(
            "sweep",
            &["lr", "accuracy"],
            2,
            &[&[0.1, 0.5], &[0.01, 0.7]],
        );
        let facts = Facts::of(&change(s, 0), "http://r");
        assert_eq!(facts.main_metric(), Some(1));
        assert_eq!(
            facts.summary(Happening::Resumed, 0),
            "sweep resumed after 2/2 epochs, best accuracy 0.700 at epoch 2, lr 0.010"
        );
        let json = Value::Object(facts.to_json());
        assert_eq!(
            json["best"],
            json!({"accuracy": {"value": 0.7, "epoch": 2}})
        );
    }

    #[test]
    fn failures_nan_and_stalls_say_what_and_when() {
        let mut s = state("bert", &["loss"], 0, &[&[0.5], &[f32::NAN]]);
        let nan = Facts::of(&change(s.clone(), 0), "http://r");
        assert_eq!(
            nan.summary(Happening::Nan, 0),
            "bert went NaN in epoch 2: loss NaN"
        );
        assert_eq!(Value::Object(nan.to_json())["latest"]["loss"], Value::Null);
        s.apply(&Frame {
            training_id: 1,
            seq: 100,
            action: Action::Finished(Finished {
                outcome: Outcome::Failed,
                reason: truncated("CUDA out of memory"),
            }),
        })
        .unwrap();
        let failed = Facts::of(&change(s, 0), "http://r");
        assert_eq!(
            failed.summary(Happening::Failed, 0),
            "bert failed after 2 epochs (8m): CUDA out of memory, best loss 0.500 at epoch 1"
        );
        let quiet = state("gpt", &["loss"], 5, &[&[2.0]]);
        let stalled = Facts::of(&change(quiet, 1_000), "http://r");
        assert_eq!(
            stalled.summary(Happening::Stalled, 301_000),
            "gpt stalled after 1/5 epochs: nothing heard for 5m"
        );
    }

    #[test]
    fn events_come_from_status_changes_and_bad_values() {
        let running = state("x", &["loss"], 3, &[&[1.0]]);
        let after = |action: Action| {
            let mut s = running.clone();
            s.apply(&Frame {
                training_id: 1,
                seq: 0,
                action: action.clone(),
            })
            .unwrap();
            Happening::of(running.status(), &action, &s)
        };
        let done = Finished {
            outcome: Outcome::Completed,
            reason: truncated(""),
        };
        assert_eq!(after(Action::Finished(done)), Some(Happening::Finished));
        let crash = Finished {
            outcome: Outcome::Failed,
            reason: truncated("oom"),
        };
        assert_eq!(after(Action::Finished(crash)), Some(Happening::Failed));
        assert_eq!(after(Action::Stalled), Some(Happening::Stalled));
        assert_eq!(after(Action::Heartbeat), None);
        let inf = Values::from_slice(&[f32::INFINITY]).unwrap();
        let nan = Action::Stats(Stats {
            epoch: 1,
            duration_ms: 0,
            values: inf,
        });
        assert_eq!(after(nan), Some(Happening::Nan));
        let mut stalled = running.clone();
        stalled
            .apply(&Frame {
                training_id: 1,
                seq: 0,
                action: Action::Stalled,
            })
            .unwrap();
        let mut back = stalled.clone();
        back.apply(&Frame {
            training_id: 1,
            seq: 0,
            action: Action::Heartbeat,
        })
        .unwrap();
        assert_eq!(
            Happening::of(stalled.status(), &Action::Heartbeat, &back),
            Some(Happening::Resumed)
        );
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(duration(35_000), "35s");
        assert_eq!(duration(42 * 60_000 + 5_000), "42m");
        assert_eq!(duration(2 * 3_600_000 + 5 * 60_000), "2h 05m");
    }
}
