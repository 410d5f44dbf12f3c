// The watch side of Watchtrain: it only paints.
//
// The companion sends the watch face as vector ops for a fixed pool of SVG
// elements (resources/index.view: rects r0.., lines l0.., texts t0.., images
// i0..; op format in watch-wasm/README.md), connection states and alerts
// (companion/src/watch.rs). The watch holds no chart logic: its heap is tiny.
import document from "document";
import * as messaging from "messaging";
import { vibration } from "haptics";
import { display } from "display";
import { me } from "appbit";

var MSG_RELAY = 2;
var MSG_ALERT = 3;
var MSG_HELLO = 1; // watch -> companion: [1, screenOn]

// Vector ops (watch-wasm/README.md, version 1): an ArrayBuffer of ops after a version byte.
var VERSION = 1;
var OP_RECT = 1, OP_LINES = 2, OP_TEXT = 3, OP_IMAGE = 4, OP_HIDE = 5;
var ANCHORS = ["start", "middle", "end"];
var ICONS = ["waiting", "running", "stalled", "completed", "failed", "cancelled", "logo"];
var ALERT_MS = 8000;

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
var status = document.getElementById("status");
var alertText = document.getElementById("alert");
var alertBg = document.getElementById("alertbg");
var alertTimer = 0;
var painted = false;
var relay = -1;

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

// Applies one message of vector ops to the element pool. A bad op stops the message.
function paint(buffer) {
  var b = new Uint8Array(buffer);
  if (b.length < 1 || b[0] !== VERSION) return;
  var p = 1, el, id, n, k, x, y;
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
  painted = true;
  showStatus();
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

function alert(msg) {
  alertText.text = msg[2];
  alertText.style.display = "inline";
  alertBg.style.display = "inline";
  display.poke();
  vibration.start(msg[1] === 2 || msg[1] === 4 ? "nudge-max" : "nudge");
  if (alertTimer) clearTimeout(alertTimer);
  alertTimer = setTimeout(function () {
    alertText.style.display = "none";
    alertBg.style.display = "none";
    alertTimer = 0;
  }, ALERT_MS);
}

function hello() {
  if (messaging.peerSocket.readyState === messaging.peerSocket.OPEN) {
    messaging.peerSocket.send([MSG_HELLO, display.on ? 1 : 0]);
  }
}

messaging.peerSocket.onmessage = function (evt) {
  var msg = evt.data;
  if (msg instanceof ArrayBuffer) { paint(msg); return; }
  if (!msg || !msg.length) return;
  if (msg[0] === MSG_RELAY) { relay = msg[1]; showStatus(); }
  else if (msg[0] === MSG_ALERT) alert(msg);
};
messaging.peerSocket.onopen = function () { showStatus(); hello(); };
messaging.peerSocket.onclose = function () { showStatus(); };
messaging.peerSocket.onerror = function () { showStatus(); };
display.onchange = function () { hello(); };

showStatus();
hello();
