//! Writes what the native build makes of every scenario, for the wasm-vs-native
//! test (`js/wasm-vs-native.test.mjs`):
//! `cargo run -p watchtrain-watch --example fixtures -- DIR`
//!
//! - `DIR/<scenario>.frames`: the scenario's frames, each as a u16 LE length then the bytes;
//! - `DIR/<scenario>_<w>x<h>.rgba`: the native framebuffer after all frames;
//! - `DIR/<scenario>_<w>x<h>.ops`: the full-repaint vector messages, each u16 LE length then bytes;
//! - `DIR/index.json`: the scenarios and screens.

#[path = "../tests/scenarios/mod.rs"]
mod scenarios;

use watchtrain_watch::{layout, render, vector, Screen, Theme};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: fixtures DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let screens = [
        Screen::VERSA3,
        Screen::VERSA2,
        Screen::IONIC,
        Screen::new(800, 480),
        // Painted twice as large (Scene::scale 2): the block adapter and the long-line pieces.
        Screen::new(1600, 900),
    ];
    for name in scenarios::NAMES {
        let mut frames = Vec::new();
        for f in scenarios::frames(name).unwrap() {
            let bytes = f.to_bytes().unwrap();
            frames.extend((bytes.len() as u16).to_le_bytes());
            frames.extend(bytes.iter());
        }
        std::fs::write(dir.join(format!("{name}.frames")), frames).unwrap();
        let state = scenarios::state(name).unwrap();
        for s in screens {
            let stem = format!("{name}_{}x{}", s.width, s.height);
            std::fs::write(
                dir.join(format!("{stem}.rgba")),
                render(&state, s, &Theme::dark()).data(),
            )
            .unwrap();
            let mut ops = Vec::new();
            for m in vector::encode(&layout(&state, s, &Theme::dark()), None) {
                ops.extend((m.len() as u16).to_le_bytes());
                ops.extend(m);
            }
            std::fs::write(dir.join(format!("{stem}.ops")), ops).unwrap();
        }
    }
    let screens: Vec<String> = screens
        .iter()
        .map(|s| format!("[{}, {}]", s.width, s.height))
        .collect();
    let names: Vec<String> = scenarios::NAMES
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    std::fs::write(
        dir.join("index.json"),
        format!(
            "{{\"scenarios\": [{}], \"screens\": [{}]}}\n",
            names.join(", "),
            screens.join(", ")
        ),
    )
    .unwrap();
}
