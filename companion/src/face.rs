//! The face painted on the watch: a [`TrainingState`] laid out on the pool.
//!
//! Until the shared watch face (`watchtrain-watch`'s layout and vector
//! backend) is wired in, this is the companion's own small layout for a
//! 336x336 screen (Versa 3, Sense): name, status, an epoch bar and a batch
//! bar, one normalised curve per metric (up to four), the latest values and
//! the time left.

use watchtrain_protocol::{Phase, Status, TrainingState};

use crate::pool::{Anchor, Line, Pool, Rect, Text, LINES};

/// Screen width of the Versa 3 / Sense.
pub const WIDTH: i32 = 336;
/// Chart area: left, top, right, bottom.
pub const CHART: (i32, i32, i32, i32) = (40, 120, 296, 236);
/// Progress bars: left edge and full width.
pub const BAR: (i32, i32) = (40, 256);
/// Curves drawn at most.
pub const MAX_CURVES: usize = 4;
/// Curve colours, one per metric.
pub const CURVE_COLORS: [u32; MAX_CURVES] = [0x42a5f5, 0xffa726, 0x66bb6a, 0xab47bc];

const WHITE: u32 = 0xffffff;
const DIM: u32 = 0x9e9e9e;
const TRACK: u32 = 0x303030;
const EPOCH: u32 = 0x1e88e5;
const TRAIN: u32 = 0x43a047;
const VALID: u32 = 0xfb8c00;
const AXIS: u32 = 0x616161;
const RED: u32 = 0xe53935;

/// The width in pixels of a bar `done` of `total` full, out of `full` pixels.
pub fn bar_width(done: u32, total: u32, full: i32) -> i32 {
    if total == 0 {
        return 0;
    }
    let done = done.min(total);
    ((i64::from(done) * i64::from(full)) / i64::from(total)) as i32
}

/// A number as the face prints it: 4 significant digits, `NaN`, `inf`, `-inf`.
pub fn value_text(v: f32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = v.abs();
    if a != 0.0 && !(0.001..10_000.0).contains(&a) {
        format!("{:.2e}", v)
    } else if a >= 100.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.4}", v)
    }
}

/// A duration as `1h02m`, `3m05s` or `42s`.
pub fn duration_text(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}s", s)
    }
}

/// The points of metric `m`'s curve: the kept history rows, then the latest
/// epoch when it is newer. Non-finite values are gaps (`None`).
pub fn curve_points(state: &TrainingState, m: usize) -> Vec<(u32, Option<f32>)> {
    let mut points: Vec<(u32, Option<f32>)> = state
        .history_rows()
        .map(|(epoch, row)| (epoch, row.get(m).copied().filter(|v| v.is_finite())))
        .collect();
    if let Some(latest) = state.latest_epoch {
        if points.last().is_none_or(|(e, _)| *e < latest) {
            points.push((
                latest,
                state.latest.get(m).copied().filter(|v| v.is_finite()),
            ));
        }
    }
    points
}

/// The chart's pixel coordinates of metric `m`: x by epoch over the planned
/// epochs (or the epochs seen), y normalised to the metric's own range.
pub fn curve_pixels(state: &TrainingState, m: usize) -> Vec<Option<(i32, i32)>> {
    let points = curve_points(state, m);
    let (left, top, right, bottom) = CHART;
    let last_epoch = points.last().map_or(0, |(e, _)| *e);
    let span = state.epochs.saturating_sub(1).max(last_epoch).max(1);
    let finite = points.iter().filter_map(|(_, v)| *v);
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    points
        .iter()
        .map(|(epoch, v)| {
            v.map(|v| {
                let x =
                    left + ((i64::from(*epoch) * i64::from(right - left)) / i64::from(span)) as i32;
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                let y = bottom - (t * (bottom - top) as f32).round() as i32;
                (x, y)
            })
        })
        .collect()
}

/// Lays `state` out on a fresh pool. `None` paints the "no training" face.
pub fn face(state: Option<&TrainingState>) -> Pool {
    let mut pool = Pool::new();
    let text = |pool: &mut Pool, x, y, size, anchor, color, s: String| {
        pool.text(Text {
            x,
            y,
            size,
            anchor,
            color,
            text: s,
        })
    };
    let Some(state) = state else {
        text(
            &mut pool,
            WIDTH / 2,
            168,
            24,
            Anchor::Middle,
            DIM,
            "no training yet".into(),
        );
        return pool;
    };
    let name = if state.name.is_empty() {
        "training"
    } else {
        state.name.as_str()
    };
    text(
        &mut pool,
        WIDTH / 2,
        48,
        24,
        Anchor::Middle,
        WHITE,
        name.into(),
    );
    let status_color = match state.status {
        Status::Failed | Status::Stalled => RED,
        Status::Completed => TRAIN,
        _ => DIM,
    };
    let epochs = if state.epochs == 0 {
        "?".to_string()
    } else {
        state.epochs.to_string()
    };
    let line2 = format!(
        "epoch {}/{} {}",
        state.epoch + 1,
        epochs,
        state.status.as_str()
    );
    text(
        &mut pool,
        WIDTH / 2,
        76,
        18,
        Anchor::Middle,
        status_color,
        line2,
    );

    // Bars: epochs done, then the batches of the current phase.
    let (bar_x, bar_w) = BAR;
    let done_epochs = state.latest_epoch.map_or(0, |e| e + 1);
    let epoch_done = if state.status == Status::Completed {
        state.epochs
    } else {
        done_epochs
    };
    let bars = [
        (88, 10, bar_width(epoch_done, state.epochs, bar_w), EPOCH),
        (
            102,
            6,
            match state.phase {
                Phase::Train => bar_width(state.train.done, state.train.total, bar_w),
                Phase::Valid => bar_width(state.valid.done, state.valid.total, bar_w),
            },
            if state.phase == Phase::Train {
                TRAIN
            } else {
                VALID
            },
        ),
    ];
    for (y, h, w, color) in bars {
        pool.rect(Rect {
            x: bar_x,
            y,
            w: bar_w,
            h,
            color: TRACK,
        });
        if w > 0 {
            pool.rect(Rect {
                x: bar_x,
                y,
                w,
                h,
                color,
            });
        }
    }

    // Chart: two axes, then each curve with an even share of the line pool.
    let (left, top, right, bottom) = CHART;
    pool.line(Line {
        x1: left,
        y1: bottom,
        x2: right,
        y2: bottom,
        width: 1,
        color: AXIS,
    });
    pool.line(Line {
        x1: left,
        y1: top,
        x2: left,
        y2: bottom,
        width: 1,
        color: AXIS,
    });
    let curves = state.metrics.len().min(MAX_CURVES);
    let budget = (LINES - 2) / curves.max(1);
    for (m, color) in CURVE_COLORS.iter().enumerate().take(curves) {
        let pixels = curve_pixels(state, m);
        let mut segments = 0;
        for pair in pixels.windows(2) {
            if let [Some((x1, y1)), Some((x2, y2))] = pair {
                if segments < budget {
                    pool.line(Line {
                        x1: *x1,
                        y1: *y1,
                        x2: *x2,
                        y2: *y2,
                        width: 2,
                        color: *color,
                    });
                    segments += 1;
                }
            }
        }
    }

    // Latest values, two columns.
    for (m, name) in state.metrics.iter().enumerate().take(MAX_CURVES) {
        let value = state.latest.get(m).copied();
        let shown = value.map_or("-".to_string(), value_text);
        let x = if m % 2 == 0 { 40 } else { 180 };
        let y = 272 + 22 * (m / 2) as i32;
        let short: String = name.chars().take(10).collect();
        let color = if value.is_some_and(|v| !v.is_finite()) {
            RED
        } else {
            CURVE_COLORS[m]
        };
        text(
            &mut pool,
            x,
            y,
            16,
            Anchor::Start,
            color,
            format!("{short} {shown}"),
        );
    }
    let eta = match state.eta_ms() {
        Some(0) if state.status.is_finished() => state.status.as_str().to_string(),
        Some(ms) => format!("{} left", duration_text(ms)),
        None => String::new(),
    };
    if !eta.is_empty() {
        text(&mut pool, WIDTH / 2, 322, 16, Anchor::Middle, DIM, eta);
    }
    pool
}
