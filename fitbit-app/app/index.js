// The watch side of Watchtrain: it only paints.
//
// The companion sends paint operations for a fixed pool of SVG elements
// (resources/index.view: rects r0.., lines l0.., texts t0..), connection
// states and alerts. The watch holds no chart logic: its heap is tiny.
// The message format is written down in companion/src/watch.rs (the Rust
// companion that makes the messages); the constants below mirror it.
import document from "document";
import * as messaging from "messaging";
import { vibration } from "haptics";
import { display } from "display";
import { me } from "appbit";

var MSG_PAINT = 1;
var MSG_RELAY = 2;
var MSG_ALERT = 3;
var MSG_HELLO = 1; // watch -> companion: [1, screenOn]

var RECT_STRIDE = 6; // i, x, y, w, h, color
var LINE_STRIDE = 7; // i, x1, y1, x2, y2, width, color
var TEXT_STRIDE = 7; // i, x, y, size, anchor, color, text
var IMAGE_STRIDE = 4; // i, x, y, icon
var ICONS = ["waiting", "running", "stalled", "completed", "failed", "cancelled", "logo"];
var ANCHORS = ["start", "middle", "end"];
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

function color(c) {
  var hex = c.toString(16);
  while (hex.length < 6) hex = "0" + hex;
  return "#" + hex;
}

function hideAll(list) {
  for (var i = 0; i < list.length; i++) list[i].style.display = "none";
}

function paint(msg) {
  if (msg[1]) {
    hideAll(rects);
    hideAll(lines);
    hideAll(texts);
    hideAll(images);
  }
  var r = msg[2], l = msg[3], t = msg[4], m = msg[5] || [], i, el;
  for (i = 0; i + RECT_STRIDE <= r.length; i += RECT_STRIDE) {
    el = rects[r[i]];
    if (!el) continue;
    if (r[i + 5] < 0) { el.style.display = "none"; continue; }
    el.x = r[i + 1]; el.y = r[i + 2]; el.width = r[i + 3]; el.height = r[i + 4];
    el.style.fill = color(r[i + 5]);
    el.style.display = "inline";
  }
  for (i = 0; i + LINE_STRIDE <= l.length; i += LINE_STRIDE) {
    el = lines[l[i]];
    if (!el) continue;
    if (l[i + 6] < 0) { el.style.display = "none"; continue; }
    el.x1 = l[i + 1]; el.y1 = l[i + 2]; el.x2 = l[i + 3]; el.y2 = l[i + 4];
    el.strokeWidth = l[i + 5];
    el.style.fill = color(l[i + 6]);
    el.style.display = "inline";
  }
  for (i = 0; i + TEXT_STRIDE <= t.length; i += TEXT_STRIDE) {
    el = texts[t[i]];
    if (!el) continue;
    if (t[i + 5] < 0) { el.style.display = "none"; continue; }
    el.x = t[i + 1]; el.y = t[i + 2];
    el.style.fontSize = t[i + 3];
    el.textAnchor = ANCHORS[t[i + 4]] || "start";
    el.style.fill = color(t[i + 5]);
    el.text = t[i + 6];
    el.style.display = "inline";
  }
  for (i = 0; i + IMAGE_STRIDE <= m.length; i += IMAGE_STRIDE) {
    el = images[m[i]];
    if (!el) continue;
    if (m[i + 3] < 0 || !ICONS[m[i + 3]]) { el.style.display = "none"; continue; }
    el.x = m[i + 1]; el.y = m[i + 2];
    el.href = "icons/" + ICONS[m[i + 3]] + ".png";
    el.style.display = "inline";
  }
  painted = true;
  showStatus();
}

function showStatus() {
  var text = "";
  if (messaging.peerSocket.readyState !== messaging.peerSocket.OPEN) text = "waiting for phone";
  else if (relay === 2) text = "relay offline";
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
  if (!msg || !msg.length) return;
  if (msg[0] === MSG_PAINT) paint(msg);
  else if (msg[0] === MSG_RELAY) { relay = msg[1]; showStatus(); }
  else if (msg[0] === MSG_ALERT) alert(msg);
};
messaging.peerSocket.onopen = function () { showStatus(); hello(); };
messaging.peerSocket.onclose = function () { showStatus(); };
messaging.peerSocket.onerror = function () { showStatus(); };
display.onchange = function () { hello(); };

showStatus();
hello();
