// Loads the built watch wasm (server-min/static/wasm/, the files the relay serves) in Node:
// the same glue and module the browser gets.
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const wasmDir = join(root, "server-min", "static", "wasm");

export async function loadWatch() {
  // The glue is an ES module in a .js file; Node needs .mjs to treat it as one.
  const dir = mkdtempSync(join(tmpdir(), "watch-wasm-"));
  const glue = join(dir, "watchtrain_watch.mjs");
  writeFileSync(glue, readFileSync(join(wasmDir, "watchtrain_watch.js")));
  const mod = await import(glue);
  const exports = mod.initSync({ module: readFileSync(join(wasmDir, "watchtrain_watch_bg.wasm")) });
  return { ...mod, memory: exports.memory };
}

// Splits u16-LE-length-prefixed records.
export function records(bytes) {
  const out = [];
  for (let i = 0; i < bytes.length; ) {
    const len = bytes[i] | (bytes[i + 1] << 8);
    out.push(bytes.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return out;
}
