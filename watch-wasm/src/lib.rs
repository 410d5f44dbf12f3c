//! # watchtrain-watch
//!
//! The Watchtrain watch face: one embedded-graphics renderer for the watch, the
//! phone and the browser. It turns a [`TrainingState`] (from the protocol crate)
//! into a [`Scene`] with [`layout`], then paints the scene either as pixels on
//! any `DrawTarget` ([`Scene::draw`], e.g. the RGBA [`Framebuffer`] of the
//! browser canvas or a PNG) or as compact paint operations for the fixed pool of
//! SVG elements of the Fitbit app ([`vector`]).
//!
//! It is not: a transport or a state keeper (feed it frames and keep the state
//! with [`watchtrain_protocol::TrainingState::apply`]), and it knows nothing of
//! wasm: the `wasm` feature adds a thin `#[wasm_bindgen]` shim.
//!
//! ```
//! use watchtrain_protocol::*;
//! use watchtrain_watch::{layout, Framebuffer, Screen, Theme};
//!
//! let mut state = TrainingState::new();
//! let metrics = ["train_loss", "valid_loss", "accuracy"].iter().map(|m| truncated(m)).collect();
//! state.apply(&Frame { training_id: 1, seq: 0, action: Action::Register(Register {
//!     name: truncated("resnet18 pets"), metrics, epochs: 10, ..Default::default() }) })?;
//! state.apply(&Frame { training_id: 1, seq: 1, action: Action::Stats(Stats {
//!     epoch: 0, duration_ms: 30_000, values: Values::from_slice(&[0.9, 0.7, 0.61]).unwrap() }) })?;
//!
//! let scene = layout(&state, Screen::VERSA3, &Theme::dark());
//! let mut fb = Framebuffer::new(336, 336);
//! scene.draw(&mut fb).unwrap();
//! assert_eq!(fb.data().len(), 336 * 336 * 4);
//!
//! // The same scene for the Fitbit app: messages of at most 1 KiB.
//! let messages = watchtrain_watch::vector::encode(&scene, None);
//! assert!(messages.iter().all(|m| m.len() <= 1024));
//! # Ok::<(), Error>(())
//! ```
//!
//! Without default features, `layout` and `scene` are `no_std` and allocation
//! free (built for `thumbv7em-none-eabihf` in CI); `alloc` adds the
//! [`Framebuffer`], [`render`] and [`vector`]; `std` adds PNG.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod format;
#[cfg(feature = "alloc")]
mod framebuffer;
pub mod icons;
mod layout;
pub mod limits;
pub mod scene;
mod theme;
#[cfg(feature = "alloc")]
pub mod vector;
#[cfg(feature = "wasm")]
pub mod wasm;

#[cfg(feature = "alloc")]
pub use framebuffer::Framebuffer;
pub use icons::Icon;
pub use layout::{layout, primary_metric, readout, Readout, MAX_NAN_MARKS};
pub use scene::{Anchor, Font, Scene};
pub use theme::{Screen, Theme};
pub use watchtrain_protocol::TrainingState;

/// Lays out and paints `state` into a new framebuffer of `screen`'s size.
#[cfg(feature = "alloc")]
pub fn render(state: &TrainingState, screen: Screen, theme: &Theme) -> Framebuffer {
    let scene = layout(state, screen, theme);
    let mut fb = Framebuffer::new(scene.screen.width, scene.screen.height);
    // Drawing into a Framebuffer cannot fail (its error type is Infallible).
    let _ = scene.draw(&mut fb);
    fb
}
