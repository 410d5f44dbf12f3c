//! Renders frames natively: `cargo run -p watchtrain-watch --example render -- FRAMES W H OUT`
//! where FRAMES holds records (u16 LE length, frame bytes), as the fixtures and the
//! browser test write them. OUT ending in `.png` gets a PNG, anything else raw RGBA.

use watchtrain_protocol::{Frame, TrainingState};
use watchtrain_watch::{render, Screen, Theme};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [frames, w, h, out] = &args[..] else {
        eprintln!("usage: render FRAMES W H OUT");
        std::process::exit(2);
    };
    let bytes = std::fs::read(frames).unwrap();
    let mut state = TrainingState::new();
    let mut i = 0;
    while i + 2 <= bytes.len() {
        let len = usize::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]));
        let frame = Frame::decode(&bytes[i + 2..i + 2 + len]).unwrap();
        state.apply(&frame).unwrap();
        i += 2 + len;
    }
    let fb = render(
        &state,
        Screen::new(w.parse().unwrap(), h.parse().unwrap()),
        &Theme::dark(),
    );
    let data = if out.ends_with(".png") {
        fb.to_png()
    } else {
        fb.data().to_vec()
    };
    std::fs::write(out, data).unwrap();
}
