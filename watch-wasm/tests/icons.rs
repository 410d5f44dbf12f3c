//! The icons exist twice: BMP for the renderer (tinybmp), PNG for the Fitbit
//! app's `<image>` elements. Both must show the same pixels.

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use tinybmp::Bmp;
use watchtrain_watch::icons::{Icon, ICON_SIZE, TRANSPARENT};

#[test]
fn every_png_shows_the_pixels_of_its_bmp() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("icons");
    for icon in Icon::ALL {
        let bmp = Bmp::<Rgb888>::from_slice(icon.bmp()).unwrap();
        let png = std::fs::read(dir.join(format!("{}.png", icon.name()))).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut rgba = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgba).unwrap();
        assert_eq!(
            (info.width, info.height, info.color_type),
            (ICON_SIZE, ICON_SIZE, png::ColorType::Rgba)
        );
        let mut opaque = 0;
        for Pixel(p, c) in bmp.pixels() {
            let i = (p.y as usize * ICON_SIZE as usize + p.x as usize) * 4;
            if c == TRANSPARENT {
                assert_eq!(
                    rgba[i + 3],
                    0,
                    "{} ({}, {}) should be transparent",
                    icon.name(),
                    p.x,
                    p.y
                );
            } else {
                assert_eq!(
                    &rgba[i..i + 4],
                    &[c.r(), c.g(), c.b(), 255],
                    "{} ({}, {})",
                    icon.name(),
                    p.x,
                    p.y
                );
                opaque += 1;
            }
        }
        assert!(opaque > 20, "{} is nearly empty", icon.name());
    }
}
