//! SQLite persistence on its own thread: trainings (with their latest state)
//! and one stats row per epoch. Writers get a receipt they can await before
//! acking; a write that fails (a locked database, a full disk) is kept and
//! retried, never answered "done" before it is committed. The queue is bounded
//! by permits that producers take before they queue a write.
//!
//! A write names its training; the state itself is copied by the store thread,
//! once per training per batch, from a [`Source`] (the hub): a burst of N frames
//! costs the hub's lock one copy and the database one training row, not N.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use watchtrain_protocol::{Action, Frame, TrainingState};

/// A training as stored.
#[derive(Debug, Clone)]
pub struct StoredTraining {
    /// Relay-assigned id.
    pub id: u32,
    /// Producer-chosen run key ("" for none).
    pub run_key: String,
    /// The state as of the last persisted write.
    pub state: TrainingState,
    /// Unix milliseconds of the training's creation.
    pub created_ms: u64,
    /// Unix milliseconds of the last frame from a producer.
    pub updated_ms: u64,
}

/// One stats row for `history.csv`.
#[derive(Debug, Clone)]
pub struct StatsRow {
    /// The epoch.
    pub epoch: u32,
    /// The epoch's duration.
    pub duration_ms: u32,
    /// The values in registration order.
    pub values: Vec<f32>,
}

/// Writes queued at most (each holds a permit); past it producers wait.
pub const QUEUE_PERMITS: usize = 1024;
/// How long SQLite waits for another process's lock before the write is retried.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two tries of a failed write, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two tries.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// After shutdown, how long a failing write is still retried before it is given up.
const RETRY_AT_CLOSE: Duration = Duration::from_secs(5);
/// Stats rows of a training per read: `history.csv` streams them a page at a time.
pub const HISTORY_PAGE: usize = 1000;

/// Where the store thread copies the states it writes (the hub).
pub trait Source: Send + Sync {
    /// Calls `drain`, which takes the queued writes and names the trainings
    /// they touch, then copies those trainings, with no frame applied in between
    /// (under the lock frames are applied and queued under). So a state written
    /// never holds a frame whose stats row is still queued: after a crash its
    /// resend would be a duplicate, and the row would be lost.
    fn copy_after(&self, drain: &mut dyn FnMut() -> Vec<u32>) -> Vec<StoredTraining>;
}

/// A write for the store thread.
enum Op {
    /// Insert or update a training and its state (as the batch copies it).
    Training(u32),
    /// Record a stats frame, and the training's state.
    Stats { id: u32, seq: u32, row: StatsRow },
    /// Forget a training and its stats.
    Delete(u32),
    /// Read a page of a training's stats rows: epochs after `after`.
    History {
        id: u32,
        after: Option<u32>,
        /// Filled by each try; sent once the batch commits.
        rows: Vec<StatsRow>,
        reply: Option<oneshot::Sender<Vec<StatsRow>>>,
    },
    /// Nothing: answered once everything before it is written.
    Sync,
    /// Write what is queued before it, checkpoint the WAL, end the thread.
    Close,
}

/// A persistence error.
#[derive(Debug)]
pub enum StoreError {
    /// SQLite refused (open, schema, integrity, read, write).
    Sqlite(rusqlite::Error),
    /// The database's directory could not be made, or the thread started.
    Io(std::io::Error),
    /// `PRAGMA quick_check` found damage: restore a backup or move the file away.
    Corrupt(String),
    /// The database's layout is newer than this relay knows (a newer relay wrote it).
    Newer {
        /// Its layout version.
        version: usize,
        /// The newest this relay knows.
        known: usize,
    },
    /// The store thread has stopped (the relay is shutting down).
    Stopped,
    /// The write was given up at shutdown while the database still failed.
    GaveUp(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(_) => write!(f, "sqlite failed"),
            StoreError::Io(_) => write!(f, "cannot prepare the database"),
            StoreError::Corrupt(report) => write!(
                f,
                "the database is damaged (quick_check: {report}); restore a backup or move it away"
            ),
            StoreError::Newer { version, known } => write!(
                f,
                "the database has layout version {version}, written by a newer relay; this one knows up to {known}"
            ),
            StoreError::Stopped => write!(f, "the store has stopped"),
            StoreError::GaveUp(e) => write!(f, "write given up at shutdown: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite(e) => Some(e),
            StoreError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// Awaited by a writer that must not ack before its write is on disk.
pub type Receipt = oneshot::Receiver<Result<(), StoreError>>;

/// The health of the store, shared with the thread.
#[derive(Default)]
struct Health {
    /// True while the last write attempt failed.
    failing: AtomicBool,
    /// Write attempts that failed (each retry counts).
    failures: AtomicU64,
}

/// The handle to the store thread.
#[derive(Clone)]
pub struct Store {
    /// Queue of writes (and reads) for the thread, in order.
    tx: std_mpsc::Sender<Queued>,
    /// Bounds the queue: a producer's write holds one until it is done.
    permits: Arc<Semaphore>,
    /// Whether writes currently fail, for `/healthz` and `/metrics`.
    health: Arc<Health>,
    /// Where the thread copies states from; weak, since the hub holds this handle.
    source: Arc<OnceLock<Weak<dyn Source>>>,
}

/// What `Store::open` loaded, and the thread to join at shutdown.
pub struct Opened {
    /// The handle.
    pub store: Store,
    /// Every stored training that could be read.
    pub trainings: Vec<StoredTraining>,
    /// Ids of stored trainings whose state could not be read: logged, copied to
    /// the `unreadable` table, left in place, and never given to a new training.
    pub unreadable: Vec<u32>,
    /// The highest training id in the database, readable or not: never handed out again.
    pub max_id: u32,
    /// The store thread, which ends after [`Store::close`] or when every `Store` is dropped.
    pub thread: thread::JoinHandle<()>,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA foreign_keys = ON;
    CREATE TABLE IF NOT EXISTS trainings (
        id INTEGER PRIMARY KEY,
        run_key TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        state BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS stats (
        training_id INTEGER NOT NULL REFERENCES trainings(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        vals BLOB NOT NULL
    );
    -- One row per epoch (the last received wins); older databases kept every resend.
    DELETE FROM stats WHERE rowid NOT IN (SELECT max(rowid) FROM stats GROUP BY training_id, epoch);
    DROP INDEX IF EXISTS stats_by_training;
    CREATE UNIQUE INDEX IF NOT EXISTS stats_epoch ON stats(training_id, epoch);
";

/// The layout changes since [`SCHEMA`], in order: `PRAGMA user_version` counts
/// those applied. A database of the first layout has version 0.
const MIGRATIONS: &[&str] = &[
    // 1: each row says how its state is encoded, so a new encoding can be
    // migrated instead of leaving old rows unreadable; a row that still cannot
    // be read is copied to `unreadable` rather than lost.
    "ALTER TABLE trainings ADD COLUMN state_format INTEGER NOT NULL DEFAULT 1;
     CREATE TABLE unreadable (
        id INTEGER PRIMARY KEY,
        run_key TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        state_format INTEGER NOT NULL,
        state BLOB NOT NULL,
        error TEXT NOT NULL
     );",
];

/// `trainings.state_format`: the state is a protocol snapshot frame; its first
/// byte is its format version, and `Frame::decode` reads version 1 (before
/// goals) as well as 2, so older rows need no rewrite.
const STATE_SNAPSHOT_V1: i64 = 1;

/// Brings the layout up to date, each step in one transaction with its version.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Newer {
            version,
            known: MIGRATIONS.len(),
        });
    }
    for (done, step) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", done as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the database at `path` (`:memory:` for none), checks it,
    /// and loads every training. `history_epochs` caps the stats rows per training.
    pub fn open(path: &Path, history_epochs: usize) -> Result<Opened, StoreError> {
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()?
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(StoreError::Io)?;
            }
            Connection::open(path)?
        };
        let mut conn = conn;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt(check));
        }
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        let (trainings, unreadable) = load(&conn)?;
        let max_id: u32 = conn.query_row(
            "SELECT max(coalesce((SELECT max(id) FROM trainings), 0),
                        coalesce((SELECT max(training_id) FROM stats), 0))",
            [],
            |r| r.get(0),
        )?;
        let (tx, rx) = std_mpsc::channel();
        let health = Arc::new(Health::default());
        let source = Arc::new(OnceLock::new());
        let thread = thread::Builder::new()
            .name("watchtrain-store".into())
            .spawn({
                let health = health.clone();
                let source = source.clone();
                let cap = i64::try_from(history_epochs).unwrap_or(i64::MAX);
                move || serve(conn, rx, &health, &source, cap)
            })
            .map_err(StoreError::Io)?;
        Ok(Opened {
            store: Store {
                tx,
                permits: Arc::new(Semaphore::new(QUEUE_PERMITS)),
                health,
                source,
            },
            trainings,
            unreadable,
            max_id,
            thread,
        })
    }

    /// Gives the thread the states to write; until then (or once the source is
    /// gone) training and stats writes are answered [`StoreError::Stopped`].
    pub fn attach(&self, source: Weak<dyn Source>) {
        let _ = self.source.set(source);
    }

    fn send(&self, op: Op, permit: Option<OwnedSemaphorePermit>) -> Receipt {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.tx.send(Queued {
            op,
            reply: Some(tx),
            _permit: permit,
        }) {
            // The thread is gone: answer with the error right away.
            if let Some(reply) = e.0.reply {
                let _ = reply.send(Err(StoreError::Stopped));
            }
        }
        rx
    }

    /// A place in the write queue, waited for when the queue is full (back-pressure
    /// on producers while the database is slow or failing).
    pub async fn permit(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the store's semaphore is never closed")
    }

    /// A place in the write queue if one is free now (for background saves).
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// True while writes fail (they are being retried).
    pub fn failing(&self) -> bool {
        self.health.failing.load(Ordering::Relaxed)
    }

    /// Failed write attempts since start.
    pub fn failures(&self) -> u64 {
        self.health.failures.load(Ordering::Relaxed)
    }

    /// Saves a training's row and state. Queue it under the lock the frames it
    /// holds were applied under (see [`Source::copy_after`]).
    pub fn save_training(&self, id: u32, permit: Option<OwnedSemaphorePermit>) -> Receipt {
        self.send(Op::Training(id), permit)
    }

    /// Saves a stats frame and the training's state; queued as [`Store::save_training`].
    pub fn save_stats(
        &self,
        id: u32,
        seq: u32,
        row: StatsRow,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Receipt {
        self.send(Op::Stats { id, seq, row }, permit)
    }

    /// Deletes a training and its stats.
    pub fn delete(&self, id: u32) -> Receipt {
        self.send(Op::Delete(id), None)
    }

    /// Answered once every write queued before it is committed: what a
    /// duplicate frame waits for before it is acknowledged.
    pub fn barrier(&self, permit: Option<OwnedSemaphorePermit>) -> Receipt {
        self.send(Op::Sync, permit)
    }

    /// Up to [`HISTORY_PAGE`] stats rows of a training with an epoch after
    /// `after`, in epoch order. Waits behind queued writes.
    pub async fn history_page(
        &self,
        id: u32,
        after: Option<u32>,
    ) -> Result<Vec<StatsRow>, StoreError> {
        let (reply, rows) = oneshot::channel();
        let op = Op::History {
            id,
            after,
            rows: Vec::new(),
            reply: Some(reply),
        };
        let _ = self.tx.send(Queued {
            op,
            reply: None,
            _permit: None,
        });
        rows.await.map_err(|_| StoreError::Stopped)
    }

    /// Writes what is queued, checkpoints the WAL (so the database file alone holds
    /// everything) and ends the thread; join `Opened::thread` after it.
    pub fn close(&self) {
        drop(self.send(Op::Close, None));
    }
}

/// Every readable training, and the ids of the unreadable ones (see [`Opened::unreadable`]).
fn load(conn: &Connection) -> Result<(Vec<StoredTraining>, Vec<u32>), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, run_key, created_ms, updated_ms, state_format, state FROM trainings",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, u32>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, Vec<u8>>(5)?,
        ))
    })?;
    let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let (mut out, mut unreadable) = (Vec::new(), Vec::new());
    for (id, run_key, created_ms, updated_ms, format, blob) in rows {
        match decode_state(format, &blob) {
            Ok(state) => out.push(StoredTraining {
                id,
                run_key,
                state,
                created_ms: created_ms as u64,
                updated_ms: updated_ms as u64,
            }),
            Err(error) => {
                tracing::error!(id, format, %error, "stored training unreadable: kept on disk, copied to table `unreadable`");
                conn.execute(
                    "INSERT OR REPLACE INTO unreadable (id, run_key, created_ms, updated_ms, state_format, state, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![id, run_key, created_ms, updated_ms, format, blob, error],
                )?;
                unreadable.push(id);
            }
        }
    }
    Ok((out, unreadable))
}

/// A row's state from its `state_format` and bytes.
fn decode_state(format: i64, blob: &[u8]) -> Result<TrainingState, String> {
    match format {
        STATE_SNAPSHOT_V1 => match Frame::decode(blob).map_err(|e| e.to_string())?.action {
            Action::Snapshot(snapshot) => {
                TrainingState::try_from(snapshot).map_err(|e| e.to_string())
            }
            other => Err(format!("a frame that is not a snapshot: {other:?}")),
        },
        other => Err(format!("unknown state format {other}")),
    }
}

fn state_blob(t: &StoredTraining) -> Vec<u8> {
    t.state
        .to_snapshot(t.id)
        .to_bytes()
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

fn write_training(tx: &rusqlite::Transaction, t: &StoredTraining) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO trainings (id, run_key, created_ms, updated_ms, state_format, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(id) DO UPDATE SET run_key = ?2, updated_ms = ?4, state_format = ?5, state = ?6",
        params![t.id, t.run_key, t.created_ms as i64, t.updated_ms as i64, STATE_SNAPSHOT_V1, state_blob(t)],
    )?;
    Ok(())
}

/// The training rows of one batch: each state copied once, written once
/// (again after a delete of its id, which a new training may reuse).
struct Rows<'a> {
    /// The copies, by id; a training dropped since its write was queued has none.
    states: &'a HashMap<u32, StoredTraining>,
    /// Ids whose row this transaction has written.
    written: HashSet<u32>,
    /// Ids that got stats rows: their oldest epochs are trimmed once, before a
    /// read or the commit, since the query walks up to `cap` rows of the index.
    trim: HashSet<u32>,
    /// Stats rows kept per training.
    cap: i64,
}

impl Rows<'_> {
    /// Writes the training's row unless done; false when the training is gone.
    fn ensure(&mut self, tx: &rusqlite::Transaction, id: u32) -> rusqlite::Result<bool> {
        if self.written.contains(&id) {
            return Ok(true);
        }
        let Some(t) = self.states.get(&id) else {
            return Ok(false);
        };
        write_training(tx, t)?;
        self.written.insert(id);
        Ok(true)
    }

    /// Keeps the latest `cap` epochs of the trainings that got stats rows.
    fn trim(&mut self, tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
        for id in self.trim.drain() {
            tx.execute(
                "DELETE FROM stats WHERE training_id = ?1 AND epoch < (
                     SELECT epoch FROM stats WHERE training_id = ?1 ORDER BY epoch DESC LIMIT 1 OFFSET ?2)",
                params![id, self.cap - 1],
            )?;
        }
        Ok(())
    }
}

/// Runs one op inside the batch's transaction.
fn apply(tx: &rusqlite::Transaction, op: &mut Op, rows: &mut Rows) -> rusqlite::Result<()> {
    match op {
        Op::Training(id) => rows.ensure(tx, *id).map(drop),
        // A training dropped meanwhile has its delete queued after: nothing to keep.
        Op::Stats { id, seq, row } => {
            if !rows.ensure(tx, *id)? {
                return Ok(());
            }
            let vals: Vec<u8> = row.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tx.execute(
                "INSERT INTO stats (training_id, seq, epoch, duration_ms, vals) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(training_id, epoch) DO UPDATE SET seq = ?2, duration_ms = ?4, vals = ?5",
                params![*id, *seq, row.epoch, row.duration_ms, vals],
            )?;
            rows.trim.insert(*id);
            Ok(())
        }
        Op::Delete(id) => {
            tx.execute("DELETE FROM stats WHERE training_id = ?1", params![*id])?;
            tx.execute("DELETE FROM trainings WHERE id = ?1", params![*id])?;
            rows.written.remove(id);
            Ok(())
        }
        Op::History {
            id,
            after,
            rows: page,
            ..
        } => {
            rows.trim(tx)?;
            *page = history(tx, *id, *after)?;
            Ok(())
        }
        Op::Sync | Op::Close => Ok(()),
    }
}

fn history(conn: &Connection, id: u32, after: Option<u32>) -> rusqlite::Result<Vec<StatsRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT epoch, duration_ms, vals FROM stats WHERE training_id = ?1 AND epoch > ?2
         ORDER BY epoch LIMIT ?3",
    )?;
    let after = after.map_or(-1, i64::from);
    let rows = stmt.query_map(params![id, after, HISTORY_PAGE as i64], |row| {
        let vals: Vec<u8> = row.get(2)?;
        Ok(StatsRow {
            epoch: row.get(0)?,
            duration_ms: row.get(1)?,
            values: vals
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    })?;
    rows.collect()
}

/// One queued op, who waits for it, and its place in the queue.
struct Queued {
    /// What to do.
    op: Op,
    /// Told once the op is committed (or given up).
    reply: Option<oneshot::Sender<Result<(), StoreError>>>,
    /// Released when the op is done, freeing a place for the next write.
    _permit: Option<OwnedSemaphorePermit>,
}

/// Writes a batch in one transaction.
fn write_batch(
    conn: &mut Connection,
    batch: &mut [Queued],
    states: &HashMap<u32, StoredTraining>,
    cap: i64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let mut rows = Rows {
        states,
        written: HashSet::new(),
        trim: HashSet::new(),
        cap,
    };
    for queued in batch.iter_mut() {
        apply(&tx, &mut queued.op, &mut rows)?;
    }
    rows.trim(&tx)?;
    tx.commit()
}

/// The training a queued write needs the state of.
fn needs_state(op: &Op) -> Option<u32> {
    match op {
        Op::Training(id) | Op::Stats { id, .. } => Some(*id),
        _ => None,
    }
}

/// Takes what is queued after `first`, and one copy of each training it
/// writes. Everything queued is taken (the queue is bounded by the permits):
/// a write left behind could belong to a frame the copy already holds.
fn take_batch(
    first: Queued,
    rx: &std_mpsc::Receiver<Queued>,
    source: &OnceLock<Weak<dyn Source>>,
) -> (Vec<Queued>, HashMap<u32, StoredTraining>) {
    let mut batch = vec![first];
    let mut drain = || {
        batch.extend(rx.try_iter());
        let ids: HashSet<u32> = batch.iter().filter_map(|q| needs_state(&q.op)).collect();
        ids.into_iter().collect()
    };
    let copies = match source.get().and_then(Weak::upgrade) {
        Some(source) => source.copy_after(&mut drain),
        None => {
            drain();
            // No state to write: answer those writes rather than ack them unwritten.
            batch.retain_mut(|q| {
                if needs_state(&q.op).is_none() {
                    return true;
                }
                if let Some(reply) = q.reply.take() {
                    let _ = reply.send(Err(StoreError::Stopped));
                }
                false
            });
            Vec::new()
        }
    };
    (batch, copies.into_iter().map(|t| (t.id, t)).collect())
}

/// The store thread: takes every queued op, writes them in one transaction,
/// retries the whole batch until it commits, then answers.
fn serve(
    mut conn: Connection,
    rx: std_mpsc::Receiver<Queued>,
    health: &Health,
    source: &OnceLock<Weak<dyn Source>>,
    cap: i64,
) {
    let mut closing = false;
    while !closing {
        let Ok(first) = rx.recv() else { break };
        let (mut batch, states) = take_batch(first, &rx, source);
        closing = batch.iter().any(|q| matches!(q.op, Op::Close));
        let mut pause = RETRY_FIRST;
        let mut gave_up_at: Option<Instant> = None;
        let result = loop {
            match write_batch(&mut conn, &mut batch, &states, cap) {
                Ok(()) => break Ok(()),
                Err(e) => {
                    health.failures.fetch_add(1, Ordering::Relaxed);
                    if !health.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %e, "store write failed; retrying until it succeeds");
                    }
                    // Once the relay shuts down, a database that keeps failing is given up:
                    // what was not written was not acknowledged either.
                    if closing {
                        let since = *gave_up_at.get_or_insert_with(Instant::now);
                        if since.elapsed() > RETRY_AT_CLOSE {
                            break Err(e.to_string());
                        }
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        };
        if result.is_ok() && health.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("store writes succeed again");
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, ops = batch.len(), "store writes given up at shutdown");
        }
        for mut queued in batch {
            if let (Ok(()), Op::History { rows, reply, .. }) = (&result, &mut queued.op) {
                if let Some(reply) = reply.take() {
                    let _ = reply.send(std::mem::take(rows));
                }
            }
            if let Some(reply) = queued.reply {
                let _ = reply.send(result.clone().map_err(StoreError::GaveUp));
            }
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
    }
    tracing::debug!("store thread done");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use super::*;

    /// A hub stand-in: one training, a lock, and a count of the states copied.
    struct OneTraining {
        lock: Mutex<()>,
        copies: AtomicUsize,
        training: StoredTraining,
    }

    impl Source for OneTraining {
        fn copy_after(&self, drain: &mut dyn FnMut() -> Vec<u32>) -> Vec<StoredTraining> {
            let _held = self.lock.lock().unwrap();
            let ids = drain();
            self.copies.fetch_add(ids.len(), Ordering::Relaxed);
            ids.into_iter()
                .filter(|&id| id == self.training.id)
                .map(|_| self.training.clone())
                .collect()
        }
    }

    fn row(epoch: u32) -> StatsRow {
        StatsRow {
            epoch,
            duration_ms: 1,
            values: vec![epoch as f32],
        }
    }

    #[tokio::test]
    async fn a_burst_queued_under_the_lock_costs_one_copy() {
        let opened = Store::open(Path::new(":memory:"), 1000).unwrap();
        let source = Arc::new(OneTraining {
            lock: Mutex::new(()),
            copies: AtomicUsize::new(0),
            training: StoredTraining {
                id: 7,
                run_key: String::new(),
                state: TrainingState::new(),
                created_ms: 1,
                updated_ms: 2,
            },
        });
        let weak: Weak<dyn Source> = Arc::downgrade(&source) as Weak<OneTraining>;
        opened.store.attach(weak);
        let receipts: Vec<Receipt> = {
            // As the hub does: frames applied and queued while holding its lock.
            let _held = source.lock.lock().unwrap();
            (0..100)
                .map(|e| opened.store.save_stats(7, e + 1, row(e), None))
                .collect()
        };
        for receipt in receipts {
            receipt.await.unwrap().unwrap();
        }
        assert_eq!(source.copies.load(Ordering::Relaxed), 1);
        let rows = opened.store.history_page(7, None).await.unwrap();
        assert_eq!(rows.len(), 100);
        opened.store.close();
        opened.thread.join().unwrap();
    }

    #[tokio::test]
    async fn without_a_source_writes_are_refused_not_acked() {
        let opened = Store::open(Path::new(":memory:"), 1000).unwrap();
        let saved = opened.store.save_stats(7, 1, row(0), None).await.unwrap();
        assert!(matches!(saved, Err(StoreError::Stopped)), "{saved:?}");
        opened.store.barrier(None).await.unwrap().unwrap();
        opened.store.close();
        opened.thread.join().unwrap();
    }
}
