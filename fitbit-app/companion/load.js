// Loads the Rust companion: WebAssembly when the runtime has it, else the wasm2js
// translation of the same wasm. Both are instantiated with the same glue.
import "./polyfill";
import * as glue from "./gen/glue.js";
import { instantiate } from "./gen/wasm2js.js";
import WASM_BASE64 from "./gen/wasm_bytes.js";

// The glue's exports: the Companion class (and, in test builds, the probes of backends.test.js).
export * from "./gen/glue.js";

function decodeBase64(text) {
  var alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  var lookup = new Uint8Array(128);
  for (var i = 0; i < alphabet.length; i++) lookup[alphabet.charCodeAt(i)] = i;
  var len = text.length;
  while (len > 0 && text.charAt(len - 1) === "=") len--;
  var out = new Uint8Array((len * 3) >> 2);
  var o = 0;
  for (var j = 0; j < len; j += 4) {
    var a = lookup[text.charCodeAt(j)], b = lookup[text.charCodeAt(j + 1)];
    var c = lookup[text.charCodeAt(j + 2)], d = lookup[text.charCodeAt(j + 3)];
    out[o++] = (a << 2) | (b >> 4);
    if (o < out.length) out[o++] = ((b & 15) << 4) | (c >> 2);
    if (o < out.length) out[o++] = ((c & 3) << 6) | d;
  }
  return out;
}

// Which backend runs the Rust code: "wasm" or "wasm2js".
export var backend = (function load() {
  var imports = { "./watchtrain_companion_bg.js": glue };
  try {
    if (typeof WebAssembly === "undefined") throw new Error("no WebAssembly");
    var module = new WebAssembly.Module(decodeBase64(WASM_BASE64));
    var instance = new WebAssembly.Instance(module, imports);
    glue.__wbg_set_wasm(instance.exports);
    return "wasm";
  } catch (e) {
    glue.__wbg_set_wasm(instantiate(imports));
    return "wasm2js";
  }
})();
