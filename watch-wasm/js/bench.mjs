// Render benchmark (wasm in Node): ns per full face (View.render: layout + paint
// into the wasm framebuffer) per screen and scenario, and the cost of copying the
// pixels out. Run after the fixtures example: FIXTURES=DIR node watch-wasm/js/bench.mjs
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadWatch, records } from "./load.mjs";

const dir = process.env.FIXTURES;
if (!dir) throw new Error("set FIXTURES");
const { View, memory } = await loadWatch();

function nsPer(f) {
  for (let i = 0; i < 300; i++) f(); // let the JIT tier up
  let n = 0;
  const start = process.hrtime.bigint();
  while (process.hrtime.bigint() - start < 300_000_000n) {
    for (let i = 0; i < 10; i++) f();
    n += 10;
  }
  return Number(process.hrtime.bigint() - start) / n;
}

console.log(`wasm in Node ${process.version}, ns per operation`);
console.log("scenario       screen      full face   pixels() copy   zero-copy ImageData");
for (const name of ["mid_epoch", "decimated_200", "long_names"]) {
  const frames = records(readFileSync(join(dir, `${name}.frames`)));
  for (const [w, h] of [[336, 336], [300, 300], [348, 250], [960, 540]]) {
    const view = new View(w, h);
    for (const f of frames) view.feed(f);
    const full = nsPer(() => view.render());
    const copy = nsPer(() => view.pixels());
    const zero = nsPer(() => new Uint8ClampedArray(new Uint8ClampedArray(memory.buffer, view.pixels_ptr(), w * h * 4)));
    console.log(`${name.padEnd(14)} ${(w + "x" + h).padStart(7)} ${full.toFixed(0).padStart(12)} ${copy.toFixed(0).padStart(15)} ${zero.toFixed(0).padStart(21)}`);
    view.free();
  }
}
