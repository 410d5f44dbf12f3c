//! SQLite persistence on its own thread: trainings (with their latest state)
//! and every stats frame. Writers get a receipt they can await before acking.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;
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

/// A write for the store thread.
enum Op {
    /// Insert or update a training and its state.
    Training(StoredTraining),
    /// Record a stats frame and the state it led to.
    Stats {
        training: StoredTraining,
        seq: u32,
        row: StatsRow,
    },
    /// Forget a training and its stats.
    Delete(u32),
    /// Read the stats rows of a training.
    History(u32, oneshot::Sender<Vec<StatsRow>>),
    /// Nothing: answered once everything before it is written.
    Sync,
}

/// A persistence error, with a reason for people.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Awaited by a writer that must not ack before its write is on disk.
pub type Receipt = oneshot::Receiver<Result<(), String>>;

/// The handle to the store thread. Dropping every handle ends the thread
/// after it has written everything queued.
#[derive(Clone)]
pub struct Store {
    /// Queue of writes (and reads) for the thread, in order.
    tx: std_mpsc::Sender<Queued>,
}

/// What `Store::open` loaded, and the thread to join at shutdown.
pub struct Opened {
    /// The handle.
    pub store: Store,
    /// Every stored training.
    pub trainings: Vec<StoredTraining>,
    /// Ids of stored trainings whose state could not be read: logged, copied to
    /// the `unreadable` table, left in place, and never given to a new training.
    pub unreadable: Vec<u32>,
    /// The store thread, which ends when every `Store` is dropped.
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
    CREATE INDEX IF NOT EXISTS stats_by_training ON stats(training_id, epoch);
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

/// `trainings.state_format`: the state is a protocol snapshot frame of format version 1.
const STATE_SNAPSHOT_V1: i64 = 1;

/// Brings the layout up to date, each step in one transaction with its version.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError(format!(
            "the database has layout version {version}, written by a newer relay; this one knows up to {}",
            MIGRATIONS.len()
        )));
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
    /// Opens (or creates) the database at `path` (`:memory:` for none) and loads every training.
    pub fn open(path: &Path) -> Result<Opened, StoreError> {
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()?
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
            }
            Connection::open(path)?
        };
        let mut conn = conn;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        let (trainings, unreadable) = load(&conn)?;
        let (tx, rx) = std_mpsc::channel();
        let thread = thread::Builder::new()
            .name("watchtrain-store".into())
            .spawn(move || serve(conn, rx))
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(Opened {
            store: Store { tx },
            trainings,
            unreadable,
            thread,
        })
    }

    fn send(&self, op: Op) -> Receipt {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.tx.send((op, Some(tx))) {
            // The thread is gone: answer with the error right away.
            if let Some(reply) = e.0 .1 {
                let _ = reply.send(Err("store thread stopped".into()));
            }
        }
        rx
    }

    /// Saves a training's row and state.
    pub fn save_training(&self, training: StoredTraining) -> Receipt {
        self.send(Op::Training(training))
    }

    /// Saves a stats frame and the training's state after it.
    pub fn save_stats(&self, training: StoredTraining, seq: u32, row: StatsRow) -> Receipt {
        self.send(Op::Stats { training, seq, row })
    }

    /// Deletes a training and its stats.
    pub fn delete(&self, id: u32) -> Receipt {
        self.send(Op::Delete(id))
    }

    /// Every stats row of a training, one per epoch (the last received wins), in epoch order.
    pub async fn history(&self, id: u32) -> Vec<StatsRow> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send((Op::History(id, tx), None));
        rx.await.unwrap_or_default()
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

fn apply(tx: &rusqlite::Transaction, op: Op) -> rusqlite::Result<()> {
    match op {
        Op::Training(t) => write_training(tx, &t),
        Op::Stats { training, seq, row } => {
            write_training(tx, &training)?;
            let vals: Vec<u8> = row.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tx.execute(
                "INSERT INTO stats (training_id, seq, epoch, duration_ms, vals) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![training.id, seq, row.epoch, row.duration_ms, vals],
            )?;
            Ok(())
        }
        Op::Delete(id) => {
            tx.execute("DELETE FROM stats WHERE training_id = ?1", params![id])?;
            tx.execute("DELETE FROM trainings WHERE id = ?1", params![id])?;
            Ok(())
        }
        Op::History(id, reply) => {
            let _ = reply.send(history(tx, id).unwrap_or_default());
            Ok(())
        }
        Op::Sync => Ok(()),
    }
}

fn history(conn: &Connection, id: u32) -> rusqlite::Result<Vec<StatsRow>> {
    let mut stmt = conn.prepare(
        "SELECT epoch, duration_ms, vals FROM stats WHERE training_id = ?1 ORDER BY epoch, rowid",
    )?;
    let mut out: Vec<StatsRow> = Vec::new();
    for row in stmt.query_map(params![id], |row| {
        Ok((
            row.get::<_, u32>(0)?,
            row.get::<_, u32>(1)?,
            row.get::<_, Vec<u8>>(2)?,
        ))
    })? {
        let (epoch, duration_ms, vals) = row?;
        let values = vals
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let row = StatsRow {
            epoch,
            duration_ms,
            values,
        };
        match out.last_mut() {
            Some(last) if last.epoch == epoch => *last = row,
            _ => out.push(row),
        }
    }
    Ok(out)
}

type Queued = (Op, Option<oneshot::Sender<Result<(), String>>>);

/// The store thread: takes every queued op, writes them in one transaction, then answers.
fn serve(mut conn: Connection, rx: std_mpsc::Receiver<Queued>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 512 {
                break;
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for (op, reply) in batch {
                apply(&tx, op)?;
                replies.extend(reply);
            }
            tx.commit()
        })();
        if let Err(e) = &result {
            tracing::error!(error = %e, "store write failed");
        }
        for reply in replies {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
    }
    tracing::debug!("store thread done");
}

/// Reads a training row back (for tests and tools).
pub fn read_training(path: &Path, id: u32) -> Result<Option<StoredTraining>, StoreError> {
    let conn = Connection::open(path)?;
    let found = conn
        .query_row("SELECT id FROM trainings WHERE id = ?1", params![id], |r| {
            r.get::<_, u32>(0)
        })
        .optional()?;
    if found.is_none() {
        return Ok(None);
    }
    Ok(load(&conn)?.0.into_iter().find(|t| t.id == id))
}

impl Store {
    /// Waits until every write queued before this call is done.
    pub async fn sync(&self) {
        let _ = self.send(Op::Sync).await;
    }
}
