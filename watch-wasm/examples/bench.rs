//! Render benchmark (native): prints ns per full face (layout + paint into an RGBA
//! framebuffer) per screen and scenario, plus layout alone, vector encoding and PNG.
//! `cargo run --release -p watchtrain-watch --example bench`. Prints figures; asserts nothing.

#[path = "../tests/scenarios/mod.rs"]
mod scenarios;

use std::hint::black_box;
use std::time::Instant;

use watchtrain_watch::{layout, render, vector, Framebuffer, Screen, Theme};

fn ns_per<F: FnMut()>(mut f: F) -> f64 {
    // Warm up, then run for about 300 ms.
    for _ in 0..20 {
        f();
    }
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed().as_millis() < 300 {
        for _ in 0..10 {
            f();
        }
        n += 10;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let theme = Theme::dark();
    let screens = [
        Screen::VERSA3,
        Screen::VERSA2,
        Screen::IONIC,
        Screen::new(960, 540),
    ];
    println!("native, ns per operation (release build)");
    println!(
        "{:<14} {:>9} {:>12} {:>10} {:>10} {:>10}",
        "scenario", "screen", "full face", "layout", "vector", "png"
    );
    for name in ["mid_epoch", "decimated_200", "long_names"] {
        let state = scenarios::state(name).unwrap();
        for screen in screens {
            let mut fb = Framebuffer::new(screen.width, screen.height);
            let full = ns_per(|| {
                let scene = layout(black_box(&state), screen, &theme);
                let _ = scene.draw(&mut fb);
                black_box(&fb);
            });
            let lay = ns_per(|| {
                black_box(layout(black_box(&state), screen, &theme));
            });
            let scene = layout(&state, screen, &theme);
            let vec = ns_per(|| {
                black_box(vector::encode(black_box(&scene), None));
            });
            let fb = render(&state, screen, &theme);
            let png = ns_per(|| {
                black_box(fb.to_png());
            });
            println!(
                "{:<14} {:>9} {:>12.0} {:>10.0} {:>10.0} {:>10.0}",
                name,
                format!("{}x{}", screen.width, screen.height),
                full,
                lay,
                vec,
                png
            );
        }
    }
}
