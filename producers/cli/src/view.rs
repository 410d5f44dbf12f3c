//! The terminal view of a training: status line, progress bars, one line per
//! metric with its latest and best value and a text sparkline of the history.

use std::fmt::Write;

use watchtrain_protocol::format::{duration, value};
use watchtrain_protocol::{Bar, Status, TrainingState};

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of `values`: one block per value, scaled between the finite
/// minimum and maximum; NaN is a gap (` `), an infinity is `!`.
///
/// ```
/// assert_eq!(watchtrain_cli::view::sparkline(&[0.0, 0.5, 1.0, f32::NAN, f32::INFINITY]), "▁▅█ !");
/// ```
pub fn sparkline(values: &[f32]) -> String {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    values
        .iter()
        .map(|&v| {
            if v.is_nan() {
                ' '
            } else if v.is_infinite() {
                '!'
            } else if hi - lo <= f32::EPSILON * hi.abs().max(1.0) {
                BLOCKS[3]
            } else {
                let i = ((v - lo) / (hi - lo) * 7.0).round() as usize;
                BLOCKS[i.min(7)]
            }
        })
        .collect()
}

/// A progress bar `[#####.....]  5/10` of `width` cells.
pub fn bar(bar: &Bar, width: usize) -> String {
    let filled = if bar.total == 0 {
        0
    } else {
        (bar.done.min(bar.total) as usize * width) / bar.total as usize
    };
    let total = if bar.total == 0 {
        "?".to_string()
    } else {
        bar.total.to_string()
    };
    format!(
        "[{}{}] {}/{}",
        "#".repeat(filled),
        ".".repeat(width - filled),
        bar.done,
        total
    )
}

/// The whole view of `state` (training `id`), `width` columns wide.
pub fn render(id: u32, state: &TrainingState, width: usize) -> String {
    let width = width.max(40);
    let mut out = String::new();
    let name = if state.name().is_empty() {
        "(unnamed)"
    } else {
        state.name().as_str()
    };
    let epochs = if state.epochs() == 0 {
        "?".to_string()
    } else {
        state.epochs().to_string()
    };
    let _ = write!(
        out,
        "#{id} {name} · {} · epoch {}/{epochs}",
        state.status().as_str(),
        state.epoch() + 1
    );
    match state.eta_ms() {
        Some(eta) if !state.status().is_finished() => {
            let _ = write!(out, " · ETA {}", duration(eta));
        }
        _ => {}
    }
    if state.status().is_finished() && !state.reason().is_empty() {
        let _ = write!(out, " · {}", state.reason());
    }
    out.push('\n');
    let bar_width = (width - 20).min(40);
    let _ = writeln!(out, "train {}", bar(&state.train(), bar_width));
    let _ = writeln!(out, "valid {}", bar(&state.valid(), bar_width));
    let name_width = state
        .metrics()
        .iter()
        .map(|m| m.chars().count())
        .max()
        .unwrap_or(0);
    for (i, metric) in state.metrics().iter().enumerate() {
        let mut series: Vec<f32> = Vec::new();
        let mut last_row_epoch = None;
        for (epoch, row) in state.history_rows() {
            series.push(row.get(i).copied().unwrap_or(f32::NAN));
            last_row_epoch = Some(epoch);
        }
        let latest = state.latest().get(i).copied();
        if let (Some(latest_epoch), Some(v)) = (state.latest_epoch(), latest) {
            if last_row_epoch != Some(latest_epoch) {
                series.push(v);
            }
        }
        let spark_room = width.saturating_sub(name_width + 36).max(8);
        if series.len() > spark_room {
            series.drain(..series.len() - spark_room);
        }
        // Only a metric with a goal has a best (not a learning rate).
        let best = state
            .best_of(i)
            .map(|b| format!("best {} (e{})", value(b.value), b.epoch + 1))
            .unwrap_or_default();
        let latest = latest.map_or_else(|| "-".to_string(), |v| value(v).to_string());
        let _ = writeln!(
            out,
            "{metric:<name_width$}  {latest:>10}  {best:<20} {}",
            sparkline(&series)
        );
    }
    if state.status() == Status::Stalled {
        out.push_str("(nothing arrived from the training for a while)\n");
    }
    out
}
