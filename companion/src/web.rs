//! The companion in the Fitbit runtime: a [`Companion`] owns the relay
//! WebSocket, its event closures and its timers, feeds [`Core`] and hands
//! the watch messages (as JSON text) to a JavaScript `send` function.
//!
//! No closure is leaked (`Closure::forget`): the socket's closures live in
//! the [`Companion`] and are replaced only from a timer callback, never from
//! inside themselves. Only `u32`, `f64` and strings cross the JS boundary
//! (no 64-bit integers: wasm2js cannot pass them).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{ArrayBuffer, Function, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, MessageEvent, WebSocket};

use crate::core::{Core, Follow, RESEND_MS};
use crate::watch::{Out, RelayState};

/// First reconnect delay, doubled after each failure.
pub const BACKOFF_MIN_MS: f64 = 500.0;
/// Longest reconnect delay.
pub const BACKOFF_MAX_MS: f64 = 15_000.0;
/// A socket not open after this long is given up (an unreachable LAN address).
pub const CONNECT_TIMEOUT_MS: f64 = 10_000.0;
/// Silence from the relay after which the socket counts as dead, until the
/// relay's heartbeats (one per ping interval) are seen: then 2.5 of their gaps.
pub const LIVENESS_MAX_MS: f64 = 60_000.0;
/// Shortest liveness bound, whatever the heartbeats' pace.
pub const LIVENESS_MIN_MS: f64 = 3_000.0;
/// How often the watchdog looks at the relay socket.
const WATCHDOG_MS: f64 = 500.0;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(f: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The relay consumer URL for a base URL (`ws://`, `wss://`, `http://`, `https://`
/// or a bare `host:port`), a token and what to follow.
pub fn consumer_url(base: &str, token: &str, follow: Follow) -> String {
    let base = base.trim().trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        format!("ws://{base}")
    };
    let path = match follow {
        Follow::Latest => "/v1/watch".to_string(),
        Follow::Id(id) => format!("/v1/trainings/{id}/watch"),
    };
    let mut url = format!("{base}{path}");
    if !token.is_empty() {
        url.push_str("?token=");
        for b in token.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                url.push(b as char);
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    url
}

/// The closures of one WebSocket, dropped with it.
struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut()>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

struct Inner {
    /// The logic.
    core: Core,
    /// `send(message)`: hands one message to the watch: a `Uint8Array` of
    /// vector ops (a copy, to send as its `ArrayBuffer`) or JSON text of an array.
    send: Function,
    /// The consumer URL, empty until configured.
    url: String,
    /// The open (or opening) relay socket.
    socket: Option<Socket>,
    /// Next reconnect delay.
    backoff_ms: f64,
    /// Reconnects, paints and the relay watchdog, one timer each.
    reconnect_timer: Option<JsValue>,
    paint_timer: Option<JsValue>,
    watchdog_timer: Option<JsValue>,
    /// The timer callbacks, made once.
    on_reconnect: Option<Closure<dyn FnMut()>>,
    on_paint: Option<Closure<dyn FnMut()>>,
    on_watchdog: Option<Closure<dyn FnMut()>>,
    /// When the current socket was opened, and when the relay was last heard.
    connect_ms: f64,
    heard_ms: f64,
    /// When the last heartbeat came, and the silence that counts as dead.
    heartbeat_ms: f64,
    liveness_ms: f64,
    /// Frames received, for tests and the settings page.
    frames: u32,
    /// Messages the watch's buffer took.
    sent: u32,
    /// Messages it refused (buffer full).
    refusals: u32,
    /// The last message was refused and the buffer has not drained since.
    blocked: bool,
}

/// The Rust companion, as seen from JavaScript.
#[wasm_bindgen]
pub struct Companion {
    inner: Rc<RefCell<Inner>>,
}

#[wasm_bindgen]
impl Companion {
    /// A companion that hands each watch message to `send`: a `Uint8Array`
    /// of vector ops (send its `buffer`) or the JSON text of an array (send `JSON.parse` of it).
    #[wasm_bindgen(constructor)]
    pub fn new(send: Function) -> Companion {
        let inner = Rc::new(RefCell::new(Inner {
            core: Core::starting_at(Follow::Latest, now_ms()),
            send,
            url: String::new(),
            socket: None,
            backoff_ms: BACKOFF_MIN_MS,
            reconnect_timer: None,
            paint_timer: None,
            watchdog_timer: None,
            on_reconnect: None,
            on_paint: None,
            on_watchdog: None,
            connect_ms: 0.0,
            heard_ms: 0.0,
            heartbeat_ms: f64::NAN,
            liveness_ms: LIVENESS_MAX_MS,
            frames: 0,
            sent: 0,
            refusals: 0,
            blocked: false,
        }));
        let weak = Rc::downgrade(&inner);
        let on_reconnect = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().reconnect_timer = None;
                connect(&inner);
            }
        });
        let weak = Rc::downgrade(&inner);
        let on_paint = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().paint_timer = None;
                let out = inner.borrow_mut().core.pump(now_ms());
                emit(&inner, out);
            }
        });
        let weak = Rc::downgrade(&inner);
        let on_watchdog = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().watchdog_timer = None;
                watchdog(&inner);
            }
        });
        {
            let mut i = inner.borrow_mut();
            i.on_reconnect = Some(on_reconnect);
            i.on_paint = Some(on_paint);
            i.on_watchdog = Some(on_watchdog);
        }
        Companion { inner }
    }

    /// Points the companion at a relay (`base` as typed in the settings), with
    /// a token (may be empty) and what to follow (`"latest"` or an id), and
    /// (re)connects. An empty `base` disconnects.
    pub fn configure(&self, base: &str, token: &str, follow: &str) {
        let follow = Follow::parse(follow);
        {
            let mut i = self.inner.borrow_mut();
            i.core.set_follow(follow);
            i.url = if base.trim().is_empty() {
                String::new()
            } else {
                consumer_url(base, token, follow)
            };
            i.socket = None;
            i.backoff_ms = BACKOFF_MIN_MS;
            if let Some(id) = i.reconnect_timer.take() {
                clear_timeout(&id);
            }
        }
        connect(&self.inner);
        if base.trim().is_empty() {
            let out = self
                .inner
                .borrow_mut()
                .core
                .relay_state(RelayState::Unconfigured, now_ms());
            emit(&self.inner, out);
        }
    }

    /// The consumer URL in use.
    pub fn url(&self) -> String {
        self.inner.borrow().url.clone()
    }

    /// A message from the watch, as its numbers (its report, `crate::watch`).
    pub fn watch_message(&self, items: &[f64]) {
        let out = self.inner.borrow_mut().core.watch_message(items, now_ms());
        emit(&self.inner, out);
    }

    /// The watch's messaging socket opened (or is found open at launch): everything goes again.
    pub fn watch_opened(&self) {
        let out = self.inner.borrow_mut().core.watch_opened(now_ms());
        emit(&self.inner, out);
    }

    /// The watch's messaging socket closed.
    pub fn watch_closed(&self) {
        self.inner.borrow_mut().core.watch_closed();
    }

    /// The watch's send buffer has room again (`onbufferedamountdecrease`): send what is due.
    pub fn pump(&self) {
        self.inner.borrow_mut().blocked = false;
        let out = self.inner.borrow_mut().core.pump(now_ms());
        emit(&self.inner, out);
    }

    /// A message to the watch was refused after it was handed out (an
    /// `onerror` with BUFFER_FULL): it is due again.
    pub fn refused(&self) {
        self.inner.borrow_mut().core.refused();
    }

    /// One relay frame handed in directly (the same path the WebSocket takes).
    pub fn relay_frame(&self, bytes: &[u8]) {
        on_frame(&self.inner, bytes);
    }

    /// The followed training's id, 0 when none.
    pub fn training_id(&self) -> u32 {
        self.inner.borrow().core.training().map_or(0, |(id, _)| id)
    }

    /// Frames received from the relay.
    pub fn frames(&self) -> u32 {
        self.inner.borrow().frames
    }

    /// Messages sent to the watch.
    pub fn sent(&self) -> u32 {
        self.inner.borrow().sent
    }

    /// Messages the watch's buffer refused.
    pub fn refusals(&self) -> u32 {
        self.inner.borrow().refusals
    }

    /// Frames that failed to decode or apply.
    pub fn bad_frames(&self) -> u32 {
        self.inner.borrow().core.bad_frames
    }

    /// Closes the socket and stops the timers; the companion can be configured again.
    pub fn stop(&self) {
        let mut i = self.inner.borrow_mut();
        i.socket = None;
        i.url.clear();
        if let Some(id) = i.reconnect_timer.take() {
            clear_timeout(&id);
        }
        if let Some(id) = i.paint_timer.take() {
            clear_timeout(&id);
        }
        if let Some(id) = i.watchdog_timer.take() {
            clear_timeout(&id);
        }
    }
}

impl Drop for Companion {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opens a socket to the configured URL, replacing the old one.
fn connect(inner: &Rc<RefCell<Inner>>) {
    let url = inner.borrow().url.clone();
    inner.borrow_mut().socket = None;
    if url.is_empty() {
        return;
    }
    let out = inner
        .borrow_mut()
        .core
        .relay_state(RelayState::Connecting, now_ms());
    emit(inner, out);
    {
        let mut i = inner.borrow_mut();
        i.connect_ms = now_ms();
        i.heard_ms = i.connect_ms;
        i.heartbeat_ms = f64::NAN;
        i.liveness_ms = LIVENESS_MAX_MS;
    }
    arm_watchdog(inner);
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(_) => {
            closed(inner);
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let weak: Weak<RefCell<Inner>> = Rc::downgrade(inner);
    let on_open = Closure::<dyn FnMut()>::new(move || {
        if let Some(inner) = weak.upgrade() {
            {
                let mut i = inner.borrow_mut();
                i.backoff_ms = BACKOFF_MIN_MS;
                i.heard_ms = now_ms();
            }
            let out = inner
                .borrow_mut()
                .core
                .relay_state(RelayState::Online, now_ms());
            emit(&inner, out);
        }
    });
    let weak = Rc::downgrade(inner);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(inner) = weak.upgrade() else { return };
        if let Ok(buf) = event.data().dyn_into::<ArrayBuffer>() {
            on_frame(&inner, &Uint8Array::new(&buf).to_vec());
        }
    });
    let weak = Rc::downgrade(inner);
    let on_close = Closure::<dyn FnMut()>::new(move || {
        if let Some(inner) = weak.upgrade() {
            closed(&inner);
        }
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    inner.borrow_mut().socket = Some(Socket {
        ws,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    });
}

/// The socket closed or failed: tell the watch, retry after the backoff.
/// The socket itself (whose closure may be running) is dropped by the reconnect timer.
fn closed(inner: &Rc<RefCell<Inner>>) {
    let out = inner
        .borrow_mut()
        .core
        .relay_state(RelayState::Offline, now_ms());
    emit(inner, out);
    let mut i = inner.borrow_mut();
    if let Some(id) = i.watchdog_timer.take() {
        clear_timeout(&id);
    }
    if i.url.is_empty() || i.reconnect_timer.is_some() {
        return;
    }
    let delay = i.backoff_ms;
    i.backoff_ms = (delay * 2.0).min(BACKOFF_MAX_MS);
    if let Some(f) = &i.on_reconnect {
        let id = set_timeout(f.as_ref().unchecked_ref(), delay);
        i.reconnect_timer = Some(id);
    }
}

fn on_frame(inner: &Rc<RefCell<Inner>>, bytes: &[u8]) {
    let out = {
        let mut i = inner.borrow_mut();
        i.frames += 1;
        let now = now_ms();
        i.heard_ms = now;
        if bytes_are_heartbeat(bytes) {
            // The relay's pace of heartbeats sets how much silence means dead.
            if i.heartbeat_ms.is_finite() {
                let gap = now - i.heartbeat_ms;
                i.liveness_ms = (gap * 2.5).clamp(LIVENESS_MIN_MS, LIVENESS_MAX_MS);
            }
            i.heartbeat_ms = now;
        }
        i.core.relay_frame(bytes, now)
    };
    emit(inner, out);
}

fn bytes_are_heartbeat(bytes: &[u8]) -> bool {
    matches!(
        watchtrain_protocol::Frame::decode(bytes),
        Ok(f) if f.action == watchtrain_protocol::Action::Heartbeat
    )
}

/// Looks at the relay socket: not open in time, or silent too long, is dead.
fn watchdog(inner: &Rc<RefCell<Inner>>) {
    let dead = {
        let i = inner.borrow();
        let Some(socket) = &i.socket else { return };
        let now = now_ms();
        if socket.ws.ready_state() == WebSocket::OPEN {
            now - i.heard_ms > i.liveness_ms
        } else {
            now - i.connect_ms > CONNECT_TIMEOUT_MS
        }
    };
    if dead {
        closed(inner);
    } else {
        arm_watchdog(inner);
    }
}

fn arm_watchdog(inner: &Rc<RefCell<Inner>>) {
    let mut i = inner.borrow_mut();
    if i.watchdog_timer.is_none() {
        if let Some(f) = &i.on_watchdog {
            let id = set_timeout(f.as_ref().unchecked_ref(), WATCHDOG_MS);
            i.watchdog_timer = Some(id);
        }
    }
}

/// Sends the messages to the watch until its buffer refuses one (`send`
/// returns `false`), then arms the timer for what waits next.
fn emit(inner: &Rc<RefCell<Inner>>, out: Vec<Out>) {
    let send = inner.borrow().send.clone();
    for message in &out {
        let value: JsValue = match message {
            Out::Paint(bytes) => Uint8Array::from(&bytes[..]).into(),
            Out::Message(v) => JsValue::from_str(&v.to_json()),
        };
        let accepted = send
            .call1(&JsValue::NULL, &value)
            .is_ok_and(|r| r.as_bool() != Some(false));
        if !accepted {
            let mut i = inner.borrow_mut();
            i.core.refused();
            i.refusals += 1;
            i.blocked = true;
            break;
        }
        inner.borrow_mut().sent += 1;
    }
    let mut i = inner.borrow_mut();
    if let Some(id) = i.paint_timer.take() {
        clear_timeout(&id);
    }
    if let Some(due) = i.core.next_wake_ms() {
        let mut delay = (due - now_ms()).max(0.0);
        if i.blocked {
            // The buffer is full: `pump` comes when it drains; this is only a backstop.
            delay = delay.max(RESEND_MS);
        }
        if let Some(f) = &i.on_paint {
            let id = set_timeout(f.as_ref().unchecked_ref(), delay);
            i.paint_timer = Some(id);
        }
    }
}

/// Allocates `kib` KiB (growing the memory), then returns `text` and a checksum
/// of `bytes`: proves the JS glue sees grown memory (a wasm2js trap).
#[cfg(feature = "probes")]
#[wasm_bindgen]
pub fn grow_probe(kib: u32, text: &str, bytes: &[u8]) -> String {
    let big = vec![0x5au8; kib as usize * 1024];
    let sum: u32 = bytes.iter().map(|b| u32::from(*b)).sum::<u32>() + u32::from(big[big.len() / 2]);
    format!("{text}:{sum}:{}", big.len())
}

/// `x as i32`, saturating: proves the build is MVP (no non-trapping float-to-int lowering gone wrong).
#[cfg(feature = "probes")]
#[wasm_bindgen]
pub fn saturate(x: f64) -> i32 {
    x as i32
}

/// The size of the module's linear memory in bytes (grows, never shrinks).
#[cfg(feature = "probes")]
#[wasm_bindgen]
pub fn memory_bytes() -> u32 {
    (core::arch::wasm32::memory_size(0) * 65536) as u32
}
