// The watch side of Watchtrain: it only paints, and reports what it holds.
//
// The companion sends the watch face as vector ops for a fixed pool of SVG
// elements (resources/index.view: rects r0.., lines l0.., texts t0.., images
// i0..; op format in watch-wasm/README.md), connection states and alerts
// (companion/src/watch.rs). The link is a state synchronization: a paint
// turns picture `base` into picture `target` and is applied whole or not at
// all; the watch reports the picture, the last alert and the relay state it
// holds, and the companion sends what differs. The watch holds no chart logic.
import document from "document";
import * as messaging from "messaging";
import { vibration } from "haptics";
import { display } from "display";
import { me } from "appbit";
import { memory } from "system";

var MSG_REPORT = 1; // watch -> companion: [1, screenOn, picture, lastAlert, relay]
var MSG_RELAY = 2;
var MSG_ALERT = 3;

// Vector ops (watch-wasm/README.md, version 1), after the companion's paint header.
var VERSION = 1;
var HEADER = 6; // base u16, target u16, part u8, count u8
var OP_RECT = 1, OP_LINES = 2, OP_TEXT = 3, OP_IMAGE = 4, OP_HIDE = 5;
var ANCHORS = ["start", "middle", "end"];
var ICONS = ["waiting", "running", "stalled", "completed", "failed", "cancelled", "logo"];
var ALERT_MS = 8000;
var REPORT_EVERY_MS = 5000; // while the screen is on: the companion repairs what differs
var BUZZED_KEPT = 8;

me.appTimeoutEnabled = false; // keep the app open while a training is watched

function pool(prefix) {
  var out = [];
  for (var el = document.getElementById(prefix + "0"); el; el = document.getElementById(prefix + out.length)) {
    out.push(el);
  }
  return out;
}

var rects = pool("r");
var lines = pool("l");
var texts = pool("t");
var images = pool("i");
var diag = pool("d");
var status = document.getElementById("status");
var alertText = document.getElementById("alert");
var alertText2 = document.getElementById("alert2");
var alertBg = document.getElementById("alertbg");
var diagBg = document.getElementById("diagbg");
var alertTimer = 0;
var painted = false;
var relay = -1;
var picture = 0; // the version of the picture shown, 0 for none
var lastAlert = 0; // the id of the last alert received
var buzzed = []; // ids of the alerts that buzzed (a resent alert buzzes no more)
var assembly = null; // the parts of a paint received so far: {base, target, count, parts}
var reportTimer = 0;
// Diagnostics (tap the screen): what the device really does.
var stats = { type: "-", messages: 0, bytes: 0, bufferFull: 0, dropped: 0 };
var diagOn = false;

// An RGB565 colour as "#rrggbb".
function color(c) {
  var r = (c >> 11) & 31, g = (c >> 5) & 63, b = c & 31;
  var rgb = (((r << 3) | (r >> 2)) << 16) | (((g << 2) | (g >> 4)) << 8) | ((b << 3) | (b >> 2));
  var hex = rgb.toString(16);
  while (hex.length < 6) hex = "0" + hex;
  return "#" + hex;
}

function utf8(bytes, at, len) {
  var s = "";
  for (var i = at; i < at + len; i++) {
    var b = bytes[i];
    if (b < 0x80) s += String.fromCharCode(b);
    else if (b >= 0xc0 && b < 0xe0 && i + 1 < at + len) { s += String.fromCharCode(((b & 31) << 6) | (bytes[i + 1] & 63)); i++; }
    else if (b >= 0xe0 && b < 0xf0 && i + 2 < at + len) { s += String.fromCharCode(((b & 15) << 12) | ((bytes[i + 1] & 63) << 6) | (bytes[i + 2] & 63)); i += 2; }
    else s += "?";
  }
  return s;
}

// Applies one message of vector ops (bytes from `at`) to the element pool. A bad op stops the message.
function paint(b, at) {
  if (b.length <= at || b[at] !== VERSION) return;
  var p = at + 1, el, id, n, k, x, y;
  function u8() { return b[p++]; }
  function u16() { var v = b[p] | (b[p + 1] << 8); p += 2; return v; }
  function i16() { var v = u16(); return v >= 32768 ? v - 65536 : v; }
  while (p < b.length) {
    var op = u8();
    if (op === OP_RECT) {
      el = rects[u8()];
      x = i16(); y = i16();
      var w = u16(), h = u16(), fill = u16();
      if (!el) return;
      el.x = x; el.y = y; el.width = w; el.height = h;
      el.style.fill = color(fill);
      el.style.display = "inline";
    } else if (op === OP_LINES) {
      id = u8(); n = u8();
      var width = u8(), stroke = color(u16());
      x = i16(); y = i16();
      for (k = 0; k < n; k++) {
        el = lines[id + k];
        var x2 = i16(), y2 = i16();
        if (!el) return;
        el.x1 = x; el.y1 = y; el.x2 = x2; el.y2 = y2;
        el.style.strokeWidth = width;
        el.style.fill = stroke;
        el.style.display = "inline";
        x = x2; y = y2;
      }
    } else if (op === OP_TEXT) {
      el = texts[u8()];
      x = i16(); y = i16();
      var size = u8(), anchor = u8(), textFill = u16(), len = u8();
      if (!el || p + len > b.length) return;
      el.x = x; el.y = y;
      el.style.fontSize = size;
      el.textAnchor = ANCHORS[anchor] || "start";
      el.style.fill = color(textFill);
      el.text = utf8(b, p, len);
      el.style.display = "inline";
      p += len;
    } else if (op === OP_IMAGE) {
      el = images[u8()];
      x = i16(); y = i16();
      var icon = ICONS[u8()];
      if (!el || !icon) return;
      el.x = x; el.y = y;
      el.href = "icons/" + icon + ".png";
      el.style.display = "inline";
    } else if (op === OP_HIDE) {
      var kind = u8(), first = u8(), count = u8();
      var list = kind === OP_RECT ? rects : kind === OP_LINES ? lines : kind === OP_TEXT ? texts : kind === OP_IMAGE ? images : null;
      if (!list) return;
      for (k = first; k < first + count && k < list.length; k++) list[k].style.display = "none";
    } else {
      return;
    }
  }
}

function showStatus() {
  var text = "";
  if (messaging.peerSocket.readyState !== messaging.peerSocket.OPEN) text = "waiting for phone";
  else if (relay === 2) text = "relay offline";
  else if (relay === 3) text = "set the relay in settings";
  else if (relay === 0 || relay === -1) text = painted ? "" : "connecting to relay";
  else if (!painted) text = "waiting for a training";
  status.text = text;
  status.style.display = text ? "inline" : "none";
  // Offline or waiting: the status line sits at the bottom when a picture is shown.
  status.y = painted ? 326 : 168;
  status.style.fontSize = painted ? 20 : 26;
}

// What a byte-carrying message arrived as: an ArrayBuffer, a typed array, or a
// plain object with numeric keys (what real companions report). Null for anything else.
function bytesOf(data) {
  if (!data || typeof data !== "object" || Object.prototype.toString.call(data) === "[object Array]") return null;
  if (typeof data.byteLength === "number") {
    if (typeof data.BYTES_PER_ELEMENT === "number") {
      stats.type = "typed array";
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    stats.type = "ArrayBuffer";
    return new Uint8Array(data);
  }
  if (typeof data[0] !== "number") return null;
  var n = 0;
  while (typeof data[n] === "number") n++;
  var out = new Uint8Array(n);
  for (var i = 0; i < n; i++) out[i] = data[i];
  stats.type = "numeric-key object";
  return out;
}

// One part of a paint. The parts of a picture are kept until all are there, then
// applied together onto the picture they were made from, so the watch always shows
// a whole picture the companion knows; anything else is dropped and repaired by the next.
function paintPart(b) {
  if (b.length < HEADER) return;
  var base = b[0] | (b[1] << 8), target = b[2] | (b[3] << 8), part = b[4], count = b[5];
  if (part === 0) assembly = { base: base, target: target, count: count, parts: [] };
  if (!assembly || assembly.target !== target || assembly.parts.length !== part) { stats.dropped++; return; }
  assembly.parts.push(b);
  if (assembly.parts.length < assembly.count) return;
  var whole = assembly;
  assembly = null;
  if (whole.base !== 0 && whole.base !== picture) { stats.dropped++; return; }
  for (var i = 0; i < whole.parts.length; i++) paint(whole.parts[i], HEADER);
  picture = whole.target;
  painted = true;
  showStatus();
}

function alert(msg) {
  var lines2 = String(msg[2]).split("\n");
  alertText.text = lines2[0];
  alertText2.text = lines2[1] || "";
  alertText.style.display = "inline";
  alertText2.style.display = lines2[1] ? "inline" : "none";
  alertBg.height = lines2[1] ? 96 : 64;
  alertBg.style.display = "inline";
  display.poke();
  vibration.start(msg[1] === 2 || msg[1] === 4 ? "nudge-max" : "nudge");
  if (alertTimer) clearTimeout(alertTimer);
  alertTimer = setTimeout(function () {
    alertText.style.display = "none";
    alertText2.style.display = "none";
    alertBg.style.display = "none";
    alertTimer = 0;
  }, ALERT_MS);
}

function onAlert(msg) {
  var id = msg[3];
  lastAlert = id;
  for (var i = 0; i < buzzed.length; i++) if (buzzed[i] === id) return;
  buzzed.push(id);
  if (buzzed.length > BUZZED_KEPT) buzzed.shift();
  alert(msg);
}

// Tells the companion what the watch holds.
function report() {
  var socket = messaging.peerSocket;
  if (socket.readyState !== socket.OPEN) return;
  try {
    socket.send([MSG_REPORT, display.on ? 1 : 0, picture, lastAlert, relay]);
  } catch (e) {
    stats.bufferFull++;
  }
}

// One report for a burst of messages.
function reportSoon() {
  if (!reportTimer) reportTimer = setTimeout(function () { reportTimer = 0; report(); }, 50);
}

function showDiagnostics() {
  for (var i = 0; i < diag.length; i++) diag[i].style.display = diagOn ? "inline" : "none";
  diagBg.style.display = diagOn ? "inline" : "none";
  if (!diagOn || diag.length < 5) return;
  var mem = memory && memory.js ? memory.js.used + "/" + memory.js.total + " B" : "?";
  diag[0].text = "binary as: " + stats.type;
  diag[1].text = "received: " + stats.messages + " msgs, " + stats.bytes + " B";
  diag[2].text = "buffer full: " + stats.bufferFull + ", dropped: " + stats.dropped;
  diag[3].text = "picture: " + picture + ", alert: " + lastAlert;
  diag[4].text = "memory: " + mem;
}

messaging.peerSocket.onmessage = function (evt) {
  var msg = evt.data;
  stats.messages++;
  var bytes = bytesOf(msg);
  if (bytes) {
    stats.bytes += bytes.length;
    paintPart(bytes);
  } else if (msg && msg.length) {
    if (msg[0] === MSG_RELAY) { relay = msg[1]; showStatus(); }
    else if (msg[0] === MSG_ALERT) onAlert(msg);
  }
  if (diagOn) showDiagnostics();
  reportSoon();
};
messaging.peerSocket.onopen = function () { assembly = null; showStatus(); report(); };
messaging.peerSocket.onclose = function () { assembly = null; showStatus(); };
messaging.peerSocket.onerror = function (err) {
  if (err && err.code === "BUFFER_FULL") stats.bufferFull++;
  showStatus();
};
display.onchange = function () { report(); };
setInterval(function () { if (display.on) report(); }, REPORT_EVERY_MS);
var tap = document.getElementById("diagtap");
if (tap) tap.onclick = function () { diagOn = !diagOn; showDiagnostics(); };

showStatus();
report();
