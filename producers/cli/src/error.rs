//! What a command fails with, and the exit code that says which kind of failure it was.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::relay;

/// Why a `watchtrain` command failed: one variant per boundary.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Talking to the relay failed (its own exit code by kind).
    Relay(relay::Error),
    /// The log file could not be read.
    Log {
        /// The followed file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the view failed (other than a closed pipe, which ends `watch` quietly).
    Output(std::io::Error),
    /// An argument the command cannot use (`NAME=VALUE` without `=`, too many metrics).
    Usage(String),
    /// `watch --once` found no training to show.
    NothingToWatch,
    /// `send stats` or `send progress` to a training that has finished (it would reopen it).
    Finished {
        /// The training.
        training: u32,
        /// How it ended.
        status: &'static str,
    },
}

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// A usage or configuration error: bad arguments, a malformed relay URL, an unusable `--ca` file.
    pub const USAGE: u8 = 2;
    /// The relay could not be reached, broke the connection, or did not acknowledge in time.
    pub const UNREACHABLE: u8 = 3;
    /// Refused: by the relay (a missing or wrong token, a frame it rejected, with its reason),
    /// or by `send` (stats or progress for a training that has finished).
    pub const REFUSED: u8 = 4;
    /// TLS failed: a certificate that is not trusted (see `--ca`) or not for this host.
    pub const TLS: u8 = 5;
    /// Anything else: the log file cannot be read, nothing to watch, output failed.
    pub const OTHER: u8 = 1;
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Relay(e) => match e {
                relay::Error::BadUrl { .. } | relay::Error::CaFile { .. } => exit::USAGE,
                relay::Error::Refused { .. } | relay::Error::Rejected { .. } => exit::REFUSED,
                relay::Error::Tls(_) => exit::TLS,
                _ => exit::UNREACHABLE,
            },
            Error::Usage(_) => exit::USAGE,
            Error::Finished { .. } => exit::REFUSED,
            Error::Log { .. } | Error::Output(_) | Error::NothingToWatch => exit::OTHER,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Relay(e) => e.fmt(f),
            Error::Log { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Output(e) => write!(f, "cannot write the view: {e}"),
            Error::Usage(what) => f.write_str(what),
            Error::NothingToWatch => f.write_str("the relay has no training to show"),
            Error::Finished { training, status } => write!(
                f,
                "training {training} has finished ({status}): sending it more would reopen it; \
                 give another --run-key (or --name) to start a new training"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Relay(e) => Some(e),
            Error::Log { source, .. } | Error::Output(source) => Some(source),
            Error::Usage(_) | Error::NothingToWatch | Error::Finished { .. } => None,
        }
    }
}

impl From<relay::Error> for Error {
    fn from(e: relay::Error) -> Self {
        Error::Relay(e)
    }
}
