//! `layout`: a [`TrainingState`] and a screen size in, a [`Scene`] out.
//!
//! From top to bottom: the status icon and the training's name; the status word
//! and the ETA; the epoch bar with "epoch 3/10"; the train and valid batch bars
//! of the current epoch; the metrics chart; the legend with each metric's
//! latest value.
//!
//! # The chart's scales
//!
//! Metrics are split in two groups, each auto-scaled to its own finite range:
//! the ones where lower is better (losses, errors: [`lower_is_better`]) share
//! one scale, and all the others (accuracy, F1, ...) share a second one. A
//! shared loss scale keeps train and valid loss comparable, so the gap that
//! means overfitting is visible at a glance; a separate scale keeps a 0..1
//! accuracy from being flattened by a loss of 3.0 (or the reverse). There is
//! no room for axis labels on a watch, so the numbers are in the legend and the
//! chart shows shapes: is it still improving, where was the best epoch. A
//! yellow vertical line and a yellow tick mark the best epoch of the primary
//! metric (the first validation loss, else the first loss, else the first
//! metric).
//!
//! The x axis spans the planned epochs when they are known, so the chart fills
//! up as the training runs; otherwise the epochs seen. The whole run is always
//! visible: the state's history is decimated (see the protocol crate), and the
//! latest epoch is drawn after the kept rows.
//!
//! NaN and infinite values never reach the scales: they leave a gap in their
//! curve and a red bar along the top of the chart over the epochs where they
//! happened; the legend shows `NaN`/`inf` in red.

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use heapless::{String, Vec};
use watchtrain_protocol::{lower_is_better, Status, TrainingState, MAX_METRICS};

use crate::format;
use crate::icons::{Icon, ICON_SIZE};
use crate::scene::{Anchor, Font, Scene};
use crate::theme::{Screen, Theme};

/// Most distinct NaN/inf ranges marked on the chart.
pub const MAX_NAN_MARKS: usize = 8;

/// Sizes that depend on the screen.
struct Sizes {
    title: Font,
    label: Font,
    small: Font,
    legend: Font,
    margin_x: i32,
    top: i32,
    bottom: i32,
    curve_width: u8,
    bar_height: i32,
    batch_bar_height: i32,
}

impl Sizes {
    fn for_screen(w: i32, h: i32) -> Sizes {
        let desktop = w >= 600 && h >= 400;
        let big = w >= 280 && h >= 220;
        Sizes {
            title: if desktop {
                Font::Large
            } else if big {
                Font::Bold
            } else {
                Font::Medium
            },
            label: if big { Font::Bold } else { Font::Small },
            small: Font::Small,
            legend: if big { Font::Medium } else { Font::Small },
            margin_x: (w / 24).max(6),
            top: (h / 32).max(4),
            bottom: (h / 24).max(4),
            curve_width: if big { 2 } else { 1 },
            bar_height: if big { 10 } else { 7 },
            batch_bar_height: if big { 6 } else { 4 },
        }
    }
}

/// Lays out the face of `state` for `screen` in the colours of `theme`.
///
/// ```
/// use watchtrain_protocol::TrainingState;
/// use watchtrain_watch::{layout, Framebuffer, Screen, Theme};
/// let scene = layout(&TrainingState::new(), Screen::VERSA3, &Theme::dark());
/// let mut fb = Framebuffer::new(336, 336);
/// scene.draw(&mut fb).unwrap();
/// assert_eq!(scene.texts[0].text, "(unnamed)");
/// ```
pub fn layout(state: &TrainingState, screen: Screen, theme: &Theme) -> Scene {
    let screen = screen.clamped();
    let (w, h) = (screen.width as i32, screen.height as i32);
    let m = Sizes::for_screen(w, h);
    let mut scene = Scene::new(screen);
    scene.rect(
        Point::zero(),
        Size::new(w as u32, h as u32),
        theme.background,
    );

    // Title: status icon and name, centred together.
    let mut y = m.top;
    let title_h = i32::from(m.title.height());
    let adv = m.title.advance() as i32;
    let max_chars = ((w - 2 * m.margin_x - ICON_SIZE as i32 - 6) / adv).max(1) as usize;
    let name: &str = if state.name().is_empty() {
        "(unnamed)"
    } else {
        state.name()
    };
    let name: String<40> = format::cut(name, max_chars);
    let group = ICON_SIZE as i32 + 6 + name.chars().count() as i32 * adv;
    let x0 = (w - group) / 2;
    scene.image(
        Point::new(x0, y + (title_h - ICON_SIZE as i32) / 2),
        Icon::for_status(state.status()),
    );
    scene.text(
        Point::new(x0 + ICON_SIZE as i32 + 6, y + baseline(m.title)),
        &name,
        m.title,
        Anchor::Start,
        theme.text,
    );
    y += title_h + 4;

    // Status word and ETA.
    let label_h = i32::from(m.label.height());
    let ladv = m.label.advance() as i32;
    let eta = eta_text(state);
    let eta_w = eta.len() as i32 * ladv;
    scene.text(
        Point::new(w - m.margin_x, y + baseline(m.label)),
        &eta,
        m.label,
        Anchor::End,
        theme.text,
    );
    let status_chars = ((w - 2 * m.margin_x - eta_w - ladv) / ladv).max(1) as usize;
    let status = status_text(state);
    let status: String<40> = format::cut(&status, status_chars);
    scene.text(
        Point::new(m.margin_x, y + baseline(m.label)),
        &status,
        m.label,
        Anchor::Start,
        theme.status(state.status()),
    );
    y += label_h + 4;

    // Epoch bar.
    let epoch = epoch_text(state);
    scene.text(
        Point::new(m.margin_x, y + baseline(m.label)),
        &epoch,
        m.label,
        Anchor::Start,
        theme.text,
    );
    let bar_x = m.margin_x + (epoch.len() as i32 + 1) * ladv;
    let bar_y = y + (label_h - m.bar_height) / 2;
    bar(
        &mut scene,
        Point::new(bar_x, bar_y),
        w - m.margin_x - bar_x,
        m.bar_height,
        epoch_fraction(state),
        theme.track,
        theme.epoch_bar,
    );
    y += label_h + 4;

    // Batch bars of the current epoch: train on the left half, valid on the right.
    let small_h = i32::from(m.small.height());
    let sadv = m.small.advance() as i32;
    let half = (w - 2 * m.margin_x - 12) / 2;
    for (i, (label, b, color)) in [
        ("train", state.train(), theme.train_bar),
        ("valid", state.valid(), theme.valid_bar),
    ]
    .into_iter()
    .enumerate()
    {
        let x = m.margin_x + i as i32 * (half + 12);
        scene.text(
            Point::new(x, y + baseline(m.small)),
            label,
            m.small,
            Anchor::Start,
            theme.dim,
        );
        let bx = x + 6 * sadv;
        let fraction = if b.total == 0 {
            if state.status() == Status::Completed {
                1.0
            } else {
                0.0
            }
        } else {
            b.done.min(b.total) as f32 / b.total as f32
        };
        bar(
            &mut scene,
            Point::new(bx, y + (small_h - m.batch_bar_height) / 2),
            x + half - bx,
            m.batch_bar_height,
            fraction,
            theme.track,
            color,
        );
    }
    y += small_h + 6;

    // Legend at the bottom, chart in between.
    let n = state.metrics().len();
    // Two columns on a watch; on wider screens one about every 220 px, so a
    // value stays near its name.
    let cols: i32 = if n >= 2 && w >= 240 {
        (w / 220).clamp(2, n as i32)
    } else {
        1
    };
    let rows = (n as i32 + cols - 1) / cols;
    let row_h = i32::from(m.legend.height()) + 2;
    let legend_top = h - m.bottom - rows * row_h;
    let chart = Chart {
        x0: m.margin_x,
        x1: w - m.margin_x - 1,
        y0: y + 2,
        y1: legend_top - 6,
    };
    draw_chart(&mut scene, state, theme, &m, &chart);
    legend(&mut scene, state, theme, &m, legend_top, cols, row_h);
    scene
}

/// The offset of a font's alphabetic baseline from its top.
fn baseline(font: Font) -> i32 {
    font.mono().baseline as i32
}

fn bar(
    scene: &mut Scene,
    at: Point,
    width: i32,
    height: i32,
    fraction: f32,
    track: Rgb888,
    fill: Rgb888,
) {
    if width <= 0 || height <= 0 {
        return;
    }
    scene.rect(at, Size::new(width as u32, height as u32), track);
    let filled = (fraction.clamp(0.0, 1.0) * width as f32 + 0.5) as i32;
    if filled > 0 {
        scene.rect(at, Size::new(filled as u32, height as u32), fill);
    }
}

fn status_text(state: &TrainingState) -> String<80> {
    let mut s: String<80> = String::new();
    let word = match state.status() {
        Status::Waiting => "waiting for data",
        other => other.as_str(),
    };
    let _ = s.push_str(word);
    if !state.reason().is_empty() && state.status().is_finished() {
        let _ = s.push_str(": ");
        let _ = s.push_str(state.reason());
    }
    s
}

fn eta_text(state: &TrainingState) -> String<20> {
    let mut s: String<20> = String::new();
    if state.status().is_finished() {
        // A reason (why it failed) matters more than how long it ran.
        if state.timed_epochs() > 0 && state.reason().is_empty() {
            let _ = s.push_str("took ");
            let _ = s.push_str(&format::duration(state.elapsed_ms()));
        }
    } else if state.status() != Status::Waiting || state.latest_epoch().is_some() {
        let _ = s.push_str("ETA ");
        match state.eta_ms() {
            Some(ms) => {
                let _ = s.push_str(&format::duration(ms));
            }
            None => {
                let _ = s.push_str("--");
            }
        }
    }
    s
}

fn epoch_text(state: &TrainingState) -> String<24> {
    use core::fmt::Write;
    let mut s: String<24> = String::new();
    let started = state.status() != Status::Waiting || state.latest_epoch().is_some();
    let shown = if state.status() == Status::Completed && state.epochs() > 0 {
        state.epochs()
    } else if started {
        state.epoch().saturating_add(1)
    } else {
        0
    };
    let _ = if state.epochs() > 0 {
        write!(s, "epoch {shown}/{}", state.epochs())
    } else {
        write!(s, "epoch {shown}")
    };
    s
}

fn epoch_fraction(state: &TrainingState) -> f32 {
    if state.status() == Status::Completed {
        return 1.0;
    }
    if state.epochs() == 0 {
        return 0.0;
    }
    let done = state.latest_epoch().map_or(0, |e| e.saturating_add(1));
    let mut f = done.max(state.epoch()) as f32;
    if state.epoch() >= done && state.train().total > 0 {
        f += state.train().done.min(state.train().total) as f32 / state.train().total as f32;
    }
    f / state.epochs() as f32
}

/// The chart's plot area, inclusive pixel bounds.
struct Chart {
    x0: i32,
    x1: i32,
    y0: i32,
    y1: i32,
}

/// One point of the chart: an epoch and one value per metric.
type Row<'a> = (u32, &'a [f32]);

/// The scale of a group of metrics: finite min and max, padded.
#[derive(Clone, Copy)]
struct Scale {
    lo: f32,
    hi: f32,
}

fn scale_of(rows: &[Row<'_>], members: impl Fn(usize) -> bool) -> Option<Scale> {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for (_, values) in rows {
        for (i, v) in values.iter().enumerate() {
            if members(i) && v.is_finite() {
                lo = lo.min(*v);
                hi = hi.max(*v);
            }
        }
    }
    if lo > hi {
        return None;
    }
    let mut range = hi - lo;
    if range <= 0.0 || !range.is_finite() {
        range = (hi.abs() * 0.1).max(1e-6);
        lo -= range / 2.0;
        hi += range / 2.0;
        if !(hi - lo).is_finite() {
            return None;
        }
    }
    let pad = (hi - lo) * 0.06;
    Some(Scale {
        lo: lo - pad,
        hi: hi + pad,
    })
}

impl Chart {
    fn x(&self, epoch: u32, span: u32) -> i32 {
        let w = i64::from(self.x1 - self.x0);
        self.x0 + (i64::from(epoch.min(span)) * w / i64::from(span.max(1))) as i32
    }

    fn y(&self, v: f32, s: Scale) -> i32 {
        let t = ((v - s.lo) / (s.hi - s.lo)).clamp(0.0, 1.0);
        self.y1 - (t * (self.y1 - self.y0) as f32 + 0.5) as i32
    }
}

/// The index of the primary metric: first validation loss, else first loss, else 0.
pub fn primary_metric(state: &TrainingState) -> Option<usize> {
    let names = &state.metrics();
    names
        .iter()
        .position(|n| lower_is_better(n) && n.contains("val"))
        .or_else(|| names.iter().position(|n| lower_is_better(n)))
        .or(if names.is_empty() { None } else { Some(0) })
}

fn draw_chart(scene: &mut Scene, state: &TrainingState, theme: &Theme, m: &Sizes, c: &Chart) {
    if c.y1 - c.y0 < 8 || c.x1 - c.x0 < 8 {
        return;
    }
    // Frame: the top and bottom lines of the plot area.
    scene.line(
        Point::new(c.x0, c.y0 - 1),
        Point::new(c.x1, c.y0 - 1),
        1,
        theme.track,
    );
    scene.line(
        Point::new(c.x0, c.y1 + 1),
        Point::new(c.x1, c.y1 + 1),
        1,
        theme.track,
    );

    let width = state.metrics().len();
    let mut rows: Vec<Row<'_>, 132> = Vec::new();
    for row in state.history_rows() {
        let _ = rows.push(row);
    }
    if let Some(latest) = state.latest_epoch() {
        if state.latest().len() == width
            && width > 0
            && rows.last().is_none_or(|(e, _)| *e < latest)
        {
            let _ = rows.push((latest, state.latest()));
        }
    }
    if rows.is_empty() || width == 0 {
        let mid = (c.y0 + c.y1) / 2;
        let text = if state.status() == Status::Waiting {
            "waiting for data"
        } else {
            "no epoch done yet"
        };
        if state.status() == Status::Waiting && c.y1 - c.y0 > 40 {
            scene.image(
                Point::new((c.x0 + c.x1) / 2 - ICON_SIZE as i32 / 2, mid - 20),
                Icon::Logo,
            );
        }
        scene.text(
            Point::new((c.x0 + c.x1) / 2, mid + 12),
            text,
            m.label,
            Anchor::Middle,
            theme.dim,
        );
        return;
    }

    let last_epoch = rows.last().map_or(0, |(e, _)| *e);
    let span = if state.epochs() > 0 {
        (state.epochs() - 1).max(last_epoch)
    } else {
        last_epoch
    }
    .max(1);

    let is_loss: Vec<bool, MAX_METRICS> =
        state.metrics().iter().map(|n| lower_is_better(n)).collect();
    let loss_scale = scale_of(&rows, |i| is_loss.get(i) == Some(&true));
    let other_scale = scale_of(&rows, |i| is_loss.get(i) == Some(&false));
    let scale = |i: usize| {
        if is_loss.get(i) == Some(&true) {
            loss_scale
        } else {
            other_scale
        }
    };

    // The best epoch of the primary metric: a vertical line behind the curves.
    let primary = primary_metric(state);
    let best = primary.and_then(|p| {
        let b = state.best().get(p)?;
        let s = scale(p)?;
        b.value
            .is_finite()
            .then(|| (p, c.x(b.epoch, span), c.y(b.value, s), b.epoch))
    });
    if let Some((_, bx, _, _)) = best {
        scene.line(Point::new(bx, c.y0), Point::new(bx, c.y1), 1, theme.track);
    }

    // Curves: one colour per metric; non-finite values leave gaps.
    for i in 0..width {
        let Some(s) = scale(i) else { continue };
        let color = theme.metrics[i % theme.metrics.len()];
        let mut prev: Option<Point> = None;
        for (k, (epoch, values)) in rows.iter().enumerate() {
            let v = values[i];
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let p = Point::new(c.x(*epoch, span), c.y(v, s));
            if let Some(q) = prev {
                scene.line(q, p, m.curve_width, color);
            } else {
                let next_finite = rows.get(k + 1).is_some_and(|(_, vs)| vs[i].is_finite());
                if !next_finite {
                    // An isolated point: a short dash.
                    scene.line(
                        p - Point::new(1, 0),
                        p + Point::new(1, 0),
                        m.curve_width,
                        color,
                    );
                }
            }
            prev = Some(p);
        }
    }

    // NaN/inf: red bars along the top over the epochs where they happened.
    let mut marks = 0;
    let mut k = 0;
    while k < rows.len() && marks < MAX_NAN_MARKS {
        if rows[k].1.iter().all(|v| v.is_finite()) {
            k += 1;
            continue;
        }
        let start = k;
        while k + 1 < rows.len() && !rows[k + 1].1.iter().all(|v| v.is_finite()) {
            k += 1;
        }
        let (xa, xb) = (c.x(rows[start].0, span), c.x(rows[k].0, span));
        scene.line(
            Point::new((xa - 2).max(c.x0), c.y0 + 1),
            Point::new((xb + 2).min(c.x1), c.y0 + 1),
            3,
            theme.alert,
        );
        marks += 1;
        k += 1;
    }

    // The best point on top, and its epoch as a label.
    if let Some((_, bx, by, epoch)) = best {
        scene.line(
            Point::new(bx - 3, by),
            Point::new(bx + 3, by),
            3,
            theme.best,
        );
        use core::fmt::Write;
        let mut label: String<16> = String::new();
        let _ = write!(label, "best {}", epoch + 1);
        let (x, anchor) = if bx > (c.x0 + c.x1) / 2 {
            (bx - 3, Anchor::End)
        } else {
            (bx + 3, Anchor::Start)
        };
        scene.text(Point::new(x, c.y1 - 2), &label, m.small, anchor, theme.best);
    }
}

fn legend(
    scene: &mut Scene,
    state: &TrainingState,
    theme: &Theme,
    m: &Sizes,
    top: i32,
    cols: i32,
    row_h: i32,
) {
    let n = state.metrics().len();
    if n == 0 {
        return;
    }
    let w = scene.screen.width as i32;
    let gap = 12;
    let cell_w = (w - 2 * m.margin_x - gap * (cols - 1)) / cols;
    let adv = m.legend.advance() as i32;
    let values: Vec<String<12>, MAX_METRICS> = (0..n)
        .map(|i| match state.latest().get(i) {
            Some(v) => format::value(*v),
            None => {
                let mut s = String::new();
                let _ = s.push_str("-");
                s
            }
        })
        .collect();
    let value_chars = values.iter().map(|v| v.len()).max().unwrap_or(1) as i32;
    let swatch = (i32::from(m.legend.height()) / 2).max(4);
    let name_chars = ((cell_w - swatch - 4 - (value_chars + 1) * adv) / adv).max(1) as usize;
    for (i, name) in state.metrics().iter().enumerate() {
        let (col, row) = (i as i32 % cols, i as i32 / cols);
        let x = m.margin_x + col * (cell_w + gap);
        let y = top + row * row_h;
        let color = theme.metrics[i % theme.metrics.len()];
        let base = y + baseline(m.legend);
        scene.rect(
            Point::new(x, base - swatch),
            Size::new(swatch as u32, swatch as u32),
            color,
        );
        let name: String<MAX_TEXT> = format::elide(name, name_chars);
        scene.text(
            Point::new(x + swatch + 4, base),
            &name,
            m.legend,
            Anchor::Start,
            theme.dim,
        );
        let finite = state.latest().get(i).is_none_or(|v| v.is_finite());
        scene.text(
            Point::new(x + cell_w, base),
            &values[i],
            m.legend,
            Anchor::End,
            if finite { theme.text } else { theme.alert },
        );
    }
}

const MAX_TEXT: usize = crate::scene::MAX_TEXT_LEN;

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;

    fn draw(scene: &Scene) -> MockDisplay<Rgb888> {
        let mut display = MockDisplay::new();
        display.set_allow_overdraw(true);
        // Skip the background so the pattern shows only the widget.
        let mut widget = scene.clone();
        widget.rects.retain(|r| r.color != Rgb888::BLACK);
        widget.draw(&mut display).unwrap();
        display
    }

    #[test]
    fn a_bar_is_a_track_with_its_filled_part_on_top() {
        let mut scene = Scene::new(Screen::new(64, 64));
        bar(
            &mut scene,
            Point::new(1, 1),
            10,
            2,
            0.34,
            Rgb888::BLUE,
            Rgb888::GREEN,
        );
        draw(&scene).assert_pattern(&[
            "            ", //
            " GGGBBBBBBB ", //
            " GGGBBBBBBB ", //
        ]);
    }

    #[test]
    fn a_bar_clamps_its_fraction() {
        for (fraction, expected) in [(-1.0, " BBBB"), (f32::NAN, " BBBB"), (7.0, " GGGG")] {
            let mut scene = Scene::new(Screen::new(64, 64));
            bar(
                &mut scene,
                Point::new(1, 0),
                4,
                1,
                fraction,
                Rgb888::BLUE,
                Rgb888::GREEN,
            );
            draw(&scene).assert_pattern(&[expected]);
        }
    }

    #[test]
    fn an_isolated_point_is_a_dash_and_nan_a_gap() {
        use watchtrain_protocol::*;
        let mut state = TrainingState::new();
        let metrics = [truncated("accuracy")].into_iter().collect();
        let register = Register {
            metrics,
            epochs: 5,
            ..Default::default()
        };
        state
            .apply(&Frame {
                training_id: 1,
                seq: 0,
                action: Action::Register(register),
            })
            .unwrap();
        for (e, v) in [0.5, f32::NAN, 0.7, f32::INFINITY, 0.9]
            .into_iter()
            .enumerate()
        {
            let values = Values::from_slice(&[v]).unwrap();
            let stats = Stats {
                epoch: e as u32,
                duration_ms: 1,
                values,
            };
            state
                .apply(&Frame {
                    training_id: 1,
                    seq: 0,
                    action: Action::Stats(stats),
                })
                .unwrap();
        }
        let mut theme = Theme::dark();
        theme.metrics[0] = Rgb888::GREEN;
        let scene = layout(&state, Screen::VERSA3, &theme);
        let curve: Vec<_, 8> = scene
            .lines
            .iter()
            .filter(|l| l.color == Rgb888::GREEN)
            .cloned()
            .collect();
        // Three finite points, each between non-finite ones: three dashes, no segment across a gap.
        assert_eq!(curve.len(), 3);
        for l in &curve {
            assert_eq!((l.end - l.start, l.start.y), (Point::new(2, 0), l.end.y));
        }
        // Two NaN/inf ranges marked in red along the top.
        assert_eq!(
            scene
                .lines
                .iter()
                .filter(|l| l.color == theme.alert)
                .count(),
            2
        );
    }
}
