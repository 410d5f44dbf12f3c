//! `GET /v1/trainings/{id}/face.png?w=336&h=336`: the watch face of a training,
//! rendered natively by `watchtrain-watch` (the same renderer as the watch and
//! the browser), for anything that can only show images: a chat bot, a widget,
//! another watch. Width and height default to 336 and are clamped by the
//! layout to 160x120..4096x4096; a size over [`MAX_PIXELS`] is refused.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use watchtrain_watch::{render, Screen, Theme};

use crate::error::{Reason, Rejection};
use crate::http::{authorize, AppState, Role};

/// Largest face in pixels (w x h), so one request cannot make the relay allocate much.
pub const MAX_PIXELS: u32 = 2048 * 2048;

/// The face route, merged into the relay's router.
pub fn face_routes() -> Router<AppState> {
    Router::new().route("/v1/trainings/{id}/face.png", get(face_png))
}

/// `w` and `h` from the query, 336 when absent.
fn size(query: Option<&str>) -> Result<(u32, u32), Rejection> {
    let (mut w, mut h) = (336u32, 336u32);
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "w" => &mut w,
            "h" => &mut h,
            _ => continue,
        };
        *slot = value.parse().map_err(|_| {
            Rejection::new(
                Reason::BadRequest,
                format!("{key}={value:?} is not a pixel count"),
            )
        })?;
    }
    if w == 0 || h == 0 || w.saturating_mul(h) > MAX_PIXELS {
        return Err(Rejection::new(
            Reason::BadRequest,
            format!("face size {w}x{h} is out of range (at most {MAX_PIXELS} pixels)"),
        ));
    }
    Ok((w, h))
}

async fn face_png(
    State(hub): State<AppState>,
    Path(id): Path<u32>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Rejection> {
    authorize(&hub, Role::Consumer, &headers, query.as_deref())?;
    let (w, h) = size(query.as_deref())?;
    let (_, state, _) = hub.get(id).ok_or_else(|| Rejection::unknown_training(id))?;
    // Rendering and PNG compression take a few milliseconds: off the async workers.
    let png = tokio::task::spawn_blocking(move || {
        render(&state, Screen::new(w, h), &Theme::dark()).to_png()
    })
    .await
    .map_err(|e| Rejection::new(Reason::BadRequest, format!("render failed: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response())
}
