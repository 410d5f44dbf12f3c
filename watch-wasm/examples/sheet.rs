//! Writes a contact sheet of faces: `cargo run -p watchtrain-watch --example sheet -- OUT.png [SCENARIO...]`.
//! Each row is one scenario on 336x336, 300x300 and 348x250 (default: every scenario).

#[path = "../tests/scenarios/mod.rs"]
mod scenarios;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use watchtrain_watch::{render, Framebuffer, Screen, Theme};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: sheet OUT.png [SCENARIO...]");
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = scenarios::NAMES.iter().map(|s| s.to_string()).collect();
    }
    let screens = [Screen::VERSA3, Screen::VERSA2, Screen::IONIC];
    let gap = 8;
    let width = screens.iter().map(|s| s.width + gap).sum::<u32>() + gap;
    let height = names.len() as u32 * (336 + gap) + gap;
    let mut sheet = Framebuffer::new(width, height);
    sheet
        .fill_solid(
            &Rectangle::new(Point::zero(), Size::new(width, height)),
            Rgb888::new(60, 60, 70),
        )
        .unwrap();
    for (row, name) in names.iter().enumerate() {
        let state = scenarios::state(name).unwrap_or_else(|| panic!("unknown scenario {name}"));
        let mut x = gap;
        for screen in screens {
            let fb = render(&state, screen, &Theme::dark());
            let y0 = gap + row as u32 * (336 + gap);
            let pixels = (0..screen.height).flat_map(|y| (0..screen.width).map(move |x| (x, y)));
            sheet
                .draw_iter(pixels.map(|(px, py)| {
                    Pixel(
                        Point::new((x + px) as i32, (y0 + py) as i32),
                        fb.pixel(px, py).unwrap(),
                    )
                }))
                .unwrap();
            x += screen.width + gap;
        }
    }
    std::fs::write(&out, sheet.to_png()).unwrap();
}
