// Loads the companion's loader (companion/load.js and companion/gen/) as ES modules, with or
// without WebAssembly, and checks the Rust behind it: saturating float-to-int (an MVP build)
// and calls across memory growth (the wasm2js trap). Prints one JSON line.
// Usage: node backend-probe.mjs wasm|wasm2js [GLUE_JS]   (GLUE_JS: another glue, e.g. unpatched)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const companion = path.join(here, "..", "companion");
// The test build of the companion, with the probes (build.sh; the shipped one has none).
const gen = path.join(here, "..", "..", "target", "companion-wasm", "probes-gen");
const [mode, glue] = process.argv.slice(2);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "watchtrain-probe-"));
const rename = (s) => s
  .replace(/from "\.\/polyfill"|import "\.\/polyfill"/, (m) => m.replace("./polyfill", "./polyfill.mjs"))
  .replaceAll("./gen/glue.js", "./glue.mjs")
  .replaceAll("./gen/wasm2js.js", "./wasm2js.mjs")
  .replaceAll("./gen/wasm_bytes.js", "./wasm_bytes.mjs");
fs.writeFileSync(path.join(dir, "load.mjs"), rename(fs.readFileSync(path.join(companion, "load.js"), "utf8")));
fs.copyFileSync(path.join(companion, "polyfill.js"), path.join(dir, "polyfill.mjs"));
fs.copyFileSync(glue || path.join(gen, "glue.js"), path.join(dir, "glue.mjs"));
for (const f of ["wasm2js", "wasm_bytes"]) fs.copyFileSync(path.join(gen, f + ".js"), path.join(dir, f + ".mjs"));

if (mode === "wasm2js") delete globalThis.WebAssembly;
const m = await import(pathToFileURL(path.join(dir, "load.mjs")));
const result = { backend: m.backend, failures: [] };
const expect = (what, got, want) => {
  if (got !== want) result.failures.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
};
expect("saturate(1e300)", m.saturate(1e300), 2147483647);
expect("saturate(-1e300)", m.saturate(-1e300), -2147483648);
expect("saturate(NaN)", m.saturate(NaN), 0);
expect("saturate(-7.9)", m.saturate(-7.9), -7);

// Calls that pass strings and bytes in and a string out, with the memory growing between them.
const before = m.memory_bytes();
for (const kib of [16, 256, 1024, 4096, 8192]) {
  try {
    const text = `grow-${kib}-` + "é".repeat(kib % 97);
    const bytes = Uint8Array.from({ length: 300 + (kib % 50) }, (_, i) => (i * 7 + kib) & 255);
    const sum = bytes.reduce((s, b) => s + b, 0) + 0x5a;
    expect(`grow_probe(${kib})`, m.grow_probe(kib, text, bytes), `${text}:${sum}:${kib * 1024}`);
  } catch (e) {
    result.failures.push(`grow_probe(${kib}) threw ${e}`);
  }
}
result.memory = { before, after: m.memory_bytes() };
if (result.memory.after <= before) result.failures.push("memory did not grow");
console.log(JSON.stringify(result));
fs.rmSync(dir, { recursive: true, force: true });
