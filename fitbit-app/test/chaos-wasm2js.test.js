// The chaos scenario (chaos.js) with the wasm2js companion, under each binary delivery type.
// One run is the companion runtime at its harshest: WebAssembly that refuses modules over
// 4 KB (Chromium-based WebViews on the main thread) and no TextEncoder/TextDecoder.
"use strict";
const test = require("node:test");
const { chaos } = require("./chaos");

test("chaos, wasm2js companion (WebAssembly.Module refuses > 4 KB, no TextEncoder), binary as ArrayBuffer", { timeout: 240000 }, (t) =>
  chaos(t, { withWasm: true, wasmLimit: 4096, textCodec: false, binaryAs: "ArrayBuffer", seed: 21, expectBackend: "wasm2js" }));
for (const [binaryAs, seed] of [["Uint8Array", 22], ["object", 23]]) {
  test(`chaos, wasm2js companion, binary as ${binaryAs}`, { timeout: 240000 }, (t) =>
    chaos(t, { withWasm: false, binaryAs, seed, expectBackend: "wasm2js" }));
}
