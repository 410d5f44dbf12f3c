//! The face's icons: 16x16 BMP files drawn with tinybmp.
//!
//! The BMPs (and PNG copies for the Fitbit app's `<image>` elements) are made by
//! `watch-wasm/icons/make_icons.py` from ASCII art. Magenta (`#ff00ff`) is transparent.

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use tinybmp::Bmp;
use watchtrain_protocol::Status;

/// Icon width and height in pixels.
pub const ICON_SIZE: u32 = 16;

/// The transparent colour key of the BMPs.
pub const TRANSPARENT: Rgb888 = Rgb888::new(0xff, 0x00, 0xff);

/// One of the face's icons. The discriminant is the icon's number in vector ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Icon {
    /// Hourglass: waiting for data.
    Waiting = 0,
    /// Play: running.
    Running = 1,
    /// Pause: stalled.
    Stalled = 2,
    /// Check mark: completed.
    Completed = 3,
    /// Cross: failed.
    Failed = 4,
    /// Square: cancelled.
    Cancelled = 5,
    /// The Watchtrain logo: a watch with a rising curve.
    Logo = 6,
}

impl Icon {
    /// Every icon, in number order.
    pub const ALL: [Icon; 7] = [
        Icon::Waiting,
        Icon::Running,
        Icon::Stalled,
        Icon::Completed,
        Icon::Failed,
        Icon::Cancelled,
        Icon::Logo,
    ];

    /// The icon of a training status.
    pub fn for_status(status: Status) -> Icon {
        match status {
            Status::Waiting => Icon::Waiting,
            Status::Running => Icon::Running,
            Status::Stalled => Icon::Stalled,
            Status::Completed => Icon::Completed,
            Status::Failed => Icon::Failed,
            Status::Cancelled => Icon::Cancelled,
        }
    }

    /// The icon of a vector-op number.
    pub fn from_number(n: u8) -> Option<Icon> {
        Self::ALL.get(usize::from(n)).copied()
    }

    /// The file name without extension (`icons/<name>.bmp`, `icons/<name>.png`).
    pub fn name(self) -> &'static str {
        match self {
            Icon::Waiting => "waiting",
            Icon::Running => "running",
            Icon::Stalled => "stalled",
            Icon::Completed => "completed",
            Icon::Failed => "failed",
            Icon::Cancelled => "cancelled",
            Icon::Logo => "logo",
        }
    }

    /// The BMP file's bytes.
    pub fn bmp(self) -> &'static [u8] {
        match self {
            Icon::Waiting => include_bytes!("../icons/waiting.bmp"),
            Icon::Running => include_bytes!("../icons/running.bmp"),
            Icon::Stalled => include_bytes!("../icons/stalled.bmp"),
            Icon::Completed => include_bytes!("../icons/completed.bmp"),
            Icon::Failed => include_bytes!("../icons/failed.bmp"),
            Icon::Cancelled => include_bytes!("../icons/cancelled.bmp"),
            Icon::Logo => include_bytes!("../icons/logo.bmp"),
        }
    }

    /// Paints the icon with its top-left corner at `pos`, skipping transparent pixels.
    pub fn draw<D>(self, pos: Point, target: &mut D) -> Result<(), D::Error>
    where
        D: DrawTarget,
        D::Color: From<Rgb888>,
    {
        // The BMPs are checked in and tested; a bad one draws nothing rather than panicking.
        let Ok(bmp) = Bmp::<Rgb888>::from_slice(self.bmp()) else {
            return Ok(());
        };
        target.draw_iter(
            bmp.pixels()
                .filter(|p| p.1 != TRANSPARENT)
                .map(|Pixel(p, c)| Pixel(p + pos, c.into())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;

    #[test]
    fn the_stop_icon_is_a_grey_square_on_transparent() {
        let mut display: MockDisplay<Rgb888> = MockDisplay::new();
        Icon::Cancelled.draw(Point::zero(), &mut display).unwrap();
        let grey = Rgb888::new(0x9a, 0xa0, 0xa6);
        let expected: Vec<Pixel<Rgb888>> = (3..13)
            .flat_map(|y| (3..13).map(move |x| Pixel(Point::new(x, y), grey)))
            .collect();
        let mut want: MockDisplay<Rgb888> = MockDisplay::new();
        want.draw_iter(expected).unwrap();
        display.assert_eq(&want);
    }

    #[test]
    fn every_icon_is_a_16x16_bmp() {
        for icon in Icon::ALL {
            let bmp = Bmp::<Rgb888>::from_slice(icon.bmp()).unwrap();
            assert_eq!(
                bmp.size(),
                Size::new(ICON_SIZE, ICON_SIZE),
                "{}",
                icon.name()
            );
            assert_eq!(Icon::from_number(icon as u8), Some(icon));
        }
    }
}
