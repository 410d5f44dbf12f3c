//! Screens and colours.

use embedded_graphics::pixelcolor::Rgb888;
use watchtrain_protocol::Status;

/// The size of the face in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Screen {
    /// Fitbit Versa 3 and Sense: 336x336.
    pub const VERSA3: Screen = Screen::new(336, 336);
    /// Fitbit Versa 2 (and Versa, Versa Lite): 300x300.
    pub const VERSA2: Screen = Screen::new(300, 300);
    /// Fitbit Ionic: 348x250.
    pub const IONIC: Screen = Screen::new(348, 250);
    /// Smallest size the layout accepts; smaller sizes are clamped up to it.
    pub const MIN: Screen = Screen::new(160, 120);
    /// Largest size the layout accepts (a 4K browser window); larger sizes are clamped down.
    pub const MAX: Screen = Screen::new(4096, 4096);

    /// A screen of `width` x `height` pixels.
    pub const fn new(width: u32, height: u32) -> Screen {
        Screen { width, height }
    }

    /// This size clamped to [`Screen::MIN`]..=[`Screen::MAX`].
    pub fn clamped(self) -> Screen {
        Screen {
            width: self.width.clamp(Self::MIN.width, Self::MAX.width),
            height: self.height.clamp(Self::MIN.height, Self::MAX.height),
        }
    }
}

/// The face's colours.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    /// Background.
    pub background: Rgb888,
    /// Main text.
    pub text: Rgb888,
    /// Secondary text and axes.
    pub dim: Rgb888,
    /// Empty part of progress bars, chart frame.
    pub track: Rgb888,
    /// The epoch bar.
    pub epoch_bar: Rgb888,
    /// The train batch bar.
    pub train_bar: Rgb888,
    /// The valid batch bar.
    pub valid_bar: Rgb888,
    /// NaN/inf markers.
    pub alert: Rgb888,
    /// The best-epoch mark.
    pub best: Rgb888,
    /// One colour per metric, in registration order.
    pub metrics: [Rgb888; 8],
    /// Running and completed.
    pub ok: Rgb888,
    /// Stalled.
    pub warn: Rgb888,
}

impl Theme {
    /// Light curves on black: the watch's own look, and cheap on OLED.
    pub const fn dark() -> Theme {
        Theme {
            background: Rgb888::new(0, 0, 0),
            text: Rgb888::new(0xe8, 0xea, 0xed),
            dim: Rgb888::new(0x9a, 0xa0, 0xa6),
            track: Rgb888::new(0x30, 0x34, 0x3a),
            epoch_bar: Rgb888::new(0x4f, 0xc3, 0xf7),
            train_bar: Rgb888::new(0x7e, 0x8c, 0xe0),
            valid_bar: Rgb888::new(0xce, 0x93, 0xd8),
            alert: Rgb888::new(0xff, 0x52, 0x52),
            best: Rgb888::new(0xff, 0xd5, 0x4f),
            metrics: [
                Rgb888::new(0x4f, 0xc3, 0xf7), // light blue
                Rgb888::new(0xff, 0xa7, 0x26), // orange
                Rgb888::new(0x66, 0xbb, 0x6a), // green
                Rgb888::new(0xf0, 0x62, 0x92), // pink
                Rgb888::new(0xff, 0xee, 0x58), // yellow
                Rgb888::new(0xab, 0x47, 0xbc), // purple
                Rgb888::new(0x26, 0xc6, 0xda), // cyan
                Rgb888::new(0xbc, 0xaa, 0xa4), // taupe
            ],
            ok: Rgb888::new(0x3d, 0xdc, 0x84),
            warn: Rgb888::new(0xff, 0xa7, 0x26),
        }
    }

    /// The colour of a status word.
    pub fn status(&self, status: Status) -> Rgb888 {
        match status {
            Status::Waiting | Status::Cancelled => self.dim,
            Status::Running | Status::Completed => self.ok,
            Status::Stalled => self.warn,
            Status::Failed => self.alert,
        }
    }
}

impl Default for Theme {
    fn default() -> Self {
        Theme::dark()
    }
}
