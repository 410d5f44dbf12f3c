//! Errors at the relay's boundaries: what a client is told, and why `run` stops.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a client's request or frame was refused; also the `reason` label of
/// `watchtrain_frames_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Bytes that are not a frame.
    Decode,
    /// Legacy JSON that does not parse.
    Json,
    /// A message over `--max-frame-bytes`.
    TooLarge,
    /// More than `--max-fps` (HTTP POST).
    RateLimited,
    /// No token given where one is needed.
    Unauthorized,
    /// A wrong token, or a consumer token on a producer path.
    Forbidden,
    /// A frame for a training the relay does not know.
    UnknownTraining,
    /// A frame the state refuses (e.g. stats that do not match the metrics).
    Apply,
    /// A limit of the relay was reached (trainings, consumers).
    Limit,
    /// Anything else a client got wrong.
    BadRequest,
    /// The relay could not persist a frame, or read what it stored.
    Storage,
    /// A web page of a foreign origin (not the relay's own, not `--allow-origin`).
    Origin,
    /// A `Host` that is not one of the relay's names (DNS rebinding).
    Host,
    /// A POST body of the wrong `Content-Type`.
    MediaType,
    /// A request whose body did not arrive within `--request-timeout`.
    Timeout,
    /// The relay failed (a render task died).
    Internal,
}

impl Reason {
    /// Every reason, in index order.
    pub const ALL: [Reason; 16] = [
        Reason::Decode,
        Reason::Json,
        Reason::TooLarge,
        Reason::RateLimited,
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::UnknownTraining,
        Reason::Apply,
        Reason::Limit,
        Reason::BadRequest,
        Reason::Storage,
        Reason::Origin,
        Reason::Host,
        Reason::MediaType,
        Reason::Timeout,
        Reason::Internal,
    ];

    /// The word used in JSON errors and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Decode => "decode",
            Reason::Json => "json",
            Reason::TooLarge => "too_large",
            Reason::RateLimited => "rate_limited",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::UnknownTraining => "unknown_training",
            Reason::Apply => "apply",
            Reason::Limit => "limit",
            Reason::BadRequest => "bad_request",
            Reason::Storage => "storage",
            Reason::Origin => "origin",
            Reason::Host => "host",
            Reason::MediaType => "media_type",
            Reason::Timeout => "timeout",
            Reason::Internal => "internal",
        }
    }

    /// The HTTP status for this reason.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::Decode | Reason::Json | Reason::Apply | Reason::BadRequest => {
                StatusCode::BAD_REQUEST
            }
            Reason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Reason::Unauthorized => StatusCode::UNAUTHORIZED,
            Reason::Forbidden | Reason::Origin | Reason::Host => StatusCode::FORBIDDEN,
            Reason::MediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::Timeout => StatusCode::REQUEST_TIMEOUT,
            Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Reason::UnknownTraining => StatusCode::NOT_FOUND,
            // The store retries; the client may too.
            Reason::Limit | Reason::Storage => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A refusal: a reason and a message for people. Over HTTP it is the status
/// of the reason and `{"error": reason, "message": ...}`; over a WebSocket
/// the same JSON as a text message.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// What to tell the client.
    pub message: String,
}

impl Rejection {
    /// A rejection.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }

    /// The rejection for a training id the relay does not hold.
    pub fn unknown_training(id: u32) -> Self {
        Rejection::new(Reason::UnknownTraining, format!("no training {id}"))
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::json!({"error": self.reason.as_str(), "message": self.message}).to_string()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (
            self.reason.status(),
            [(header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response();
        if self.reason == Reason::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Why the relay could not start or stopped.
#[derive(Debug)]
pub enum RelayError {
    /// The configuration is unsafe or inconsistent (e.g. an empty token).
    Config(String),
    /// The database could not be opened, checked or read.
    Store(crate::store::StoreError),
    /// The TLS certificate or key could not be loaded.
    Tls(String),
    /// A socket error.
    Io(std::io::Error),
    /// A `--notify` or `--mqtt` setting that cannot work.
    Outbound(String),
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayError::Config(e) => write!(f, "{e}"),
            RelayError::Store(_) => write!(f, "the database failed"),
            RelayError::Tls(e) => write!(f, "tls: {e}"),
            RelayError::Io(_) => write!(f, "a socket failed"),
            RelayError::Outbound(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RelayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RelayError::Store(e) => Some(e),
            RelayError::Io(e) => Some(e),
            RelayError::Config(_) | RelayError::Tls(_) | RelayError::Outbound(_) => None,
        }
    }
}

impl From<crate::store::StoreError> for RelayError {
    fn from(e: crate::store::StoreError) -> Self {
        RelayError::Store(e)
    }
}

impl From<std::io::Error> for RelayError {
    fn from(e: std::io::Error) -> Self {
        RelayError::Io(e)
    }
}
