//! Where notifications go (ntfy topics and JSON webhooks), and a small
//! HTTP/1.1 client to post them: hyper's connection API over a TCP stream,
//! or over rustls for `https` (the system's root certificates).

use std::sync::Arc;

use axum::body::Bytes;
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use watchtrain_protocol::Status;

use super::{Happening, Notice};

/// How a receiver wants its notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ntfy's publish API: the summary as the body, title, priority, tags and click in headers.
    Ntfy,
    /// A JSON body (Slack, Discord, Home Assistant, apprise-api and anything else).
    Webhook,
}

/// One `--notify` URL, parsed.
#[derive(Debug, Clone)]
pub struct Target {
    /// ntfy or webhook.
    pub kind: Kind,
    /// True for https (and `ntfy://`).
    pub https: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query to post to (`events=` removed).
    pub path: String,
    /// The `Authorization` header the URL's user info asks for.
    pub auth: Option<String>,
    /// The events this URL gets.
    pub events: Vec<Happening>,
    /// The URL without anything secret, for logs: scheme, host and port.
    pub redacted: String,
}

impl Target {
    /// Parses a `--notify` URL:
    /// - `ntfy://[token@]host/topic` (https), `ntfy+http://host:port/topic` (plain http),
    ///   or `https://ntfy.sh/topic`: ntfy;
    /// - any other `http://` or `https://` URL: a JSON webhook;
    /// - `?events=finished,failed` picks the events (default: all but `resumed`);
    /// - `user:password@` sends basic auth, a lone `token@` a bearer token.
    ///
    /// Errors name the part that is wrong, never the secret parts of the URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("`{}` is not a URL", redact_text(url)))?;
        let scheme = uri.scheme_str().unwrap_or("");
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{}` has no host", redact_text(url)))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let (mut kind, https, default_port) = match scheme {
            "ntfy" => (Kind::Ntfy, true, 443),
            "ntfy+http" => (Kind::Ntfy, false, 80),
            "https" => (Kind::Webhook, true, 443),
            "http" => (Kind::Webhook, false, 80),
            other => {
                return Err(format!(
                    "unknown scheme `{other}` in `{}` (use ntfy://, https:// or http://)",
                    redact_text(url)
                ))
            }
        };
        if host.eq_ignore_ascii_case("ntfy.sh") {
            kind = Kind::Ntfy;
        }
        let port = authority.port_u16().unwrap_or(default_port);
        let auth = authority
            .as_str()
            .rsplit_once('@')
            .map(|(userinfo, _)| authorization(userinfo));
        let mut events = None;
        let mut rest = Vec::new();
        for pair in uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            match pair.strip_prefix("events=") {
                Some(list) => {
                    let list = percent_decode_str(list).decode_utf8_lossy();
                    let parsed = list
                        .split(',')
                        .map(|w| {
                            Happening::parse(w.trim()).ok_or_else(|| {
                                format!(
                                    "unknown event `{w}` (use {})",
                                    Happening::ALL.map(|h| h.as_str()).join(", ")
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    events = Some(parsed);
                }
                None => rest.push(pair),
            }
        }
        let mut path = uri.path().to_owned();
        if kind == Kind::Ntfy && path.trim_matches('/').is_empty() {
            return Err(format!("`{}` names no ntfy topic", redact_text(url)));
        }
        if !rest.is_empty() {
            path = format!("{path}?{}", rest.join("&"));
        }
        let redacted = format!(
            "{}://{}:{port}/…",
            if https { "https" } else { "http" },
            authority.host()
        );
        Ok(Target {
            kind,
            https,
            host: host.to_owned(),
            port,
            path,
            auth,
            events: events.unwrap_or_else(|| Happening::DEFAULT.to_vec()),
            redacted,
        })
    }

    /// The request for `notice`: its headers and body.
    pub fn request(&self, notice: &Notice) -> Outgoing {
        match self.kind {
            Kind::Webhook => Outgoing {
                content_type: "application/json",
                headers: Vec::new(),
                body: Bytes::from(notice.json().to_string()),
            },
            Kind::Ntfy => {
                let (priority, tag) = match notice.event {
                    Happening::Finished if notice.facts.status == Status::Cancelled => {
                        ("default", "stop_sign")
                    }
                    Happening::Finished => ("default", "white_check_mark"),
                    Happening::Failed => ("high", "x"),
                    Happening::Nan => ("high", "warning"),
                    Happening::Stalled => ("high", "hourglass"),
                    Happening::Resumed => ("low", "arrow_forward"),
                };
                let title = notice.facts.title(notice.event);
                Outgoing {
                    content_type: "text/plain; charset=utf-8",
                    headers: vec![
                        ("title", header_text(&title)),
                        ("priority", priority.into()),
                        ("tags", format!("{tag},watchtrain")),
                        ("click", notice.facts.link.clone()),
                    ],
                    body: Bytes::from(notice.text.clone()),
                }
            }
        }
    }
}

/// The `Authorization` value of a URL's user info: basic for `user:password`, bearer for a lone token.
fn authorization(userinfo: &str) -> String {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    match userinfo.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            let pair = format!("{}:{}", decode(user), decode(password));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        Some((_, token)) => format!("Bearer {}", decode(token)),
        None => format!("Bearer {}", decode(userinfo)),
    }
}

/// Header text: ASCII as is, anything else as an RFC 2047 encoded word, which ntfy decodes.
fn header_text(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        text.to_owned()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }
}

/// A URL for logs and errors: everything after the host dropped (paths and user info hold secrets).
fn redact_text(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    format!("{scheme}://{host}/…")
}

/// A request ready to post.
pub struct Outgoing {
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Extra headers.
    headers: Vec<(&'static str, String)>,
    /// The body.
    body: Bytes,
}

/// Posts requests over HTTP/1.1; cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// For https: rustls with the system's root certificates.
    tls: TlsConnector,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client trusting the system's root certificates.
    pub fn new() -> Client {
        Client {
            tls: TlsConnector::from(Arc::new(client_tls(None).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no TLS roots; https notifications will fail");
                client_tls_with(rustls::RootCertStore::empty())
            }))),
        }
    }

    /// Posts `request` to `target`; `Ok` for a 2xx answer.
    pub async fn send(&self, target: &Target, request: &Outgoing) -> Result<(), String> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if target.https {
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| format!("server name: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            exchange(tls, target, request).await
        } else {
            exchange(tcp, target, request).await
        }
    }
}

/// One request on a fresh connection, and its answer's status.
async fn exchange<S>(stream: S, target: &Target, request: &Outgoing) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http: {e}"))?;
    let connection = tokio::spawn(connection);
    let default_port = if target.https { 443 } else { 80 };
    let host = match (target.host.contains(':'), target.port == default_port) {
        (false, true) => target.host.clone(),
        (false, false) => format!("{}:{}", target.host, target.port),
        (true, true) => format!("[{}]", target.host),
        (true, false) => format!("[{}]:{}", target.host, target.port),
    };
    let mut builder = Request::post(target.path.as_str())
        .header(HOST, host)
        .header(CONTENT_TYPE, request.content_type)
        .header(
            USER_AGENT,
            concat!("watchtrain-relay/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(auth) = &target.auth {
        builder = builder.header(AUTHORIZATION, auth.as_str());
    }
    for (name, value) in &request.headers {
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
        builder = builder.header(HeaderName::from_static(name), value);
    }
    let req = builder
        .body(Full::new(request.body.clone()))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("http: {e}"))?;
    let status = response.status();
    // Read the answer to its end so the receiver sees a clean close.
    let _ = response.into_body().collect().await;
    connection.abort();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// A rustls client configuration (ring) trusting the system's roots, and `extra_ca` (PEM) when given.
pub fn client_tls(extra_ca: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_ca {
        let mut reader = std::io::BufReader::new(pem);
        for cert in rustls_pemfile_certs(&mut reader)? {
            roots
                .add(cert)
                .map_err(|e| format!("CA certificate: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err("no root certificates found".into());
    }
    Ok(client_tls_with(roots))
}

fn client_tls_with(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let mut text = Vec::new();
    reader
        .read_to_end(&mut text)
        .map_err(|e| format!("CA file: {e}"))?;
    rustls_pki_types::CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntfy_and_webhook_urls() {
        let t = Target::parse("ntfy://tk_secret@ntfy.example.org/lab-trainings").unwrap();
        assert_eq!((t.kind, t.https, t.port), (Kind::Ntfy, true, 443));
        assert_eq!(t.path, "/lab-trainings");
        assert_eq!(t.auth.as_deref(), Some("Bearer tk_secret"));
        assert_eq!(t.events, Happening::DEFAULT.to_vec());
        assert!(!t.redacted.contains("secret") && !t.redacted.contains("lab-trainings"));

        let t = Target::parse("https://ntfy.sh/my-topic?events=finished,resumed").unwrap();
        assert_eq!(t.kind, Kind::Ntfy);
        assert_eq!(t.events, vec![Happening::Finished, Happening::Resumed]);

        let t =
            Target::parse("http://user:p%40ss@127.0.0.1:8123/api/webhook/abc?x=1&events=failed")
                .unwrap();
        assert_eq!((t.kind, t.https, t.port), (Kind::Webhook, false, 8123));
        assert_eq!(t.path, "/api/webhook/abc?x=1");
        assert_eq!(t.auth.as_deref(), Some("Basic dXNlcjpwQHNz"));
        assert_eq!(t.redacted, "http://127.0.0.1:8123/…");
    }

    #[test]
    fn bad_urls_are_explained_without_secrets() {
        let e = Target::parse("ftp://x/secret-path").unwrap_err();
        assert!(
            e.contains("unknown scheme `ftp`") && !e.contains("secret"),
            "{e}"
        );
        let e = Target::parse("https://hooks.example/secret?events=done").unwrap_err();
        assert!(e.contains("unknown event `done`"), "{e}");
        let e = Target::parse("ntfy://ntfy.example.org/").unwrap_err();
        assert!(
            e.contains("no ntfy topic") && e.contains("ntfy.example.org"),
            "{e}"
        );
    }

    #[test]
    fn non_ascii_titles_are_encoded_words() {
        assert_eq!(header_text("plain"), "plain");
        assert_eq!(header_text("été"), "=?UTF-8?B?w6l0w6k=?=");
    }
}
