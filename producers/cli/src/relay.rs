//! The connection to the relay: its URL, a WebSocket over TCP or TLS, and
//! what went wrong, classified by the error's type (never by its text).

use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::Uri;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, HandshakeError, Message, WebSocket};

/// The relay's default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8555";

/// Why talking to the relay failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The relay URL cannot be used (said at once, never retried).
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The `--ca` file (or `SSL_CERT_FILE`) cannot be read or holds no certificate.
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Nothing answers at the relay's address, or the connection broke.
    Unreachable {
        /// `host:port`.
        addr: String,
        /// The socket's error.
        source: io::Error,
    },
    /// The TLS handshake failed (an untrusted certificate, a wrong name).
    Tls(rustls::Error),
    /// The relay refused the connection: its HTTP status and its reason.
    Refused {
        /// The HTTP status (401 without a token, 403 for a wrong one).
        status: u16,
        /// The relay's message (from its JSON body).
        reason: String,
    },
    /// The relay rejected a frame, with its reason.
    Rejected {
        /// The relay's message.
        reason: String,
    },
    /// The relay closed the connection.
    Closed {
        /// The close reason the relay gave, if any.
        reason: String,
    },
    /// The WebSocket protocol broke.
    WebSocket(tungstenite::Error),
    /// The relay did not answer or acknowledge in time.
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
}

impl Error {
    /// Retrying cannot help: a configuration the user must change (URL, token, certificate).
    /// A refusal is, unless the relay is only busy (HTTP 408, 429, 5xx).
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Refused { status, .. } => {
                (400..500).contains(status) && ![408, 429].contains(status)
            }
            Error::BadUrl { .. }
            | Error::CaFile { .. }
            | Error::Tls(_)
            | Error::Rejected { .. } => true,
            _ => false,
        }
    }

    /// Classifies a tungstenite error by its type: an HTTP refusal, a TLS failure
    /// (rustls' error inside an I/O error), a broken connection, or a protocol error.
    fn from_ws(addr: &str, e: tungstenite::Error) -> Error {
        match e {
            tungstenite::Error::Http(response) => {
                let status = response.status();
                let body = response.body().as_deref().unwrap_or_default();
                Error::Refused {
                    status: status.as_u16(),
                    reason: refusal_reason(body)
                        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string()),
                }
            }
            tungstenite::Error::Tls(tungstenite::error::TlsError::Rustls(e)) => Error::Tls(*e),
            tungstenite::Error::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref()) {
                Some(tls) => Error::Tls(rustls::Error::clone(tls)),
                None => Error::Unreachable {
                    addr: addr.to_string(),
                    source: io,
                },
            },
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                Error::Closed {
                    reason: String::new(),
                }
            }
            tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            ) => Error::Closed {
                reason: "reset without a goodbye".into(),
            },
            e => Error::WebSocket(e),
        }
    }
}

/// The `message` of the relay's JSON refusal (`{"error": ..., "message": ...}`), else the text itself.
pub fn refusal_reason(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let json: Option<serde_json::Value> = serde_json::from_str(text).ok();
    Some(match json.as_ref().and_then(|v| v["message"].as_str()) {
        Some(message) => message.to_string(),
        None => text.chars().take(200).collect(),
    })
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadUrl { url, why } => write!(f, "bad relay URL {url:?}: {why}"),
            Error::CaFile { path, source } => {
                write!(f, "certificates {}: {source}", path.display())
            }
            Error::Unreachable { addr, source } => write!(f, "relay {addr} unreachable: {source}"),
            Error::Tls(e) => write!(f, "TLS: {e} (a relay with its own certificate needs --ca)"),
            Error::Refused { status, reason } => {
                write!(f, "the relay refused (HTTP {status}): {reason}")
            }
            Error::Rejected { reason } => write!(f, "the relay rejected a frame: {reason}"),
            Error::Closed { reason } if reason.is_empty() => {
                f.write_str("the relay closed the connection")
            }
            Error::Closed { reason } => write!(f, "the relay closed the connection: {reason}"),
            Error::WebSocket(e) => e.fmt(f),
            Error::Timeout { what, after } => write!(f, "{what} within {after:?}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::CaFile { source, .. } | Error::Unreachable { source, .. } => Some(source),
            Error::Tls(e) => Some(e),
            Error::WebSocket(e) => Some(e),
            _ => None,
        }
    }
}

/// A relay's address, checked once: `http://host:port[/prefix]`, `https://`, `ws://`,
/// `wss://`, or `host:port` (plain). The same rules as the Python package's `relay_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// TLS (`https://`, `wss://`).
    pub tls: bool,
    /// The host name or address (an IPv6 address without brackets).
    pub host: String,
    /// The port (80 or 443 when the URL has none).
    pub port: u16,
    /// A path prefix (a relay behind a reverse proxy), without the trailing `/`.
    pub prefix: String,
}

impl RelayUrl {
    /// Checks and normalises `url`.
    ///
    /// ```
    /// use watchtrain_cli::relay::RelayUrl;
    /// let url = RelayUrl::parse("https://lab.example:8555/watchtrain/")?;
    /// assert_eq!(url.ws("/v1/produce"), "wss://lab.example:8555/watchtrain/v1/produce");
    /// assert_eq!(RelayUrl::parse("127.0.0.1:8555")?.ws("/v1/watch"), "ws://127.0.0.1:8555/v1/watch");
    /// assert!(RelayUrl::parse("mnist").is_err()); // no scheme and no port: not an address
    /// assert!(RelayUrl::parse("ftp://relay").is_err());
    /// # Ok::<(), watchtrain_cli::relay::Error>(())
    /// ```
    pub fn parse(url: &str) -> Result<RelayUrl, Error> {
        let bad = |why: &str| Error::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let trimmed = url.trim();
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => (String::new(), trimmed),
        };
        let tls = match scheme.as_str() {
            "http" | "ws" | "" => false,
            "https" | "wss" => true,
            _ => return Err(bad("the scheme must be http, https, ws or wss")),
        };
        let uri: Uri = format!("http://{rest}")
            .parse()
            .map_err(|e: tungstenite::http::uri::InvalidUri| bad(&e.to_string()))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        // The port as written: `http::Uri` reads one past 65535 as no port at all.
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let written_port = authority
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.contains(']'));
        let port = match written_port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port must be 1 to 65535"))?,
            None if scheme.is_empty() => {
                return Err(bad("expected http://host:port (or host:port)"))
            }
            None if tls => 443,
            None => 80,
        };
        if uri.query().is_some() {
            return Err(bad(
                "a query does not belong in the relay URL (use --token)",
            ));
        }
        Ok(RelayUrl {
            tls,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The WebSocket URL of `path` on this relay.
    pub fn ws(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}{path}", self.authority(), self.prefix)
    }
}

/// Where the relay is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The relay.
    pub url: RelayUrl,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Connect, handshake, write and answer timeout.
    pub timeout: Duration,
    /// PEM certificates to trust for `https://` (default: `SSL_CERT_FILE`, else webpki-roots).
    pub ca_file: Option<PathBuf>,
}

/// An open WebSocket to the relay.
pub struct Connection {
    /// The WebSocket over TCP or TLS.
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    /// The same socket, to change its read timeout whatever the stream above it.
    tcp: TcpStream,
    /// `host:port`, for error messages.
    addr: String,
}

impl Endpoint {
    /// An endpoint for `url`; a malformed URL is an error here, not a retry later.
    pub fn new(
        url: &str,
        token: Option<String>,
        timeout: Duration,
        ca_file: Option<PathBuf>,
    ) -> Result<Endpoint, Error> {
        Ok(Endpoint {
            url: RelayUrl::parse(url)?,
            token: token.filter(|t| !t.is_empty()),
            timeout,
            ca_file,
        })
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = rustls::RootCertStore::empty();
        let file = self
            .ca_file
            .clone()
            .or_else(|| std::env::var_os("SSL_CERT_FILE").map(PathBuf::from));
        match file {
            Some(path) => {
                let ca_error = |e: rustls_pki_types::pem::Error| Error::CaFile {
                    path: path.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                };
                for cert in CertificateDer::pem_file_iter(&path).map_err(ca_error)? {
                    let _ = roots.add(cert.map_err(ca_error)?); // a bundle may hold certificates rustls does not take
                }
                if roots.is_empty() {
                    return Err(Error::CaFile {
                        path,
                        source: io::Error::new(io::ErrorKind::InvalidData, "no usable certificate"),
                    });
                }
            }
            // Mozilla's roots, built in: the same on Linux, macOS and Termux, where no system bundle path is shared.
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Opens a WebSocket to `path` with the token and timeouts applied.
    pub fn connect(&self, path: &str) -> Result<Connection, Error> {
        let addr = self.url.authority();
        let unreachable = |source| Error::Unreachable {
            addr: addr.clone(),
            source,
        };
        let url = self.url.ws(path);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::from_ws(&addr, e))?;
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Error::BadUrl {
                    url: url.clone(),
                    why: "the token is not a valid header value".into(),
                })?;
            request.headers_mut().insert("authorization", value);
        }
        let socket_addr = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| unreachable(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
        let tcp = TcpStream::connect_timeout(&socket_addr, self.timeout).map_err(unreachable)?;
        tcp.set_read_timeout(Some(self.timeout))
            .and_then(|()| tcp.set_write_timeout(Some(self.timeout)))
            .map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        let handle = tcp.try_clone().map_err(unreachable)?;
        let connector = if self.url.tls {
            Connector::Rustls(self.tls_config()?)
        } else {
            Connector::Plain
        };
        let ws = match tungstenite::client_tls_with_config(request, tcp, None, Some(connector)) {
            Ok((ws, _)) => ws,
            Err(HandshakeError::Failure(e)) => return Err(Error::from_ws(&addr, e)),
            Err(HandshakeError::Interrupted(_)) => {
                return Err(Error::Timeout {
                    what: "no WebSocket handshake",
                    after: self.timeout,
                })
            }
        };
        Ok(Connection {
            ws,
            tcp: handle,
            addr,
        })
    }
}

impl Connection {
    /// Reads then wait at most `timeout` for a message.
    pub fn set_read_timeout(&self, timeout: Duration) -> Result<(), Error> {
        self.tcp
            .set_read_timeout(Some(timeout))
            .map_err(|source| Error::Unreachable {
                addr: self.addr.clone(),
                source,
            })
    }

    /// Sends one binary message.
    pub fn send(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        self.ws
            .send(Message::binary(bytes))
            .map_err(|e| Error::from_ws(&self.addr, e))
    }

    /// The next binary or text message, `None` when none came within the read timeout.
    /// The relay's close frame is an error carrying its reason.
    pub fn read(&mut self) -> Result<Option<Message>, Error> {
        match self.ws.read() {
            Ok(Message::Close(frame)) => Err(Error::Closed {
                reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            }),
            Ok(m @ (Message::Binary(_) | Message::Text(_))) => Ok(Some(m)),
            Ok(_) => Ok(None),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::from_ws(&self.addr, e)),
        }
    }

    /// Closes cleanly, waiting at most `timeout` for the relay's answer; never fails.
    pub fn close(mut self, timeout: Duration) {
        if self.ws.close(None).is_err() {
            return;
        }
        let _ = self.tcp.set_read_timeout(Some(timeout));
        while self.ws.read().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_type() {
        let tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(matches!(
            Error::from_ws("h:1", tungstenite::Error::Io(tls)),
            Error::Tls(rustls::Error::DecryptError)
        ));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            Error::from_ws("h:1", tungstenite::Error::Io(refused)),
            Error::Unreachable { .. }
        ));
        let body = br#"{"error":"forbidden","message":"a consumer token cannot publish"}"#;
        let response = tungstenite::http::Response::builder()
            .status(403)
            .body(Some(body.to_vec()))
            .unwrap();
        let e = Error::from_ws("h:1", tungstenite::Error::Http(Box::new(response)));
        assert_eq!(
            e.to_string(),
            "the relay refused (HTTP 403): a consumer token cannot publish"
        );
        assert!(e.is_permanent());
        let busy = Error::Refused {
            status: 503,
            reason: "too many".into(),
        };
        assert!(!busy.is_permanent());
    }
}
