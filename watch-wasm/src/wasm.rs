//! The `#[wasm_bindgen]` shim (feature `wasm`): a [`View`] keeps a training's
//! state, takes protocol frames as bytes, and renders the face into an RGBA
//! framebuffer (for a canvas `ImageData`) or into vector-op messages.
//!
//! ```js
//! import init, { View } from "./watchtrain_watch.js";
//! await init();
//! const view = new View(336, 336);
//! socket.onmessage = (e) => { if (view.feed(new Uint8Array(e.data))) draw(); };
//! function draw() {
//!   view.render();
//!   ctx.putImageData(new ImageData(new Uint8ClampedArray(view.pixels()), view.width(), view.height()), 0, 0);
//! }
//! ```

use wasm_bindgen::prelude::*;
use watchtrain_protocol::{Frame, TrainingState};

use embedded_graphics::prelude::Point;

use crate::{format, layout, readout, vector, Framebuffer, Scene, Screen, Theme};

/// One face: a training's state, a screen size, the last rendered picture.
#[wasm_bindgen]
pub struct View {
    /// The state the frames built.
    state: TrainingState,
    /// The face's size (clamped to what the layout accepts).
    screen: Screen,
    /// Colours.
    theme: Theme,
    /// The last render.
    fb: Framebuffer,
    /// The scene the vector ops last described (what the watch shows), for diffs.
    shown: Option<Scene>,
    /// Vector messages of the last `vector` call.
    messages: Vec<Vec<u8>>,
}

#[wasm_bindgen]
impl View {
    /// A view of `width` x `height` pixels with no training yet.
    #[wasm_bindgen(constructor)]
    pub fn new(width: u32, height: u32) -> View {
        let screen = Screen::new(width, height).clamped();
        View {
            state: TrainingState::new(),
            screen,
            theme: Theme::dark(),
            fb: Framebuffer::new(screen.width, screen.height),
            shown: None,
            messages: Vec::new(),
        }
    }

    /// Changes the size; the next `render` uses it.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.screen = Screen::new(width, height).clamped();
        self.fb = Framebuffer::new(self.screen.width, self.screen.height);
    }

    /// Forgets the training (e.g. when another one is chosen).
    pub fn reset(&mut self) {
        self.state = TrainingState::new();
        self.shown = None;
    }

    /// Applies one encoded protocol frame. Returns true when the face may have
    /// changed; throws on a frame that does not decode or apply.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<bool, JsError> {
        let frame = Frame::decode(bytes).map_err(|e| JsError::new(&e.to_string()))?;
        let applied = self
            .state
            .apply(&frame)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(applied == watchtrain_protocol::Applied::Changed)
    }

    /// Lays out and paints the face into the framebuffer.
    pub fn render(&mut self) {
        let scene = layout(&self.state, self.screen, &self.theme);
        // Painting into a Framebuffer cannot fail.
        let _ = scene.draw(&mut self.fb);
    }

    /// A copy of the framebuffer's RGBA bytes (`width * height * 4`).
    pub fn pixels(&self) -> Vec<u8> {
        self.fb.data().to_vec()
    }

    /// Where the framebuffer's RGBA bytes start in the wasm memory, for a
    /// zero-copy `new Uint8ClampedArray(memory.buffer, ptr, width * height * 4)`;
    /// valid until the next call into the view (a call may grow the memory).
    pub fn pixels_ptr(&self) -> *const u8 {
        self.fb.data().as_ptr()
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.screen.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.screen.height
    }

    /// Encodes the face as vector-op messages (see the crate's README):
    /// a full repaint when `full` (or the first time), else only what changed
    /// since the last call. Returns how many messages there are; fetch each
    /// with `message(i)`.
    pub fn vector(&mut self, full: bool) -> usize {
        let scene = layout(&self.state, self.screen, &self.theme);
        let prev = if full { None } else { self.shown.as_ref() };
        self.messages = vector::encode(&scene, prev);
        self.shown = Some(scene);
        self.messages.len()
    }

    /// Message `i` of the last `vector` call (empty when out of range).
    pub fn message(&self, i: usize) -> Vec<u8> {
        self.messages.get(i).cloned().unwrap_or_default()
    }

    /// The view's state as an encoded snapshot frame (training id 0), e.g. to
    /// render the same face elsewhere and compare.
    pub fn snapshot(&self) -> Vec<u8> {
        self.state
            .to_snapshot(0)
            .to_bytes()
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    /// The training's name.
    pub fn name(&self) -> String {
        self.state.name().as_str().into()
    }

    /// The training's status word (`running`, `stalled`, ...).
    pub fn status(&self) -> String {
        self.state.status().as_str().into()
    }

    /// The hover read-out: what the chart shows nearest to pixel (`x`, `y`) of the
    /// face, as `epoch N` and one `name value` line per metric; empty when the
    /// point is not over the chart.
    pub fn readout(&self, x: i32, y: i32) -> String {
        let Some(r) = readout(&self.state, self.screen, &self.theme, Point::new(x, y)) else {
            return String::new();
        };
        let mut text = format!("epoch {}", r.epoch + 1);
        for (name, v) in self.state.metrics().iter().zip(&r.values) {
            text += &format!("\n{name} {}", format::value(*v));
        }
        text
    }

    /// The x (pixels) of the epoch the read-out at (`x`, `y`) shows, or -1.
    pub fn readout_x(&self, x: i32, y: i32) -> i32 {
        readout(&self.state, self.screen, &self.theme, Point::new(x, y)).map_or(-1, |r| r.x)
    }
}
