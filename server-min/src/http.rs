//! The routes: REST, WebSocket upgrades (new and legacy paths), the JSON
//! endpoints for shell scripts, metrics, the dashboard.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::{stream, StreamExt};
use include_dir::{include_dir, Dir};
use serde_json::{json, Value};
use watchtrain_protocol::{
    truncated, Action, Applied, Finished, Frame, Goal, Goals, MetricName, Outcome, Register, Stats,
    TrainingState, Values,
};

use crate::error::{Reason, Rejection};
use crate::guard::{Authorized, Consume, Produce, TrainingId};
use crate::hub::{durable, AppState, Hub, Ingested, RegisterRequest, Slot, Writer};
use crate::serve::ConnectionInfo;
use crate::store::{StatsRow, HISTORY_PAGE};
use crate::ws::{self, Feed, ProducerKind};

/// The whole router: REST and WebSocket API, the ancestor's paths, metrics and
/// the dashboard, behind the `Host` check. Other parts add their routes by
/// merging another `Router<AppState>` here.
pub fn router(hub: AppState) -> Router {
    Router::new()
        .merge(api_routes())
        .merge(legacy_routes())
        .merge(ops_routes())
        .merge(crate::face::face_routes())
        .merge(dashboard_routes())
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            crate::guard::check_host,
        ))
        .with_state(hub)
}

/// `/v1/...`: the binary protocol over WebSocket, HTTP POST and JSON views.
fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/produce", get(produce::<false>))
        .route("/v1/watch", get(shared_watch::<false, false>))
        .route("/v1/trainings", get(list))
        .route("/v1/trainings/{id}", get(one))
        .route("/v1/trainings/{id}/watch", get(watch_one))
        .route("/v1/trainings/{id}/frames", post(post_frames))
        .route("/v1/trainings/{id}/stats", post(json_stats))
        .route("/v1/trainings/{id}/finish", post(json_finish))
        .route("/v1/trainings/{id}/history.csv", get(history_csv))
}

/// The ancestor's WebSocket paths, unchanged.
fn legacy_routes() -> Router<AppState> {
    Router::new()
        .route("/ws/watchtrain/producer/{client_id}", get(produce::<true>))
        .route(
            "/ws/watchtrain/watch/{client_id}",
            get(shared_watch::<true, false>),
        )
        .route(
            "/ws/watchtrain/verbose/{client_id}",
            get(shared_watch::<true, true>),
        )
}

/// Health and Prometheus metrics.
fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// The browser dashboard: files of `server-min/static/`, embedded at build time.
fn dashboard_routes() -> Router<AppState> {
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

/// `/healthz`: 503 while database writes fail (they are retried; nothing acknowledged is lost).
async fn healthz(State(hub): State<AppState>) -> Response {
    if hub.store.failing() {
        Rejection::new(Reason::Storage, "database writes fail (retrying)").into_response()
    } else {
        "ok\n".into_response()
    }
}

/// Read buffer of a WebSocket: messages are small (the default is 128 KiB per connection).
const WS_READ_BUFFER: usize = 4 * 1024;
/// Bytes gathered before a write: enough for a batch of frames, small for 1,000 consumers.
const WS_WRITE_BUFFER: usize = 8 * 1024;

/// Sets the WebSocket's limits and runs `session` on it once upgraded; the
/// session keeps the connection's slot and is tracked for shutdown.
fn upgrade<F, Fut>(
    hub: &AppState,
    ws: WebSocketUpgrade,
    conn: Option<Extension<ConnectionInfo>>,
    session: F,
) -> Response
where
    F: FnOnce(axum::extract::ws::WebSocket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let sessions = hub.sessions.clone();
    ws.max_message_size(hub.config.max_frame_bytes)
        .max_frame_size(hub.config.max_frame_bytes)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            sessions.track_future(async move {
                session(socket).await;
                drop(conn);
            })
        })
}

/// `/v1/produce` (`LEGACY` false) and the legacy producer path.
async fn produce<const LEGACY: bool>(
    _: Authorized<Produce>,
    State(hub): State<AppState>,
    conn: Option<Extension<ConnectionInfo>>,
    ws: WebSocketUpgrade,
) -> Response {
    let kind = if LEGACY {
        ProducerKind::Legacy
    } else {
        ProducerKind::Binary
    };
    upgrade(&hub.clone(), ws, conn, move |socket| async move {
        let (sink, stream) = socket.split();
        ws::produce(hub, sink, stream, kind).await;
    })
}

async fn watch_one(
    _: Authorized<Consume>,
    State(hub): State<AppState>,
    TrainingId(id): TrainingId,
    conn: Option<Extension<ConnectionInfo>>,
    ws: WebSocketUpgrade,
) -> Result<Response, Rejection> {
    let (snapshot, rx) = hub
        .subscribe(id, true)
        .inspect_err(|r| hub.metrics.reject(r.reason))?;
    let slot = Slot {
        hub: hub.clone(),
        training: Some(id),
        legacy: false,
    };
    Ok(upgrade(&hub.clone(), ws, conn, move |socket| async move {
        let (sink, stream) = socket.split();
        let feed = Feed::Training { id, snapshot, rx };
        ws::consume(hub, sink, stream, feed).await;
        drop(slot);
    }))
}

/// `/v1/watch` (`LEGACY` false) and the legacy consumer paths (`VERBOSE`: the
/// verbose one, which also gets logs and registrations).
async fn shared_watch<const LEGACY: bool, const VERBOSE: bool>(
    _: Authorized<Consume>,
    State(hub): State<AppState>,
    conn: Option<Extension<ConnectionInfo>>,
    ws: WebSocketUpgrade,
) -> Result<Response, Rejection> {
    let (legacy, verbose) = (LEGACY, LEGACY.then_some(VERBOSE));
    hub.join_shared(legacy)
        .inspect_err(|r| hub.metrics.reject(r.reason))?;
    let slot = Slot {
        hub: hub.clone(),
        training: None,
        legacy,
    };
    Ok(upgrade(&hub.clone(), ws, conn, move |socket| async move {
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

/// A training in the list. Its run key proves ownership, so it is never shown.
fn summary(id: u32, s: &TrainingState, updated_ms: u64) -> Value {
    let latest: serde_json::Map<String, Value> = s
        .metrics()
        .iter()
        .zip(s.latest().iter())
        .map(|(name, v)| (name.to_string(), num(*v)))
        .collect();
    json!({
        "id": id,
        "name": s.name().as_str(),
        "status": s.status().as_str(),
        "epoch": s.epoch(),
        "epochs": s.epochs(),
        "latest_epoch": s.latest_epoch(),
        "latest": latest,
        "updated_ms": updated_ms,
    })
}

async fn list(_: Authorized<Consume>, State(hub): State<AppState>) -> Response {
    let list: Vec<Value> = hub
        .list()
        .iter()
        .map(|(id, s, ms)| summary(*id, s, *ms))
        .collect();
    Json(list).into_response()
}

async fn one(
    _: Authorized<Consume>,
    State(hub): State<AppState>,
    TrainingId(id): TrainingId,
) -> Result<Response, Rejection> {
    let (s, ms, _) = hub.get(id).ok_or_else(|| Rejection::unknown_training(id))?;
    let mut v = summary(id, &s, ms);
    let bar = |b: watchtrain_protocol::Bar| json!({"done": b.done, "total": b.total});
    let history: Vec<Value> = s
        .history_rows()
        .map(|(epoch, row)| json!({"epoch": epoch, "values": row.iter().map(|x| num(*x)).collect::<Vec<_>>()}))
        .collect();
    // Aligned to the metrics; `null` for a metric without a goal (a learning rate) or a value yet.
    let best: Vec<Value> = (0..s.metrics().len())
        .map(|i| {
            s.best_of(i).map_or(
                Value::Null,
                |b| json!({"epoch": b.epoch, "value": num(b.value)}),
            )
        })
        .collect();
    let extra = json!({
        "metrics": s.metrics().iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "reason": s.reason().as_str(),
        "phase": match s.phase() { watchtrain_protocol::Phase::Train => "train", watchtrain_protocol::Phase::Valid => "valid" },
        "train": bar(s.train()),
        "valid": bar(s.valid()),
        "values": s.latest().iter().map(|x| num(*x)).collect::<Vec<_>>(),
        "best": best,
        "goals": s.goals().iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "history": history,
        "elapsed_ms": s.elapsed_ms(),
        "eta_ms": s.eta_ms(),
        "last_seq": s.last_seq(),
    });
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    Ok(Json(v).into_response())
}

/// One CSV cell (RFC 4180). A spreadsheet runs a cell that starts with
/// `=`, `+`, `-`, `@`, a tab or a CR as a formula: those get a leading `'`.
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_rows(rows: &[StatsRow]) -> String {
    let mut out = String::new();
    for row in rows {
        let _ = write!(out, "{},{}", row.epoch, row.duration_ms);
        for v in &row.values {
            let _ = write!(out, ",{v}");
        }
        out.push('\n');
    }
    out
}

/// A page of stats rows, or an error when the database does not answer in time.
async fn history_page(hub: &Hub, id: u32, after: Option<u32>) -> Result<Vec<StatsRow>, Rejection> {
    let read = hub.store.history_page(id, after);
    match tokio::time::timeout(hub.config.request_timeout, read).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(Rejection::new(Reason::Storage, e.to_string())),
        Err(_) => Err(Rejection::new(
            Reason::Storage,
            "the database did not answer in time (busy or failing): retry later",
        )),
    }
}

/// Every stored epoch, streamed a page at a time (one page in memory per download).
async fn history_csv(
    _: Authorized<Consume>,
    State(hub): State<AppState>,
    TrainingId(id): TrainingId,
) -> Result<Response, Rejection> {
    let (s, _, _) = hub.get(id).ok_or_else(|| Rejection::unknown_training(id))?;
    let first = history_page(&hub, id, None).await?;
    let mut head = String::from("epoch,duration_ms");
    for m in s.metrics() {
        head.push(',');
        head.push_str(&csv_cell(m));
    }
    head.push('\n');
    let pages = stream::unfold(Some(first), move |page| {
        let hub = hub.clone();
        async move {
            let page = page?;
            let last = page.last()?.epoch;
            let next = if page.len() < HISTORY_PAGE {
                Some(Vec::new())
            } else {
                match history_page(&hub, id, Some(last)).await {
                    Ok(rows) => Some(rows),
                    // An error mid-way cuts the download: never a silently short file.
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                }
            };
            Some((Ok(csv_rows(&page)), next))
        }
    });
    let body = stream::once(async { Ok(head) }).chain(pages);
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Reads a body of at most `limit` bytes within `--request-timeout`. A body
/// over the limit is still read (and dropped) until it ends or the timeout,
/// so the client reads the 413 instead of a reset connection.
async fn read_body(hub: &Hub, body: Body, limit: usize) -> Result<Bytes, Rejection> {
    let deadline = tokio::time::Instant::now() + hub.config.request_timeout;
    let mut chunks = body.into_data_stream();
    let mut out = Vec::new();
    let mut over = false;
    loop {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Err(_) if !over => {
                return Err(Rejection::new(
                    Reason::Timeout,
                    "the body did not arrive within --request-timeout",
                ))
            }
            Ok(None) | Err(_) => break,
            Ok(Some(Err(e))) => return Err(Rejection::new(Reason::BadRequest, e.to_string())),
            Ok(Some(Ok(chunk))) => {
                if !over && out.len() + chunk.len() > limit {
                    over = true;
                    out = Vec::new();
                }
                if !over {
                    out.extend_from_slice(&chunk);
                }
            }
        }
    }
    if over {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!("the body is over {limit} bytes"),
        ));
    }
    Ok(out.into())
}

/// Binary POSTs are `application/octet-stream`: a web page cannot send that
/// without a CORS preflight, which the relay never answers.
fn require_octet_stream(headers: &HeaderMap) -> Result<(), Rejection> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if media_type.is_some_and(|m| m.eq_ignore_ascii_case("application/octet-stream")) {
        Ok(())
    } else {
        Err(Rejection::new(
            Reason::MediaType,
            "frames are posted as Content-Type: application/octet-stream",
        ))
    }
}

/// Counts the request against `--max-fps` for its address and its training.
fn take_rate(
    hub: &Hub,
    conn: &Option<Extension<ConnectionInfo>>,
    id: u32,
    frames: usize,
) -> Result<(), Rejection> {
    let addr = conn.as_ref().map(|c| c.peer.ip());
    if hub.post_limits.try_take(addr, id, frames) {
        return Ok(());
    }
    Err(Rejection::new(
        Reason::RateLimited,
        format!(
            "more than {} frames a second (--max-fps): nothing was applied, retry later",
            hub.config.max_fps
        ),
    ))
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

/// What a POST of frames did.
struct Posted {
    /// The training (the registered one when the body registers).
    training_id: u32,
    /// Its `last_seq` after the last frame.
    last_seq: u32,
    /// Frames that changed the state.
    applied: u32,
    /// Frames already applied before.
    duplicates: u32,
}

async fn post_frames(
    _: Authorized<Produce>,
    State(hub): State<AppState>,
    TrainingId(id): TrainingId,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Rejection> {
    let result = async {
        require_octet_stream(&headers)?;
        let limit = hub.config.max_frame_bytes.saturating_mul(64);
        let body = read_body(&hub, body, limit).await?;
        let frames = decode_frames(&hub, &body)?;
        take_rate(&hub, &conn, id, frames.len())?;
        hub.metrics
            .frames_in
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        ingest_frames(&hub, id, frames).await
    }
    .await;
    let posted = result.inspect_err(|r| hub.metrics.reject(r.reason))?;
    Ok(Json(json!({
        "training_id": posted.training_id,
        "last_seq": posted.last_seq,
        "applied": posted.applied,
        "duplicates": posted.duplicates,
    }))
    .into_response())
}

/// The frames of a POST body, all decoded before any is applied.
fn decode_frames(hub: &Hub, body: &[u8]) -> Result<Vec<Frame>, Rejection> {
    let parts = split_frames(body).map_err(|e| Rejection::new(Reason::Decode, e))?;
    if parts.is_empty() {
        return Err(Rejection::new(Reason::BadRequest, "no frames in the body"));
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if part.len() > hub.config.max_frame_bytes {
                return Err(Rejection::new(
                    Reason::TooLarge,
                    format!("frame {i}: over --max-frame-bytes"),
                ));
            }
            Frame::decode(part)
                .map_err(|e| Rejection::new(Reason::Decode, format!("frame {i}: {e}")))
        })
        .collect()
}

/// Applies the frames in order; a registration in the body makes the request
/// the owner of its training. Answers once every write is durable.
async fn ingest_frames(hub: &Hub, mut id: u32, frames: Vec<Frame>) -> Result<Posted, Rejection> {
    let mut owned = None;
    let mut posted = Posted {
        training_id: id,
        last_seq: 0,
        applied: 0,
        duplicates: 0,
    };
    let mut receipts = Vec::new();
    for (i, frame) in frames.into_iter().enumerate() {
        let at = |e: Rejection| {
            let message = format!(
                "frame {i}: {} ({i} frames before it were applied)",
                e.message
            );
            Rejection::new(e.reason, message)
        };
        let permit = hub.store.permit().await;
        let ing = match frame.action {
            Action::Register(register) => {
                let request = RegisterRequest {
                    training_id: if frame.training_id != 0 {
                        frame.training_id
                    } else {
                        id
                    },
                    seq: frame.seq,
                    register: Some(register),
                };
                let ing = hub.register(request, permit).map_err(at)?;
                id = ing.training_id;
                owned = Some(id);
                ing
            }
            Action::Ack(_) | Action::Snapshot(_) | Action::Stalled => {
                return Err(at(Rejection::new(
                    Reason::BadRequest,
                    "ack, snapshot and stalled frames are sent by the relay only",
                )))
            }
            action => {
                if frame.training_id != 0 && frame.training_id != id {
                    return Err(at(Rejection::new(
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
                let writer = Writer {
                    owns: owned == Some(id),
                    create_unknown: false,
                };
                hub.apply(&frame, writer, permit).map_err(at)?
            }
        };
        if ing.applied == Applied::Duplicate {
            posted.duplicates += 1;
        } else {
            posted.applied += 1;
        }
        posted.training_id = ing.training_id;
        posted.last_seq = ing.last_seq;
        receipts.extend(ing.receipt);
    }
    for receipt in receipts {
        durable(Some(receipt)).await?;
    }
    Ok(posted)
}

/// The run key of a training made by the JSON endpoints: its name is its key,
/// so whoever knows the name may write (set `--token` to restrict publishing).
fn json_run_key(name: &str) -> String {
    format!("json:{name}")
}

/// The JSON body of the script endpoints: an object, or nothing.
async fn json_object(hub: &Hub, body: Body) -> Result<serde_json::Map<String, Value>, Rejection> {
    let body = read_body(hub, body, hub.config.max_frame_bytes).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    serde_json::from_slice(&body)
        .map_err(|e| Rejection::new(Reason::Json, format!("the body is not a JSON object: {e}")))
}

/// A whole-number field of a script's JSON.
fn json_u32(object: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u32>, Rejection> {
    let Some(value) = object.get(key) else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| Rejection::new(Reason::BadRequest, format!("{key:?} is a whole number")))
}

/// The goals of a script's `"goals": {"score": "max", "lr": "none"}`, the
/// other metrics' from their names; empty without `"goals"`, so that the relay
/// keeps the goals the training has.
fn json_goals(
    object: &serde_json::Map<String, Value>,
    metrics: &[MetricName],
) -> Result<Goals, Rejection> {
    let Some(goals) = object.get("goals") else {
        return Ok(Goals::new());
    };
    let bad = |why: String| Rejection::new(Reason::BadRequest, why);
    let goals = goals
        .as_object()
        .ok_or_else(|| bad("\"goals\" is an object of metric names".into()))?;
    let mut declared = Vec::new();
    for (name, goal) in goals {
        if !metrics.iter().any(|m| m == name.as_str()) {
            return Err(bad(format!(
                "a goal for {name:?}, which is not a metric here"
            )));
        }
        let goal = goal.as_str().unwrap_or("").parse::<Goal>();
        declared.push((name, goal.map_err(|e| bad(format!("{name:?}: {e}")))?));
    }
    Ok(Goal::by_name(metrics, &declared))
}

/// A metric value of a script's JSON: a number, `null` (NaN) or a numeric string ("NaN", "inf").
fn json_value(key: &str, value: &Value) -> Result<f32, Rejection> {
    let not_a_number = || Rejection::new(Reason::BadRequest, format!("{key:?} is not a number"));
    match value {
        Value::Number(n) => n.as_f64().map(|v| v as f32).ok_or_else(not_a_number),
        Value::Null => Ok(f32::NAN),
        Value::String(s) => s.trim().parse().map_err(|_| not_a_number()),
        _ => Err(not_a_number()),
    }
}

/// `POST /v1/trainings/{name}/stats` with `{"epoch": 1, "loss": 0.3, ...}`: it
/// registers the training (metrics in name order, `epochs` and `goals` if given) and
/// becomes a stats frame, answered once it is durable.
async fn json_stats(
    _: Authorized<Produce>,
    State(hub): State<AppState>,
    Path(name): Path<String>,
    conn: Option<Extension<ConnectionInfo>>,
    body: Body,
) -> Result<Response, Rejection> {
    let result = async {
        let object = json_object(&hub, body).await?;
        let epoch = json_u32(&object, "epoch")?
            .ok_or_else(|| Rejection::new(Reason::BadRequest, "\"epoch\" is missing"))?;
        let too_many = || Rejection::new(Reason::TooLarge, "too many metrics");
        let mut metrics = watchtrain_protocol::MetricNames::new();
        let mut values = Vec::new();
        for (key, value) in &object {
            if !matches!(key.as_str(), "epoch" | "epochs" | "duration_ms" | "goals") {
                metrics.push(truncated(key)).map_err(|_| too_many())?;
                values.push(json_value(key, value)?);
            }
        }
        let stats = Stats {
            epoch,
            duration_ms: json_u32(&object, "duration_ms")?.unwrap_or(0),
            values: Values::from_slice(&values).map_err(|_| too_many())?,
        };
        let known = hub.find_by_key(&json_run_key(&name)).unwrap_or(0);
        take_rate(&hub, &conn, known, 2)?;
        let register = Register {
            name: truncated(&name),
            run_key: truncated(&json_run_key(&name)),
            epochs: json_u32(&object, "epochs")?.unwrap_or(0),
            batches: 0,
            goals: json_goals(&object, &metrics)?,
            metrics,
        };
        let request = RegisterRequest {
            training_id: 0,
            seq: 0,
            register: Some(register),
        };
        let ing = hub.register(request, hub.store.permit().await)?;
        durable(ing.receipt).await?;
        let ing = apply_owned(&hub, ing.training_id, Action::Stats(stats)).await?;
        Ok::<_, Rejection>(
            Json(json!({"training_id": ing.training_id, "epoch": epoch})).into_response(),
        )
    }
    .await;
    result.inspect_err(|r| hub.metrics.reject(r.reason))
}

/// `POST /v1/trainings/{name}/finish`, optionally with
/// `{"outcome": "completed" | "failed" | "cancelled", "reason": "..."}`.
async fn json_finish(
    _: Authorized<Produce>,
    State(hub): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, Rejection> {
    let result = async {
        let object = json_object(&hub, body).await?;
        let outcome = match object.get("outcome").and_then(Value::as_str) {
            None | Some("completed") => Outcome::Completed,
            Some("failed") => Outcome::Failed,
            Some("cancelled") => Outcome::Cancelled,
            Some(other) => {
                return Err(Rejection::new(
                    Reason::BadRequest,
                    format!("outcome {other:?} is not completed, failed or cancelled"),
                ))
            }
        };
        let reason = object.get("reason").and_then(Value::as_str).unwrap_or("");
        let id = hub.find_by_key(&json_run_key(&name)).ok_or_else(|| {
            let message = format!("no training {name:?}: send its stats first");
            Rejection::new(Reason::UnknownTraining, message)
        })?;
        let finished = Finished {
            outcome,
            reason: truncated(reason),
        };
        let ing = apply_owned(&hub, id, Action::Finished(finished)).await?;
        Ok::<_, Rejection>(Json(json!({"training_id": ing.training_id})).into_response())
    }
    .await;
    result.inspect_err(|r| hub.metrics.reject(r.reason))
}

/// Applies an unsequenced frame to a training the caller owns; waits until it is durable.
async fn apply_owned(hub: &Hub, id: u32, action: Action) -> Result<Ingested, Rejection> {
    let frame = Frame {
        training_id: id,
        seq: 0,
        action,
    };
    let writer = Writer {
        owns: true,
        create_unknown: false,
    };
    let mut ing = hub.apply(&frame, writer, hub.store.permit().await)?;
    durable(ing.receipt.take()).await?;
    Ok(ing)
}

/// Every counter of `/metrics` as (name, help, value): the hub's and the outbound ones.
fn counters(hub: &Hub) -> [(&'static str, &'static str, u64); 9] {
    let (m, o) = (&hub.metrics, &hub.outlet.counters);
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    [
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
        (
            "watchtrain_notifications_sent_total",
            "Notifications (--notify) a receiver accepted.",
            c(&o.sent),
        ),
        (
            "watchtrain_notifications_given_up_total",
            "Notifications (--notify) given up after every retry or with a full queue.",
            c(&o.given_up),
        ),
        (
            "watchtrain_outbound_lagged_total",
            "Training changes the notifier or the MQTT bridge missed by falling behind.",
            c(&o.lagged),
        ),
        (
            "watchtrain_mqtt_published_total",
            "MQTT messages (--mqtt) handed to the client.",
            c(&o.mqtt_published),
        ),
        (
            "watchtrain_mqtt_dropped_total",
            "MQTT messages (--mqtt) dropped while the broker could not take them.",
            c(&o.mqtt_dropped),
        ),
    ]
}

async fn metrics(State(hub): State<AppState>) -> Response {
    let (m, o) = (&hub.metrics, &hub.outlet.counters);
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
    for (name, help, v) in counters(&hub) {
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
        "# HELP watchtrain_store_failures_total Database write attempts that failed (each is retried).\n# TYPE watchtrain_store_failures_total counter\nwatchtrain_store_failures_total {}\n# HELP watchtrain_store_failing 1 while database writes fail.\n# TYPE watchtrain_store_failing gauge\nwatchtrain_store_failing {}",
        hub.store.failures(),
        u8::from(hub.store.failing())
    );
    let _ = writeln!(
        out,
        "# HELP watchtrain_trainings Trainings held.\n# TYPE watchtrain_trainings gauge\nwatchtrain_trainings {}",
        hub.training_count()
    );
    let _ = writeln!(
        out,
        "# HELP watchtrain_mqtt_connected 1 while the MQTT bridge is connected.\n# TYPE watchtrain_mqtt_connected gauge\nwatchtrain_mqtt_connected {}",
        g(&o.mqtt_connected)
    );
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
    fn csv_cells_are_rfc_4180_and_never_formulas() {
        assert_eq!(csv_cell("loss"), "loss");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("a\rb"), "\"a\rb\"");
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
