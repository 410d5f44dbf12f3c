// The Watchtrain dashboard: the list of trainings, and for the chosen one the
// watch face drawn by the wasm renderer (the same Rust code as the watch) from
// the relay's live WebSocket, plus the same face at a desktop size.
import init, { View } from "./wasm/watchtrain_watch.js";

// The token: from `?token=` (then kept in the page's storage and taken off the address bar),
// else the one kept from before. Every URL below is relative, so the page also works behind
// a reverse proxy under a sub-path (`https://host/watchtrain/`).
const TOKEN_KEY = "watchtrain-token";
const params = new URLSearchParams(location.search);
let token = params.get("token");
if (token !== null) {
  localStorage.setItem(TOKEN_KEY, token);
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
} else {
  token = localStorage.getItem(TOKEN_KEY);
}
const $ = (id) => document.getElementById(id);

// A relay path (without a leading slash) resolved against the page, with the token.
function relayUrl(path, query = {}) {
  const url = new URL(path, location.href);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  if (token) url.searchParams.set("token", token);
  return url;
}

const wasm = await init({ module_or_path: "wasm/watchtrain_watch_bg.wasm" });

const face = { view: new View(336, 336), canvas: $("face") };
const big = { view: new View(960, 540), canvas: $("big") };
let chosen = null;      // training id
let socket = null;      // its WebSocket
let frames = 0;         // frames applied since choosing
let dirty = false;      // a repaint is due
let trainings = [];

function paint({ view, canvas }) {
  view.render();
  // Zero-copy view of the framebuffer in wasm memory; ImageData copies it once.
  const px = new Uint8ClampedArray(wasm.memory.buffer, view.pixels_ptr(), view.width() * view.height() * 4);
  if (canvas.width !== view.width() || canvas.height !== view.height()) {
    canvas.width = view.width();
    canvas.height = view.height();
  }
  const image = new ImageData(new Uint8ClampedArray(px), view.width(), view.height());
  canvas.getContext("2d").putImageData(image, 0, 0);
}

function repaint() {
  dirty = false;
  paint(face);
  paint(big);
  showReadout();
  $("info").textContent = chosen === null ? "" : `${frames} frames received`;
  $("title").textContent = face.view.name() || (chosen === null ? "—" : "training " + chosen);
}

function schedule() {
  if (!dirty) {
    dirty = true;
    requestAnimationFrame(repaint);
  }
}

function choose(id) {
  if (socket) { socket.onclose = null; socket.close(); }
  chosen = id;
  frames = 0;
  face.view.reset();
  big.view.reset();
  history.replaceState(null, "", location.pathname + location.search + "#" + id);
  pngLink();
  renderList();
  connect();
  schedule();
}

function connect() {
  const id = chosen;
  const url = relayUrl(`v1/trainings/${id}/watch`);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { $("conn").textContent = "live"; };
  ws.onmessage = (e) => {
    if (!(e.data instanceof ArrayBuffer)) return; // JSON notices
    const bytes = new Uint8Array(e.data);
    try {
      face.view.feed(bytes);
      big.view.feed(bytes);
      frames++;
      schedule();
    } catch (err) {
      console.warn("frame refused:", err);
    }
  };
  ws.onclose = () => {
    $("conn").textContent = "reconnecting…";
    if (chosen === id) setTimeout(() => { if (chosen === id) connect(); }, 1000);
  };
  socket = ws;
}

function renderList() {
  const list = $("list");
  if (trainings.length === 0) {
    list.innerHTML = '<li class="dim">none yet</li>';
    return;
  }
  list.replaceChildren(...trainings.map((t) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.dataset.id = t.id;
    if (t.id === chosen) b.className = "chosen";
    const epoch = t.epochs ? `epoch ${Math.min(t.epoch + 1, t.epochs)}/${t.epochs}` : `epoch ${t.epoch + 1}`;
    b.innerHTML = `<span class="status ${t.status}"></span><strong></strong><br><span class="dim small"></span>`;
    b.querySelector(".status").textContent = t.status;
    b.querySelector("strong").textContent = t.name || "training " + t.id;
    b.querySelector(".small").textContent = `#${t.id} · ${epoch}`;
    b.onclick = () => choose(t.id);
    li.append(b);
    return li;
  }));
}

// A relay with a token answers 401 (none given) or 403 (wrong one) with a JSON reason:
// ask for the token instead of calling the relay unreachable.
function askToken(reason) {
  $("conn").textContent = "token needed";
  $("token-reason").textContent = reason;
  $("token-form").hidden = false;
  document.body.classList.add("locked");
  $("list").innerHTML = "";
}

$("token-form").onsubmit = (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  localStorage.setItem(TOKEN_KEY, token);
  $("token-form").hidden = true;
  document.body.classList.remove("locked");
  $("conn").textContent = "loading…";
  refresh();
};

async function refresh() {
  if (!$("token-form").hidden) return;
  try {
    const res = await fetch(relayUrl("v1/trainings"));
    if (res.status === 401 || res.status === 403) {
      const body = await res.json().catch(() => ({}));
      askToken(body.message || `the relay refused the token (${res.status})`);
      return;
    }
    if (!res.ok) throw new Error(res.status);
    trainings = await res.json();
    trainings.sort((a, b) => b.updated_ms - a.updated_ms);
    if (chosen === null && trainings.length) {
      const wanted = Number(location.hash.slice(1));
      choose(trainings.some((t) => t.id === wanted) ? wanted : trainings[0].id);
    } else {
      renderList();
    }
  } catch (e) {
    $("conn").textContent = "relay unreachable";
  }
}

// The large view in device pixels (sharp on a high-density screen; from 1600 px on the
// face's text grows with it), at most 1920 wide.
function fitBig() {
  const css = $("large").clientWidth || 960;
  const w = Math.max(480, Math.min(1920, Math.floor(css * (window.devicePixelRatio || 1))));
  const h = Math.round(w * 9 / 16);
  if (w !== big.view.width() || h !== big.view.height()) {
    big.view.resize(w, h);
    schedule();
  }
}

function pngLink() {
  if (chosen === null) return;
  $("png").href = relayUrl(`v1/trainings/${chosen}/face.png`, { w: face.view.width(), h: face.view.height() });
}

// The hover read-out of the large view: the wasm lays the face out again and says which
// epoch is under the pointer (canvas pixels, as CSS may scale the canvas) and its values.
let pointer = null;
function showReadout() {
  const canvas = big.canvas;
  const text = pointer ? big.view.readout(pointer.x, pointer.y) : "";
  $("readout").hidden = $("cursor").hidden = !text;
  if (!text) return;
  const rect = canvas.getBoundingClientRect();
  const toCss = rect.width / canvas.width;
  const x = big.view.readout_x(pointer.x, pointer.y) * toCss + canvas.offsetLeft;
  $("readout").textContent = text;
  Object.assign($("cursor").style, { left: `${x}px`, top: `${canvas.offsetTop}px`, height: `${rect.height}px` });
  // Beside the cursor, on the side with more room.
  const box = $("readout");
  const left = x > canvas.offsetLeft + rect.width / 2 ? x - box.offsetWidth - 8 : x + 8;
  Object.assign(box.style, { left: `${left}px`, top: `${canvas.offsetTop + pointer.cssY + 12}px` });
}
big.canvas.addEventListener("pointermove", (e) => {
  const rect = big.canvas.getBoundingClientRect();
  const scale = big.canvas.width / rect.width;
  pointer = {
    x: Math.round((e.clientX - rect.left) * scale),
    y: Math.round((e.clientY - rect.top) * scale),
    cssY: e.clientY - rect.top,
  };
  showReadout();
});
big.canvas.addEventListener("pointerleave", () => { pointer = null; showReadout(); });

$("screen").onchange = (e) => {
  const [w, h] = e.target.value.split("x").map(Number);
  face.view.resize(w, h);
  pngLink();
  schedule();
};
addEventListener("resize", fitBig);
fitBig();
refresh();
setInterval(refresh, 2000);

// For tests and the curious: paint now and return the face's pixels together with
// the state they were drawn from (an encoded snapshot frame), taken at one instant.
window.watchtrain = {
  frames: () => frames,
  chosen: () => chosen,
  status: () => face.view.status(),
  capture() {
    repaint();
    const { width, height } = face.canvas;
    const pixels = face.canvas.getContext("2d").getImageData(0, 0, width, height).data;
    let binary = "";
    for (let i = 0; i < pixels.length; i += 0x8000) binary += String.fromCharCode(...pixels.subarray(i, i + 0x8000));
    return { width, height, pixels: btoa(binary), snapshot: Array.from(face.view.snapshot()) };
  },
};
