//! # watchtrain-companion
//!
//! The Fitbit companion of Watchtrain, in Rust: it connects to the relay's
//! consumer WebSocket, keeps the followed training's [`TrainingState`], and
//! turns each change into watch messages of at most 1 KiB
//! ([`watch::MAX_MESSAGE_BYTES`]): the shared watch face
//! (`watchtrain_watch::layout`) as vector ops for the Fitbit app's fixed pool
//! of SVG elements (`watchtrain_watch::vector`): only what changed, a full repaint when the watch (re)connects,
//! about one paint a second while the screen is on, and alerts (finished,
//! failed, stalled, NaN/inf) once per event.
//!
//! It is: the logic in plain functions over bytes ([`Core`]), testable
//! natively, and on `wasm32` a `#[wasm_bindgen]` class that owns the web-sys
//! WebSocket, its closures and its timers, and reconnects with backoff. The
//! same wasm runs as WebAssembly or, translated by wasm2js, as plain
//! JavaScript (`fitbit-app/companion/` loads one or the other).
//! It is not: the watch side (that is `fitbit-app/app/`, which only paints).
//!
//! ```
//! use watchtrain_companion::{watch, watch::Out, Core, Follow};
//! use watchtrain_protocol::*;
//!
//! let mut core = Core::new(Follow::Latest);
//! // The watch says hello with its screen on: it gets the relay state and a full repaint.
//! let hello = core.watch_message(&[1.0, 1.0], 0.0);
//! assert_eq!(hello[0], Out::Message(watch::relay_message(watch::RelayState::Connecting)));
//!
//! // A frame from the relay: the face changes, the watch gets the difference.
//! let register = Frame { training_id: 3, seq: 0, action: Action::Register(Register {
//!     name: truncated("mnist"), epochs: 5, ..Default::default() }) };
//! let out = core.relay_frame(&register.to_bytes()?, 5_000.0);
//! assert!(out.iter().all(|m| m.cbor_len() <= watchtrain_companion::watch::MAX_MESSAGE_BYTES));
//! assert_eq!(core.training().map(|(id, s)| (id, s.epochs())), Some((3, 5)));
//! # Ok::<(), Error>(())
//! ```
//!
//! [`TrainingState`]: watchtrain_protocol::TrainingState

pub mod core;
pub mod watch;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use crate::core::{Core, Follow};
