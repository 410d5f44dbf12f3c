//! `watchtrain`, the command line producer and viewer of Watchtrain.
//!
//! It is a thin layer over `watchtrain-protocol`: [`producer::Producer`]
//! speaks the relay's producer WebSocket (registration handshake, numbered
//! frames resent after a reconnect), [`tail`] follows metrics logs,
//! [`view`] draws a training in a terminal. It is not a relay and keeps no
//! state on disk.
//!
//! ```
//! use watchtrain_cli::tail::{Event, Format, Table};
//! let mut table = Table::default();
//! let lines = ["epoch,train_loss,valid_loss,accuracy,time", "0,0.9,0.8,0.6,00:12"];
//! let changes = table.read(Format::Csv, &lines.map(|l| Event::Line(l.into())));
//! assert!(changes.metrics_changed);
//! assert_eq!(table.metrics, ["train_loss", "valid_loss", "accuracy"]);
//! assert_eq!(table.values(0), [0.9, 0.8, 0.6]);
//! ```

pub mod producer;
pub mod tail;
pub mod view;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tungstenite::Message;
use watchtrain_protocol::{truncated, Action, Frame, MetricNames, Register, Stats, TrainingState};

use producer::{Endpoint, Producer};
use tail::{Follower, Format, Table};

/// Options of `watchtrain tail`.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// The log file.
    pub file: PathBuf,
    /// The training's name (default: the file's name).
    pub name: Option<String>,
    /// Producer-chosen run key.
    pub run_key: String,
    /// Epochs planned, `0` if unknown; when the last one arrives the training is finished.
    pub epochs: u32,
    /// How often the file is checked.
    pub poll: Duration,
    /// Finish (completed) after the file has not grown for this long, once it has rows.
    pub idle_finish: Option<Duration>,
    /// Format, guessed from the name when `None`.
    pub format: Option<Format>,
}

fn metrics_of(names: &[String]) -> MetricNames {
    names.iter().map(|n| truncated(n)).collect()
}

/// Follows a metrics log and streams each epoch as stats until the training is
/// finished (`epochs` reached, or `idle_finish`); runs forever otherwise.
pub fn run_tail(
    endpoint: Endpoint,
    options: TailOptions,
    mut status: impl FnMut(&str),
) -> Result<(), String> {
    let format = options
        .format
        .unwrap_or_else(|| Format::from_path(&options.file));
    let name = options.name.clone().unwrap_or_else(|| {
        options
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "log".into())
    });
    let register = Register {
        name: truncated(&name),
        run_key: truncated(&options.run_key),
        epochs: options.epochs,
        ..Default::default()
    };
    let mut producer = Producer::new(endpoint, register);
    let mut follower = Follower::new(&options.file);
    let mut table = Table::default();
    let mut last_growth = Instant::now();
    let mut last_epoch_at: Option<Instant> = None;
    let mut reported_down = false;
    loop {
        let events = follower
            .poll()
            .map_err(|e| format!("{}: {e}", options.file.display()))?;
        if !events.is_empty() {
            last_growth = Instant::now();
        }
        let changes = table.read(format, &events);
        if changes.metrics_changed {
            let mut register = producer.registration().clone();
            register.metrics = metrics_of(&table.metrics);
            producer.reregister(register);
        }
        let resend: Vec<u32> = if changes.metrics_changed {
            table.rows.keys().copied().collect()
        } else {
            changes.epochs.clone()
        };
        let mut finished = false;
        // The last epoch is in the log: finish once a poll brings nothing more (Lightning
        // writes an epoch's train and validation values on separate rows).
        if options.epochs != 0 && events.is_empty() {
            finished = table.rows.keys().any(|&e| e + 1 >= options.epochs);
        }
        for epoch in resend {
            let row = &table.rows[&epoch];
            // The log's own duration, else the time since the previous epoch arrived (none for the first).
            let duration_ms = row.duration_ms.unwrap_or_else(|| {
                last_epoch_at.map_or(0, |t| t.elapsed().as_millis().min(u32::MAX as u128) as u32)
            });
            let values = table.values(epoch).into_iter().collect();
            producer.push(Action::Stats(Stats {
                epoch,
                duration_ms,
                values,
            }));
        }
        if !changes.epochs.is_empty() {
            last_epoch_at = Some(Instant::now());
        }
        if let Some(idle) = options.idle_finish {
            if !table.rows.is_empty() && last_growth.elapsed() >= idle {
                finished = true;
            }
        }
        match producer.pump() {
            Ok(()) => {
                if reported_down {
                    status(&format!(
                        "connected again (training {})",
                        producer.training_id()
                    ));
                    reported_down = false;
                }
            }
            Err(e) => {
                if !reported_down && producer.failures() == 1 {
                    status(&format!(
                        "relay unreachable ({e}); buffering {} frame(s), retrying",
                        producer.backlog()
                    ));
                    reported_down = true;
                }
            }
        }
        if finished {
            producer.push(Action::Finished(watchtrain_protocol::Finished {
                outcome: watchtrain_protocol::Outcome::Completed,
                reason: truncated(""),
            }));
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if producer.flush(Duration::from_secs(5)) {
                    status(&format!("finished: training {}", producer.training_id()));
                    return Ok(());
                }
            }
            return Err("the relay did not take the last frames".into());
        }
        std::thread::sleep(options.poll);
    }
}

/// Sends `actions` as one producer and waits until the relay has them.
pub fn run_send(
    endpoint: Endpoint,
    register: Register,
    actions: Vec<Action>,
    timeout: Duration,
) -> Result<u32, String> {
    let mut producer = Producer::new(endpoint, register);
    for action in actions {
        match action {
            Action::Progress(_) | Action::Heartbeat => producer.push_unsequenced(action),
            other => producer.push(other),
        }
    }
    if producer.flush(timeout) {
        Ok(producer.training_id())
    } else {
        Err(format!("not delivered within {timeout:?}"))
    }
}

/// Options of `watchtrain watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The training, or the latest active one.
    pub training: Option<u32>,
    /// Print one view after the snapshot and stop.
    pub once: bool,
    /// Stop when the training has finished.
    pub until_finished: bool,
    /// Columns.
    pub width: usize,
    /// Clear the screen before each view (a terminal).
    pub clear: bool,
}

/// Shows a training from the relay, redrawing at most 4 times a second.
///
/// Unless `once` is set, a lost connection (a relay restart, say) is retried
/// every 2 seconds, with a line on stderr; the view picks up from the new snapshot.
pub fn run_watch(
    endpoint: Endpoint,
    options: WatchOptions,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    loop {
        match watch_once(&endpoint, &options, out) {
            Ok(()) => return Ok(()),
            Err(e) if options.once => return Err(e),
            Err(e) => {
                eprintln!("watchtrain: {e}; retrying in 2 s");
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }
}

fn watch_once(
    endpoint: &Endpoint,
    options: &WatchOptions,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    let path = match options.training {
        Some(id) => format!("/v1/trainings/{id}/watch"),
        None => "/v1/watch".to_string(),
    };
    let mut ws = endpoint.connect(&path)?;
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(250)))
        .map_err(|e| e.to_string())?;
    let mut state: Option<(u32, TrainingState)> = None;
    let mut dirty = false;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    loop {
        match producer::try_read(&mut ws)? {
            Some(Message::Binary(data)) => {
                if let Ok(frame) = Frame::decode(&data) {
                    if let Action::Snapshot(s) = &frame.action {
                        if let Ok(s) = TrainingState::try_from(s.clone()) {
                            state = Some((frame.training_id, s));
                            dirty = true;
                        }
                    } else if let Some((id, s)) = &mut state {
                        dirty |= *id == frame.training_id && s.apply(&frame).is_ok();
                    }
                }
            }
            Some(Message::Close(_)) => return Err("the relay closed the connection".into()),
            _ => {}
        }
        if dirty && (last_draw.elapsed() >= Duration::from_millis(250) || options.once) {
            if let Some((id, s)) = &state {
                let text = view::render(*id, s, options.width);
                let clear = if options.clear { "\x1b[H\x1b[2J" } else { "" };
                write!(
                    out,
                    "{clear}{text}{}",
                    if options.clear { "" } else { "\n" }
                )
                .map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
                last_draw = Instant::now();
                dirty = false;
                if options.once || (options.until_finished && s.status().is_finished()) {
                    let _ = ws.close(None);
                    return Ok(());
                }
            }
        }
    }
}
