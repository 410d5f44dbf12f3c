// TextEncoder / TextDecoder (UTF-8 only) for companion runtimes without them:
// the wasm-bindgen glue creates both when it loads, so this module is imported first.
function Utf8Encoder() {}
Utf8Encoder.prototype.encode = function (str) {
  var out = [];
  for (var i = 0; i < str.length; i++) {
    var c = str.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < str.length) {
      var d = str.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
};
function Utf8Decoder() {}
Utf8Decoder.prototype.decode = function (bytes) {
  if (!bytes) return "";
  var s = "";
  for (var i = 0; i < bytes.length; ) {
    var b = bytes[i++], c;
    if (b < 0x80) c = b;
    else if (b < 0xe0) c = ((b & 31) << 6) | (bytes[i++] & 63);
    else if (b < 0xf0) c = ((b & 15) << 12) | ((bytes[i++] & 63) << 6) | (bytes[i++] & 63);
    else c = ((b & 7) << 18) | ((bytes[i++] & 63) << 12) | ((bytes[i++] & 63) << 6) | (bytes[i++] & 63);
    if (c >= 0x10000) {
      c -= 0x10000;
      s += String.fromCharCode(0xd800 + (c >> 10), 0xdc00 + (c & 1023));
    } else s += String.fromCharCode(c);
  }
  return s;
};
var g = typeof globalThis !== "undefined" ? globalThis : typeof self !== "undefined" ? self : this;
if (typeof g.TextEncoder === "undefined") g.TextEncoder = Utf8Encoder;
if (typeof g.TextDecoder === "undefined") g.TextDecoder = Utf8Decoder;
