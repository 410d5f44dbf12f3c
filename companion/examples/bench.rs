//! Bytes sent to the watch, Watchtrain against its ancestor, on the same real training.
//!
//! Replays `protocol/tests/fixtures/fastai-callback.jsonl` (every message the
//! ancestor's fastai callback sent in a real 3-epoch training, with its
//! timestamps) through the companion's logic, and sums what goes to the watch:
//! once at the recorded pace (one paint a second at most, as on the wrist), and
//! once with a paint after every frame (the size of each kind of update). The
//! ancestor's figures come from `ancestor-server-to-watch.jsonl`, what its
//! server sent to its watch for the same messages. Run:
//! `cargo run -p watchtrain-companion --example bench`.

use serde_json::Value;
use watchtrain_companion::watch::Out;
use watchtrain_companion::{Core, Follow};
use watchtrain_protocol::json::{self, LegacyMessage};
use watchtrain_protocol::{Action, Frame, TrainingState};

fn lines(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/../protocol/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The fixture as timed relay frames (ms, frame).
fn frames() -> Vec<(f64, Frame)> {
    let mut state = TrainingState::new();
    let mut out = Vec::new();
    for line in lines("fastai-callback.jsonl") {
        let t = line["t_s"].as_f64().unwrap_or(0.0) * 1000.0;
        let text = line["text"].as_str().unwrap_or("");
        let Ok(message) = json::decode(text.as_bytes()) else {
            continue;
        };
        if let LegacyMessage::Register { .. } = message {
            // The relay registers a legacy training under its name.
            let _ = state.apply(&Frame {
                training_id: 1,
                seq: 0,
                action: Action::Register(watchtrain_protocol::Register {
                    name: watchtrain_protocol::truncated("fastai"),
                    ..Default::default()
                }),
            });
        }
        for frame in message.to_frames(1, &state) {
            let _ = state.apply(&frame);
            out.push((t, frame));
        }
    }
    out
}

fn size(out: &[Out]) -> usize {
    out.iter()
        .map(|m| match m {
            Out::Paint(bytes) => bytes.len(),
            Out::Message(v) => v.cbor_len(),
        })
        .sum()
}

/// The watch's report after `out` arrived: the picture its paints make (or `shown`), the relay
/// state taken. Returns the picture.
fn acknowledge(core: &mut Core, out: &[Out], t: f64, shown: u16) -> u16 {
    let picture = out
        .iter()
        .rev()
        .find_map(|m| match m {
            Out::Paint(b) => Some(u16::from_le_bytes([b[2], b[3]])),
            Out::Message(_) => None,
        })
        .unwrap_or(shown);
    let relay = core.relay() as i64 as f64;
    core.watch_message(&[1.0, 1.0, picture.into(), 0.0, relay], t);
    picture
}

fn median(mut v: Vec<usize>) -> usize {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn main() {
    let frames = frames();
    let epochs = frames
        .iter()
        .filter(|(_, f)| matches!(f.action, Action::Stats(_)))
        .count()
        .max(1);
    let relay_bytes: usize = frames
        .iter()
        .map(|(_, f)| f.to_bytes().map_or(0, |b| b.len()))
        .sum();
    let progress_frame = frames
        .iter()
        .find_map(|(_, f)| {
            matches!(f.action, Action::Progress(_)).then(|| f.to_bytes().map_or(0, |b| b.len()))
        })
        .unwrap_or(0);

    // At the recorded pace: what the wrist really gets (coalesced to one paint a second).
    let mut core = Core::new(Follow::Latest);
    let hello = core.watch_message(&[1.0, 1.0], 0.0);
    let mut paced = size(&hello);
    let full_repaint = paced;
    let mut paced_messages = hello.len();
    for (t, frame) in &frames {
        while let Some(due) = core.next_paint_ms().filter(|d| d <= t) {
            let out = core.tick(due);
            paced_messages += out.len();
            paced += size(&out);
        }
        let out = core.relay_frame(&frame.to_bytes().expect("frame"), *t);
        paced_messages += out.len();
        paced += size(&out);
    }
    let end = frames.last().map_or(0.0, |(t, _)| *t) + 1000.0;
    let out = core.tick(end);
    paced_messages += out.len();
    paced += size(&out);

    // A paint after every frame, each acknowledged by the watch: the size of one update of each kind.
    let mut core = Core::new(Follow::Latest);
    let hello = core.watch_message(&[1.0, 1.0], 0.0);
    let mut shown = acknowledge(&mut core, &hello, 0.0, 0);
    let (mut progress, mut stats) = (Vec::new(), Vec::new());
    for (i, (_, frame)) in frames.iter().enumerate() {
        let t = 10_000.0 * (i as f64 + 1.0);
        let out = core.relay_frame(&frame.to_bytes().expect("frame"), t);
        shown = acknowledge(&mut core, &out, t + 10.0, shown);
        match frame.action {
            Action::Progress(_) if !out.is_empty() => progress.push(size(&out)),
            Action::Stats(_) => stats.push(size(&out)),
            _ => {}
        }
    }

    // The ancestor, from its own capture.
    let ancestor = lines("ancestor-server-to-watch.jsonl");
    let bytes_of = |v: &Value| v["bytes"].as_u64().unwrap_or(0) as usize;
    let action_of = |v: &Value| {
        let text = v["text"]
            .as_str()
            .or(v["text_elided"].as_str())
            .unwrap_or("");
        ["training_progress", "training_stats", "metric_image"]
            .into_iter()
            .find(|a| text.contains(a))
            .unwrap_or("other")
    };
    let ancestor_total: usize = ancestor.iter().map(bytes_of).sum();
    let ancestor_progress: Vec<usize> = ancestor
        .iter()
        .filter(|v| action_of(v) == "training_progress")
        .map(bytes_of)
        .collect();
    let ancestor_image: Vec<usize> = ancestor
        .iter()
        .filter(|v| action_of(v) == "metric_image")
        .map(bytes_of)
        .collect();
    let ancestor_stats: Vec<usize> = ancestor
        .iter()
        .filter(|v| action_of(v) == "training_stats")
        .map(bytes_of)
        .collect();

    println!(
        "bench: the fastai fixture, {} frames, {epochs} epochs",
        frames.len()
    );
    println!("| figure | Watchtrain | ancestor |");
    println!("|---|---|---|");
    println!(
        "| relay frame per progress update | {progress_frame} B | {} B JSON |",
        median(ancestor_progress.clone())
    );
    println!(
        "| watch message per progress update (median) | {} B | {} B JSON |",
        median(progress.clone()),
        median(ancestor_progress)
    );
    println!(
        "| watch update per epoch's stats (median) | {} B | {} B JSON + {} B chart image |",
        median(stats),
        median(ancestor_stats),
        median(ancestor_image)
    );
    println!("| full repaint (watch (re)connects) | {full_repaint} B | - |");
    println!(
        "| to the watch per epoch, at the recorded pace | {} B | {} B |",
        paced / epochs,
        ancestor_total / epochs
    );
    println!(
        "| to the watch in the whole run ({:.1} s) | {paced} B in {} messages | {ancestor_total} B in {} messages |",
        end / 1000.0,
        paced_messages,
        ancestor.len()
    );
    println!(
        "| relay frames per epoch | {} B | - |",
        relay_bytes / epochs
    );
}
