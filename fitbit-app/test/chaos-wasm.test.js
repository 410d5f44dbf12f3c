// The chaos scenario (chaos.js) with the wasm companion, under each binary delivery type.
"use strict";
const test = require("node:test");
const { chaos } = require("./chaos");

for (const [binaryAs, seed] of [["ArrayBuffer", 11], ["Uint8Array", 12], ["object", 13]]) {
  test(`chaos, wasm companion, binary as ${binaryAs}`, { timeout: 240000 }, (t) =>
    chaos(t, { withWasm: true, binaryAs, seed, expectBackend: "wasm" }));
}
