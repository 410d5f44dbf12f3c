// The simulator with WebAssembly deleted from the global object: the companion runs wasm2js.
"use strict";
const test = require("node:test");
const { scenario } = require("./scenario");

test("fake Fitbit, wasm2js companion, real relay and producer", { timeout: 120000 }, (t) =>
  scenario(t, { withWasm: false }));
