//! Every knob of the relay: one struct, parsed from flags and `WATCHTRAIN_...` variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The relay's configuration. `watchtrain-relay --help` lists every field;
/// each flag can also be given as the environment variable named beside it.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "watchtrain-relay",
    version,
    about = "Watchtrain LAN relay: forwards training frames to watches, phones and browsers.",
    long_about = "Watchtrain LAN relay: trainings send frames (WebSocket /v1/produce, HTTP POST, \
                  or the ancestor's legacy JSON paths); watches, phones and browsers get a \
                  snapshot and then live frames. State and stats persist in SQLite.\n\n\
                  Every flag can also be set through the environment variable shown beside it. \
                  Logs go to stderr; RUST_LOG filters them (e.g. RUST_LOG=watchtrain_relay=debug)."
)]
pub struct Config {
    /// Address and port to listen on (`--bind` is the same flag; an address
    /// without a port listens on 8555): 0.0.0.0 for the LAN, 127.0.0.1 for this machine only.
    #[arg(
        long,
        visible_alias = "bind",
        env = "WATCHTRAIN_LISTEN",
        default_value = "0.0.0.0:8555"
    )]
    pub listen: String,

    /// SQLite file for trainings and stats; `:memory:` keeps nothing on disk.
    #[arg(long, env = "WATCHTRAIN_DB", default_value_os_t = default_db())]
    pub db: PathBuf,

    /// How many trainings to keep (memory and database); the oldest finished go first.
    #[arg(long, env = "WATCHTRAIN_KEEP_TRAININGS", default_value_t = 50)]
    pub keep_trainings: usize,

    /// A training that sends nothing for this long is shown as stalled (e.g. 300s, 5m, 250ms).
    #[arg(long, env = "WATCHTRAIN_STALL_AFTER", default_value = "5m", value_parser = parse_duration)]
    pub stall_after: Duration,

    /// Token producers must present (`Authorization: Bearer T` or `?token=T`); also lets a client consume.
    #[arg(long, env = "WATCHTRAIN_TOKEN")]
    pub token: Option<String>,

    /// Token consumers must present, if different from `--token` (a watch with it can never publish).
    #[arg(long, env = "WATCHTRAIN_CONSUMER_TOKEN")]
    pub consumer_token: Option<String>,

    /// PEM certificate chain: serve HTTPS and WSS instead of plain HTTP (needs `--tls-key`).
    #[arg(long, env = "WATCHTRAIN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "WATCHTRAIN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Largest WebSocket message or single frame accepted, in bytes (legacy JSON needs up to 4096).
    #[arg(long, env = "WATCHTRAIN_MAX_FRAME_BYTES", default_value_t = 4096)]
    pub max_frame_bytes: usize,

    /// Most trainings held at once; a registration past it is refused with 503.
    #[arg(long, env = "WATCHTRAIN_MAX_TRAININGS", default_value_t = 200)]
    pub max_trainings: usize,

    /// Most consumers of one training (and of `/v1/watch`, and of the legacy paths) at once.
    #[arg(long, env = "WATCHTRAIN_MAX_CONSUMERS", default_value_t = 256)]
    pub max_consumers: usize,

    /// Frames per second one producer may send; faster producers are slowed down (WebSocket)
    /// or answered 429 (HTTP POST), never silently dropped.
    #[arg(long, env = "WATCHTRAIN_MAX_FPS", default_value_t = 1000)]
    pub max_fps: u32,

    /// Frames queued per training for its consumers; a consumer further behind is resynced
    /// with a fresh snapshot instead of buffered without end.
    #[arg(long, env = "WATCHTRAIN_CONSUMER_QUEUE", default_value_t = 256)]
    pub consumer_queue: usize,

    /// How often to ping WebSocket peers; a peer silent for two intervals is dropped.
    #[arg(long, env = "WATCHTRAIN_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// How long the legacy producer path holds its `register_training` reply: the ancestor's
    /// fastai callback hangs at start when the reply comes at once.
    #[arg(long, env = "WATCHTRAIN_LEGACY_REGISTER_DELAY", default_value = "20ms", value_parser = parse_duration)]
    pub legacy_register_delay: Duration,

    /// Also run a simulated training through the producer path, so everything moves.
    #[arg(long, env = "WATCHTRAIN_DEMO", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,

    /// Speed of the demo training: 1 = one epoch about every 20 s, 10 = ten times faster.
    #[arg(long, env = "WATCHTRAIN_DEMO_SPEED", default_value_t = 1.0)]
    pub demo_speed: f64,

    /// Tell a URL when a training finishes, fails, goes NaN or stalls (repeatable; the variable
    /// takes several, space-separated): `ntfy://host/topic`, `https://ntfy.sh/topic`, or any
    /// `https://` webhook (JSON); `?events=finished,failed` picks the events.
    #[arg(long = "notify", env = "WATCHTRAIN_NOTIFY", value_delimiter = ' ')]
    pub notify: Vec<String>,

    /// A file of `--notify` URLs, one a line (`#` comments), for URLs that hold secrets.
    #[arg(long, env = "WATCHTRAIN_NOTIFY_FILE")]
    pub notify_file: Option<PathBuf>,

    /// How long a notification may take before it is retried (three retries, then given up).
    #[arg(long, env = "WATCHTRAIN_NOTIFY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub notify_timeout: Duration,

    /// Publish every training to an MQTT broker: `mqtt://[user:password@]host[:port]/prefix`
    /// (`mqtts://` for TLS, `?ca=FILE` for a private CA), with Home Assistant discovery.
    #[arg(long, env = "WATCHTRAIN_MQTT")]
    pub mqtt: Option<String>,

    /// The relay's address as phones see it, for links in notifications
    /// (default: the first LAN address and the port).
    #[arg(long, env = "WATCHTRAIN_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl Default for Config {
    /// The defaults of `--help`, ignoring the environment's `WATCHTRAIN_...` variables.
    fn default() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        // Clap's own defaults, so that they are written once (in the attributes above).
        let command = Config::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(["watchtrain-relay"]);
        matches
            .and_then(|m| Config::from_arg_matches(&m))
            .expect("the defaults parse (tested by flag_defaults_match_default)")
    }
}

impl Config {
    /// `listen` with the default port added when it names only an address.
    pub fn listen_addr(&self) -> String {
        match self.listen.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:8555"),
            Ok(ip) => format!("{ip}:8555"),
            Err(_) => self.listen.clone(),
        }
    }

    /// The defaults with an in-memory database: what tests start from.
    pub fn in_memory() -> Self {
        Config {
            db: PathBuf::from(":memory:"),
            ..Config::default()
        }
    }
}

/// `<data dir>/watchtrain/relay.sqlite3`, or `./watchtrain-relay.sqlite3` without a data dir.
pub fn default_db() -> PathBuf {
    match dirs::data_dir() {
        Some(dir) => dir.join("watchtrain").join("relay.sqlite3"),
        None => PathBuf::from("watchtrain-relay.sqlite3"),
    }
}

/// `250ms`, `30s`, `5m`, `2h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 250ms, 30s, 5m or 2h"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_takes_an_address_with_or_without_port() {
        let listen = |args: &[&str]| {
            let config = Config::try_parse_from([&["watchtrain-relay"], args].concat()).unwrap();
            config.listen_addr()
        };
        assert_eq!(listen(&["--bind", "127.0.0.1"]), "127.0.0.1:8555");
        assert_eq!(listen(&["--bind", "::1"]), "[::1]:8555");
        assert_eq!(listen(&["--listen", "0.0.0.0:9000"]), "0.0.0.0:9000");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn flag_defaults_match_default() {
        let parsed = Config::parse_from(["watchtrain-relay"]);
        let default = Config::default();
        // The environment may set some; compare the ones tests rely on when unset.
        if std::env::var_os("WATCHTRAIN_STALL_AFTER").is_none() {
            assert_eq!(parsed.stall_after, default.stall_after);
        }
        if std::env::var_os("WATCHTRAIN_MAX_FRAME_BYTES").is_none() {
            assert_eq!(parsed.max_frame_bytes, default.max_frame_bytes);
        }
        if std::env::var_os("WATCHTRAIN_LISTEN").is_none() {
            assert_eq!(parsed.listen, default.listen);
        }
    }
}
