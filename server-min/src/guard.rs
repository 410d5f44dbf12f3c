//! Who may do what. Every request's `Host` must be one of the relay's names (no
//! DNS rebinding); every API route takes [`Authorized`], which checks the
//! `Origin` of web pages and then the token. Refusals are counted and logged
//! in one place.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::OnceLock;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::{Reason, Rejection};
use crate::hub::AppState;
use crate::serve::ConnectionInfo;

/// What a route lets its caller do.
pub trait Role: Send + Sync + 'static {
    /// True for routes that write (publishing needs the producer token).
    const PRODUCER: bool;
}

/// Sends frames.
pub struct Produce;
/// Reads state.
pub struct Consume;

impl Role for Produce {
    const PRODUCER: bool = true;
}
impl Role for Consume {
    const PRODUCER: bool = false;
}

/// Proof that the request may act as `R`: its origin and token were checked.
pub struct Authorized<R>(PhantomData<R>);

impl<R: Role> FromRequestParts<AppState> for Authorized<R> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, hub: &AppState) -> Result<Self, Rejection> {
        check_origin(hub, R::PRODUCER, &parts.headers, &parts.uri)
            .and_then(|()| check_token(hub, R::PRODUCER, parts))
            .map(|()| Authorized(PhantomData))
            .inspect_err(|r| refused(hub, parts, r))
    }
}

/// Counts and logs a refused request (names escaped: they come from the client).
pub fn refused(hub: &AppState, parts: &Parts, rejection: &Rejection) {
    hub.metrics.reject(rejection.reason);
    let peer = parts.extensions.get::<ConnectionInfo>().map(|c| c.peer);
    tracing::info!(
        peer = ?peer,
        path = ?parts.uri.path(),
        reason = rejection.reason.as_str(),
        message = ?rejection.message,
        "client refused"
    );
}

/// Middleware: refuses a request whose `Host` is not one of the relay's names.
pub async fn check_host(State(hub): State<AppState>, request: Request, next: Next) -> Response {
    let host = request_host(request.headers(), request.uri());
    if let Some(host) = host.filter(|h| !host_allowed(&hub.config.allow_host, h)) {
        let rejection = Rejection::new(
            Reason::Host,
            format!(
                "{:?} is not a name of this relay (use its address, or start it with --allow-host)",
                host
            ),
        );
        let (parts, _) = request.into_parts();
        refused(&hub, &parts, &rejection);
        return rejection.into_response();
    }
    next.run(request).await
}

/// The `Host` header, or the authority of an HTTP/2 request.
fn request_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// This machine's hostname, lower case.
fn hostname() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        gethostname::gethostname()
            .into_string()
            .ok()
            .map(|n| n.to_ascii_lowercase())
            .filter(|n| !n.is_empty())
    })
    .as_deref()
}

/// Suffixes of names only the LAN resolves (mDNS, home routers, RFC 8375, RFC 6761).
const LAN_SUFFIXES: [&str; 5] = [".local", ".lan", ".home.arpa", ".internal", ".localhost"];

/// A rebinding attack needs a public name whose DNS the attacker controls. So
/// the relay's names are: IP addresses, single-label names (`localhost`,
/// `raspberrypi`), names only the LAN resolves, this machine's hostname and
/// `--allow-host` names.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || !name.contains('.')
        || LAN_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
        || hostname().is_some_and(|h| name == h)
        || allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&name) || a.eq_ignore_ascii_case(host))
}

/// `name` of `name:port`, `[v6]:port` or `[v6]`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A browser names the page that sent a request in `Origin`. A web page may act
/// only from the relay's own origin (the dashboard) or `--allow-origin`; a
/// non-web origin (`null`, `file://`, an app's scheme: the Fitbit companion's is
/// undocumented) may read but not publish; no `Origin` is a client that is not
/// a browser.
fn check_origin(
    hub: &AppState,
    producer: bool,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), Rejection> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    if hub
        .config
        .allow_origin
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let authority = origin.split_once("://").and_then(|(scheme, rest)| {
        (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
            .then_some(rest)
    });
    let allowed = match authority {
        Some(authority) => {
            request_host(headers, uri).is_some_and(|host| host.eq_ignore_ascii_case(authority))
        }
        None => !producer,
    };
    if allowed {
        Ok(())
    } else {
        Err(Rejection::new(
            Reason::Origin,
            format!("a page from {origin:?} may not use this relay (start it with --allow-origin)"),
        ))
    }
}

/// A training id from the path; anything else is a JSON `bad_request`.
pub struct TrainingId(pub u32);

impl FromRequestParts<AppState> for TrainingId {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, hub: &AppState) -> Result<Self, Rejection> {
        let not_a_number = || Rejection::new(Reason::BadRequest, "a training id is a number");
        match Path::<Vec<(String, String)>>::from_request_parts(parts, hub).await {
            Ok(Path(params)) => params
                .iter()
                .find(|(k, _)| k == "id")
                .and_then(|(_, v)| v.parse().ok())
                .map(TrainingId)
                .ok_or_else(not_a_number),
            Err(_) => Err(not_a_number()),
        }
    }
}

/// `?token=` (the Fitbit companion's WebSocket cannot set headers).
#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `Authorization: Bearer T` (the scheme in any case) or `?token=T`. Producers need
/// `--token`; consumers `--consumer-token` or `--token`.
fn check_token(hub: &AppState, producer: bool, parts: &Parts) -> Result<(), Rejection> {
    let producer_token = hub.config.token.as_deref();
    let consumer_token = hub.config.consumer_token.as_deref();
    if producer_token.is_none() && consumer_token.is_none() {
        return Ok(());
    }
    let given = bearer(&parts.headers).or_else(|| {
        Query::<TokenQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|q| q.0.token)
    });
    let Some(given) = given else {
        return Err(Rejection::new(
            Reason::Unauthorized,
            "this relay needs a token: header `Authorization: Bearer <token>` or `?token=<token>`",
        ));
    };
    let is = |token: Option<&str>| {
        token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(given.as_bytes())))
    };
    if is(producer_token) || (is(consumer_token) && !producer) {
        Ok(())
    } else if is(consumer_token) {
        Err(Rejection::new(
            Reason::Forbidden,
            "a consumer token cannot publish",
        ))
    } else {
        Err(Rejection::new(Reason::Forbidden, "wrong token"))
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let extra = ["relay.example.org".to_owned()];
        for ok in [
            "localhost:8555",
            "127.0.0.1",
            "[::1]:8555",
            "10.0.0.7:80",
            "Relay.Example.Org",
            "a.localhost",
            "raspberrypi:8555",
            "pi.local",
            "nas.home.arpa.",
        ] {
            assert!(host_allowed(&extra, ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8555",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "local.evil.example",
        ] {
            assert!(!host_allowed(&extra, bad), "{bad}");
        }
    }
}
