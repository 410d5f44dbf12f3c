//! Prints the encoded sizes and the encode/decode cost of frames, next to the
//! ancestor's JSON for the same messages measured in the same run.
//!
//! `cargo run --release -p watchtrain-protocol --example bench`

use std::hint::black_box;
use std::time::Instant;
use watchtrain_protocol::*;

fn ns_per<F: FnMut()>(iterations: u32, mut f: F) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn main() {
    let metrics: MetricNames = ["train_loss", "valid_loss", "accuracy", "f1"]
        .iter()
        .map(|m| truncated(m))
        .collect();
    let progress = Frame {
        training_id: 3,
        seq: 1234,
        action: Action::Progress(Progress {
            phase: Phase::Train,
            epoch: 4,
            epochs: 10,
            batch: 17,
            batches: 48,
        }),
    };
    let stats = Frame {
        training_id: 3,
        seq: 1235,
        action: Action::Stats(Stats {
            epoch: 4,
            duration_ms: 12_000,
            values: Values::from_slice(&[0.595_065_9, 0.398_478_9, 0.872_395_8, 0.861_2]).unwrap(),
        }),
    };
    let mut state = TrainingState::new();
    state
        .apply(&Frame {
            training_id: 3,
            seq: 0,
            action: Action::Register(Register {
                name: truncated("resnet50 imagenette"),
                metrics,
                epochs: 100,
                ..Default::default()
            }),
        })
        .unwrap();
    for e in 0..100u32 {
        let x = e as f32;
        let values = Values::from_slice(&[
            1.0 / (1.0 + x),
            1.1 / (1.0 + x),
            1.0 - 0.5 / (1.0 + x),
            0.9 - 0.4 / (1.0 + x),
        ])
        .unwrap();
        let frame = Frame {
            training_id: 3,
            seq: e + 1,
            action: Action::Stats(Stats {
                epoch: e,
                duration_ms: 31_000,
                values,
            }),
        };
        state.apply(&frame).unwrap();
    }
    let snapshot = state.to_snapshot(3);

    println!("frame                         bytes   encode ns   decode ns   legacy JSON bytes   serde_json pretty enc ns / dec ns");
    for (name, frame) in [
        ("progress", &progress),
        ("stats, 4 metrics", &stats),
        ("snapshot, 100 epochs x 4", &snapshot),
    ] {
        let bytes = frame.to_bytes().unwrap();
        let mut buf = [0u8; MAX_FRAME_LEN];
        let enc = ns_per(200_000, || {
            black_box(black_box(frame).encode(&mut buf).unwrap().len());
        });
        let dec = ns_per(200_000, || {
            black_box(Frame::decode(black_box(&bytes)).unwrap());
        });
        // The ancestor's message for the same content: json.dumps(indent=2), as its callback sent it.
        let mut jbuf = [0u8; 2048];
        let legacy = match json::encode(frame, &state, &mut jbuf) {
            Ok(text) => {
                let value: serde_json::Value = serde_json::from_str(text).unwrap();
                Some(serde_json::to_string_pretty(&value).unwrap())
            }
            Err(_) => None,
        };
        match legacy {
            Some(text) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                let jenc = ns_per(50_000, || {
                    black_box(serde_json::to_string_pretty(black_box(&value)).unwrap());
                });
                let jdec = ns_per(50_000, || {
                    black_box(serde_json::from_str::<serde_json::Value>(black_box(&text)).unwrap());
                });
                println!(
                    "{name:<28} {:>6} {enc:>11.0} {dec:>11.0} {:>19}   {jenc:.0} / {jdec:.0}  (ours x{:.1} smaller)",
                    bytes.len(),
                    text.len(),
                    text.len() as f64 / bytes.len() as f64
                );
            }
            None => println!(
                "{name:<28} {:>6} {enc:>11.0} {dec:>11.0} {:>19}   (the ancestor sent a base64 PNG chart of tens of KB instead)",
                bytes.len(),
                "-"
            ),
        }
    }
    let apply = ns_per(200_000, || {
        let mut s = black_box(state.clone());
        black_box(s.apply(black_box(&progress)).unwrap());
    });
    println!("apply(progress) incl. clone of the state: {apply:.0} ns");
}
