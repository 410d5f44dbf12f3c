//! `watchtrain`, the command line producer and viewer of Watchtrain.
//!
//! It is a thin layer over `watchtrain-protocol`: [`relay`] opens the
//! WebSocket (plain or TLS) and says why it failed, [`producer::Producer`]
//! speaks the relay's producer protocol (registration handshake, numbered
//! frames resent until acknowledged), [`tail`] follows metrics logs,
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

mod error;
pub mod producer;
pub mod relay;
pub mod tail;
pub mod view;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tungstenite::Message;
use watchtrain_protocol::format::value;
use watchtrain_protocol::{
    truncated, Action, Frame, Goal, MetricNames, Register, Stats, Status, TrainingState,
};

pub use error::{exit, Error};
use producer::{Link, Producer};
use relay::Endpoint;
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
    /// Declared goals by metric name (`--goal`); the other metrics' default from their names.
    pub goals: Vec<(String, Goal)>,
}

/// One `--goal NAME=min|max|none`.
///
/// ```
/// use watchtrain_cli::parse_goal;
/// use watchtrain_protocol::Goal;
/// assert_eq!(parse_goal("lr=none"), Ok(("lr".to_string(), Goal::None)));
/// assert_eq!(parse_goal("score=max"), Ok(("score".to_string(), Goal::Maximize)));
/// assert!(parse_goal("score=up").is_err());
/// ```
pub fn parse_goal(text: &str) -> Result<(String, Goal), String> {
    let (name, goal) = text
        .split_once('=')
        .ok_or_else(|| format!("{text}: expected NAME=min|max|none"))?;
    let goal = goal.trim().parse().map_err(|e| format!("{text}: {e}"))?;
    Ok((name.trim().to_string(), goal))
}

fn metrics_of(names: &[String]) -> MetricNames {
    names.iter().map(|n| truncated(n)).collect()
}

/// `name=value` pairs of one epoch, for the progress line.
fn epoch_line(table: &Table, epoch: u32) -> String {
    let values = table.values(epoch);
    let pairs: Vec<String> = table
        .metrics
        .iter()
        .zip(values)
        .map(|(m, v)| format!("{m}={}", value(v)))
        .collect();
    format!("epoch {epoch}: {}", pairs.join(" "))
}

/// Follows a metrics log and streams each epoch as stats until the training is
/// finished (`epochs` reached, or `idle_finish`); runs forever otherwise.
///
/// `status` gets a line per event worth a person's attention: waiting for the
/// file, connected, each epoch read, the relay down or back, a rejected frame.
/// A permanent relay error (a refused token, an untrusted certificate) ends it.
pub fn run_tail(
    endpoint: Endpoint,
    options: TailOptions,
    mut status: impl FnMut(&str),
) -> Result<(), Error> {
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
    let mut said_waiting = false;
    let mut connected_once = false;
    loop {
        let events = follower.poll().map_err(|source| Error::Log {
            path: options.file.clone(),
            source,
        })?;
        if !follower.is_open() {
            // Nothing to register before the log exists: no "waiting" training on the relay.
            if !said_waiting {
                status(&format!("waiting for {} to appear", options.file.display()));
                said_waiting = true;
            }
            std::thread::sleep(options.poll);
            continue;
        }
        if !events.is_empty() {
            last_growth = Instant::now();
        }
        let changes = table.read(format, &events);
        if changes.metrics_changed {
            let mut register = producer.registration().clone();
            register.metrics = metrics_of(&table.metrics);
            register.goals = Goal::by_name(&register.metrics, &options.goals);
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
        for &epoch in &changes.epochs {
            status(&epoch_line(&table, epoch));
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
            Ok(Link::Up) if reported_down || !connected_once => {
                let again = if connected_once { " again" } else { "" };
                status(&format!(
                    "connected{again}: training {}",
                    producer.training_id()
                ));
                reported_down = false;
                connected_once = true;
            }
            Ok(_) => {}
            Err(e) if e.is_permanent() => return Err(e.into()),
            Err(e) => {
                if !reported_down && producer.failures() == 1 {
                    status(&format!(
                        "{e}; buffering {} frame(s), retrying",
                        producer.backlog()
                    ));
                    reported_down = true;
                }
            }
        }
        for reason in producer.take_rejections() {
            status(&format!("the relay rejected a frame: {reason}"));
        }
        if finished {
            producer.push(Action::Finished(watchtrain_protocol::Finished {
                outcome: watchtrain_protocol::Outcome::Completed,
                reason: truncated(""),
            }));
            producer.flush(Duration::from_secs(30))?;
            status(&format!("finished: training {}", producer.training_id()));
            return Ok(());
        }
        std::thread::sleep(options.poll);
    }
}

/// Sends `actions` as one producer and waits at most `timeout` until the relay
/// has acknowledged them; returns the training id.
///
/// Stats and progress would reopen a finished training: for those the
/// training's status is read first, and a finished one is refused.
pub fn run_send(
    endpoint: Endpoint,
    register: Register,
    actions: Vec<Action>,
    timeout: Duration,
) -> Result<u32, Error> {
    let reopens = actions
        .iter()
        .any(|a| matches!(a, Action::Stats(_) | Action::Progress(_)));
    let mut producer = Producer::new(endpoint.clone(), register);
    if reopens {
        producer.flush(timeout)?; // the registration only: it never reopens a training
        let training = producer.training_id();
        if let Some(status) = training_status(&endpoint, training)? {
            if status.is_finished() {
                return Err(Error::Finished {
                    training,
                    status: status.as_str(),
                });
            }
        }
    }
    for action in actions {
        match action {
            Action::Progress(_) | Action::Heartbeat => producer.push_unsequenced(action),
            other => producer.push(other),
        }
    }
    producer.flush(timeout)?;
    Ok(producer.training_id())
}

/// The status in training `id`'s snapshot, `None` when none came within the timeout.
fn training_status(endpoint: &Endpoint, id: u32) -> Result<Option<Status>, Error> {
    let mut connection = endpoint.connect(&format!("/v1/trainings/{id}/watch"))?;
    connection.set_read_timeout(Duration::from_millis(50))?;
    let deadline = Instant::now() + endpoint.timeout;
    while Instant::now() < deadline {
        if let Some(Message::Binary(data)) = connection.read()? {
            if let Ok(Frame {
                action: Action::Snapshot(state),
                ..
            }) = Frame::decode(&data)
            {
                connection.close(Duration::from_millis(100));
                return Ok(Some(state.status));
            }
        }
    }
    Ok(None)
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
    /// Columns; `None` follows the terminal's width (then `COLUMNS`, then 80).
    pub width: Option<usize>,
    /// Redraw in place (a terminal): each view overwrites the last one.
    pub redraw: bool,
}

/// The terminal's width, else `COLUMNS`, else 80.
pub fn terminal_columns() -> usize {
    terminal_size::terminal_size()
        .map(|(w, _)| w.0 as usize)
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(80)
}

/// Shows a training from the relay, redrawing at most 4 times a second.
///
/// Unless `once` is set, a lost connection (a relay restart, say) is retried
/// every 2 seconds, with a line on stderr; the view picks up from the new snapshot.
/// A permanent error (a refused token) ends it. A closed output (`| head`) ends it quietly.
pub fn run_watch(
    endpoint: Endpoint,
    options: WatchOptions,
    out: &mut dyn Write,
) -> Result<(), Error> {
    loop {
        match watch_once(&endpoint, &options, out) {
            Ok(()) => return Ok(()),
            Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) if options.once => return Err(e),
            Err(Error::Relay(e)) if !e.is_permanent() => {
                eprintln!("watchtrain: {e}; retrying in 2 s");
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Draws `state` over the previous view (`redraw`) or below it.
fn draw(
    out: &mut dyn Write,
    id: u32,
    state: &TrainingState,
    options: &WatchOptions,
) -> std::io::Result<()> {
    let width = options.width.unwrap_or_else(terminal_columns);
    let text = view::render(id, state, width);
    if options.redraw {
        // Home, each line cleared to its end, then everything below: no flash of a blank screen.
        let mut screen = String::from("\x1b[H");
        for line in text.lines() {
            screen.push_str(line);
            screen.push_str("\x1b[K\n");
        }
        screen.push_str("\x1b[J");
        out.write_all(screen.as_bytes())?;
    } else {
        writeln!(out, "{text}")?;
    }
    out.flush()
}

fn watch_once(
    endpoint: &Endpoint,
    options: &WatchOptions,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let path = match options.training {
        Some(id) => format!("/v1/trainings/{id}/watch"),
        None => "/v1/watch".to_string(),
    };
    let mut connection = endpoint.connect(&path)?;
    connection.set_read_timeout(Duration::from_millis(250))?;
    let mut state: Option<(u32, TrainingState)> = None;
    let mut dirty = false;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let started = Instant::now();
    let mut said_waiting = false;
    loop {
        if let Some(Message::Binary(data)) = connection.read()? {
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
        if state.is_none() && started.elapsed() >= endpoint.timeout {
            if options.once {
                return Err(Error::NothingToWatch);
            }
            if !said_waiting {
                eprintln!("watchtrain: no training on the relay yet; waiting");
                said_waiting = true;
            }
        }
        if dirty && (last_draw.elapsed() >= Duration::from_millis(250) || options.once) {
            if let Some((id, s)) = &state {
                draw(out, *id, s, options).map_err(Error::Output)?;
                last_draw = Instant::now();
                dirty = false;
                if options.once || (options.until_finished && s.status().is_finished()) {
                    connection.close(Duration::from_millis(200));
                    return Ok(());
                }
            }
        }
    }
}
