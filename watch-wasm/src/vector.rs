//! The vector backend: a [`Scene`] as paint operations on the Fitbit app's fixed
//! pool of SVG elements, in messages of at most [`MAX_MESSAGE_LEN`] bytes.
//!
//! The watch cannot hold a framebuffer and cannot create SVG elements at run
//! time, so its `index.view` declares a fixed pool, and the scene's four pools
//! map onto it one to one: scene rect `i` is element `r<i>`, line `i` is
//! `l<i>`, text `i` is `t<i>`, icon `i` is `i<i>`. Document order (= paint
//! order) is all rects, then all lines, then all texts, then all images, in id
//! order; that is also the raster backend's paint order.
//!
//! The byte format (little-endian, colours RGB565) is written down in
//! `watch-wasm/README.md`; [`Pool`] is its reference decoder and painter.

use alloc::{vec, vec::Vec};
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

use crate::icons::Icon;
use crate::scene::{
    draw_line, draw_rect, draw_text, Anchor, Font, ImageItem, LineItem, RectItem, Scene, TextItem,
    MAX_IMAGES, MAX_LINES, MAX_RECTS, MAX_TEXTS,
};

/// The format version, the first byte of every message.
pub const VERSION: u8 = 1;
/// Largest message in bytes: the watch message bound less the CBOR head that
/// wraps these bytes ([`crate::limits::MAX_OPS_LEN`]).
pub const MAX_MESSAGE_LEN: usize = crate::limits::MAX_OPS_LEN;
/// Op code: set a rect.
pub const OP_RECT: u8 = 1;
/// Op code: set a run of connected lines.
pub const OP_LINES: u8 = 2;
/// Op code: set a text.
pub const OP_TEXT: u8 = 3;
/// Op code: set an image.
pub const OP_IMAGE: u8 = 4;
/// Op code: hide a range of elements of one kind.
pub const OP_HIDE: u8 = 5;
/// Most segments in one `LINES` op.
pub const MAX_RUN: usize = 32;

/// Why a message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message is empty or its version byte is not [`VERSION`].
    BadVersion,
    /// An op ends past the end of the message.
    Truncated,
    /// An unknown op code.
    BadOp,
    /// An element id outside the pool, or an unknown icon or kind.
    BadId,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DecodeError::BadVersion => "vector message: bad version byte",
            DecodeError::Truncated => "vector message: truncated op",
            DecodeError::BadOp => "vector message: unknown op code",
            DecodeError::BadId => "vector message: element id, icon or kind out of range",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// An [`Rgb888`] as RGB565, the colour of an op.
pub fn to_565(c: Rgb888) -> u16 {
    Rgb565::from(c).into_storage()
}

/// An RGB565 op colour expanded to [`Rgb888`] (`r8 = r5 << 3 | r5 >> 2`, and so on).
pub fn from_565(c: u16) -> Rgb888 {
    let r = ((c >> 11) & 0x1f) as u8;
    let g = ((c >> 5) & 0x3f) as u8;
    let b = (c & 0x1f) as u8;
    Rgb888::new(r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2)
}

fn font_size(font: Font) -> u8 {
    font.height()
}

fn anchor_byte(a: Anchor) -> u8 {
    match a {
        Anchor::Start => 0,
        Anchor::Middle => 1,
        Anchor::End => 2,
    }
}

/// Messages under construction.
struct Writer {
    messages: Vec<Vec<u8>>,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            messages: Vec::new(),
        }
    }

    fn op(&mut self, op: &[u8]) {
        let fits = self
            .messages
            .last()
            .is_some_and(|m| m.len() + op.len() <= MAX_MESSAGE_LEN);
        if !fits {
            self.messages.push(vec![VERSION]);
        }
        if let Some(m) = self.messages.last_mut() {
            m.extend_from_slice(op);
        }
    }
}

fn i16le(v: i32) -> [u8; 2] {
    (v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16).to_le_bytes()
}

fn u16le(v: u32) -> [u8; 2] {
    (v.min(u32::from(u16::MAX)) as u16).to_le_bytes()
}

/// Encodes `scene` as messages of at most [`MAX_MESSAGE_LEN`] bytes.
///
/// With `prev = None` it is a full repaint: every element of the scene is set
/// and every other element of the pool is hidden. With the scene the watch
/// shows now as `prev`, only the elements that differ are sent (and an empty
/// list means nothing changed). A different screen size is a full repaint.
pub fn encode(scene: &Scene, prev: Option<&Scene>) -> Vec<Vec<u8>> {
    let prev = prev.filter(|p| p.screen == scene.screen);
    let mut w = Writer::new();

    // Rects.
    for (i, r) in scene.rects.iter().enumerate() {
        if prev.is_some_and(|p| p.rects.get(i) == Some(r)) {
            continue;
        }
        let mut op = vec![OP_RECT, i as u8];
        op.extend(i16le(r.rect.top_left.x));
        op.extend(i16le(r.rect.top_left.y));
        op.extend(u16le(r.rect.size.width));
        op.extend(u16le(r.rect.size.height));
        op.extend(to_565(r.color).to_le_bytes());
        w.op(&op);
    }
    hide(
        &mut w,
        OP_RECT,
        scene.rects.len(),
        prev.map(|p| p.rects.len()),
        MAX_RECTS,
    );

    // Lines: runs of consecutive ids that join end to start and share a style.
    let changed: Vec<usize> = (0..scene.lines.len())
        .filter(|&i| !prev.is_some_and(|p| p.lines.get(i) == Some(&scene.lines[i])))
        .collect();
    let mut k = 0;
    while k < changed.len() {
        let first = changed[k];
        let head = &scene.lines[first];
        let mut n = 1;
        while n < MAX_RUN
            && k + n < changed.len()
            && changed[k + n] == first + n
            && joins(&scene.lines[first + n - 1], &scene.lines[first + n])
        {
            n += 1;
        }
        let mut op = vec![OP_LINES, first as u8, n as u8, head.width];
        op.extend(to_565(head.color).to_le_bytes());
        op.extend(i16le(head.start.x));
        op.extend(i16le(head.start.y));
        for l in &scene.lines[first..first + n] {
            op.extend(i16le(l.end.x));
            op.extend(i16le(l.end.y));
        }
        w.op(&op);
        k += n;
    }
    hide(
        &mut w,
        OP_LINES,
        scene.lines.len(),
        prev.map(|p| p.lines.len()),
        MAX_LINES,
    );

    // Texts.
    for (i, t) in scene.texts.iter().enumerate() {
        if prev.is_some_and(|p| p.texts.get(i) == Some(t)) {
            continue;
        }
        let mut op = vec![OP_TEXT, i as u8];
        op.extend(i16le(t.pos.x));
        op.extend(i16le(t.pos.y));
        op.push(font_size(t.font));
        op.push(anchor_byte(t.anchor));
        op.extend(to_565(t.color).to_le_bytes());
        op.push(t.text.len() as u8);
        op.extend(t.text.as_bytes());
        w.op(&op);
    }
    hide(
        &mut w,
        OP_TEXT,
        scene.texts.len(),
        prev.map(|p| p.texts.len()),
        MAX_TEXTS,
    );

    // Images.
    for (i, im) in scene.images.iter().enumerate() {
        if prev.is_some_and(|p| p.images.get(i) == Some(im)) {
            continue;
        }
        let mut op = vec![OP_IMAGE, i as u8];
        op.extend(i16le(im.pos.x));
        op.extend(i16le(im.pos.y));
        op.push(im.icon as u8);
        w.op(&op);
    }
    hide(
        &mut w,
        OP_IMAGE,
        scene.images.len(),
        prev.map(|p| p.images.len()),
        MAX_IMAGES,
    );

    w.messages
}

fn joins(a: &LineItem, b: &LineItem) -> bool {
    a.end == b.start && a.width == b.width && to_565(a.color) == to_565(b.color)
}

/// Hides elements `used..` of a kind: all of the pool in a full repaint, or
/// those the previous scene showed and this one does not.
fn hide(w: &mut Writer, kind: u8, used: usize, prev: Option<usize>, pool: usize) {
    let end = prev.unwrap_or(pool).min(pool);
    if end > used {
        w.op(&[OP_HIDE, kind, used as u8, (end - used) as u8]);
    }
}

/// The watch's element pool as the vector ops leave it: the reference decoder
/// and painter (what the Fitbit app does with `getElementById`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// `r0..`: `None` is hidden.
    pub rects: [Option<RectItem>; MAX_RECTS],
    /// `l0..`.
    pub lines: [Option<LineItem>; MAX_LINES],
    /// `t0..`.
    pub texts: [Option<TextItem>; MAX_TEXTS],
    /// `i0..`.
    pub images: [Option<ImageItem>; MAX_IMAGES],
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            rects: core::array::from_fn(|_| None),
            lines: core::array::from_fn(|_| None),
            texts: core::array::from_fn(|_| None),
            images: core::array::from_fn(|_| None),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (b, rest) = self.bytes.split_first().ok_or(DecodeError::Truncated)?;
        self.bytes = rest;
        Ok(*b)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn i16(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from(self.u16()? as i16))
    }
    fn point(&mut self) -> Result<Point, DecodeError> {
        Ok(Point::new(self.i16()?, self.i16()?))
    }
}

fn slot<T>(pool: &mut [Option<T>], id: usize) -> Result<&mut Option<T>, DecodeError> {
    pool.get_mut(id).ok_or(DecodeError::BadId)
}

impl Pool {
    /// Applies one message. On error, the ops before the bad one stay applied.
    pub fn apply(&mut self, message: &[u8]) -> Result<(), DecodeError> {
        let (version, ops) = message.split_first().ok_or(DecodeError::BadVersion)?;
        if *version != VERSION {
            return Err(DecodeError::BadVersion);
        }
        let mut r = Reader { bytes: ops };
        while !r.bytes.is_empty() {
            match r.u8()? {
                OP_RECT => {
                    let id = usize::from(r.u8()?);
                    let top_left = r.point()?;
                    let size = Size::new(u32::from(r.u16()?), u32::from(r.u16()?));
                    let color = from_565(r.u16()?);
                    *slot(&mut self.rects, id)? = Some(RectItem {
                        rect: Rectangle::new(top_left, size),
                        color,
                    });
                }
                OP_LINES => {
                    let first = usize::from(r.u8()?);
                    let n = usize::from(r.u8()?);
                    let width = r.u8()?;
                    let color = from_565(r.u16()?);
                    let mut start = r.point()?;
                    for id in first..first + n {
                        let end = r.point()?;
                        *slot(&mut self.lines, id)? = Some(LineItem {
                            start,
                            end,
                            width,
                            color,
                        });
                        start = end;
                    }
                }
                OP_TEXT => {
                    let id = usize::from(r.u8()?);
                    let pos = r.point()?;
                    let font = Font::from_height(r.u8()?);
                    let anchor = match r.u8()? {
                        0 => Anchor::Start,
                        1 => Anchor::Middle,
                        2 => Anchor::End,
                        _ => return Err(DecodeError::BadId),
                    };
                    let color = from_565(r.u16()?);
                    let len = usize::from(r.u8()?);
                    if r.bytes.len() < len {
                        return Err(DecodeError::Truncated);
                    }
                    let (text, rest) = r.bytes.split_at(len);
                    r.bytes = rest;
                    let text = core::str::from_utf8(text).map_err(|_| DecodeError::BadId)?;
                    *slot(&mut self.texts, id)? = Some(TextItem {
                        pos,
                        text: watchtrain_protocol::truncated(text),
                        font,
                        anchor,
                        color,
                    });
                }
                OP_IMAGE => {
                    let id = usize::from(r.u8()?);
                    let pos = r.point()?;
                    let icon = Icon::from_number(r.u8()?).ok_or(DecodeError::BadId)?;
                    *slot(&mut self.images, id)? = Some(ImageItem { pos, icon });
                }
                OP_HIDE => {
                    let kind = r.u8()?;
                    let first = usize::from(r.u8()?);
                    let end = first + usize::from(r.u8()?);
                    let hide = |n: usize| first.min(n)..end.min(n);
                    match kind {
                        OP_RECT => self.rects[hide(MAX_RECTS)].fill(None),
                        OP_LINES => self.lines[hide(MAX_LINES)].fill(None),
                        OP_TEXT => self.texts[hide(MAX_TEXTS)].fill(None),
                        OP_IMAGE => self.images[hide(MAX_IMAGES)].fill(None),
                        _ => return Err(DecodeError::BadId),
                    }
                }
                _ => return Err(DecodeError::BadOp),
            }
        }
        Ok(())
    }

    /// Paints the visible elements in document order, as the watch would.
    pub fn draw<D>(&self, target: &mut D) -> Result<(), D::Error>
    where
        D: DrawTarget,
        D::Color: From<Rgb888>,
    {
        for r in self.rects.iter().flatten() {
            draw_rect(r, target)?;
        }
        for l in self.lines.iter().flatten() {
            draw_line(l, target)?;
        }
        for t in self.texts.iter().flatten() {
            draw_text(t, target)?;
        }
        for i in self.images.iter().flatten() {
            i.icon.draw(i.pos, target)?;
        }
        Ok(())
    }

    /// How many elements of each kind are visible: (rects, lines, texts, images).
    pub fn visible(&self) -> (usize, usize, usize, usize) {
        (
            self.rects.iter().flatten().count(),
            self.lines.iter().flatten().count(),
            self.texts.iter().flatten().count(),
            self.images.iter().flatten().count(),
        )
    }
}
