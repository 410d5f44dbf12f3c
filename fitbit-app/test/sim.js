// The Fitbit simulator: fake Fitbit modules around the REAL built bundles
// (app/index.js and companion.js taken out of build/app.fba), a real relay
// (the watchtrain-relay binary) on loopback, and a real producer (the Python
// package in producers/python). No headless Fitbit simulator exists, so this
// is the closest thing: every byte the watch gets went through the built
// companion (Rust as wasm or wasm2js) and the built watch app.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const http = require("http");
const { spawn, spawnSync } = require("child_process");
const vm = require("vm");
const JSZip = require("jszip");
const WebSocket = require("ws");
const cbor = require("cbor");

const ROOT = path.join(__dirname, "..", "..");
const FBA = path.join(__dirname, "..", "build", "app.fba");
const RELAY = path.join(ROOT, "target", "debug", "watchtrain-relay");
const FACE_CHECK = path.join(ROOT, "target", "debug", "examples", "face_check");
const TOKEN = "sim-token";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, timeoutMs = 15000, everyMs = 25) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(everyMs);
  }
}

// --- the Fitbit runtime's limits, from the crates (protocol/vectors/limits.json) --------------
const LIMITS = JSON.parse(fs.readFileSync(path.join(ROOT, "protocol", "vectors", "limits.json"), "utf8")).watch;

// A value of another realm (a vm context) as a plain value of this one, for the CBOR encoder.
function normalize(v) {
  const tag = Object.prototype.toString.call(v);
  if (tag === "[object ArrayBuffer]") return Buffer.from(new Uint8Array(v));
  if (ArrayBuffer.isView(v)) return Buffer.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return v;
}

// A small deterministic generator (xorshift32), so a failing chaos run replays.
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

// --- the fake Fitbit runtime ----------------------------------------------------
// A linked pair of peer sockets. Kind: what one side sends arrives at once, as a copy.
// Harsh (as the device may be): CBOR-encoded with a real CBOR library and refused over
// MAX_MESSAGE_SIZE; a send buffer of `capacity` bytes that raises BUFFER_FULL error events
// and fires onbufferedamountdecrease as it drains at `bytesPerMs`; `latencyMs` of delivery;
// messages in flight lost on a disconnect; binary delivered to the watch as `binaryAs`.
function messagingPair(log, harsh, toWatchRealm) {
  const OPEN = 0, CLOSED = 1;
  const random = harsh ? rng(harsh.seed) : null;
  function side(name) {
    const s = {
      OPEN, CLOSED, readyState: OPEN, MAX_MESSAGE_SIZE: LIMITS.max_message_size, bufferedAmount: 0,
      onmessage: null, onopen: null, onclose: null, onerror: null, onbufferedamountdecrease: null,
      queue: [], sending: null, epoch: 0, deliverAt: 0, bufferFull: 0, capacity: harsh ? harsh.capacity : Infinity,
      send(data) {
        if (this.readyState !== OPEN) throw new Error("peerSocket: not open");
        return harsh ? harshSend(this, name, data) : kindSend(this, name, data);
      },
      // A disconnect: what is queued or on the air is lost.
      drop() {
        this.epoch++;
        this.queue = [];
        this.bufferedAmount = 0;
        if (this.sending) clearTimeout(this.sending);
        this.sending = null;
      },
    };
    return s;
  }
  const watch = side("watch");
  const companion = side("companion");
  const peerOf = (name) => (name === "companion" ? watch : companion);
  function record(name, data, size) {
    const binary = Object.prototype.toString.call(data) === "[object ArrayBuffer]";
    const entry = { from: name, size, payload: binary ? data.byteLength : size, binary, at: Date.now() };
    if (binary) {
      const b = new Uint8Array(data);
      entry.last = b[4] === b[5] - 1; // the last part of a picture: the watch paints on it
    }
    log.push(entry);
    return entry;
  }
  function deliver(name, value, entry) {
    const peer = peerOf(name);
    if (peer.readyState !== OPEN) return;
    entry.deliveredAt = Date.now();
    const data = name === "companion" ? toWatchRealm(value) : value;
    peer.onmessage && peer.onmessage({ data });
  }
  function kindSend(socket, name, data) {
    const entry = record(name, data, cborLen(normalize(data)));
    const copy = JSON.parse(JSON.stringify(normalize(data), (k, v) => (v && v.type === "Buffer" ? { __bytes: v.data } : v)));
    const value = revive(copy);
    setImmediate(() => deliver(name, value, entry));
  }
  function harshSend(socket, name, data) {
    const bytes = cbor.encode(normalize(data));
    if (bytes.length > LIMITS.max_message_size) {
      throw new Error(`peerSocket: ${bytes.length} B is over MAX_MESSAGE_SIZE`);
    }
    if (socket.bufferedAmount + bytes.length > socket.capacity) {
      socket.bufferFull++;
      setImmediate(() => socket.onerror && socket.onerror({ code: "BUFFER_FULL", message: "send buffer full" }));
      return;
    }
    const entry = record(name, data, bytes.length);
    socket.bufferedAmount += bytes.length;
    socket.queue.push({ bytes, entry });
    pump(socket, name);
  }
  // The radio: one message at a time at `bytesPerMs`, then `latencyMs` on the air, in order.
  function pump(socket, name) {
    if (socket.sending || !socket.queue.length) return;
    const m = socket.queue[0];
    const epoch = socket.epoch;
    socket.sending = setTimeout(() => {
      socket.sending = null;
      if (epoch !== socket.epoch) return;
      socket.queue.shift();
      socket.bufferedAmount -= m.bytes.length;
      const [lo, hi] = harsh.latencyMs;
      const at = Math.max(socket.deliverAt, Date.now() + lo + random() * (hi - lo));
      socket.deliverAt = at;
      setTimeout(() => {
        if (epoch === socket.epoch) deliver(name, cbor.decodeFirstSync(m.bytes), m.entry);
      }, at - Date.now());
      socket.onbufferedamountdecrease && socket.onbufferedamountdecrease();
      pump(socket, name);
    }, m.bytes.length / harsh.bytesPerMs);
  }
  return { watch, companion };
}

function revive(v) {
  if (v && typeof v === "object" && Array.isArray(v.__bytes)) return Buffer.from(v.__bytes);
  if (Array.isArray(v)) return v.map(revive);
  return v;
}

// CBOR size of a (plain) value, for the kind link's log.
function cborLen(v) {
  return cbor.encode(v).length;
}

// The element types' documented properties (Fitbit SDK 6.1 GraphicsElement, RectElement,
// LineElement, TextElement, ImageElement, Style): setting any other one throws.
const COMMON = ["x", "y", "width", "height", "style", "class", "layer", "mode", "onclick", "onmousedown", "onmouseup", "onmousemove", "onactivate", "onkeydown", "onkeyup", "onkeypress"];
const PROPS = {
  rect: COMMON,
  line: COMMON.concat(["x1", "y1", "x2", "y2"]),
  text: COMMON.concat(["text", "textAnchor", "letterSpacing", "textOverflow"]),
  image: COMMON.concat(["href"]),
};
const STYLE = ["fill", "fillOpacity", "opacity", "display", "visibility", "fontSize", "fontFamily", "fontWeight", "strokeWidth", "strokeLinecap", "textDecoration"];
function strict(target, allowed, what) {
  return new Proxy(target, {
    set(t, k, v) {
      if (!allowed.includes(k)) throw new TypeError(`${what}: no property "${String(k)}"`);
      t[k] = v;
      return true;
    },
  });
}

// The element pool of the built index.view, as objects that take only documented properties.
function fakeDocument(view) {
  const elements = {};
  const re = /<(rect|line|text|image) id="([^"]+)"([^>]*?)(\/>|>([^<]*)<\/text>)/g;
  let m;
  while ((m = re.exec(view))) {
    const [, tag, id, attrs, , text] = m;
    const display = /display="none"/.test(attrs) ? "none" : "inline";
    const style = strict({ display }, STYLE, `${id}.style`);
    elements[id] = strict({ tag, id, style, text: text || "" }, PROPS[tag].concat(["tag", "id"]), `<${tag} id="${id}">`);
  }
  return {
    elements,
    getElementById(id) { return elements[id] || null; },
  };
}

// The document's pool as face_check reads it: shown elements' attributes, null for hidden ones.
function documentPool(doc) {
  const list = (prefix, pick) => {
    const out = [];
    for (let i = 0; doc.elements[prefix + i]; i++) {
      const e = doc.elements[prefix + i];
      out.push(e.style.display === "inline" ? pick(e) : null);
    }
    return out;
  };
  return {
    rects: list("r", (e) => ({ x: e.x, y: e.y, width: e.width, height: e.height, fill: e.style.fill })),
    lines: list("l", (e) => ({ x1: e.x1, y1: e.y1, x2: e.x2, y2: e.y2, strokeWidth: e.style.strokeWidth, fill: e.style.fill })),
    texts: list("t", (e) => ({ x: e.x, y: e.y, fontSize: e.style.fontSize, textAnchor: e.textAnchor, fill: e.style.fill, text: e.text })),
    images: list("i", (e) => ({ x: e.x, y: e.y, href: e.href })),
  };
}

// fetch for the companion's GET /v1/trainings, over node:http (Node's own fetch needs WebAssembly).
function fakeFetch(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode, json: async () => JSON.parse(body) }));
    }).on("error", reject);
  });
}

async function builtBundles() {
  const fba = await JSZip.loadAsync(fs.readFileSync(FBA));
  const device = await JSZip.loadAsync(await fba.file("device-atlas.zip").async("nodebuffer"));
  const companion = await JSZip.loadAsync(await fba.file("companion.zip").async("nodebuffer"));
  return {
    app: await device.file("app/index.js").async("string"),
    view: await device.file("resources/index.view").async("string"),
    companion: await companion.file("companion.js").async("string"),
  };
}

// Timers that one bundle owns: an unloaded bundle's timers never fire again.
function ownTimers() {
  const live = new Set();
  const wrap = (set, clear) => [
    (f, ms, ...a) => { const id = set(() => { live.delete(id); f(...a); }, ms); live.add(id); return id; },
    (id) => { live.delete(id); clear(id); },
  ];
  const [setTimeout_, clearTimeout_] = wrap(setTimeout, clearTimeout);
  const intervals = new Set();
  return {
    setTimeout: setTimeout_, clearTimeout: clearTimeout_,
    setInterval: (f, ms) => { const id = setInterval(f, ms); intervals.add(id); return id; },
    clearInterval: (id) => { intervals.delete(id); clearInterval(id); },
    stop() { for (const id of live) clearTimeout(id); for (const id of intervals) clearInterval(id); live.clear(); },
  };
}

// Runs a bundle (CommonJS, as the SDK builds it) in a realm of its own.
function runBundle(code, context, modules, name) {
  const require = (id) => {
    if (!(id in modules)) throw new Error(`${name}: no fake for module "${id}"`);
    return modules[id];
  };
  const module = { exports: {} };
  vm.runInContext(`(function (require, module, exports) {\n${code}\n})`, context, { filename: name })(require, module, module.exports);
  return module.exports;
}

// The watch's realm: JerryScript is ES5 with typed arrays, no ES2015 built-ins.
function watchRealm(timers) {
  const context = vm.createContext({ console: { log() {}, warn() {}, error() {} }, ...timers });
  vm.runInContext(`
    for (const name of ["Map", "Set", "WeakMap", "WeakSet", "Promise", "Symbol", "Proxy", "Reflect"]) delete globalThis[name];
    delete Array.from; delete Array.of; delete Object.assign; delete Object.entries; delete Object.values;
    for (const m of ["find", "findIndex", "includes", "fill", "copyWithin", "entries", "keys", "values"]) delete Array.prototype[m];
    for (const m of ["includes", "startsWith", "endsWith", "repeat", "padStart", "padEnd", "codePointAt"]) delete String.prototype[m];
    delete Number.isInteger; delete Number.isFinite; delete Math.trunc; delete Math.sign;`, context);
  // Bytes as the watch gets them, made in its realm.
  const bytesAs = vm.runInContext(`(function (bytes, kind) {
    var b = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) b[i] = bytes[i];
    if (kind === "Uint8Array") return b;
    if (kind === "object") { var o = {}; for (var j = 0; j < b.length; j++) o[j] = b[j]; return o; }
    return b.buffer;
  })`, context);
  return { context, bytesAs };
}

// The companion's realm. The runtime's WebSocket: a stand-in around the \`ws\` package whose
// binary messages arrive as ArrayBuffers of this realm (web-sys checks \`instanceof\`) and
// whose \`send\` copies a view (web-sys passes a view into wasm memory). Options: no
// WebAssembly, a WebAssembly.Module that refuses more than 4 KB (as Chromium-based WebViews
// do on the main thread), no TextEncoder/TextDecoder.
function companionRealm(timers, { withWasm, wasmLimit, textCodec }) {
  const sockets = new Set();
  let dead = false;
  function hostOpen(url, on) {
    if (dead) throw new Error("companion unloaded");
    const ws = new WebSocket(url);
    sockets.add(ws);
    // An unloaded companion runs no more code: its sockets' events go nowhere.
    ws.on("open", () => dead || on.open());
    ws.on("message", (data, isBinary) => dead || on.message(isBinary ? new Uint8Array(data) : String(data), isBinary));
    ws.on("close", (code) => { sockets.delete(ws); dead || on.close(code); });
    ws.on("error", () => dead || on.error());
    return {
      send(d) { ws.send(typeof d === "string" ? d : Buffer.from(new Uint8Array(d.buffer ? d.buffer : d, d.byteOffset || 0, d.byteLength))); },
      close() { ws.close(); },
    };
  }
  const globals = { console: null, fetch: fakeFetch, __hostOpen: hostOpen, ...timers };
  if (textCodec) Object.assign(globals, { TextEncoder, TextDecoder });
  const context = vm.createContext(globals);
  vm.runInContext(`(function (hostOpen) {
    function WebSocket(url) {
      var self = this;
      this.url = url; this.readyState = 0; this.binaryType = "blob";
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      this._h = hostOpen(url, {
        open: function () { self.readyState = 1; if (self.onopen) self.onopen({}); },
        message: function (data, binary) {
          if (binary) { var b = new Uint8Array(data.length); b.set(data); data = b.buffer; }
          if (self.onmessage) self.onmessage({ data: data });
        },
        close: function (code) { self.readyState = 3; if (self.onclose) self.onclose({ code: code }); },
        error: function () { if (self.onerror) self.onerror({}); },
      });
    }
    WebSocket.CONNECTING = 0; WebSocket.OPEN = 1; WebSocket.CLOSING = 2; WebSocket.CLOSED = 3;
    WebSocket.prototype.send = function (d) { if (this.readyState !== 1) throw new Error("not open"); this._h.send(d); };
    WebSocket.prototype.close = function () { this.readyState = 2; this._h.close(); };
    globalThis.WebSocket = WebSocket;
    delete globalThis.__hostOpen;
  })(__hostOpen)`, context);
  if (!withWasm) vm.runInContext("delete globalThis.WebAssembly", context);
  if (wasmLimit) {
    vm.runInContext(`(function (limit) {
      var Module = WebAssembly.Module;
      WebAssembly.Module = function (bytes) {
        if (bytes.byteLength > limit) throw new RangeError("WebAssembly.Module(): buffer size is larger than " + limit + " bytes on the main thread");
        return new Module(bytes);
      };
    })`, context)(wasmLimit);
  }
  return {
    context,
    unload() {
      dead = true;
      timers.stop();
      for (const ws of sockets) ws.terminate();
      sockets.clear();
    },
  };
}

const VIBRATIONS = ["alert", "bump", "confirmation", "confirmation-max", "nudge", "nudge-max", "ping", "ring"];

// --- the fake watch and companion around the built bundles ------------------------
// Options: withWasm (false: no WebAssembly in the companion), harsh (the device-like link, see
// messagingPair: {seed, capacity, bytesPerMs, latencyMs}), binaryAs ("ArrayBuffer",
// "Uint8Array", "object"), wasmLimit and textCodec (false: no TextEncoder/TextDecoder).
async function startFitbit({ relayUrl, withWasm, harsh = null, binaryAs = "ArrayBuffer", wasmLimit = 0, textCodec = true }) {
  const bundles = await builtBundles();
  const messages = [];
  const watchTimers = ownTimers();
  const watch = watchRealm(watchTimers);
  const toWatchRealm = (v) => (Buffer.isBuffer(v) ? watch.bytesAs(v, binaryAs) : v);
  const pair = messagingPair(messages, harsh, toWatchRealm);
  const doc = fakeDocument(bundles.view);
  const vibrations = [];
  const pokes = [];
  const received = []; // the vector ops of the paints the watch got, as hex, in order
  const alerts = [];
  const relayStates = [];
  const display = {
    on: true, onchange: null,
    poke() { pokes.push(Date.now()); if (!this.on) { this.on = true; this.onchange && this.onchange(); } },
  };
  const me = { appTimeoutEnabled: true };
  const memory = { js: { used: 21000, total: 65536, peak: 23000 } };
  const settings = new Map([
    ["relay_url", JSON.stringify({ name: relayUrl })],
    ["token", JSON.stringify({ name: TOKEN })],
  ]);
  const settingsStorage = {
    onchange: null,
    getItem: (k) => (settings.has(k) ? settings.get(k) : null),
    setItem(k, v) { settings.set(k, v); },
    get length() { return settings.size; },
  };
  const logs = [];
  const console_ = { log: (...a) => logs.push(a.join(" ")), warn: (...a) => logs.push(a.join(" ")), error: (...a) => logs.push(a.join(" ")) };

  // The companion first: it connects to the relay; then the watch app says hello.
  let companion = null;
  const companionLaunches = [];
  function loadCompanion(reason) {
    companion = companionRealm(ownTimers(), { withWasm, wasmLimit, textCodec });
    companion.context.console = console_;
    runBundle(bundles.companion, companion.context, { messaging: { peerSocket: pair.companion }, settings: { settingsStorage } }, "companion.js");
    companionLaunches.push(reason);
  }
  function unloadCompanion() {
    companion.unload();
    for (const k of ["onmessage", "onopen", "onclose", "onerror", "onbufferedamountdecrease"]) pair.companion[k] = null;
    settingsStorage.onchange = null;
  }
  loadCompanion("launch");
  const watchSocket = pair.watch;
  runBundle(bundles.app, watch.context, {
    document: { default: doc },
    messaging: { peerSocket: watchSocket },
    haptics: {
      vibration: {
        start(p) {
          if (!VIBRATIONS.includes(p)) throw new Error(`vibration.start: unknown pattern "${p}"`);
          vibrations.push({ pattern: p, at: Date.now() });
          return true;
        },
        stop() {},
      },
    },
    display: { display },
    appbit: { me },
    system: { memory },
  }, "app/index.js");
  // Record what the watch receives, then let the app handle it.
  const handler = watchSocket.onmessage;
  let lastPaint = 0;
  watchSocket.onmessage = (evt) => {
    const data = evt.data;
    if (data && !Array.isArray(data)) {
      const b = Buffer.from(Object.prototype.toString.call(data) === "[object ArrayBuffer]" ? new Uint8Array(data) : Uint8Array.from(Object.values(data)));
      received.push(b.subarray(LIMITS.paint_header_len).toString("hex"));
      lastPaint = Date.now();
    } else if (data[0] === 3) {
      alerts.push(data);
    } else if (data[0] === 2) {
      relayStates.push(data[1]);
    }
    handler(evt);
  };
  const fit = {
    doc, messages, vibrations, pokes, received, alerts, relayStates, me, logs, display, settingsStorage, memory, companionLaunches,
    get backend() { return logs.filter((l) => l.startsWith("watchtrain companion:")).at(-1); },
    bufferFull: () => pair.companion.bufferFull,
    lastPaint: () => lastPaint,
    status: () => (doc.elements.status.style.display === "inline" ? doc.elements.status.text : ""),
    texts: () => Object.values(doc.elements).filter((e) => e.tag === "text" && /^t\d+$/.test(e.id) && e.style.display === "inline").map((e) => e.text),
    diagnostics: () => [0, 1, 2, 3, 4].map((i) => doc.elements[`d${i}`].text),
    tap: () => doc.elements.diagtap.onclick && doc.elements.diagtap.onclick({}),
    // The phone goes out of reach of the watch, and comes back. Asymmetric: the watch
    // notices `lagMs` after the companion (and the other way round when coming back).
    async disconnectPhone(lagMs = 0) {
      for (const side of [pair.companion, pair.watch]) {
        side.drop();
        side.readyState = side.CLOSED;
        side.onclose && side.onclose({ code: 1 });
        if (lagMs) await sleep(lagMs);
      }
    },
    async reconnectPhone(lagMs = 0) {
      for (const side of [pair.watch, pair.companion]) {
        side.readyState = side.OPEN;
        side.onopen && side.onopen({});
        if (lagMs) await sleep(lagMs);
      }
    },
    // The phone unloads the companion (the socket to the watch stays open), and launches it again.
    unloadCompanion,
    loadCompanion,
    // The watch's send buffer is squeezed (other apps, a busy radio) for a while.
    squeeze(capacity) { pair.companion.capacity = capacity; },
    unsqueeze() { pair.companion.capacity = harsh ? harsh.capacity : Infinity; pair.companion.onbufferedamountdecrease && pair.companion.onbufferedamountdecrease(); },
    // Types a value in a TextInput of the settings page.
    setSetting(key, value) {
      settings.set(key, JSON.stringify({ name: value }));
      settingsStorage.onchange && settingsStorage.onchange({ key });
    },
    // Picks a training in the settings page's list, as the Select stores it.
    chooseTraining(id) {
      settings.set("training", JSON.stringify({ selected: [1], values: [{ name: `#${id}`, value: String(id) }] }));
      settingsStorage.onchange && settingsStorage.onchange({ key: "training" });
    },
    settings,
    // Clears the relay URL in the settings: the companion disconnects and stops retrying.
    stop() {
      settings.set("relay_url", JSON.stringify({ name: "" }));
      settingsStorage.onchange && settingsStorage.onchange({ key: "relay_url" });
    },
    // Ends everything: the companion's timers and sockets, the watch's timers.
    shutdown() {
      unloadCompanion();
      watchTimers.stop();
    },
    setScreen(on) {
      display.on = on;
      display.onchange && display.onchange();
    },
  };
  return fit;
}

// --- the relay and the producer ---------------------------------------------------
function startRelay({ port, db, stallAfter, pingInterval = "20s" }) {
  const args = ["--listen", `127.0.0.1:${port}`, "--db", db, "--token", TOKEN, "--stall-after", stallAfter, "--ping-interval", pingInterval];
  const child = spawn(RELAY, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const ready = new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    child.on("exit", (code) => reject(new Error(`relay exited ${code}: ${stderr}`)));
  });
  return { child, ready };
}

function getJson(url) {
  return fakeFetch(url).then((r) => r.json());
}

// The relay's snapshot of a training: the first message on its consumer WebSocket.
function relaySnapshot(port, id) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/trainings/${id}/watch?token=${TOKEN}`);
    ws.binaryType = "nodebuffer";
    ws.on("message", (data) => { ws.close(); resolve(Buffer.from(data).toString("hex")); });
    ws.on("error", reject);
  });
}

// A real producer: the Python package, driven line by line from the test.
function startProducer(relayUrl) {
  const child = spawn("python3", [path.join(__dirname, "producer.py")], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, PYTHONPATH: path.join(ROOT, "producers", "python", "src") },
  });
  let buffer = "";
  const waiting = [];
  child.stdout.on("data", (d) => {
    buffer += d;
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      const w = waiting.shift();
      if (w) w(JSON.parse(line));
    }
  });
  return {
    child,
    send(cmd) {
      return new Promise((resolve) => {
        waiting.push(resolve);
        child.stdin.write(JSON.stringify(cmd) + "\n");
      });
    },
    start(opts) { return this.send({ op: "start", url: relayUrl, token: TOKEN, ...opts }); },
  };
}

// face_check: the document and the received ops against the native face of the relay's state.
function faceCheck({ snapshot, received, doc, png }) {
  const input = JSON.stringify({ snapshot, messages: received, document: documentPool(doc), png });
  const r = spawnSync(FACE_CHECK, [], { input, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`face_check failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function tmpDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), "watchtrain-sim-"));
}

module.exports = {
  startFitbit, startRelay, startProducer, relaySnapshot, faceCheck, getJson, until, sleep, tmpDir, cborLen, rng, LIMITS, TOKEN,
};
