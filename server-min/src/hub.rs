//! The hub: every training's state, its fan-out channel, and the one place
//! where frames are applied, broadcast and persisted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use tokio::sync::{broadcast, watch};
use watchtrain_protocol::json::{self, LegacyMessage};
use watchtrain_protocol::{
    truncated, Action, Applied, Error, Frame, Phase, Progress, Register, Stats, Status,
    TrainingState, MAX_LEGACY_JSON_LEN,
};

use crate::config::Config;
use crate::error::{Reason, Rejection};
use crate::store::{Receipt, StatsRow, Store, StoredTraining};

/// One frame on its way to consumers, encoded once for all of them.
#[derive(Debug)]
pub struct Event {
    /// The training it belongs to.
    pub training_id: u32,
    /// The frame in the binary format.
    pub bin: Bytes,
    /// The frame as the ancestor's server would have sent it, if it has a legacy form.
    pub legacy: Option<String>,
    /// True when only `/ws/watchtrain/verbose/...` consumers get the legacy form (logs, registrations).
    pub verbose_only: bool,
}

/// A training held by the relay.
pub struct Training {
    /// Relay-assigned id.
    pub id: u32,
    /// Producer-chosen run key ("" when none).
    pub run_key: String,
    /// The reduced state.
    pub state: TrainingState,
    /// Fan-out to this training's consumers; bounded, lagging receivers are resynced.
    pub tx: broadcast::Sender<Arc<Event>>,
    /// Unix ms of creation.
    pub created_ms: u64,
    /// Unix ms of the last frame from a producer.
    pub updated_ms: u64,
    /// Consumers watching it by id right now.
    pub consumers: usize,
    /// True when the state changed since it was last persisted (progress is saved lazily).
    pub dirty: bool,
}

impl Training {
    fn stored(&self) -> StoredTraining {
        StoredTraining {
            id: self.id,
            run_key: self.run_key.clone(),
            state: self.state.clone(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        }
    }
}

/// Everything behind the hub's lock.
struct Inner {
    /// Trainings by id.
    trainings: HashMap<u32, Training>,
    /// Run key to id, so a restarted producer (or relay) finds its training again.
    by_key: HashMap<String, u32>,
    /// The next id to hand out.
    next_id: u32,
    /// Consumers of `/v1/watch` right now.
    followers: usize,
    /// Consumers of the legacy paths right now.
    legacy_consumers: usize,
}

/// Prometheus counters and gauges.
#[derive(Default)]
pub struct Counters {
    /// Binary WebSocket producers connected.
    pub producers: AtomicI64,
    /// Legacy JSON producers connected.
    pub legacy_producers: AtomicI64,
    /// Binary consumers connected (by id and following).
    pub consumers: AtomicI64,
    /// Legacy consumers connected.
    pub legacy_consumers: AtomicI64,
    /// Frames received from producers (all transports).
    pub frames_in: AtomicU64,
    /// Frames sent to consumers (snapshots included).
    pub frames_out: AtomicU64,
    /// Frames whose seq was already applied.
    pub duplicates: AtomicU64,
    /// Consumers resynced with a snapshot after falling behind.
    pub resyncs: AtomicU64,
    /// Rejections by reason, indexed like [`Reason::ALL`].
    pub rejected: [AtomicU64; Reason::ALL.len()],
}

impl Counters {
    /// Counts a rejection.
    pub fn reject(&self, reason: Reason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Holds a connection gauge up while alive.
pub struct Gauge<'a>(&'a AtomicI64);

impl<'a> Gauge<'a> {
    /// Counts one more connection until dropped.
    pub fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A consumer slot taken by [`Hub::subscribe`] (`Some(id)`) or
/// [`Hub::join_shared`]; released when dropped, also when the upgrade it was
/// taken for never happens.
pub struct Slot {
    /// The hub the slot belongs to.
    pub hub: Arc<Hub>,
    /// The training watched by id, or `None` for `/v1/watch` and legacy slots.
    pub training: Option<u32>,
    /// For shared slots: the legacy paths' count rather than `/v1/watch`'s.
    pub legacy: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        match self.training {
            Some(id) => self.hub.unwatch(id),
            None => self.hub.leave_shared(self.legacy),
        }
    }
}

/// What applying a producer's frame did.
pub struct Ingested {
    /// The training.
    pub training_id: u32,
    /// What the reducer said.
    pub applied: Applied,
    /// The training's `last_seq` afterwards.
    pub last_seq: u32,
    /// Set when the frame was persisted: await it before acking.
    pub receipt: Option<Receipt>,
}

/// The shared state of a running relay.
pub struct Hub {
    /// The configuration it runs with.
    pub config: Config,
    /// The persistence thread.
    pub store: Store,
    /// Counters for `/metrics`.
    pub metrics: Counters,
    /// Trainings and indexes.
    inner: Mutex<Inner>,
    /// The training `/v1/watch` follows: the latest registered.
    latest: watch::Sender<Option<u32>>,
    /// Fan-out of legacy JSON to the ancestor's consumer paths (all trainings, as it did).
    legacy_tx: broadcast::Sender<Arc<Event>>,
    /// Flips to true when the relay shuts down; every connection watches it.
    shutdown: watch::Sender<bool>,
    /// Token buckets of HTTP producers (`--max-fps`), by training id.
    pub post_buckets: Mutex<HashMap<u32, crate::ws::Bucket>>,
    /// Changes for the notifier and the MQTT bridge (`--notify`, `--mqtt`).
    pub outlet: crate::notify::Outlet,
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How a producer names the training it registers.
pub struct RegisterRequest {
    /// The id it had (or asks for), 0 for a new one.
    pub training_id: u32,
    /// The frame's seq.
    pub seq: u32,
    /// The registration; `None` for a legacy one (a name is made up).
    pub register: Option<Register>,
}

impl Hub {
    /// A hub holding the stored trainings; `unreadable` ids stay taken.
    pub fn new(
        config: Config,
        store: Store,
        stored: Vec<StoredTraining>,
        unreadable: &[u32],
    ) -> Hub {
        let mut trainings = HashMap::new();
        let mut by_key = HashMap::new();
        let mut latest: Option<(u64, u32)> = None;
        for t in stored {
            if !t.run_key.is_empty() {
                by_key.insert(t.run_key.clone(), t.id);
            }
            if latest.is_none_or(|(ms, _)| t.created_ms >= ms) {
                latest = Some((t.created_ms, t.id));
            }
            let (tx, _) = broadcast::channel(config.consumer_queue.max(1));
            trainings.insert(
                t.id,
                Training {
                    id: t.id,
                    run_key: t.run_key,
                    state: t.state,
                    tx,
                    created_ms: t.created_ms,
                    updated_ms: t.updated_ms,
                    consumers: 0,
                    dirty: false,
                },
            );
        }
        let next_id = trainings
            .keys()
            .chain(unreadable)
            .max()
            .map_or(1, |m| m.saturating_add(1));
        let (legacy_tx, _) = broadcast::channel(config.consumer_queue.max(1));
        Hub {
            store,
            metrics: Counters::default(),
            inner: Mutex::new(Inner {
                trainings,
                by_key,
                next_id,
                followers: 0,
                legacy_consumers: 0,
            }),
            latest: watch::Sender::new(latest.map(|(_, id)| id)),
            legacy_tx,
            shutdown: watch::Sender::new(false),
            post_buckets: Mutex::new(HashMap::new()),
            outlet: Default::default(),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied frame (apply is
        // all-or-nothing), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every connection to close.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that changes when the relay shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The training `/v1/watch` follows, as a watch channel.
    pub fn latest(&self) -> watch::Receiver<Option<u32>> {
        self.latest.subscribe()
    }

    /// Registers (or re-registers) a training and applies the registration.
    /// Returns the id and the state's `last_seq`, and the receipt of the write.
    pub fn register(&self, req: RegisterRequest) -> Result<Ingested, Rejection> {
        let now = now_ms();
        let mut inner = self.lock();
        let run_key = req
            .register
            .as_ref()
            .map(|r| r.run_key.as_str().to_owned())
            .unwrap_or_default();
        let id = if let Some(&id) = inner.by_key.get(&run_key).filter(|_| !run_key.is_empty()) {
            id
        } else if req.training_id != 0
            && inner
                .trainings
                .get(&req.training_id)
                .is_none_or(|t| t.run_key.is_empty() || t.run_key == run_key)
        {
            req.training_id
        } else {
            0
        };
        let id = if id != 0 && inner.trainings.contains_key(&id) {
            id
        } else {
            self.create(&mut inner, id, &run_key, now)?
        };
        if !run_key.is_empty() {
            inner.by_key.insert(run_key.clone(), id);
        }
        let training = inner.trainings.get_mut(&id).expect("just found or created");
        if !run_key.is_empty() {
            training.run_key = run_key;
        }
        let register = match req.register {
            Some(r) => r,
            None => Register {
                name: if training.state.name().is_empty() {
                    truncated(&format!("training {id}"))
                } else {
                    training.state.name().clone()
                },
                metrics: training.state.metrics().clone(),
                epochs: training.state.epochs(),
                ..Default::default()
            },
        };
        let frame = Frame {
            training_id: id,
            seq: req.seq,
            action: Action::Register(register),
        };
        let before = training.state.status();
        let applied = training.state.apply(&frame).map_err(apply_error)?;
        training.updated_ms = now;
        self.broadcast(training, &frame);
        self.outlet.saw(training, before, &frame.action);
        let receipt = Some(self.store.save_training(training.stored()));
        training.dirty = false;
        let last_seq = training.state.last_seq();
        drop(inner);
        self.latest.send_replace(Some(id));
        Ok(Ingested {
            training_id: id,
            applied,
            last_seq,
            receipt,
        })
    }

    /// Makes a new training (with `id`, or a fresh one when 0), after retention.
    fn create(
        &self,
        inner: &mut Inner,
        id: u32,
        run_key: &str,
        now: u64,
    ) -> Result<u32, Rejection> {
        self.retain(inner, self.config.keep_trainings.saturating_sub(1));
        if inner.trainings.len() >= self.config.max_trainings {
            return Err(Rejection::new(
                Reason::Limit,
                format!(
                    "the relay holds {} trainings already (--max-trainings)",
                    inner.trainings.len()
                ),
            ));
        }
        let id = if id == 0 {
            while inner.trainings.contains_key(&inner.next_id) || inner.next_id == 0 {
                inner.next_id = inner.next_id.wrapping_add(1);
            }
            inner.next_id
        } else {
            id
        };
        inner.next_id = inner.next_id.max(id.saturating_add(1));
        let (tx, _) = broadcast::channel(self.config.consumer_queue.max(1));
        inner.trainings.insert(
            id,
            Training {
                id,
                run_key: run_key.to_owned(),
                state: TrainingState::new(),
                tx,
                created_ms: now,
                updated_ms: now,
                consumers: 0,
                dirty: true,
            },
        );
        tracing::info!(id, run_key, "training created");
        Ok(id)
    }

    /// Drops the oldest trainings until at most `keep` are left: finished and
    /// stalled ones first, then the others, never one with consumers attached.
    fn retain(&self, inner: &mut Inner, keep: usize) {
        if inner.trainings.len() <= keep {
            return;
        }
        let mut candidates: Vec<(bool, u64, u32)> = inner
            .trainings
            .values()
            .filter(|t| t.consumers == 0)
            .map(|t| {
                let active =
                    !(t.state.status().is_finished() || t.state.status() == Status::Stalled);
                (active, t.updated_ms, t.id)
            })
            .collect();
        candidates.sort();
        let excess = inner.trainings.len() - keep;
        for (_, _, id) in candidates.into_iter().take(excess) {
            if let Some(t) = inner.trainings.remove(&id) {
                inner.by_key.retain(|_, v| *v != id);
                drop(self.store.delete(id));
                tracing::info!(id, name = %t.state.name(), "training dropped (--keep-trainings)");
            }
        }
    }

    /// Applies one producer frame (not a registration) to its training.
    /// With `create_unknown` (the legacy path) an unknown id makes a new training.
    pub fn apply(&self, frame: &Frame, create_unknown: bool) -> Result<Ingested, Rejection> {
        let now = now_ms();
        let mut inner = self.lock();
        let id = frame.training_id;
        if !inner.trainings.contains_key(&id) {
            if !create_unknown || id == 0 {
                return Err(Rejection::new(
                    Reason::UnknownTraining,
                    format!("training {id} is not known: register it first"),
                ));
            }
            self.create(&mut inner, id, "", now)?;
            let t = inner.trainings.get_mut(&id).expect("just created");
            let register = Frame {
                training_id: id,
                seq: 0,
                action: Action::Register(Register {
                    name: truncated(&format!("training {id}")),
                    ..Default::default()
                }),
            };
            let _ = t.state.apply(&register);
            self.latest.send_replace(Some(id));
        }
        let training = inner
            .trainings
            .get_mut(&id)
            .ok_or_else(|| Rejection::new(Reason::UnknownTraining, "training was dropped"))?;
        let before = training.state.status();
        let applied = training.state.apply(frame).map_err(apply_error)?;
        let last_seq = training.state.last_seq();
        if applied == Applied::Duplicate {
            self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(Ingested {
                training_id: id,
                applied,
                last_seq,
                receipt: None,
            });
        }
        training.updated_ms = now;
        self.broadcast(training, frame);
        self.outlet.saw(training, before, &frame.action);
        let receipt = match &frame.action {
            Action::Stats(s) => {
                training.dirty = false;
                Some(self.store.save_stats(
                    training.stored(),
                    frame.seq,
                    StatsRow {
                        epoch: s.epoch,
                        duration_ms: s.duration_ms,
                        values: s.values.to_vec(),
                    },
                ))
            }
            Action::Finished(_) | Action::Register(_) => {
                training.dirty = false;
                Some(self.store.save_training(training.stored()))
            }
            _ => {
                training.dirty = true;
                None
            }
        };
        Ok(Ingested {
            training_id: id,
            applied,
            last_seq,
            receipt,
        })
    }

    /// Applies one legacy message for training `id` (the frames it becomes).
    pub fn apply_legacy(&self, id: u32, msg: &LegacyMessage) -> Result<Ingested, Rejection> {
        let frames = {
            let inner = self.lock();
            let empty = TrainingState::new();
            let state = inner.trainings.get(&id).map_or(&empty, |t| &t.state);
            msg.to_frames(id, state)
        };
        let mut last = None;
        for frame in &frames {
            last = Some(self.apply(frame, true)?);
        }
        last.ok_or_else(|| Rejection::new(Reason::BadRequest, "message carries nothing"))
    }

    /// Encodes `frame` once and sends it to the training's consumers and the legacy ones.
    fn broadcast(&self, training: &Training, frame: &Frame) {
        let bin = match frame.to_bytes() {
            Ok(b) => Bytes::copy_from_slice(&b),
            Err(e) => {
                tracing::warn!(error = %e, "frame does not encode, not forwarded");
                return;
            }
        };
        let mut buf = [0u8; MAX_LEGACY_JSON_LEN];
        let legacy = json::encode(frame, &training.state, &mut buf)
            .ok()
            .map(str::to_owned);
        let verbose_only = matches!(frame.action, Action::Log(_) | Action::Register(_));
        let event = Arc::new(Event {
            training_id: training.id,
            bin,
            legacy,
            verbose_only,
        });
        if event.legacy.is_some() {
            let _ = self.legacy_tx.send(event.clone());
        }
        let _ = training.tx.send(event);
    }

    /// The snapshot of a training and a receiver of what follows it, with no gap
    /// and no overlap. `count` reserves a consumer slot (released by [`Hub::unwatch`]).
    pub fn subscribe(
        &self,
        id: u32,
        count: bool,
    ) -> Result<(Bytes, broadcast::Receiver<Arc<Event>>), Rejection> {
        let mut inner = self.lock();
        let training = inner
            .trainings
            .get_mut(&id)
            .ok_or_else(|| Rejection::unknown_training(id))?;
        if count {
            if training.consumers >= self.config.max_consumers {
                return Err(Rejection::new(
                    Reason::Limit,
                    format!(
                        "training {id} has {} consumers already (--max-consumers)",
                        training.consumers
                    ),
                ));
            }
            training.consumers += 1;
        }
        let snapshot = training
            .state
            .to_snapshot(id)
            .to_bytes()
            .map(|b| Bytes::copy_from_slice(&b))
            .unwrap_or_default();
        Ok((snapshot, training.tx.subscribe()))
    }

    /// Releases a consumer slot taken by [`Hub::subscribe`].
    pub fn unwatch(&self, id: u32) {
        if let Some(t) = self.lock().trainings.get_mut(&id) {
            t.consumers = t.consumers.saturating_sub(1);
        }
    }

    /// Takes a slot of `/v1/watch` (`legacy: false`) or of the legacy consumer paths.
    pub fn join_shared(&self, legacy: bool) -> Result<(), Rejection> {
        let mut inner = self.lock();
        let count = if legacy {
            &mut inner.legacy_consumers
        } else {
            &mut inner.followers
        };
        if *count >= self.config.max_consumers {
            return Err(Rejection::new(
                Reason::Limit,
                "too many consumers (--max-consumers)",
            ));
        }
        *count += 1;
        Ok(())
    }

    /// Releases a slot taken by [`Hub::join_shared`].
    pub fn leave_shared(&self, legacy: bool) {
        let mut inner = self.lock();
        let count = if legacy {
            &mut inner.legacy_consumers
        } else {
            &mut inner.followers
        };
        *count = count.saturating_sub(1);
    }

    /// The legacy fan-out, and what a legacy consumer gets first: the latest
    /// training's progress and stats in legacy JSON (the ancestor's placeholder when none).
    pub fn subscribe_legacy(&self) -> (Vec<String>, broadcast::Receiver<Arc<Event>>) {
        let inner = self.lock();
        let rx = self.legacy_tx.subscribe();
        let latest = *self.latest.borrow();
        let mut first = Vec::new();
        match latest.and_then(|id| inner.trainings.get(&id)) {
            Some(t) => {
                let s = &t.state;
                let bar = match s.phase() {
                    Phase::Train => s.train(),
                    Phase::Valid => s.valid(),
                };
                let mut frames = vec![Action::Progress(Progress {
                    phase: s.phase(),
                    epoch: s.epoch(),
                    epochs: s.epochs(),
                    batch: bar.done,
                    // An old watch divides by it.
                    batches: bar.total.max(1),
                })];
                if let Some(epoch) = s.latest_epoch() {
                    frames.push(Action::Stats(Stats {
                        epoch,
                        duration_ms: 0,
                        values: s.latest().clone(),
                    }));
                }
                for action in frames {
                    let frame = Frame {
                        training_id: t.id,
                        seq: 0,
                        action,
                    };
                    let mut buf = [0u8; MAX_LEGACY_JSON_LEN];
                    if let Ok(text) = json::encode(&frame, s, &mut buf) {
                        first.push(text.to_owned());
                    }
                }
            }
            None => first.push(LEGACY_PLACEHOLDER.to_owned()),
        }
        (first, rx)
    }

    /// Marks trainings silent for longer than `--stall-after` as stalled, and
    /// persists states whose progress changed. Called about once a second.
    pub fn tick(&self) {
        let now = now_ms();
        let stall_ms = self.config.stall_after.as_millis() as u64;
        let mut inner = self.lock();
        for training in inner.trainings.values_mut() {
            let status = training.state.status();
            let silent = now.saturating_sub(training.updated_ms);
            if matches!(status, Status::Running | Status::Waiting) && silent > stall_ms {
                let frame = Frame {
                    training_id: training.id,
                    seq: 0,
                    action: Action::Stalled,
                };
                if training.state.apply(&frame) == Ok(Applied::Changed) {
                    tracing::info!(id = training.id, silent_ms = silent, "training stalled");
                    self.broadcast(training, &frame);
                    self.outlet.saw(training, status, &frame.action);
                    training.dirty = true;
                }
            }
            if training.dirty {
                training.dirty = false;
                drop(self.store.save_training(training.stored()));
            }
        }
    }

    /// A copy of every training's listing data.
    pub fn list(&self) -> Vec<(u32, String, TrainingState, u64)> {
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .trainings
            .values()
            .map(|t| (t.id, t.run_key.clone(), t.state.clone(), t.updated_ms))
            .collect();
        out.sort_by_key(|t| t.0);
        out
    }

    /// A copy of one training's state.
    pub fn get(&self, id: u32) -> Option<(String, TrainingState, u64)> {
        self.lock()
            .trainings
            .get(&id)
            .map(|t| (t.run_key.clone(), t.state.clone(), t.updated_ms))
    }

    /// How many trainings are held.
    pub fn training_count(&self) -> usize {
        self.lock().trainings.len()
    }

    /// Persists every state that changed (at shutdown).
    pub fn flush(&self) {
        let mut inner = self.lock();
        for training in inner.trainings.values_mut() {
            if training.dirty {
                training.dirty = false;
                drop(self.store.save_training(training.stored()));
            }
        }
    }
}

/// What the ancestor's server sent a watch that connected before any training.
pub const LEGACY_PLACEHOLDER: &str = r#"{"action": "training_progress", "training_id": 0, "payload": {"epoch_iter": 0, "epoch_total": 10, "batch_iter": 0, "batch_total": 10, "task": "train"}}"#;

fn apply_error(e: Error) -> Rejection {
    Rejection::new(Reason::Apply, e.to_string())
}
