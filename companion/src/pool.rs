//! What the watch shows: a fixed pool of SVG elements and the state of each.
//!
//! The Fitbit app declares every element in `fitbit-app/resources/index.view`
//! (`r0..`, `l0..`, `t0..`, `i0..`); it cannot create elements at run time.
//! A [`Pool`] is the state of all of them: element `i` of a kind is either
//! hidden (`None`) or shown with its attributes. The companion keeps the pool
//! the watch has and sends only the elements that differ.

/// `rect` elements on the watch (`r0..`): progress bars, background, boxes.
pub const RECTS: usize = 24;
/// `line` elements on the watch (`l0..`): chart segments, axes, marks.
pub const LINES: usize = 160;
/// `text` elements on the watch (`t0..`): labels and values.
pub const TEXTS: usize = 32;
/// `image` elements on the watch (`i0..`): status icons.
pub const IMAGES: usize = 2;
/// Longest text the watch's `text` elements hold (`text-length` in index.view).
pub const TEXT_LEN: usize = 40;

/// A filled rectangle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
    /// Fill colour, `0xRRGGBB`.
    pub color: u32,
}

/// A straight line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Start x.
    pub x1: i32,
    /// Start y.
    pub y1: i32,
    /// End x.
    pub x2: i32,
    /// End y.
    pub y2: i32,
    /// Stroke width in pixels.
    pub width: i32,
    /// Colour, `0xRRGGBB`.
    pub color: u32,
}

/// Where a text's `x` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// `x` is the left edge (`text-anchor="start"`).
    Start = 0,
    /// `x` is the centre.
    Middle = 1,
    /// `x` is the right edge.
    End = 2,
}

/// A line of text; `y` is the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Anchor x.
    pub x: i32,
    /// Baseline y.
    pub y: i32,
    /// Font size in pixels.
    pub size: i32,
    /// What `x` is.
    pub anchor: Anchor,
    /// Colour, `0xRRGGBB`.
    pub color: u32,
    /// The text, at most [`TEXT_LEN`] bytes.
    pub text: String,
}

/// An icon; `x`, `y` is its top-left corner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// The icon's number (the watch maps it to `icons/NAME.png`).
    pub icon: u8,
}

/// The state of every element of the watch's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// `r0..`.
    pub rects: Vec<Option<Rect>>,
    /// `l0..`.
    pub lines: Vec<Option<Line>>,
    /// `t0..`.
    pub texts: Vec<Option<Text>>,
    /// `i0..`.
    pub images: Vec<Option<Image>>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

impl Pool {
    /// Every element hidden.
    pub fn new() -> Pool {
        Pool {
            rects: vec![None; RECTS],
            lines: vec![None; LINES],
            texts: vec![None; TEXTS],
            images: vec![None; IMAGES],
        }
    }

    /// Shows the next free rect; dropped silently when the pool is full.
    pub fn rect(&mut self, rect: Rect) {
        put(&mut self.rects, rect);
    }

    /// Shows the next free line; dropped silently when the pool is full.
    pub fn line(&mut self, line: Line) {
        put(&mut self.lines, line);
    }

    /// Shows the next free text, cut to [`TEXT_LEN`] bytes; dropped when the pool is full.
    pub fn text(&mut self, mut text: Text) {
        if text.text.len() > TEXT_LEN {
            let mut end = TEXT_LEN;
            while !text.text.is_char_boundary(end) {
                end -= 1;
            }
            text.text.truncate(end);
        }
        put(&mut self.texts, text);
    }

    /// Shows the next free image; dropped when the pool is full.
    pub fn image(&mut self, image: Image) {
        put(&mut self.images, image);
    }

    /// How many elements are shown.
    pub fn shown(&self) -> usize {
        fn count<T>(v: &[Option<T>]) -> usize {
            v.iter().filter(|e| e.is_some()).count()
        }
        count(&self.rects) + count(&self.lines) + count(&self.texts) + count(&self.images)
    }
}

fn put<T>(slots: &mut [Option<T>], item: T) {
    if let Some(slot) = slots.iter_mut().find(|s| s.is_none()) {
        *slot = Some(item);
    }
}
