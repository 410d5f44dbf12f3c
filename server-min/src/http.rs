//! The routes: REST, WebSocket upgrades (new and legacy paths), metrics, the dashboard.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use include_dir::{include_dir, Dir};
use serde_json::{json, Value};
use watchtrain_protocol::{Action, Frame, TrainingState};

use crate::error::{Reason, Rejection};
use crate::hub::{Hub, RegisterRequest, Slot};
use crate::ws::{self, Bucket, Feed, ProducerKind};

/// The shared state of every handler.
pub type AppState = Arc<Hub>;

/// The whole router: REST and WebSocket API, the ancestor's paths, metrics and the dashboard.
/// Other parts add their routes by merging another `Router<AppState>` here.
pub fn router(hub: AppState) -> Router {
    let body_limit = hub.config.max_frame_bytes.saturating_mul(64);
    Router::new()
        .merge(api_routes())
        .merge(legacy_routes())
        .merge(ops_routes())
        .merge(crate::face::face_routes())
        .merge(dashboard_routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(hub)
}

/// `/v1/...`: the binary protocol over WebSocket, HTTP POST and JSON views.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/produce", get(produce))
        .route("/v1/watch", get(watch_latest))
        .route("/v1/trainings", get(list))
        .route("/v1/trainings/{id}", get(one))
        .route("/v1/trainings/{id}/watch", get(watch_one))
        .route("/v1/trainings/{id}/frames", post(post_frames))
        .route("/v1/trainings/{id}/history.csv", get(history_csv))
}

/// The ancestor's WebSocket paths, unchanged.
pub fn legacy_routes() -> Router<AppState> {
    Router::new()
        .route("/ws/watchtrain/producer/{client_id}", get(legacy_produce))
        .route("/ws/watchtrain/watch/{client_id}", get(legacy_watch))
        .route("/ws/watchtrain/verbose/{client_id}", get(legacy_verbose))
}

/// Health and Prometheus metrics.
pub fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
}

/// The browser dashboard: files of `server-min/static/`, embedded at build time.
pub fn dashboard_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { static_file("index.html") }))
        .fallback(get(|uri: axum::http::Uri| async move {
            static_file(uri.path().trim_start_matches('/'))
        }))
}

static STATIC: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/static");

fn static_file(path: &str) -> Response {
    let Some(file) = STATIC.get_file(path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let mime = match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    };
    ([(header::CONTENT_TYPE, mime)], file.contents()).into_response()
}

/// Who a request acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends frames.
    Producer,
    /// Reads state.
    Consumer,
}

/// Checks the token of a request (`Authorization: Bearer T` or `?token=T`).
/// Producers need `--token`; consumers need `--consumer-token` or `--token`.
pub fn authorize(
    hub: &Hub,
    role: Role,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), Rejection> {
    let producer = hub.config.token.as_deref();
    let consumer = hub.config.consumer_token.as_deref();
    let accepted: Vec<&str> = match role {
        Role::Producer => producer.into_iter().collect(),
        Role::Consumer => consumer.into_iter().chain(producer).collect(),
    };
    let required = match role {
        Role::Producer => producer.is_some(),
        Role::Consumer => !accepted.is_empty(),
    };
    if !required {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .or_else(|| query.and_then(query_token));
    let Some(given) = given else {
        return Err(Rejection::new(
            Reason::Unauthorized,
            "this relay needs a token: header `Authorization: Bearer <token>` or `?token=<token>`",
        ));
    };
    if accepted
        .iter()
        .any(|t| same(t.as_bytes(), given.as_bytes()))
    {
        return Ok(());
    }
    if role == Role::Producer && consumer.is_some_and(|c| same(c.as_bytes(), given.as_bytes())) {
        return Err(Rejection::new(
            Reason::Forbidden,
            "a consumer token cannot publish",
        ));
    }
    Err(Rejection::new(Reason::Forbidden, "wrong token"))
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        Some(percent_decode(value))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Read buffer of a WebSocket: messages are small (the default is 128 KiB per connection).
const WS_READ_BUFFER: usize = 4 * 1024;
/// Bytes gathered before a write: enough for a batch of frames, small for 1,000 consumers.
const WS_WRITE_BUFFER: usize = 8 * 1024;

fn upgrade(hub: &Hub, ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(hub.config.max_frame_bytes)
        .max_frame_size(hub.config.max_frame_bytes)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
}

async fn produce(
    State(hub): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, Rejection> {
    producer_session(hub, headers, query, ws, ProducerKind::Binary)
}

async fn legacy_produce(
    State(hub): State<AppState>,
    Path(_client_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, Rejection> {
    producer_session(hub, headers, query, ws, ProducerKind::Legacy)
}

/// `/v1/produce` and the legacy producer path: authorize, then run the session.
fn producer_session(
    hub: AppState,
    headers: HeaderMap,
    query: Option<String>,
    ws: WebSocketUpgrade,
    kind: ProducerKind,
) -> Result<Response, Rejection> {
    authorize(&hub, Role::Producer, &headers, query.as_deref())
        .inspect_err(|r| hub.metrics.reject(r.reason))?;
    Ok(upgrade(&hub, ws).on_upgrade(move |socket| async move {
        let (sink, stream) = socket.split();
        ws::produce(hub, sink, stream, kind).await;
    }))
}

async fn watch_one(
    State(hub): State<AppState>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, Rejection> {
    authorize(&hub, Role::Consumer, &headers, query.as_deref())
        .inspect_err(|r| hub.metrics.reject(r.reason))?;
    let (snapshot, rx) = hub
        .subscribe(id, true)
        .inspect_err(|r| hub.metrics.reject(r.reason))?;
    let slot = Slot {
        hub: hub.clone(),
        training: Some(id),
        legacy: false,
    };
    Ok(upgrade(&hub, ws).on_upgrade(move |socket| async move {
        let (sink, stream) = socket.split();
        let feed = Feed::Training { id, snapshot, rx };
        ws::consume(hub, sink, stream, feed).await;
        drop(slot);
    }))
}

async fn watch_latest(
    State(hub): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, Rejection> {
    shared_watch(hub, headers, query, ws, None).await
}

async fn legacy_watch(
    State(hub): State<AppState>,
    Path(_client_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, Rejection> {
    shared_watch(hub, headers, query, ws, Some(false)).await
}

async fn legacy_verbose(
    State(hub): State<AppState>,
    Path(_client_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, Rejection> {
    shared_watch(hub, headers, query, ws, Some(true)).await
}

/// `/v1/watch` (`verbose: None`) and the legacy consumer paths.
async fn shared_watch(
    hub: AppState,
    headers: HeaderMap,
    query: Option<String>,
    ws: WebSocketUpgrade,
    verbose: Option<bool>,
) -> Result<Response, Rejection> {
    authorize(&hub, Role::Consumer, &headers, query.as_deref())
        .inspect_err(|r| hub.metrics.reject(r.reason))?;
    let legacy = verbose.is_some();
    hub.join_shared(legacy)
        .inspect_err(|r| hub.metrics.reject(r.reason))?;
    let slot = Slot {
        hub: hub.clone(),
        training: None,
        legacy,
    };
    Ok(upgrade(&hub, ws).on_upgrade(move |socket| async move {
        let (sink, stream) = socket.split();
        let feed = match verbose {
            Some(verbose) => Feed::Legacy { verbose },
            None => Feed::Latest,
        };
        ws::consume(hub, sink, stream, feed).await;
        drop(slot);
    }))
}

/// A number for JSON: NaN and infinities become `null`.
fn num(v: f32) -> Value {
    if v.is_finite() {
        json!(f64::from(v))
    } else {
        Value::Null
    }
}

fn summary(id: u32, run_key: &str, s: &TrainingState, updated_ms: u64) -> Value {
    let latest: serde_json::Map<String, Value> = s
        .metrics()
        .iter()
        .zip(s.latest().iter())
        .map(|(name, v)| (name.to_string(), num(*v)))
        .collect();
    json!({
        "id": id,
        "name": s.name().as_str(),
        "run_key": run_key,
        "status": s.status().as_str(),
        "epoch": s.epoch(),
        "epochs": s.epochs(),
        "latest_epoch": s.latest_epoch(),
        "latest": latest,
        "updated_ms": updated_ms,
    })
}

async fn list(
    State(hub): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Rejection> {
    authorize(&hub, Role::Consumer, &headers, query.as_deref())?;
    let list: Vec<Value> = hub
        .list()
        .iter()
        .map(|(id, key, s, ms)| summary(*id, key, s, *ms))
        .collect();
    Ok(axum::Json(list).into_response())
}

async fn one(
    State(hub): State<AppState>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Rejection> {
    authorize(&hub, Role::Consumer, &headers, query.as_deref())?;
    let (key, s, ms) = hub.get(id).ok_or_else(|| Rejection::unknown_training(id))?;
    let mut v = summary(id, &key, &s, ms);
    let bar = |b: watchtrain_protocol::Bar| json!({"done": b.done, "total": b.total});
    let history: Vec<Value> = s
        .history_rows()
        .map(|(epoch, row)| json!({"epoch": epoch, "values": row.iter().map(|x| num(*x)).collect::<Vec<_>>()}))
        .collect();
    let best: Vec<Value> = s
        .best()
        .iter()
        .map(|b| json!({"epoch": b.epoch, "value": num(b.value)}))
        .collect();
    let extra = json!({
        "metrics": s.metrics().iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "reason": s.reason().as_str(),
        "phase": match s.phase() { watchtrain_protocol::Phase::Train => "train", watchtrain_protocol::Phase::Valid => "valid" },
        "train": bar(s.train()),
        "valid": bar(s.valid()),
        "values": s.latest().iter().map(|x| num(*x)).collect::<Vec<_>>(),
        "best": best,
        "history": history,
        "elapsed_ms": s.elapsed_ms(),
        "eta_ms": s.eta_ms(),
        "last_seq": s.last_seq(),
    });
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    Ok(axum::Json(v).into_response())
}

async fn history_csv(
    State(hub): State<AppState>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Rejection> {
    authorize(&hub, Role::Consumer, &headers, query.as_deref())?;
    let (_, s, _) = hub.get(id).ok_or_else(|| Rejection::unknown_training(id))?;
    let rows = hub.store.history(id).await;
    let mut csv = String::from("epoch,duration_ms");
    for m in s.metrics() {
        csv.push(',');
        csv.push_str(&m.replace([',', '"', '\n'], "_"));
    }
    csv.push('\n');
    for row in rows {
        let _ = write!(csv, "{},{}", row.epoch, row.duration_ms);
        for v in row.values {
            let _ = write!(csv, ",{v}");
        }
        csv.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
}

/// Splits a POST body: each frame preceded by its length, 2 bytes big-endian.
pub fn split_frames(mut body: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let [hi, lo, rest @ ..] = body else {
            return Err(format!("frame {}: length prefix cut short", out.len()));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if rest.len() < len {
            return Err(format!(
                "frame {}: {} bytes announced, {} left",
                out.len(),
                len,
                rest.len()
            ));
        }
        out.push(&rest[..len]);
        body = &rest[len..];
    }
    Ok(out)
}

async fn post_frames(
    State(hub): State<AppState>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, Rejection> {
    let result = post_frames_inner(&hub, id, &headers, query.as_deref(), &body).await;
    if let Err(r) = &result {
        hub.metrics.reject(r.reason);
    }
    result
}

async fn post_frames_inner(
    hub: &Hub,
    mut id: u32,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Response, Rejection> {
    authorize(hub, Role::Producer, headers, query)?;
    let parts = split_frames(body).map_err(|e| Rejection::new(Reason::Decode, e))?;
    let mut frames = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if part.len() > hub.config.max_frame_bytes {
            return Err(Rejection::new(
                Reason::TooLarge,
                format!("frame {i}: over --max-frame-bytes"),
            ));
        }
        let frame = Frame::decode(part)
            .map_err(|e| Rejection::new(Reason::Decode, format!("frame {i}: {e}")))?;
        frames.push(frame);
    }
    if frames.is_empty() {
        return Err(Rejection::new(Reason::BadRequest, "no frames in the body"));
    }
    {
        let mut buckets = hub.post_buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > hub.config.max_trainings.saturating_mul(4) {
            // Ids that never became trainings: forget them rather than grow.
            buckets.clear();
        }
        let bucket = buckets
            .entry(id)
            .or_insert_with(|| Bucket::new(hub.config.max_fps));
        if !bucket.try_take(frames.len()) {
            return Err(Rejection::new(
                Reason::RateLimited,
                format!(
                    "more than {} frames a second (--max-fps): nothing was applied, retry later",
                    hub.config.max_fps
                ),
            ));
        }
    }
    hub.metrics
        .frames_in
        .fetch_add(frames.len() as u64, Ordering::Relaxed);
    let (mut applied, mut duplicates, mut last_seq) = (0, 0, 0);
    let mut receipts = Vec::new();
    for (i, frame) in frames.into_iter().enumerate() {
        let done = |e: Rejection| {
            Rejection::new(
                e.reason,
                format!(
                    "frame {i}: {} ({i} frames before it were applied)",
                    e.message
                ),
            )
        };
        let ing = match frame.action {
            Action::Register(register) => {
                let ing = hub
                    .register(RegisterRequest {
                        training_id: if frame.training_id != 0 {
                            frame.training_id
                        } else {
                            id
                        },
                        seq: frame.seq,
                        register: Some(register),
                    })
                    .map_err(done)?;
                id = ing.training_id;
                ing
            }
            Action::Ack(_) | Action::Snapshot(_) | Action::Stalled => {
                return Err(done(Rejection::new(
                    Reason::BadRequest,
                    "ack, snapshot and stalled frames are sent by the relay only",
                )))
            }
            action => {
                if frame.training_id != 0 && frame.training_id != id {
                    return Err(done(Rejection::new(
                        Reason::BadRequest,
                        format!(
                            "frame names training {} but the path names {id}",
                            frame.training_id
                        ),
                    )));
                }
                let frame = Frame {
                    training_id: id,
                    seq: frame.seq,
                    action,
                };
                hub.apply(&frame, false).map_err(done)?
            }
        };
        if ing.applied == watchtrain_protocol::Applied::Duplicate {
            duplicates += 1;
        } else {
            applied += 1;
        }
        last_seq = ing.last_seq;
        receipts.extend(ing.receipt);
    }
    for receipt in receipts {
        match receipt.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Rejection::new(Reason::Storage, e)),
            Err(_) => return Err(Rejection::new(Reason::Storage, "store stopped")),
        }
    }
    Ok(axum::Json(json!({
        "training_id": id,
        "last_seq": last_seq,
        "applied": applied,
        "duplicates": duplicates,
    }))
    .into_response())
}

async fn metrics(State(hub): State<AppState>) -> Response {
    let m = &hub.metrics;
    let mut out = String::new();
    let g = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed);
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    out.push_str("# HELP watchtrain_connections Open WebSocket connections by kind.\n# TYPE watchtrain_connections gauge\n");
    for (kind, v) in [
        ("producer", g(&m.producers)),
        ("legacy_producer", g(&m.legacy_producers)),
        ("consumer", g(&m.consumers)),
        ("legacy_consumer", g(&m.legacy_consumers)),
    ] {
        let _ = writeln!(out, "watchtrain_connections{{kind=\"{kind}\"}} {v}");
    }
    for (name, help, v) in [
        (
            "watchtrain_frames_in_total",
            "Frames received from producers.",
            c(&m.frames_in),
        ),
        (
            "watchtrain_frames_out_total",
            "Frames sent to consumers, snapshots included.",
            c(&m.frames_out),
        ),
        (
            "watchtrain_frames_duplicate_total",
            "Frames whose seq was already applied.",
            c(&m.duplicates),
        ),
        (
            "watchtrain_resyncs_total",
            "Consumers resynced with a snapshot after falling behind.",
            c(&m.resyncs),
        ),
    ]
    .into_iter()
    .chain(hub.outlet.counters.totals())
    {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    out.push_str("# HELP watchtrain_frames_rejected_total Frames and requests refused, by reason.\n# TYPE watchtrain_frames_rejected_total counter\n");
    for reason in Reason::ALL {
        let _ = writeln!(
            out,
            "watchtrain_frames_rejected_total{{reason=\"{}\"}} {}",
            reason.as_str(),
            c(&m.rejected[reason as usize])
        );
    }
    let _ = writeln!(
        out,
        "# HELP watchtrain_trainings Trainings held.\n# TYPE watchtrain_trainings gauge\nwatchtrain_trainings {}",
        hub.training_count()
    );
    hub.outlet.counters.write_gauges(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_queries() {
        assert_eq!(query_token("a=1&token=s%20e+cret"), Some("s e cret".into()));
        assert_eq!(query_token("token=abc%"), Some("abc%".into()));
        assert_eq!(query_token("token=%zz"), Some("%zz".into()));
        assert_eq!(query_token("x=1"), None);
    }

    #[test]
    fn post_bodies_split() {
        assert_eq!(
            split_frames(&[0, 2, 9, 9, 0, 1, 7]).unwrap(),
            vec![&[9u8, 9][..], &[7][..]]
        );
        assert!(split_frames(&[0, 3, 9]).is_err());
        assert!(split_frames(&[0]).is_err());
        assert!(split_frames(&[]).unwrap().is_empty());
    }
}
