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

    /// How many trainings to keep (memory and database); the oldest finished or stalled go
    /// first, never one with a producer or consumer connected.
    #[arg(long, env = "WATCHTRAIN_KEEP_TRAININGS", default_value_t = 50, value_parser = at_least_one)]
    pub keep_trainings: usize,

    /// Stats rows kept per training (one per epoch); older epochs are dropped past it.
    #[arg(long, env = "WATCHTRAIN_HISTORY_EPOCHS", default_value_t = 10_000, value_parser = at_least_one)]
    pub history_epochs: usize,

    /// A training that sends nothing for this long is shown as stalled (e.g. 300s, 5m, 250ms).
    #[arg(long, env = "WATCHTRAIN_STALL_AFTER", default_value = "5m", value_parser = positive_duration)]
    pub stall_after: Duration,

    /// Token producers must present (`Authorization: Bearer T` or `?token=T`); also lets a client
    /// consume. Prefer `--token-file`: a command line is visible to every user in `ps`.
    #[arg(long, env = "WATCHTRAIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// File holding `--token` (its first line).
    #[arg(long, env = "WATCHTRAIN_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// Token consumers must present, if different from `--token` (a watch with it can never
    /// publish). Needs `--token`: producers always need a token once any is set.
    #[arg(long, env = "WATCHTRAIN_CONSUMER_TOKEN", hide_env_values = true)]
    pub consumer_token: Option<String>,

    /// File holding `--consumer-token` (its first line).
    #[arg(
        long,
        env = "WATCHTRAIN_CONSUMER_TOKEN_FILE",
        conflicts_with = "consumer_token"
    )]
    pub consumer_token_file: Option<PathBuf>,

    /// Another name this relay is reached by (the `Host` header), besides localhost, IP
    /// addresses and this machine's hostname; repeat or separate with commas.
    #[arg(long, env = "WATCHTRAIN_ALLOW_HOST", value_delimiter = ',')]
    pub allow_host: Vec<String>,

    /// Another web origin whose pages may publish and watch (e.g. `https://lab.example.org`),
    /// besides the relay's own; repeat or separate with commas.
    #[arg(long, env = "WATCHTRAIN_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,

    /// PEM certificate chain: serve HTTPS and WSS instead of plain HTTP (needs `--tls-key`).
    #[arg(long, env = "WATCHTRAIN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "WATCHTRAIN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Largest WebSocket message or single frame accepted, in bytes (legacy JSON needs up to 4096).
    #[arg(long, env = "WATCHTRAIN_MAX_FRAME_BYTES", default_value_t = 4096, value_parser = at_least_one)]
    pub max_frame_bytes: usize,

    /// Most trainings held at once; a registration past it is refused with 503.
    #[arg(long, env = "WATCHTRAIN_MAX_TRAININGS", default_value_t = 200, value_parser = at_least_one)]
    pub max_trainings: usize,

    /// Most consumers of one training (and of `/v1/watch`, and of the legacy paths) at once.
    #[arg(long, env = "WATCHTRAIN_MAX_CONSUMERS", default_value_t = 256, value_parser = at_least_one)]
    pub max_consumers: usize,

    /// Most open connections (HTTP and WebSocket) at once; keep it under the descriptor
    /// limit (`ulimit -n`, 1024 under systemd). Past it a new connection is closed at once.
    #[arg(long, env = "WATCHTRAIN_MAX_CONNECTIONS", default_value_t = 512, value_parser = at_least_one)]
    pub max_connections: usize,

    /// Most open connections from one IP address, so one machine cannot take every slot.
    #[arg(long, env = "WATCHTRAIN_MAX_CONNECTIONS_PER_IP", default_value_t = 64, value_parser = at_least_one)]
    pub max_connections_per_ip: usize,

    /// How long a client may take to send a request's headers, and then its body; an idle
    /// keep-alive connection is closed after it too.
    #[arg(long, env = "WATCHTRAIN_REQUEST_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub request_timeout: Duration,

    /// Frames per second one producer may send; faster producers are slowed down (WebSocket)
    /// or answered 429 (HTTP POST), never silently dropped.
    #[arg(long, env = "WATCHTRAIN_MAX_FPS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_fps: u32,

    /// Frames queued per training for its consumers; a consumer further behind is resynced
    /// with a fresh snapshot instead of buffered without end.
    #[arg(long, env = "WATCHTRAIN_CONSUMER_QUEUE", default_value_t = 256, value_parser = at_least_one)]
    pub consumer_queue: usize,

    /// How often to ping WebSocket peers; a peer silent for two intervals is dropped.
    #[arg(long, env = "WATCHTRAIN_PING_INTERVAL", default_value = "20s", value_parser = positive_duration)]
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

    /// The configuration `run` uses: tokens read from their files and checked.
    /// Refuses an empty token (an unset variable in a unit file gives one) and a
    /// consumer token without a producer token (publishing would be open).
    pub fn checked(mut self) -> Result<Config, String> {
        if let Some(path) = &self.token_file {
            self.token = Some(read_token(path)?);
        }
        if let Some(path) = &self.consumer_token_file {
            self.consumer_token = Some(read_token(path)?);
        }
        for (flag, token) in [
            ("--token", &mut self.token),
            ("--consumer-token", &mut self.consumer_token),
        ] {
            if let Some(t) = token {
                let trimmed = t.trim();
                if trimmed.is_empty() {
                    return Err(format!(
                        "{flag} is empty (an unset variable?): give a real token or none"
                    ));
                }
                *t = trimmed.to_owned();
            }
        }
        if self.consumer_token.is_some() && self.token.is_none() {
            return Err(
                "--consumer-token alone would leave publishing open: set --token (or --token-file) too"
                    .into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        Ok(self)
    }

    /// The defaults with an in-memory database: what tests start from.
    pub fn in_memory() -> Self {
        Config {
            db: PathBuf::from(":memory:"),
            ..Config::default()
        }
    }
}

/// The first line of a token file.
fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// `<data dir>/watchtrain/relay.sqlite3`, or `./watchtrain-relay.sqlite3` without a data dir.
pub fn default_db() -> PathBuf {
    match dirs::data_dir() {
        Some(dir) => dir.join("watchtrain").join("relay.sqlite3"),
        None => PathBuf::from("watchtrain-relay.sqlite3"),
    }
}

/// `250ms`, `30s`, `5m`, `2h` (humantime); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(seconds) => Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}")),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration like 250ms, 30s, 5m or 2h ({e})")),
    }
}

/// A duration above zero: a zero ping interval or timeout would fire without end.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

/// A count of at least one: zero would make the relay refuse everything.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{text}`: {e}")),
    }
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
