//! `watchtrain`: stream a metrics log to a Watchtrain relay, send frames from a shell, watch a training.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use watchtrain_cli::relay::{Endpoint, DEFAULT_URL};
use watchtrain_cli::tail::Format;
use watchtrain_cli::{parse_goal, run_send, run_tail, run_watch, Error, TailOptions, WatchOptions};
use watchtrain_protocol::{
    truncated, Action, Finished, Goal, Level, Log, MetricNames, Outcome, Phase, Progress, Register,
    Stats,
};

#[derive(Parser)]
#[command(
    name = "watchtrain",
    version,
    about = "Stream a training to a Watchtrain relay, or watch one.",
    after_help = "Exit codes:
  0  done
  1  other failure (log file unreadable, nothing to watch)
  2  usage or configuration (bad argument, malformed relay URL, unusable --ca file)
  3  relay unreachable, connection lost, or not acknowledged within --timeout
  4  refused (missing or wrong token, rejected frame: the relay's reason is printed;
     stats or progress for a finished training)
  5  TLS failure (certificate not trusted: see --ca)"
)]
struct Cli {
    /// The relay: http://host:port (or https://, ws://, wss://, or host:port), a path prefix allowed.
    #[arg(long, global = true, env = "WATCHTRAIN_URL", default_value = DEFAULT_URL)]
    url: String,
    /// The relay's token, if it has one (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "WATCHTRAIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificates to trust for an https:// relay (default: SSL_CERT_FILE, else Mozilla's roots built in).
    #[arg(long, global = true, env = "WATCHTRAIN_CA")]
    ca: Option<PathBuf>,
    /// Seconds to wait for the relay: to connect, and for `send` to be acknowledged.
    #[arg(long, global = true, default_value_t = 5.0)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Csv,
    Jsonl,
}

#[derive(Clone, Copy, ValueEnum)]
enum CliPhase {
    Train,
    Valid,
}

#[derive(Clone, Copy, ValueEnum)]
enum CliLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, ValueEnum)]
enum CliOutcome {
    Completed,
    Failed,
    Cancelled,
}

#[derive(Subcommand)]
enum Command {
    /// Follow a CSV or JSON-lines metrics log as it grows and stream each epoch as stats.
    ///
    /// Reads fastai's and Keras' CSVLogger files, Lightning's metrics.csv and any JSON lines
    /// with an `epoch` field. Survives log rotation and relay restarts.
    Tail {
        /// The log file (it need not exist yet).
        file: PathBuf,
        /// The training's name (default: the file's name).
        #[arg(long, env = "WATCHTRAIN_NAME")]
        name: Option<String>,
        /// Run key: the same key continues the same training on the relay (default: random).
        #[arg(long, env = "WATCHTRAIN_RUN_KEY")]
        run_key: Option<String>,
        /// Epochs planned: when the last one is in the log, the training is finished and tail stops.
        #[arg(long, default_value_t = 0)]
        epochs: u32,
        /// Finish the training and stop once the log has not grown for this many seconds.
        #[arg(long)]
        idle_finish: Option<f64>,
        /// How often to check the file, in milliseconds.
        #[arg(long, default_value_t = 250)]
        poll_ms: u64,
        /// The log's format (default: from the file name; `.jsonl`/`.ndjson`/`.json` are JSON lines).
        #[arg(long, value_enum)]
        format: Option<LogFormat>,
        /// Which way a metric improves, NAME=min|max|none (repeatable): only a metric with a
        /// goal has a "best"; others default from the name (loss/err: min, acc/f1/...: max, else none).
        #[arg(long = "goal", value_name = "NAME=GOAL", value_parser = parse_goal)]
        goals: Vec<(String, Goal)>,
    },
    /// Send one frame from a shell script. Every call registers first: export
    /// WATCHTRAIN_NAME, WATCHTRAIN_RUN_KEY and WATCHTRAIN_METRICS once so all calls land on one training.
    Send {
        /// The training's name.
        #[arg(long, env = "WATCHTRAIN_NAME", default_value = "shell")]
        name: String,
        /// Run key (default: derived from the name, so calls with the same name share a training).
        #[arg(long, env = "WATCHTRAIN_RUN_KEY")]
        run_key: Option<String>,
        /// Metric names, comma-separated, in the order of stats values.
        #[arg(long, env = "WATCHTRAIN_METRICS", value_delimiter = ',')]
        metrics: Vec<String>,
        /// Epochs planned.
        #[arg(long, env = "WATCHTRAIN_EPOCHS", default_value_t = 0)]
        epochs: u32,
        /// Which way a metric improves, NAME=min|max|none (repeatable, or comma-separated in
        /// WATCHTRAIN_GOALS): only a metric with a goal has a "best"; others default from the
        /// name (loss/err: min, acc/f1/...: max, else none). Without it the relay keeps the
        /// goals the training has.
        #[arg(long = "goal", value_name = "NAME=GOAL", env = "WATCHTRAIN_GOALS", value_delimiter = ',', value_parser = parse_goal)]
        goals: Vec<(String, Goal)>,
        #[command(subcommand)]
        what: SendWhat,
    },
    /// Show a training in the terminal: progress bars, latest and best values, sparklines.
    Watch {
        /// The training id (default: the latest active training).
        training: Option<u32>,
        /// Print one view and exit.
        #[arg(long)]
        once: bool,
        /// Exit when the training has finished.
        #[arg(long)]
        until_finished: bool,
        /// Never clear the screen (default: clear when the output is a terminal).
        #[arg(long)]
        no_clear: bool,
    },
}

#[derive(Subcommand)]
enum SendWhat {
    /// Only register (name, metrics, epochs).
    Register,
    /// Batch progress.
    Progress {
        /// Batches done in this epoch.
        #[arg(long)]
        batch: u32,
        /// Batches in the epoch.
        #[arg(long, default_value_t = 0)]
        batches: u32,
        /// The epoch, 0-based.
        #[arg(long, default_value_t = 0)]
        epoch: u32,
        /// Train or valid.
        #[arg(long, value_enum, default_value = "train")]
        phase: CliPhase,
    },
    /// One epoch's values: `watchtrain send stats --epoch 3 train_loss=0.21 accuracy=0.93`.
    Stats {
        /// The epoch, 0-based.
        #[arg(long)]
        epoch: u32,
        /// How long the epoch took, in seconds.
        #[arg(long, default_value_t = 0.0)]
        duration: f64,
        /// NAME=VALUE pairs (without --metrics, their order registers the metrics).
        values: Vec<String>,
    },
    /// A log line.
    Log {
        /// The text.
        text: String,
        /// How loud.
        #[arg(long, value_enum, default_value = "info")]
        level: CliLevel,
    },
    /// The end of the training.
    Finish {
        /// How it ended.
        #[arg(long, value_enum, default_value = "completed")]
        outcome: CliOutcome,
        /// A short reason.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match command(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watchtrain: {e}");
            e.exit_code()
        }
    }
}

fn command(cli: Cli) -> Result<(), Error> {
    let timeout = Duration::from_secs_f64(cli.timeout.clamp(0.1, 86_400.0));
    let endpoint = Endpoint::new(&cli.url, cli.token.clone(), timeout, cli.ca.clone())?;
    match cli.command {
        Command::Tail {
            file,
            name,
            run_key,
            epochs,
            idle_finish,
            poll_ms,
            format,
            goals,
        } => {
            let options = TailOptions {
                file,
                name,
                run_key: run_key.unwrap_or_else(random_key),
                epochs,
                poll: Duration::from_millis(poll_ms.max(10)),
                idle_finish: idle_finish.map(Duration::from_secs_f64),
                format: format.map(|f| match f {
                    LogFormat::Csv => Format::Csv,
                    LogFormat::Jsonl => Format::JsonLines,
                }),
                goals,
            };
            run_tail(endpoint, options, |line| eprintln!("watchtrain: {line}"))
        }
        Command::Send {
            name,
            run_key,
            metrics,
            epochs,
            goals,
            what,
        } => send(
            endpoint, name, run_key, metrics, epochs, goals, what, timeout,
        ),
        Command::Watch {
            training,
            once,
            until_finished,
            no_clear,
        } => {
            let stdout = std::io::stdout();
            let terminal = stdout.is_terminal();
            let options = WatchOptions {
                training,
                once,
                until_finished,
                width: (!terminal).then(watchtrain_cli::terminal_columns),
                redraw: !no_clear && !once && terminal,
            };
            run_watch(endpoint, options, &mut stdout.lock())
        }
    }
}

fn random_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("tail-{:016x}", h.finish())
}

#[allow(clippy::too_many_arguments)] // one per flag of `send`
fn send(
    endpoint: Endpoint,
    name: String,
    run_key: Option<String>,
    mut metrics: Vec<String>,
    epochs: u32,
    goals: Vec<(String, Goal)>,
    what: SendWhat,
    timeout: Duration,
) -> Result<(), Error> {
    metrics.retain(|m| !m.trim().is_empty());
    let action = match what {
        SendWhat::Register => None,
        SendWhat::Progress {
            batch,
            batches,
            epoch,
            phase,
        } => Some(Action::Progress(Progress {
            phase: match phase {
                CliPhase::Train => Phase::Train,
                CliPhase::Valid => Phase::Valid,
            },
            epoch,
            epochs,
            batch,
            batches,
        })),
        SendWhat::Stats {
            epoch,
            duration,
            values,
        } => {
            let mut pairs = Vec::new();
            for pair in &values {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| Error::Usage(format!("{pair}: expected NAME=VALUE")))?;
                let v = watchtrain_cli::tail::number(v)
                    .ok_or_else(|| Error::Usage(format!("{pair}: not a number")))?;
                pairs.push((k.trim().to_string(), v));
            }
            if metrics.is_empty() {
                metrics = pairs.iter().map(|(k, _)| k.clone()).collect();
            }
            let values = metrics
                .iter()
                .map(|m| {
                    pairs
                        .iter()
                        .find(|(k, _)| k == m)
                        .map_or(f32::NAN, |(_, v)| *v)
                })
                .collect();
            Some(Action::Stats(Stats {
                epoch,
                duration_ms: (duration.max(0.0) * 1000.0) as u32,
                values,
            }))
        }
        SendWhat::Log { text, level } => Some(Action::Log(Log {
            level: match level {
                CliLevel::Debug => Level::Debug,
                CliLevel::Info => Level::Info,
                CliLevel::Warn => Level::Warn,
                CliLevel::Error => Level::Error,
            },
            text: truncated(&text),
        })),
        SendWhat::Finish { outcome, reason } => Some(Action::Finished(Finished {
            outcome: match outcome {
                CliOutcome::Completed => Outcome::Completed,
                CliOutcome::Failed => Outcome::Failed,
                CliOutcome::Cancelled => Outcome::Cancelled,
            },
            reason: truncated(&reason),
        })),
    };
    if metrics.len() > watchtrain_protocol::MAX_METRICS {
        return Err(Error::Usage(format!(
            "at most {} metrics",
            watchtrain_protocol::MAX_METRICS
        )));
    }
    if let Some((unknown, _)) = goals
        .iter()
        .find(|(g, _)| !metrics.is_empty() && !metrics.contains(g))
    {
        return Err(Error::Usage(format!(
            "--goal {unknown}: not one of the metrics ({})",
            metrics.join(", ")
        )));
    }
    let metrics: MetricNames = metrics.iter().map(|m| truncated(m)).collect();
    let register = Register {
        name: truncated(&name),
        run_key: truncated(&run_key.unwrap_or_else(|| format!("cli:{name}"))),
        goals: Goal::by_name(&metrics, &goals),
        metrics,
        epochs,
        batches: 0,
    };
    let id = run_send(endpoint, register, action.into_iter().collect(), timeout)?;
    println!("{id}");
    Ok(())
}
