// The companion: wires the Rust companion (companion/load.js) to the watch
// (messaging.peerSocket) and to the settings (relay URL, token, training).
import * as messaging from "messaging";
import { settingsStorage } from "settings";
import { Companion, backend } from "./load";

// A settings value as stored by the settings page: TextInput stores {"name": ...},
// Select stores {"selected": [...], "values": [{name, value}]}.
function setting(key) {
  var raw = settingsStorage.getItem(key);
  if (!raw) return "";
  try {
    var v = JSON.parse(raw);
    if (typeof v === "string") return v;
    if (v && v.values && v.values.length) return String(v.values[0].value);
    if (v && typeof v.name === "string") return v.name;
  } catch (e) {
    return raw;
  }
  return "";
}

// Bytes queued for the watch past which nothing more is sent: the Rust companion
// sends only the newest picture, so a queue of old ones would only delay it.
var QUEUE_LIMIT = 1024;

// A message from the Rust companion: a paint (Uint8Array, sent as its ArrayBuffer)
// or the JSON text of a small array (relay state, alert). Returns false when the
// watch's buffer has no room: the companion sends it again when it drains.
function send(message) {
  var socket = messaging.peerSocket;
  if (socket.readyState !== socket.OPEN || socket.bufferedAmount >= QUEUE_LIMIT) return false;
  try {
    socket.send(typeof message === "string" ? JSON.parse(message) : message.buffer);
    return true;
  } catch (e) {
    return false;
  }
}

var companion = new Companion(send);

function configure() {
  companion.configure(setting("relay_url"), setting("token"), setting("training") || "latest");
  listTrainings();
}

// The settings page's list of trainings, from the relay's GET /v1/trainings:
// fetched when the settings change and, at most every 30 s, when the watch says hello.
var listedAt = 0;
function listTrainings() {
  var base = setting("relay_url").trim().replace(/\/+$/, "");
  if (!base || typeof fetch === "undefined") return;
  listedAt = Date.now();
  var http = base.replace(/^ws:\/\//, "http://").replace(/^wss:\/\//, "https://");
  if (!/^https?:\/\//.test(http)) http = "http://" + http;
  var token = setting("token");
  fetch(http + "/v1/trainings" + (token ? "?token=" + encodeURIComponent(token) : ""))
    .then(function (r) { return r.json(); })
    .then(function (body) {
      var list = Array.isArray(body) ? body : body && body.trainings ? body.trainings : [];
      var short = list.slice(0, 20).map(function (t) { return { id: t.id, name: String(t.name || "") }; });
      settingsStorage.setItem("trainings_list", JSON.stringify(short));
    })
    .catch(function () {});
}

messaging.peerSocket.onmessage = function (evt) {
  if (evt.data && evt.data.length) companion.watch_message(Float64Array.from(evt.data, Number));
  if (Date.now() - listedAt > 30000) listTrainings();
};
messaging.peerSocket.onopen = function () { companion.watch_opened(); };
messaging.peerSocket.onclose = function () { companion.watch_closed(); };
messaging.peerSocket.onbufferedamountdecrease = function () { companion.pump(); };
messaging.peerSocket.onerror = function (err) {
  // A message the buffer took and then refused (BUFFER_FULL): it is due again.
  if (err && err.code === "BUFFER_FULL") companion.refused();
};
settingsStorage.onchange = function (evt) {
  if (evt.key === "relay_url" || evt.key === "token" || evt.key === "training") configure();
};

console.log("watchtrain companion: " + backend);
configure();
// Launched (or relaunched) with the watch already connected: repaint it now, not at its next report.
if (messaging.peerSocket.readyState === messaging.peerSocket.OPEN) companion.watch_opened();
