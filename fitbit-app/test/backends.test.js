// Both backends of the companion run the same Rust: an MVP build (saturating float-to-int)
// whose glue survives memory growth; the unpatched glue under wasm2js does not (control).
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const path = require("path");
const { spawnSync } = require("child_process");

const ROOT = path.join(__dirname, "..", "..");
function probe(mode, glue) {
  const args = [path.join(__dirname, "backend-probe.mjs"), mode].concat(glue ? [glue] : []);
  const r = spawnSync(process.execPath, args, { encoding: "utf8" });
  assert.strictEqual(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

test("the wasm backend: MVP semantics, calls across memory growth", () => {
  const r = probe("wasm");
  assert.strictEqual(r.backend, "wasm");
  assert.deepStrictEqual(r.failures, []);
});

test("the wasm2js backend without WebAssembly: the same results", () => {
  const r = probe("wasm2js");
  assert.strictEqual(r.backend, "wasm2js");
  assert.deepStrictEqual(r.failures, []);
  assert.ok(r.memory.after >= 8 * 1024 * 1024, `memory grew to ${r.memory.after}`);
});

test("control: the unpatched wasm-bindgen glue breaks under wasm2js memory growth", () => {
  const unpatched = path.join(ROOT, "target", "companion-wasm", "fitbit-probes", "watchtrain_companion_bg.js");
  const r = probe("wasm2js", unpatched);
  assert.strictEqual(r.backend, "wasm2js");
  assert.ok(r.failures.some((f) => f.startsWith("grow_probe")), `expected wrong results: ${JSON.stringify(r)}`);
});
