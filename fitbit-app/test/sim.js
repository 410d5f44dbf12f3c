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
const JSZip = require("jszip");
const WebSocket = require("ws");

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

// --- CBOR size of a JS value, as Fitbit messaging would encode it ---------------
function head(n) {
  return n < 24 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : n < 4294967296 ? 5 : 9;
}
function cborLen(v) {
  if (v instanceof ArrayBuffer) return head(v.byteLength) + v.byteLength;
  if (ArrayBuffer.isView(v)) return head(v.byteLength) + v.byteLength;
  if (typeof v === "number") return Number.isInteger(v) ? head(v < 0 ? -1 - v : v) : 9;
  if (typeof v === "string") { const n = Buffer.byteLength(v); return head(n) + n; }
  if (typeof v === "boolean" || v === null || v === undefined) return 1;
  if (Array.isArray(v)) return v.reduce((s, x) => s + cborLen(x), head(v.length));
  const keys = Object.keys(v);
  return keys.reduce((s, k) => s + cborLen(k) + cborLen(v[k]), head(keys.length));
}

// --- the fake Fitbit runtime ----------------------------------------------------
// A linked pair of peer sockets: what one side sends arrives, as a copy, on the other.
function messagingPair(log) {
  const OPEN = 0, CLOSED = 1;
  function side(name) {
    return {
      OPEN, CLOSED, readyState: OPEN, MAX_MESSAGE_SIZE: 1027, bufferedAmount: 0,
      onmessage: null, onopen: null, onclose: null, onerror: null,
      send(data) {
        if (this.readyState !== OPEN) throw new Error("peerSocket closed");
        const size = cborLen(data);
        const payload = data instanceof ArrayBuffer ? data.byteLength : size;
        log.push({ from: name, size, payload, binary: data instanceof ArrayBuffer, at: Date.now() });
        const copy = data instanceof ArrayBuffer ? data.slice(0) : JSON.parse(JSON.stringify(data));
        const peer = name === "companion" ? watch : companion;
        setImmediate(() => peer.onmessage && peer.onmessage({ data: copy }));
      },
    };
  }
  const watch = side("watch");
  const companion = side("companion");
  return { watch, companion };
}

// The element pool of the built index.view, as plain objects the app sets.
function fakeDocument(view) {
  const elements = {};
  const re = /<(rect|line|text|image) id="([^"]+)"([^>]*?)(\/>|>([^<]*)<\/text>)/g;
  let m;
  while ((m = re.exec(view))) {
    const [, tag, id, attrs, , text] = m;
    const display = /display="none"/.test(attrs) ? "none" : "inline";
    elements[id] = { tag, id, style: { display }, text: text || "" };
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

// The companion runtime's WebSocket: the `ws` package. `send` copies a view (web-sys
// passes a view into wasm memory) and binary messages arrive as ArrayBuffers.
class CompanionWebSocket extends WebSocket {
  constructor(url) {
    super(url);
    this.binaryType = "arraybuffer";
    this.on("error", () => {}); // as in a browser: an error event, then close
  }
  send(data) {
    super.send(ArrayBuffer.isView(data) ? Buffer.from(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) : data);
  }
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

function runBundle(code, modules, name) {
  const require = (id) => {
    if (!(id in modules)) throw new Error(`${name}: no fake for module "${id}"`);
    return modules[id];
  };
  const module = { exports: {} };
  new Function("require", "module", "exports", code)(require, module, module.exports);
  return module.exports;
}

// --- the fake watch and companion around the built bundles ------------------------
async function startFitbit({ relayUrl, withWasm }) {
  if (!withWasm) delete globalThis.WebAssembly; // the companion runtime may have none
  globalThis.WebSocket = CompanionWebSocket;
  globalThis.fetch = fakeFetch;
  const bundles = await builtBundles();
  const messages = [];
  const pair = messagingPair(messages);
  const doc = fakeDocument(bundles.view);
  const vibrations = [];
  const pokes = [];
  const received = []; // ArrayBuffers the watch got, as hex, in order
  const alerts = [];
  const relayStates = [];
  const display = { on: true, onchange: null, poke() { pokes.push(Date.now()); } };
  const me = { appTimeoutEnabled: true };
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
  const saved = globalThis.console;

  // The companion first: it connects to the relay; then the watch app says hello.
  globalThis.console = console_;
  try {
    runBundle(bundles.companion, { messaging: { peerSocket: pair.companion }, settings: { settingsStorage } }, "companion");
  } finally {
    globalThis.console = saved;
  }
  const watchSocket = pair.watch;
  const appOnMessage = () => watchSocket.onmessage;
  runBundle(bundles.app, {
    document: { default: doc },
    messaging: { peerSocket: watchSocket },
    haptics: { vibration: { start(p) { vibrations.push({ pattern: p, at: Date.now() }); return true; }, stop() {} } },
    display: { display },
    appbit: { me },
  }, "app");
  // Record what the watch receives, then let the app handle it.
  const handler = appOnMessage();
  let lastPaint = 0;
  watchSocket.onmessage = (evt) => {
    if (evt.data instanceof ArrayBuffer) {
      received.push(Buffer.from(evt.data).toString("hex"));
      lastPaint = Date.now();
    } else if (evt.data[0] === 3) {
      alerts.push(evt.data);
    } else if (evt.data[0] === 2) {
      relayStates.push(evt.data[1]);
    }
    handler(evt);
  };
  return {
    doc, messages, vibrations, pokes, received, alerts, relayStates, me, logs, display, settingsStorage,
    backend: logs.find((l) => l.startsWith("watchtrain companion:")),
    lastPaint: () => lastPaint,
    status: () => (doc.elements.status.style.display === "inline" ? doc.elements.status.text : ""),
    texts: () => Object.values(doc.elements).filter((e) => e.tag === "text" && /^t\d+$/.test(e.id) && e.style.display === "inline").map((e) => e.text),
    // The phone goes out of reach of the watch, and comes back.
    disconnectPhone() {
      for (const side of [pair.watch, pair.companion]) {
        side.readyState = side.CLOSED;
        side.onclose && side.onclose({ code: 1 });
      }
    },
    reconnectPhone() {
      for (const side of [pair.companion, pair.watch]) {
        side.readyState = side.OPEN;
        side.onopen && side.onopen({});
      }
    },
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
    setScreen(on) {
      display.on = on;
      display.onchange && display.onchange();
    },
  };
}

// --- the relay and the producer ---------------------------------------------------
function startRelay({ port, db, stallAfter }) {
  const child = spawn(RELAY, ["--listen", `127.0.0.1:${port}`, "--db", db, "--token", TOKEN, "--stall-after", stallAfter], {
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
  startFitbit, startRelay, startProducer, relaySnapshot, faceCheck, getJson, until, sleep, tmpDir, cborLen, TOKEN,
};
