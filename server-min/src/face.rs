//! `GET /v1/trainings/{id}/face.png?w=336&h=336`: the watch face of a training,
//! rendered natively by `watchtrain-watch` (the same renderer as the watch and
//! the browser), for anything that can only show images: a chat bot, a widget,
//! another watch. Width and height default to 336; each must be within the
//! layout's range and the area at most [`MAX_PIXELS`]. Renders run a few at a
//! time, and the last few faces are kept, keyed by training, size and state version.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use tokio::sync::Semaphore;
use watchtrain_watch::{render, Screen, Theme};

use crate::error::{Reason, Rejection};
use crate::guard::{Authorized, Consume, TrainingId};
use crate::hub::AppState;

/// Largest face in pixels (w x h), so one request cannot make the relay allocate much.
pub const MAX_PIXELS: u32 = 2048 * 2048;
/// Widths the layout draws (it would clamp anything else).
const WIDTHS: std::ops::RangeInclusive<u32> = 160..=4096;
/// Heights the layout draws.
const HEIGHTS: std::ops::RangeInclusive<u32> = 120..=4096;
/// Renders at once: each holds a framebuffer of up to 16 MiB.
const RENDERS: usize = 2;
/// Faces kept for repeated requests (a dashboard polling, a chat preview).
const CACHED: usize = 8;

/// (training, width, height, state version).
type Key = (u32, u32, u32, u64);

/// The render slots and the small cache of recent faces.
struct Faces {
    /// Bounds concurrent renders (and so their memory).
    renders: Semaphore,
    /// The most recent faces, newest last.
    cache: Mutex<VecDeque<(Key, Bytes)>>,
}

impl Faces {
    fn cached(&self, key: Key) -> Option<Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, png)| png.clone())
    }

    fn keep(&self, key: Key, png: Bytes) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(k, _)| *k != key);
        if cache.len() >= CACHED {
            cache.pop_front();
        }
        cache.push_back((key, png));
    }
}

/// The face route, merged into the relay's router.
pub fn face_routes() -> Router<AppState> {
    let faces = Arc::new(Faces {
        renders: Semaphore::new(RENDERS),
        cache: Mutex::new(VecDeque::new()),
    });
    Router::new()
        .route("/v1/trainings/{id}/face.png", get(face_png))
        .layer(Extension(faces))
}

/// `w` and `h` of the query.
#[derive(Deserialize)]
struct Size {
    /// Width in pixels.
    w: Option<String>,
    /// Height in pixels.
    h: Option<String>,
}

/// Parses and checks the size: out of range is an error, never a silent clamp.
fn size(query: &Size) -> Result<(u32, u32), Rejection> {
    let dimension = |key: &str, value: &Option<String>, range: &std::ops::RangeInclusive<u32>| {
        let Some(value) = value else { return Ok(336) };
        value
            .parse::<u32>()
            .ok()
            .filter(|v| range.contains(v))
            .ok_or_else(|| {
                let message = format!(
                    "{key}={value:?} is not a pixel count in {}..={}",
                    range.start(),
                    range.end()
                );
                Rejection::new(Reason::BadRequest, message)
            })
    };
    let w = dimension("w", &query.w, &WIDTHS)?;
    let h = dimension("h", &query.h, &HEIGHTS)?;
    if w.saturating_mul(h) > MAX_PIXELS {
        return Err(Rejection::new(
            Reason::BadRequest,
            format!("face size {w}x{h} is over {MAX_PIXELS} pixels"),
        ));
    }
    Ok((w, h))
}

async fn face_png(
    _: Authorized<Consume>,
    State(hub): State<AppState>,
    Extension(faces): Extension<Arc<Faces>>,
    TrainingId(id): TrainingId,
    Query(query): Query<Size>,
) -> Result<Response, Rejection> {
    let (w, h) = size(&query)?;
    let (state, _, version) = hub.get(id).ok_or_else(|| Rejection::unknown_training(id))?;
    let key = (id, w, h, version);
    let png = match faces.cached(key) {
        Some(png) => png,
        None => {
            let _slot = faces
                .renders
                .acquire()
                .await
                .map_err(|_| Rejection::new(Reason::Internal, "render slots closed"))?;
            // The same face may have been rendered while this request waited for a slot.
            if let Some(png) = faces.cached(key) {
                return Ok(png_response(png));
            }
            // Rendering and PNG compression take milliseconds: off the async workers.
            let png = tokio::task::spawn_blocking(move || {
                render(&state, Screen::new(w, h), &Theme::dark()).to_png()
            })
            .await
            .map_err(|e| Rejection::new(Reason::Internal, format!("render failed: {e}")))?;
            let png = Bytes::from(png);
            faces.keep(key, png.clone());
            png
        }
    };
    Ok(png_response(png))
}

fn png_response(png: Bytes) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "image/png"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, png).into_response()
}
