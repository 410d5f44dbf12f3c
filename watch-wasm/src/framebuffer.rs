//! An RGBA framebuffer (the bytes of a browser `ImageData`) and its PNG writer.

use alloc::{vec, vec::Vec};
use core::convert::Infallible;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

/// `width * height` pixels, 4 bytes each (R, G, B, 255), rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framebuffer {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl Framebuffer {
    /// A black framebuffer of `width` x `height`.
    pub fn new(width: u32, height: u32) -> Framebuffer {
        let mut data = vec![0; width as usize * height as usize * 4];
        for px in data.chunks_exact_mut(4) {
            px[3] = 255;
        }
        Framebuffer {
            width,
            height,
            data,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The RGBA bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The colour at `(x, y)`, `None` outside.
    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgb888> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        Some(Rgb888::new(
            self.data[i],
            self.data[i + 1],
            self.data[i + 2],
        ))
    }

    /// The image as a PNG file (8-bit RGBA).
    #[cfg(all(feature = "std", not(target_arch = "wasm32")))]
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Balanced);
        // Writing into a Vec cannot fail, and the data length matches the header.
        let mut writer = encoder.write_header().expect("PNG header into a Vec");
        writer
            .write_image_data(&self.data)
            .expect("PNG data of the framebuffer's own size");
        writer.finish().expect("PNG end into a Vec");
        out
    }

    /// Reads a PNG file (8-bit RGB or RGBA) written by [`Framebuffer::to_png`] or an image tool.
    #[cfg(all(feature = "std", not(target_arch = "wasm32")))]
    pub fn from_png(bytes: &[u8]) -> Result<Framebuffer, String> {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
        let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
        let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
        let mut fb = Framebuffer::new(info.width, info.height);
        let channels = match (info.color_type, info.bit_depth) {
            (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
            (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
            other => return Err(format!("unsupported PNG format {other:?}")),
        };
        for (dst, src) in fb
            .data
            .chunks_exact_mut(4)
            .zip(buf[..info.buffer_size()].chunks_exact(channels))
        {
            dst[..3].copy_from_slice(&src[..3]);
        }
        Ok(fb)
    }

    fn index(&self, p: Point) -> Option<usize> {
        if p.x < 0 || p.y < 0 || p.x as u32 >= self.width || p.y as u32 >= self.height {
            return None;
        }
        Some((p.y as usize * self.width as usize + p.x as usize) * 4)
    }
}

impl OriginDimensions for Framebuffer {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Framebuffer {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            if let Some(i) = self.index(p) {
                self.data[i] = c.r();
                self.data[i + 1] = c.g();
                self.data[i + 2] = c.b();
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        let Some(bottom_right) = area.bottom_right() else {
            return Ok(());
        };
        // Fill the first row pixel by pixel, then copy it: one memcpy per row
        // (a memcpy per pixel is slow in a size-optimised wasm build).
        let (r, g, b) = (color.r(), color.g(), color.b());
        let stride = self.width as usize * 4;
        let (x0, x1) = (
            area.top_left.x as usize * 4,
            (bottom_right.x as usize + 1) * 4,
        );
        let (y0, y1) = (area.top_left.y as usize, bottom_right.y as usize);
        let first = y0 * stride;
        for px in self.data[first + x0..first + x1].chunks_exact_mut(4) {
            px[0] = r;
            px[1] = g;
            px[2] = b;
            px[3] = 255;
        }
        for y in y0 + 1..=y1 {
            self.data
                .copy_within(first + x0..first + x1, y * stride + x0);
        }
        Ok(())
    }
}
