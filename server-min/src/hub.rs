//! The hub: every training's state, its fan-out channel, and the one place
//! where frames are applied, broadcast and persisted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit};
use watchtrain_protocol::json::{self, LegacyMessage};
use watchtrain_protocol::{
    truncated, Action, Applied, Error, Frame, Phase, Progress, Register, Stats, Status,
    TrainingState, MAX_LEGACY_JSON_LEN,
};

use crate::config::Config;
use crate::error::{Reason, Rejection};
use crate::store::{Receipt, Source, StatsRow, Store, StoredTraining};

/// One frame on its way to consumers, encoded once for all of them.
#[derive(Debug)]
pub struct Event {
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
    /// Unix ms of the last frame from a producer (shown to people).
    pub updated_ms: u64,
    /// When the last frame from a producer came, on the monotonic clock: stall
    /// detection must not jump with the wall clock (a Raspberry Pi syncing NTP).
    pub last_heard: Instant,
    /// Consumers watching it by id right now.
    pub consumers: usize,
    /// Producer connections that registered it and are still open: it is never evicted then.
    pub producers: usize,
    /// Counts applied frames: a face rendered at one version is still good at the same version.
    pub version: u64,
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

/// How far ahead of the training's `last_seq` a frame's seq may jump: one
/// frame numbered near `u32::MAX` would otherwise make every later frame a duplicate.
pub const SEQ_WINDOW: u32 = 1 << 20;

/// Who writes a frame, for the ownership check.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    /// The writer registered this training on its connection (or request) with the
    /// training's run key, so it owns it.
    pub owns: bool,
    /// The legacy path: an unknown id makes a new training (the ancestor did so).
    pub create_unknown: bool,
}

/// What applying a producer's frame did.
pub struct Ingested {
    /// The training.
    pub training_id: u32,
    /// What the reducer said.
    pub applied: Applied,
    /// The training's `last_seq` afterwards.
    pub last_seq: u32,
    /// Set when the frame was persisted (or is a duplicate of one that may not be
    /// yet): await it before acking.
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
    /// Rate limits of HTTP producers (`--max-fps`).
    pub post_limits: crate::rate::Limits,
    /// WebSocket sessions, so shutdown waits for their close frames.
    pub sessions: tokio_util::task::TaskTracker,
    /// Changes for the notifier and the MQTT bridge (`--notify`, `--mqtt`).
    pub outlet: crate::notify::Outlet,
}

/// The shared state of every handler.
pub type AppState = Arc<Hub>;

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
    /// A hub holding the stored trainings; ids up to `max_id` are never handed out
    /// again. The store copies the states it writes from it.
    pub fn new(config: Config, store: Store, stored: Vec<StoredTraining>, max_id: u32) -> Arc<Hub> {
        Arc::new_cyclic(|hub: &Weak<Hub>| {
            store.attach(hub.clone());
            Hub::holding(config, store, stored, max_id)
        })
    }

    fn holding(config: Config, store: Store, stored: Vec<StoredTraining>, max_id: u32) -> Hub {
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
                    last_heard: Instant::now(),
                    consumers: 0,
                    producers: 0,
                    version: 0,
                    dirty: false,
                },
            );
        }
        let next_id = trainings
            .keys()
            .copied()
            .chain([max_id])
            .max()
            .unwrap_or(0)
            .saturating_add(1)
            .max(1);
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
            post_limits: crate::rate::Limits::new(config.max_fps),
            sessions: tokio_util::task::TaskTracker::new(),
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
    /// A training with a run key is found again only by that key; an id alone
    /// reaches only a training without one (the ancestor's, which has no secret).
    pub fn register(
        &self,
        req: RegisterRequest,
        permit: OwnedSemaphorePermit,
    ) -> Result<Ingested, Rejection> {
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
        check_window(&training.state, &frame)?;
        let before = training.state.status();
        let applied = training.state.apply(&frame).map_err(apply_error)?;
        training.heard(now);
        self.broadcast(training, &frame);
        self.outlet.saw(training, before, &frame.action);
        let receipt = Some(self.store.save_training(id, Some(permit)));
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
                last_heard: Instant::now(),
                consumers: 0,
                producers: 0,
                version: 0,
                dirty: true,
            },
        );
        tracing::info!(id, "training created");
        Ok(id)
    }

    /// Drops the least recently heard trainings until at most `keep` are left:
    /// only finished or stalled ones with no producer and no consumer attached,
    /// so a flood of registrations never evicts a running training.
    fn retain(&self, inner: &mut Inner, keep: usize) {
        if inner.trainings.len() <= keep {
            return;
        }
        let mut candidates: Vec<(Instant, u32)> = inner
            .trainings
            .values()
            .filter(|t| t.consumers == 0 && t.producers == 0)
            .filter(|t| t.state.status().is_finished() || t.state.status() == Status::Stalled)
            .map(|t| (t.last_heard, t.id))
            .collect();
        candidates.sort();
        let excess = inner.trainings.len() - keep;
        for (_, id) in candidates.into_iter().take(excess) {
            if let Some(t) = inner.trainings.remove(&id) {
                inner.by_key.retain(|_, v| *v != id);
                drop(self.store.delete(id));
                tracing::info!(id, name = ?t.state.name(), "training dropped (--keep-trainings)");
            }
        }
    }

    /// Counts a producer connection that registered `id`, until [`Hub::detach_producer`].
    pub fn attach_producer(&self, id: u32) {
        if let Some(t) = self.lock().trainings.get_mut(&id) {
            t.producers += 1;
        }
    }

    /// Releases what [`Hub::attach_producer`] counted.
    pub fn detach_producer(&self, id: u32) {
        if let Some(t) = self.lock().trainings.get_mut(&id) {
            t.producers = t.producers.saturating_sub(1);
        }
    }

    /// Applies one producer frame (not a registration) to its training.
    pub fn apply(
        &self,
        frame: &Frame,
        writer: Writer,
        permit: OwnedSemaphorePermit,
    ) -> Result<Ingested, Rejection> {
        let now = now_ms();
        let mut inner = self.lock();
        let id = frame.training_id;
        if !inner.trainings.contains_key(&id) {
            if !writer.create_unknown || id == 0 {
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
        if !writer.owns && !training.run_key.is_empty() {
            return Err(Rejection::new(
                Reason::Forbidden,
                format!(
                    "training {id} belongs to another producer: register it with its run key first"
                ),
            ));
        }
        check_window(&training.state, frame)?;
        let before = training.state.status();
        let applied = training.state.apply(frame).map_err(apply_error)?;
        let last_seq = training.state.last_seq();
        if applied == Applied::Duplicate {
            self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            // Its first copy may still be on its way to disk (or retried): ack after it.
            return Ok(Ingested {
                training_id: id,
                applied,
                last_seq,
                receipt: Some(self.store.barrier(Some(permit))),
            });
        }
        training.heard(now);
        self.broadcast(training, frame);
        self.outlet.saw(training, before, &frame.action);
        let receipt = match &frame.action {
            Action::Stats(s) => {
                training.dirty = false;
                Some(self.store.save_stats(
                    id,
                    frame.seq,
                    StatsRow {
                        epoch: s.epoch,
                        duration_ms: s.duration_ms,
                        values: s.values.to_vec(),
                    },
                    Some(permit),
                ))
            }
            Action::Finished(_) | Action::Register(_) => {
                training.dirty = false;
                Some(self.store.save_training(id, Some(permit)))
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
    /// The ancestor's producers have no secret: they reach only trainings without a run key.
    pub async fn apply_legacy(&self, id: u32, msg: &LegacyMessage) -> Result<Ingested, Rejection> {
        let frames = {
            let inner = self.lock();
            let empty = TrainingState::new();
            let state = inner.trainings.get(&id).map_or(&empty, |t| &t.state);
            msg.to_frames(id, state)
        };
        let writer = Writer {
            owns: false,
            create_unknown: true,
        };
        let mut last = None;
        for frame in &frames {
            let permit = self.store.permit().await;
            last = Some(self.apply(frame, writer, permit)?);
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
        // Legacy JSON is made only while a legacy consumer listens.
        let legacy = (self.legacy_tx.receiver_count() > 0)
            .then(|| {
                let mut buf = [0u8; MAX_LEGACY_JSON_LEN];
                json::encode(frame, &training.state, &mut buf)
                    .ok()
                    .map(str::to_owned)
            })
            .flatten();
        let verbose_only = matches!(frame.action, Action::Log(_) | Action::Register(_));
        let event = Arc::new(Event {
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
        let stall_after = self.config.stall_after;
        let mut inner = self.lock();
        for training in inner.trainings.values_mut() {
            let status = training.state.status();
            let silent = training.last_heard.elapsed();
            if matches!(status, Status::Running | Status::Waiting) && silent > stall_after {
                let frame = Frame {
                    training_id: training.id,
                    seq: 0,
                    action: Action::Stalled,
                };
                if training.state.apply(&frame) == Ok(Applied::Changed) {
                    tracing::info!(
                        id = training.id,
                        silent_ms = silent.as_millis() as u64,
                        "training stalled"
                    );
                    self.broadcast(training, &frame);
                    training.version += 1;
                    self.outlet.saw(training, status, &frame.action);
                    training.dirty = true;
                }
            }
            // A full queue (a failing database) keeps it dirty for a later tick.
            if training.dirty {
                if let Some(permit) = self.store.try_permit() {
                    training.dirty = false;
                    drop(self.store.save_training(training.id, Some(permit)));
                }
            }
        }
    }

    /// A copy of every training's listing data: (id, state, updated_ms). The run
    /// key proves ownership, so it is never shown.
    pub fn list(&self) -> Vec<(u32, TrainingState, u64)> {
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .trainings
            .values()
            .map(|t| (t.id, t.state.clone(), t.updated_ms))
            .collect();
        out.sort_by_key(|t| t.0);
        out
    }

    /// A copy of one training's state, its `updated_ms` and its version.
    pub fn get(&self, id: u32) -> Option<(TrainingState, u64, u64)> {
        self.lock()
            .trainings
            .get(&id)
            .map(|t| (t.state.clone(), t.updated_ms, t.version))
    }

    /// The training registered with `run_key`.
    pub fn find_by_key(&self, run_key: &str) -> Option<u32> {
        self.lock().by_key.get(run_key).copied()
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
                drop(self.store.save_training(training.id, None));
            }
        }
    }
}

impl Source for Hub {
    fn copy_after(&self, drain: &mut dyn FnMut() -> Vec<u32>) -> Vec<StoredTraining> {
        let inner = self.lock();
        drain()
            .into_iter()
            .filter_map(|id| inner.trainings.get(&id).map(Training::stored))
            .collect()
    }
}

impl Training {
    /// Notes a frame from a producer.
    fn heard(&mut self, now_ms: u64) {
        self.updated_ms = now_ms;
        self.last_heard = Instant::now();
        self.version += 1;
    }
}

/// Waits for a write to be committed; its failure is a `storage` refusal.
pub async fn durable(receipt: Option<Receipt>) -> Result<(), Rejection> {
    let Some(receipt) = receipt else {
        return Ok(());
    };
    match receipt.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Rejection::new(Reason::Storage, e.to_string())),
        Err(_) => Err(Rejection::new(Reason::Storage, "the store has stopped")),
    }
}

/// Refuses a seq more than [`SEQ_WINDOW`] ahead of the training's.
fn check_window(state: &TrainingState, frame: &Frame) -> Result<(), Rejection> {
    if frame.seq > state.last_seq().saturating_add(SEQ_WINDOW) {
        return Err(Rejection::new(
            Reason::BadRequest,
            format!(
                "seq {} jumps more than {SEQ_WINDOW} past the training's {}",
                frame.seq,
                state.last_seq()
            ),
        ));
    }
    Ok(())
}

/// What the ancestor's server sent a watch that connected before any training.
pub const LEGACY_PLACEHOLDER: &str = r#"{"action": "training_progress", "training_id": 0, "payload": {"epoch_iter": 0, "epoch_total": 10, "batch_iter": 0, "batch_total": 10, "task": "train"}}"#;

fn apply_error(e: Error) -> Rejection {
    Rejection::new(Reason::Apply, e.to_string())
}
