//! The scene: what [`layout`](crate::layout) decides to show, as a short list of
//! embedded-graphics primitives with their styles, and its raster backend.
//!
//! A scene is four fixed pools, one per kind of primitive, painted in this
//! order: rectangles, then lines, then texts, then icons. The same pools are the
//! Fitbit app's SVG elements (see [`vector`](crate::vector)): item `i` of a
//! pool is element `i` of that kind, so the watch paints exactly this scene.

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10, FONT_7X13, FONT_9X18_BOLD};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use heapless::{String, Vec};

use crate::icons::Icon;
use crate::theme::Screen;

/// Rectangles in a scene (and `rect` elements in the Fitbit pool).
pub const MAX_RECTS: usize = 24;
/// Lines in a scene (and `line` elements in the Fitbit pool).
pub const MAX_LINES: usize = 160;
/// Texts in a scene (and `text` elements in the Fitbit pool).
pub const MAX_TEXTS: usize = 32;
/// Icons in a scene (and `image` elements in the Fitbit pool).
pub const MAX_IMAGES: usize = 2;
/// Longest text item, in bytes.
pub const MAX_TEXT_LEN: usize = 40;

/// The fonts of the face: embedded-graphics mono fonts, named by their pixel height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Font {
    /// 6x10.
    Small,
    /// 7x13.
    Medium,
    /// 9x18 bold.
    Bold,
    /// 10x20.
    Large,
}

impl Font {
    /// The embedded-graphics font.
    pub fn mono(self) -> &'static MonoFont<'static> {
        match self {
            Font::Small => &FONT_6X10,
            Font::Medium => &FONT_7X13,
            Font::Bold => &FONT_9X18_BOLD,
            Font::Large => &FONT_10X20,
        }
    }

    /// Character cell height in pixels (the `size` of a vector text op).
    pub fn height(self) -> u8 {
        self.mono().character_size.height as u8
    }

    /// Character advance in pixels.
    pub fn advance(self) -> u32 {
        self.mono().character_size.width + self.mono().character_spacing
    }

    /// The font of a given cell height, the nearest not larger (for decoding vector ops).
    pub fn from_height(height: u8) -> Font {
        match height {
            0..=12 => Font::Small,
            13..=17 => Font::Medium,
            18..=19 => Font::Bold,
            _ => Font::Large,
        }
    }
}

/// Where a text's `pos.x` is: its start, middle or end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// `pos.x` is the left edge.
    Start,
    /// `pos.x` is the centre.
    Middle,
    /// `pos.x` is the right edge.
    End,
}

/// A filled rectangle.
#[derive(Debug, Clone, PartialEq)]
pub struct RectItem {
    /// Where.
    pub rect: Rectangle,
    /// Fill colour.
    pub color: Rgb888,
}

/// A straight line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineItem {
    /// One end.
    pub start: Point,
    /// The other end.
    pub end: Point,
    /// Stroke width in pixels.
    pub width: u8,
    /// Stroke colour.
    pub color: Rgb888,
}

/// A line of text; `pos.y` is the alphabetic baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct TextItem {
    /// Anchor point, on the baseline.
    pub pos: Point,
    /// The text (ASCII; other characters show as `?`).
    pub text: String<MAX_TEXT_LEN>,
    /// Font.
    pub font: Font,
    /// What `pos.x` is.
    pub anchor: Anchor,
    /// Colour.
    pub color: Rgb888,
}

/// An icon (a BMP drawn with tinybmp); `pos` is its top-left corner.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// Top-left corner.
    pub pos: Point,
    /// Which icon.
    pub icon: Icon,
}

/// What the face shows: four pools of primitives, painted rects, lines, texts, icons.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// The screen the scene was laid out for.
    pub screen: Screen,
    /// How many screen pixels one scene unit is (1 on a watch): a large face is laid
    /// out at a fraction of its size and painted `scale` times larger, so its text
    /// grows with it. The vector ops (for a watch) ignore it.
    pub scale: u32,
    /// Filled rectangles; the first is the background.
    pub rects: Vec<RectItem, MAX_RECTS>,
    /// Lines (chart curves, axes, marks).
    pub lines: Vec<LineItem, MAX_LINES>,
    /// Texts.
    pub texts: Vec<TextItem, MAX_TEXTS>,
    /// Icons.
    pub images: Vec<ImageItem, MAX_IMAGES>,
}

impl Scene {
    /// An empty scene for `screen`.
    pub fn new(screen: Screen) -> Scene {
        Scene {
            screen,
            scale: 1,
            rects: Vec::new(),
            lines: Vec::new(),
            texts: Vec::new(),
            images: Vec::new(),
        }
    }

    /// Adds a filled rectangle; dropped (like anything off-screen) when the pool is full.
    pub fn rect(&mut self, top_left: Point, size: Size, color: Rgb888) {
        let _ = self.rects.push(RectItem {
            rect: Rectangle::new(top_left, size),
            color,
        });
    }

    /// Adds a line; dropped when the pool is full.
    pub fn line(&mut self, start: Point, end: Point, width: u8, color: Rgb888) {
        let _ = self.lines.push(LineItem {
            start,
            end,
            width,
            color,
        });
    }

    /// Adds a text, cut to [`MAX_TEXT_LEN`] bytes; dropped when the pool is full.
    pub fn text(&mut self, pos: Point, text: &str, font: Font, anchor: Anchor, color: Rgb888) {
        let _ = self.texts.push(TextItem {
            pos,
            text: watchtrain_protocol::truncated(text),
            font,
            anchor,
            color,
        });
    }

    /// Adds an icon; dropped when the pool is full.
    pub fn image(&mut self, pos: Point, icon: Icon) {
        let _ = self.images.push(ImageItem { pos, icon });
    }

    /// Paints the scene onto any draw target whose colour converts from [`Rgb888`]
    /// (e.g. `Rgb888` or `Rgb565`). Pixels outside the target are dropped.
    pub fn draw<D>(&self, target: &mut D) -> Result<(), D::Error>
    where
        D: DrawTarget,
        D::Color: From<Rgb888>,
    {
        if self.scale > 1 {
            self.draw_scaled_shapes(target)?;
        } else {
            for r in &self.rects {
                draw_rect(r, target)?;
            }
            for l in &self.lines {
                draw_line(l, target)?;
            }
        }
        // Texts and icons through one adapter, enlarged when scaled: one copy of the
        // font and bitmap code in the wasm.
        let mut blocks = Blocks {
            target,
            k: self.scale.max(1),
        };
        for t in &self.texts {
            draw_text(t, &mut blocks)?;
        }
        for i in &self.images {
            i.icon.draw(i.pos, &mut blocks)?;
        }
        Ok(())
    }
}

impl Scene {
    /// The rectangles and lines of [`Scene::draw`] at `scale`, at full resolution.
    fn draw_scaled_shapes<D>(&self, target: &mut D) -> Result<(), D::Error>
    where
        D: DrawTarget,
        D::Color: From<Rgb888>,
    {
        let k = self.scale;
        let ki = k as i32;
        // A line runs through the middle of its pixels' blocks.
        let mid = |p: Point| p * ki + Point::new(ki / 2, ki / 2);
        for r in &self.rects {
            let rect = Rectangle::new(r.rect.top_left * ki, r.rect.size * k);
            target.fill_solid(&rect, r.color.into())?;
        }
        for l in &self.lines {
            let (start, end) = (mid(l.start), mid(l.end));
            let width = (u32::from(l.width) * k).min(MAX_SCALED_WIDTH) as u8;
            // embedded-graphics squares width times length in an i32: long thick lines
            // are drawn in pieces of at most MAX_PIECE pixels.
            let d = end - start;
            let pieces = (d.x.unsigned_abs().max(d.y.unsigned_abs()) / MAX_PIECE + 1) as i32;
            let at = |i: i32| start + d * i / pieces;
            for i in 0..pieces {
                let piece = LineItem {
                    start: at(i),
                    end: at(i + 1),
                    width,
                    color: l.color,
                };
                draw_line(&piece, target)?;
            }
        }
        Ok(())
    }
}

/// The widest line of a scaled scene, in pixels.
const MAX_SCALED_WIDTH: u32 = 24;
/// The longest piece (in x or y) a scaled line is drawn in: (2 x 24)^2 x 2 x 600^2 fits an i32.
const MAX_PIECE: u32 = 600;

/// A draw target that paints each pixel as a `k` x `k` block of the target below.
struct Blocks<'a, D> {
    target: &'a mut D,
    k: u32,
}

impl<D: DrawTarget> OriginDimensions for Blocks<'_, D> {
    fn size(&self) -> Size {
        self.target.bounding_box().size / self.k
    }
}

impl<D: DrawTarget> DrawTarget for Blocks<'_, D> {
    type Color = D::Color;
    type Error = D::Error;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let k = self.k;
        for Pixel(p, color) in pixels {
            let block = Rectangle::new(p * k as i32, Size::new(k, k));
            self.target.fill_solid(&block, color)?;
        }
        Ok(())
    }
}

/// Paints one rectangle item.
pub fn draw_rect<D>(r: &RectItem, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget,
    D::Color: From<Rgb888>,
{
    target.fill_solid(&r.rect, r.color.into())
}

/// Paints one line item.
pub fn draw_line<D>(l: &LineItem, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget,
    D::Color: From<Rgb888>,
{
    Line::new(l.start, l.end)
        .into_styled(PrimitiveStyle::with_stroke(
            l.color.into(),
            u32::from(l.width),
        ))
        .draw(target)
}

/// Paints one text item.
pub fn draw_text<D>(t: &TextItem, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget,
    D::Color: From<Rgb888>,
{
    let character_style = MonoTextStyle::new(t.font.mono(), t.color.into());
    let alignment = match t.anchor {
        Anchor::Start => Alignment::Left,
        Anchor::Middle => Alignment::Center,
        Anchor::End => Alignment::Right,
    };
    let text_style = TextStyleBuilder::new()
        .alignment(alignment)
        .baseline(Baseline::Alphabetic)
        .build();
    Text::with_text_style(&t.text, t.pos, character_style, text_style).draw(target)?;
    Ok(())
}
