//! `layout`: a [`TrainingState`] and a screen size in, a [`Scene`] out.
//!
//! From top to bottom: the status icon and the training's name; the status word
//! and the ETA; the epoch bar with "epoch 3/10"; the train and valid batch bars
//! of the current epoch; the metrics chart; the legend with each metric's
//! latest value.
//!
//! # The chart's scales
//!
//! Metrics are grouped by their [`Goal`], each group auto-scaled to its
//! own finite range: the minimized ones (losses, errors) share one scale, the
//! maximized ones (accuracy, F1, ...) a second one, and each metric without a
//! goal (a learning rate, momentum, a gradient norm) has its own, in
//! log10 when its values are positive and span a factor of 10 or more (a
//! learning-rate schedule), so it is never a flat line at the bottom. A
//! shared loss scale keeps train and valid loss comparable, so the gap that
//! means overfitting is visible at a glance; a separate scale keeps a 0..1
//! accuracy from being flattened by a loss of 3.0 (or the reverse). There is
//! no room for axis labels on a watch, so the numbers are in the legend and the
//! chart shows shapes: is it still improving, where was the best epoch. A
//! yellow vertical line and a yellow tick mark the best epoch of the primary
//! metric (see [`primary_metric`]); a training whose metrics have no goal
//! has no best. The goals are the producer's, else the defaults from the names
//! ([`Goal::from_name`]).
//!
//! At a desktop size (at least 600x400 layout units) the chart also has value
//! axes: the minimized group on the left, the maximized group (else the first
//! metric without a goal) on the right, each labelled in its metric's
//! colour when it holds one metric, and epoch ticks along the bottom. From
//! 1600x900 pixels on, the face is laid out at 800x450 or more and painted
//! [`Scene::scale`] times larger, so its text grows with it. [`readout`] tells
//! what the chart shows under a point (the browser's hover read-out).
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
use watchtrain_protocol::{Bar, Goal, Status, TrainingState, MAX_METRICS};

use crate::scene::MAX_TEXTS;

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
    /// Value axes and epoch ticks around the chart.
    axes: bool,
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
            axes: desktop,
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
    face(state, screen, theme).0
}

/// The smallest layout of a large face, in scene units: a face at least twice
/// this size in both directions is laid out at `size / scale` and painted larger.
const BASE: Screen = Screen::new(800, 450);

/// How many pixels one scene unit is for `screen` (1 below twice [`BASE`]).
fn scale_for(screen: Screen) -> u32 {
    (screen.width / BASE.width)
        .min(screen.height / BASE.height)
        .max(1)
}

/// The face, and where its chart is when it has curves.
// Not inlined: `layout` and `readout` share one copy in the wasm.
#[inline(never)]
fn face(state: &TrainingState, screen: Screen, theme: &Theme) -> (Scene, Option<Plot>) {
    let screen = screen.clamped();
    let k = scale_for(screen);
    let (w, h) = ((screen.width / k) as i32, (screen.height / k) as i32);
    let m = Sizes::for_screen(w, h);
    let mut scene = Scene::new(screen);
    scene.scale = k;
    // Rounded up: with a scale, the background covers the last partial unit too.
    scene.rect(
        Point::zero(),
        Size::new(screen.width.div_ceil(k), screen.height.div_ceil(k)),
        theme.background,
    );

    let mut header = Header {
        scene: &mut scene,
        state,
        theme,
        m: &m,
        w,
    };
    let mut y = m.top;
    y = header.title(y);
    y = header.status_line(y);
    y = header.epoch_line(y);
    y = header.batch_bars(y);

    // Legend at the bottom, chart in between.
    let grid = LegendGrid::new(state.metrics().len(), &m, w, h);
    let chart = chart_area(&m, w, y, grid.top);
    let plot = draw_chart(&mut scene, state, theme, &m, &chart);
    legend(&mut scene, state, theme, &m, &grid);
    // Last, so that the legend keeps its texts when the pool runs short.
    if let Some(p) = plot.as_ref().filter(|_| m.axes) {
        axes(&mut scene, theme, &m, p);
    }
    (scene, plot)
}

/// The rows above the chart, drawn from the top down: each draws its row at
/// `y` and returns the y below it.
struct Header<'a> {
    scene: &'a mut Scene,
    state: &'a TrainingState,
    theme: &'a Theme,
    m: &'a Sizes,
    /// The face's width in layout units.
    w: i32,
}

impl Header<'_> {
    fn parts(&mut self) -> (&mut Scene, &TrainingState, &Theme, &Sizes, i32) {
        (&mut *self.scene, self.state, self.theme, self.m, self.w)
    }

    /// The title row, the status icon and the name centred together; returns the y below it.
    fn title(&mut self, y: i32) -> i32 {
        let (scene, state, theme, m, w) = self.parts();
        let (title_h, adv) = cell(m.title);
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
        y + title_h + 4
    }

    /// The status word on the left, the ETA on the right (it keeps its room); returns the y below.
    fn status_line(&mut self, y: i32) -> i32 {
        let (scene, state, theme, m, w) = self.parts();
        let (label_h, ladv) = cell(m.label);
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
        y + label_h + 4
    }

    /// "epoch 3/10" and the epoch bar after it; returns the y below.
    fn epoch_line(&mut self, y: i32) -> i32 {
        let (scene, state, theme, m, w) = self.parts();
        let (label_h, ladv) = cell(m.label);
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
            scene,
            Point::new(bar_x, bar_y),
            w - m.margin_x - bar_x,
            m.bar_height,
            epoch_fraction(state),
            theme.track,
            theme.epoch_bar,
        );
        y + label_h + 4
    }

    /// The batch bars of the current epoch: train on the left half, valid on the
    /// right; returns the y below.
    fn batch_bars(&mut self, y: i32) -> i32 {
        let (scene, state, theme, m, w) = self.parts();
        let (small_h, sadv) = cell(m.small);
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
            bar(
                scene,
                Point::new(bx, y + (small_h - m.batch_bar_height) / 2),
                x + half - bx,
                m.batch_bar_height,
                batch_fraction(state, b),
                theme.track,
                color,
            );
        }
        y + small_h + 6
    }
}

/// How full a batch bar is; one without a total is full once the training completed.
fn batch_fraction(state: &TrainingState, b: Bar) -> f32 {
    if b.total == 0 {
        if state.status() == Status::Completed {
            1.0
        } else {
            0.0
        }
    } else {
        b.done.min(b.total) as f32 / b.total as f32
    }
}

/// Where the legend goes: its columns, its row height and its top.
#[derive(Clone, Copy)]
struct LegendGrid {
    /// Columns of metrics.
    cols: i32,
    /// Height of one row.
    row_h: i32,
    /// The y of its first row.
    top: i32,
}

impl LegendGrid {
    /// The grid of `n` metrics at the bottom of a `w` x `h` face.
    fn new(n: usize, m: &Sizes, w: i32, h: i32) -> LegendGrid {
        // Two columns on a watch; on wider screens one about every 220 px, so a
        // value stays near its name.
        let cols: i32 = if n >= 2 && w >= 240 {
            (w / 220).clamp(2, n as i32)
        } else {
            1
        };
        let rows = (n as i32 + cols - 1) / cols;
        let row_h = i32::from(m.legend.height()) + 2;
        LegendGrid {
            cols,
            row_h,
            top: h - m.bottom - rows * row_h,
        }
    }
}

/// The plot area between the bars (ending at `y`) and the legend (at `legend_top`).
fn chart_area(m: &Sizes, w: i32, y: i32, legend_top: i32) -> Chart {
    // Room for the value labels at the sides and the epoch labels below.
    let (axis_w, ticks_h) = if m.axes {
        (
            8 * m.small.advance() as i32 + 12,
            i32::from(m.small.height()) + 6,
        )
    } else {
        (0, 0)
    };
    Chart {
        x0: m.margin_x + axis_w,
        x1: w - m.margin_x - 1 - axis_w,
        y0: y + 2,
        y1: legend_top - 6 - ticks_h,
    }
}

/// A font's line height and advance, in layout units.
fn cell(font: Font) -> (i32, i32) {
    (i32::from(font.height()), font.advance() as i32)
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
#[derive(Clone, Copy)]
struct Chart {
    x0: i32,
    x1: i32,
    y0: i32,
    y1: i32,
}

/// One point of the chart: an epoch and one value per metric.
type Row<'a> = (u32, &'a [f32]);

/// The scale of a group of metrics: finite min and max, padded; in log10 units when `log`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Scale {
    lo: f32,
    hi: f32,
    log: bool,
}

impl Scale {
    /// A value in the scale's units.
    fn map(self, v: f32) -> f32 {
        if self.log {
            libm::log10f(v)
        } else {
            v
        }
    }

    /// The value at `t` of the scale's units.
    fn value(self, t: f32) -> f32 {
        if self.log {
            pow10(t)
        } else {
            t
        }
    }
}

/// Which scale a metric is drawn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Shared by the minimized metrics.
    Minimized,
    /// Shared by the maximized metrics.
    Maximized,
    /// Its own (metric `i`, which has no direction).
    Own(usize),
}

impl Group {
    fn of(goal: Goal, i: usize) -> Group {
        match goal {
            Goal::Minimize => Group::Minimized,
            Goal::Maximize => Group::Maximized,
            Goal::None => Group::Own(i),
        }
    }
}

/// The scale of the metrics `members` picks; in log10 when `may_log` and the values
/// are positive and span a factor of 10 or more.
fn scale_of(rows: &[Row<'_>], members: impl Fn(usize) -> bool, may_log: bool) -> Option<Scale> {
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
    let log = may_log && lo > 0.0 && hi / lo >= 10.0;
    if log {
        (lo, hi) = (libm::log10f(lo), libm::log10f(hi));
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
        log,
    })
}

impl Chart {
    fn x(&self, epoch: u32, span: u32) -> i32 {
        let w = i64::from(self.x1 - self.x0);
        self.x0 + (i64::from(epoch.min(span)) * w / i64::from(span.max(1))) as i32
    }

    /// The y of value `v` on scale `s`.
    fn y(&self, v: f32, s: Scale) -> i32 {
        self.y_at(s.map(v), s)
    }

    /// The y of `t` in the units of scale `s`.
    fn y_at(&self, t: f32, s: Scale) -> i32 {
        let t = ((t - s.lo) / (s.hi - s.lo)).clamp(0.0, 1.0);
        self.y1 - (t * (self.y1 - self.y0) as f32 + 0.5) as i32
    }
}

/// The index of the primary metric, whose best epoch the chart marks: the first
/// minimized validation metric, else the first minimized one, else the first
/// maximized validation metric, else the first maximized one; none when no
/// metric has a [`Goal`] (the producer's, else the default from the name).
pub fn primary_metric(state: &TrainingState) -> Option<usize> {
    let names = state.metrics();
    let goals = state.goals();
    let find = |g: Goal, valid: bool| {
        (0..names.len()).find(|&i| goals.get(i) == Some(&g) && (!valid || names[i].contains("val")))
    };
    find(Goal::Minimize, true)
        .or_else(|| find(Goal::Minimize, false))
        .or_else(|| find(Goal::Maximize, true))
        .or_else(|| find(Goal::Maximize, false))
}

/// Where the chart was drawn and on which scales, for the axes and the read-out.
struct Plot {
    /// The plot area.
    chart: Chart,
    /// The last epoch the x axis spans (0-based).
    span: u32,
    /// The scale of the left axis and its labels' colour.
    left: Option<(Scale, Rgb888)>,
    /// The same for the right axis.
    right: Option<(Scale, Rgb888)>,
}

/// The chart's rows: the kept history, then the latest epoch when it is newer.
fn chart_rows(state: &TrainingState) -> Vec<Row<'_>, 132> {
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
    rows
}

fn draw_chart(
    scene: &mut Scene,
    state: &TrainingState,
    theme: &Theme,
    m: &Sizes,
    c: &Chart,
) -> Option<Plot> {
    if c.y1 - c.y0 < 8 || c.x1 - c.x0 < 8 {
        return None;
    }
    chart_frame(scene, theme, c);
    let width = state.metrics().len();
    let rows = chart_rows(state);
    if rows.is_empty() || width == 0 {
        empty_chart(scene, state, theme, m, c);
        return None;
    }
    let span = epoch_span(state, &rows);

    let groups: Vec<Group, MAX_METRICS> = (0..width)
        .map(|i| Group::of(state.goals().get(i).copied().unwrap_or_default(), i))
        .collect();
    let scales = group_scales(&rows, &groups);
    let scale = |i: usize| scales.get(i).copied().flatten();
    let (left, right) = side_axes(theme, &groups, &scales);

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

    let drawn = Drawn { rows: &rows, span };
    for i in 0..width {
        if let Some(s) = scale(i) {
            curve(scene, theme, m, c, &drawn, i, s);
        }
    }
    nan_marks(scene, theme, c, &drawn);
    if let Some((_, bx, by, epoch)) = best {
        best_mark(scene, theme, m, c, Point::new(bx, by), epoch);
    }
    Some(Plot {
        chart: *c,
        span,
        left,
        right,
    })
}

/// The top and bottom lines of the plot area.
fn chart_frame(scene: &mut Scene, theme: &Theme, c: &Chart) {
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
}

/// A chart with nothing to draw yet says why (with the logo while waiting, when it fits).
fn empty_chart(scene: &mut Scene, state: &TrainingState, theme: &Theme, m: &Sizes, c: &Chart) {
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
}

/// The last epoch the x axis spans (0-based): the planned ones when known, else those seen.
fn epoch_span(state: &TrainingState, rows: &[Row<'_>]) -> u32 {
    let last_epoch = rows.last().map_or(0, |(e, _)| *e);
    if state.epochs() > 0 {
        (state.epochs() - 1).max(last_epoch)
    } else {
        last_epoch
    }
    .max(1)
}

/// Each metric's scale: the one of its group.
fn group_scales(rows: &[Row<'_>], groups: &[Group]) -> Vec<Option<Scale>, MAX_METRICS> {
    groups
        .iter()
        .map(|g| {
            scale_of(
                rows,
                |j| groups.get(j) == Some(g),
                matches!(g, Group::Own(_)),
            )
        })
        .collect()
}

/// A value axis's scale and its labels' colour.
type Axis = Option<(Scale, Rgb888)>;

/// The left axis (the minimized group) and the right one (the maximized group,
/// else the first metric without a direction).
fn side_axes(theme: &Theme, groups: &[Group], scales: &[Option<Scale>]) -> (Axis, Axis) {
    // An axis is labelled in its metric's colour when it is the only one on it.
    let axis = |pick: &dyn Fn(Group) -> bool| {
        let i = groups.iter().position(|g| pick(*g))?;
        let alone = groups.iter().filter(|g| **g == groups[i]).count() == 1;
        let color = if alone {
            theme.metrics[i % theme.metrics.len()]
        } else {
            theme.dim
        };
        Some((scales.get(i).copied().flatten()?, color))
    };
    let left = axis(&|g| g == Group::Minimized);
    let right = axis(&|g| g == Group::Maximized).or_else(|| axis(&|g| matches!(g, Group::Own(_))));
    (left, right)
}

/// The rows of a chart and the last epoch its x axis spans.
#[derive(Clone, Copy)]
struct Drawn<'r, 'a> {
    rows: &'r [Row<'a>],
    span: u32,
}

/// The curve of metric `i` on scale `s`, in its colour; non-finite values leave gaps.
fn curve(scene: &mut Scene, theme: &Theme, m: &Sizes, c: &Chart, d: &Drawn, i: usize, s: Scale) {
    let Drawn { rows, span } = *d;
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

/// NaN/inf: red bars along the top over the epochs where they happened.
fn nan_marks(scene: &mut Scene, theme: &Theme, c: &Chart, d: &Drawn) {
    let Drawn { rows, span } = *d;
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
}

/// The best point `at`, on top of the curves, and its epoch as a label.
fn best_mark(scene: &mut Scene, theme: &Theme, m: &Sizes, c: &Chart, at: Point, epoch: u32) {
    use core::fmt::Write;
    scene.line(at - Point::new(3, 0), at + Point::new(3, 0), 3, theme.best);
    let mut label: String<16> = String::new();
    let _ = write!(label, "best {}", epoch + 1);
    let (x, anchor) = if at.x > (c.x0 + c.x1) / 2 {
        (at.x - 3, Anchor::End)
    } else {
        (at.x + 3, Anchor::Start)
    };
    scene.text(Point::new(x, c.y1 - 2), &label, m.small, anchor, theme.best);
}

/// Value axes at the chart's sides and epoch ticks below it, as many labels as the
/// text pool has room for (the legend comes first).
fn axes(scene: &mut Scene, theme: &Theme, m: &Sizes, p: &Plot) {
    use core::fmt::Write;
    let c = &p.chart;
    let room = MAX_TEXTS.saturating_sub(scene.texts.len());
    let per_axis = (room / 3).min(6);
    let epoch_labels = (room - 2 * per_axis).min(7);
    // A label's baseline that centres it on a tick.
    let centre = baseline(m.small) - i32::from(m.small.height()) / 2;
    for (axis, x, out, anchor) in [
        (p.left, c.x0 - 1, -1, Anchor::End),
        (p.right, c.x1 + 1, 1, Anchor::Start),
    ] {
        let Some((s, color)) = axis else { continue };
        scene.line(Point::new(x, c.y0), Point::new(x, c.y1), 1, theme.track);
        let mut ticks = nice_ticks(s.lo, s.hi, per_axis);
        // On a log axis whole powers of ten read best, when there are two or more.
        if s.log && ticks.iter().filter(|t| is_whole(**t)).count() >= 2 {
            ticks.retain(|t| is_whole(*t));
        }
        for t in ticks {
            let y = c.y_at(t, s);
            scene.line(Point::new(x, y), Point::new(x + 3 * out, y), 1, theme.dim);
            let label = if s.log && is_whole(t) && t != 0.0 {
                let mut power = String::new();
                let _ = write!(power, "1e{}", t as i32);
                power
            } else {
                tick_label(s.value(t))
            };
            // Apart from the tick, so that it does not read as a minus sign.
            let at = Point::new(x + 9 * out, y + centre);
            scene.text(at, &label, m.small, anchor, color);
        }
    }
    // Epochs are shown counted from 1.
    let last = (p.span + 1) as f32;
    for t in nice_ticks(1.0, last, epoch_labels) {
        if !is_whole(t) {
            continue;
        }
        let x = c.x(t as u32 - 1, p.span);
        scene.line(
            Point::new(x, c.y1 + 2),
            Point::new(x, c.y1 + 4),
            1,
            theme.dim,
        );
        let mut label: String<12> = String::new();
        let _ = write!(label, "{}", t as u32);
        let at = Point::new(x, c.y1 + 5 + baseline(m.small));
        scene.text(at, &label, m.small, Anchor::Middle, theme.dim);
    }
}

/// Up to `max` round values (1, 2 or 5 times a power of ten apart) in `lo..=hi`,
/// as many as fit.
fn nice_ticks(lo: f32, hi: f32, max: usize) -> Vec<f32, 8> {
    let mut ticks = Vec::new();
    let max = max.min(ticks.capacity());
    let range = hi - lo;
    if max < 2 || range.is_nan() || range <= 0.0 || range.is_infinite() {
        return ticks;
    }
    // Multiplied out, so that steps of 0.5 or 2 are exact and whole ticks stay whole.
    let exponent = libm::floorf(libm::log10f((hi - lo) / max as f32)) as i32;
    let magnitude =
        (0..exponent.unsigned_abs()).fold(
            1.0f32,
            |m, _| {
                if exponent > 0 {
                    m * 10.0
                } else {
                    m / 10.0
                }
            },
        );
    let count = |step: f32| libm::floorf(hi / step) - libm::ceilf(lo / step) + 1.0;
    let Some(step) = [1.0, 2.0, 5.0, 10.0, 20.0]
        .into_iter()
        .map(|f| f * magnitude)
        .find(|s| count(*s) <= max as f32)
    else {
        return ticks;
    };
    let first = libm::ceilf(lo / step);
    for j in 0..count(step) as usize {
        let t = (first + j as f32) * step;
        // 0.1 + 0.2 is not 0.3: snap what is zero to zero.
        let _ = ticks.push(if t.abs() < step * 1e-3 { 0.0 } else { t });
    }
    ticks
}

/// 10 to the power `t`.
fn pow10(t: f32) -> f32 {
    libm::expf(t * core::f32::consts::LN_10)
}

/// True for a whole number.
fn is_whole(t: f32) -> bool {
    libm::truncf(t) == t
}

/// A tick's value without trailing zeros: `0.5`, `1`, `2e-3`.
fn tick_label(v: f32) -> String<12> {
    let full = format::value(v);
    let (mantissa, exponent) = full.split_once('e').unwrap_or((&full, ""));
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    let mut label = String::new();
    let _ = label.push_str(mantissa);
    if !exponent.is_empty() {
        let _ = label.push('e');
        let _ = label.push_str(exponent);
    }
    label
}

/// What the chart shows under a point of the face.
#[derive(Debug, Clone, PartialEq)]
pub struct Readout {
    /// The epoch nearest to the point (0-based).
    pub epoch: u32,
    /// The x of that epoch on the face, in pixels.
    pub x: i32,
    /// Each metric's value at that epoch, in registration order.
    pub values: Vec<f32, MAX_METRICS>,
}

/// The epoch of the chart nearest to `at` (a pixel of the face of `screen`) and
/// its values; `None` when `at` is not over the chart or the chart is empty.
/// Uses the same layout as [`layout`], so it matches what is drawn.
///
/// ```
/// use embedded_graphics::prelude::Point;
/// use watchtrain_protocol::{truncated, Action, Frame, Register, Stats, TrainingState, Values};
/// use watchtrain_watch::{readout, Screen, Theme};
/// // A training of 10 epochs with 4 done.
/// let mut state = TrainingState::new();
/// let mut register = Register { epochs: 10, ..Default::default() };
/// for name in ["train_loss", "valid_loss", "accuracy"] {
///     register.metrics.push(truncated(name)).unwrap();
/// }
/// let mut actions = vec![Action::Register(register)];
/// for epoch in 0..4 {
///     let values = Values::from_slice(&[1.0, 1.2, 0.5]).unwrap();
///     actions.push(Action::Stats(Stats { epoch, duration_ms: 1000, values }));
/// }
/// for (seq, action) in (1..).zip(actions) {
///     state.apply(&Frame { training_id: 1, seq, action }).unwrap();
/// }
/// let screen = Screen::new(960, 540);
/// let r = readout(&state, screen, &Theme::dark(), Point::new(850, 300)).unwrap();
/// assert_eq!(r.epoch, 3); // the last epoch done, nearest to the right edge
/// assert!(readout(&state, screen, &Theme::dark(), Point::new(5, 5)).is_none());
/// ```
pub fn readout(state: &TrainingState, screen: Screen, theme: &Theme, at: Point) -> Option<Readout> {
    let (scene, plot) = face(state, screen, theme);
    let p = plot?;
    let (c, k) = (p.chart, scene.scale as i32);
    let at = Point::new(at.x / k, at.y / k);
    let slack = 6;
    if at.x < c.x0 - slack || at.x > c.x1 + slack || at.y < c.y0 - slack || at.y > c.y1 + slack {
        return None;
    }
    let rows = chart_rows(state);
    let (epoch, values) = rows
        .iter()
        .min_by_key(|(e, _)| (c.x(*e, p.span) - at.x).abs())?;
    Some(Readout {
        epoch: *epoch,
        x: c.x(*epoch, p.span) * k + k / 2,
        values: values.iter().copied().collect(),
    })
}

fn legend(scene: &mut Scene, state: &TrainingState, theme: &Theme, m: &Sizes, grid: &LegendGrid) {
    let LegendGrid { cols, row_h, top } = *grid;
    let n = state.metrics().len();
    if n == 0 {
        return;
    }
    let w = (scene.screen.width / scene.scale) as i32;
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

    /// A running training with `metrics` and one stats row per epoch of `rows`.
    fn state_of(metrics: &[&str], epochs: u32, rows: &[&[f32]]) -> TrainingState {
        use watchtrain_protocol::*;
        let mut state = TrainingState::new();
        let register = Register {
            metrics: metrics.iter().map(|m| truncated(m)).collect(),
            epochs,
            ..Default::default()
        };
        let frame = |action| Frame {
            training_id: 1,
            seq: 0,
            action,
        };
        state.apply(&frame(Action::Register(register))).unwrap();
        for (e, values) in rows.iter().enumerate() {
            let stats = Stats {
                epoch: e as u32,
                duration_ms: 1,
                values: Values::from_slice(values).unwrap(),
            };
            state.apply(&frame(Action::Stats(stats))).unwrap();
        }
        state
    }

    fn texts(scene: &Scene) -> std::vec::Vec<&str> {
        scene.texts.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn the_producer_s_goals_pick_the_primary_metric_and_its_best() {
        use watchtrain_protocol::*;
        // By name `score` has no goal and `err_rate` is minimized; declared the other way round.
        let register = Register {
            name: truncated("t"),
            metrics: [truncated("err_rate"), truncated("score")]
                .into_iter()
                .collect(),
            epochs: 5,
            goals: [Goal::None, Goal::Maximize].into_iter().collect(),
            ..Default::default()
        };
        let mut state = TrainingState::new();
        let frame = |action| Frame {
            training_id: 1,
            seq: 0,
            action,
        };
        state.apply(&frame(Action::Register(register))).unwrap();
        for (e, v) in [[0.5, 1.0], [0.1, 3.0], [0.3, 2.0]].iter().enumerate() {
            let stats = Stats {
                epoch: e as u32,
                duration_ms: 1,
                values: Values::from_slice(v).unwrap(),
            };
            state.apply(&frame(Action::Stats(stats))).unwrap();
        }
        assert_eq!(primary_metric(&state), Some(1));
        assert!(texts(&layout(&state, Screen::VERSA3, &Theme::dark())).contains(&"best 2"));
    }

    #[test]
    fn metrics_without_a_goal_have_no_best() {
        let rows: [&[f32]; 3] = [&[0.1, 0.9], &[0.05, 0.95], &[0.01, 0.9]];
        let state = state_of(&["lr", "momentum"], 5, &rows);
        assert_eq!(primary_metric(&state), None);
        for screen in [Screen::VERSA3, Screen::new(960, 540)] {
            let scene = layout(&state, screen, &Theme::dark());
            assert!(!texts(&scene).iter().any(|t| t.starts_with("best")));
        }
        // With a maximized metric, its best is marked: the highest accuracy, epoch 2.
        let rows: [&[f32]; 3] = [&[0.1, 0.5], &[0.05, 0.8], &[0.01, 0.7]];
        let state = state_of(&["lr", "accuracy"], 5, &rows);
        assert_eq!(primary_metric(&state), Some(1));
        assert!(texts(&layout(&state, Screen::VERSA3, &Theme::dark())).contains(&"best 2"));
    }

    #[test]
    fn a_learning_rate_spanning_decades_is_drawn_on_a_log_axis() {
        // Loss 2..1, learning rate 1e-2 down to 1e-4: on a linear scale shared with
        // anything else the rate is a flat line at the bottom.
        let rows: [&[f32]; 5] = [
            &[2.0, 1e-2],
            &[1.6, 3e-3],
            &[1.3, 1e-3],
            &[1.1, 3e-4],
            &[1.0, 1e-4],
        ];
        let state = state_of(&["train_loss", "lr"], 5, &rows);
        let mut theme = Theme::dark();
        theme.metrics[1] = Rgb888::GREEN;
        let scene = layout(&state, Screen::new(960, 540), &theme);
        let ys: std::vec::Vec<i32> = scene
            .lines
            .iter()
            .filter(|l| l.color == Rgb888::GREEN)
            .flat_map(|l| [l.start.y, l.end.y])
            .collect();
        let (top, bottom) = (*ys.iter().min().unwrap(), *ys.iter().max().unwrap());
        assert!(bottom - top > 200, "lr spans {top}..{bottom}");
        // Even steps in log10: the drop from 1e-2 to 1e-3 is as tall as from 1e-3 to 1e-4.
        let (y0, y2, y4) = (ys[0], ys[3], ys[ys.len() - 1]);
        assert!(((y2 - y0) - (y4 - y2)).abs() <= 2, "{y0} {y2} {y4}");
        // The right axis is the rate's, in its colour, labelled in powers of ten.
        let labels: std::vec::Vec<&str> = scene
            .texts
            .iter()
            .filter(|t| t.color == Rgb888::GREEN)
            .map(|t| t.text.as_str())
            .collect();
        assert!(
            labels.contains(&"1e-3") && labels.contains(&"1e-2"),
            "{labels:?}"
        );
        // The left axis holds the loss, the bottom the epochs 1..5.
        let all = texts(&scene);
        assert!(all.contains(&"1.2") && all.contains(&"2"), "{all:?}");
        assert!(
            ["1", "2", "3", "4", "5"].iter().all(|e| all.contains(e)),
            "{all:?}"
        );
    }

    #[test]
    fn watch_faces_have_no_axes_and_large_faces_scale_their_text() {
        let rows: [&[f32]; 2] = [&[2.0, 0.5], &[1.0, 0.7]];
        let state = state_of(&["loss", "accuracy"], 4, &rows);
        let watch = layout(&state, Screen::VERSA3, &Theme::dark());
        assert_eq!(watch.scale, 1);
        assert!(!texts(&watch).contains(&"0.6"), "{:?}", texts(&watch));
        let desktop = layout(&state, Screen::new(960, 540), &Theme::dark());
        assert_eq!(desktop.scale, 1);
        assert!(texts(&desktop).contains(&"0.6"), "{:?}", texts(&desktop));
        // 1920x1080 is the 960x540 layout, painted twice as large.
        let large = layout(&state, Screen::new(1920, 1080), &Theme::dark());
        assert_eq!(large.scale, 2);
        assert_eq!(large.texts, desktop.texts);
        let (small_px, large_px) = (
            crate::render(&state, Screen::new(960, 540), &Theme::dark()),
            crate::render(&state, Screen::new(1920, 1080), &Theme::dark()),
        );
        // A title pixel of the small face is a 2x2 block of the large one.
        let title = desktop.texts[0].pos;
        for dx in 0..40 {
            let p = (title.x as u32 + dx, title.y as u32 - 4);
            let block = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .map(|(a, b)| large_px.pixel(2 * p.0 + a, 2 * p.1 + b));
            assert!(
                block.iter().all(|c| *c == small_px.pixel(p.0, p.1)),
                "at {p:?}"
            );
        }
    }

    #[test]
    fn the_readout_is_the_epoch_under_the_pointer() {
        let rows: [&[f32]; 3] = [&[2.0, 0.5], &[1.0, 0.7], &[0.8, 0.75]];
        let state = state_of(&["loss", "accuracy"], 3, &rows);
        let theme = Theme::dark();
        for screen in [
            Screen::new(960, 540),
            Screen::new(1920, 1080),
            Screen::VERSA3,
        ] {
            let (_, plot) = face(&state, screen, &theme);
            let p = plot.unwrap();
            let k = scale_for(screen) as i32;
            let mid_y = (p.chart.y0 + p.chart.y1) / 2 * k;
            for (epoch, values) in rows.iter().enumerate() {
                let x = p.chart.x(epoch as u32, p.span) * k;
                let r = readout(&state, screen, &theme, Point::new(x + 1, mid_y)).unwrap();
                assert_eq!((r.epoch, &r.values[..]), (epoch as u32, *values));
                assert!((r.x - x).abs() <= k);
            }
            assert_eq!(readout(&state, screen, &theme, Point::new(1, 1)), None);
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
