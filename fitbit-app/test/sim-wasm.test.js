// The simulator with WebAssembly: the companion runs the wasm build.
"use strict";
const test = require("node:test");
const { scenario } = require("./scenario");

test("fake Fitbit, wasm companion, real relay and producer", { timeout: 120000 }, (t) =>
  scenario(t, { withWasm: true }));
