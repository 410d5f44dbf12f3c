// The wasm build and the native build draw the same face: for every scenario and
// screen, the same frames fed to the wasm View give a byte-identical RGBA
// framebuffer and byte-identical vector messages.
// Run: FIXTURES=DIR node --test watch-wasm/js/ (after `--example fixtures -- DIR`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadWatch, records } from "./load.mjs";

const dir = process.env.FIXTURES;
if (!dir) throw new Error("set FIXTURES to the directory written by the fixtures example");
const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
const { View, memory } = await loadWatch();

function firstDifference(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : Math.min(a.length, b.length);
}

for (const name of index.scenarios) {
  const frames = records(readFileSync(join(dir, `${name}.frames`)));
  for (const [w, h] of index.screens) {
    test(`${name} ${w}x${h}: wasm framebuffer and vector ops equal native`, () => {
      const view = new View(w, h);
      for (const f of frames) view.feed(f);
      view.render();
      const pixels = view.pixels();
      const native = readFileSync(join(dir, `${name}_${w}x${h}.rgba`));
      assert.equal(pixels.length, w * h * 4);
      const at = firstDifference(pixels, native);
      assert.equal(at, -1, `first differing byte at ${at} (pixel ${Math.floor(at / 4) % w}, ${Math.floor(at / 4 / w)})`);
      // The zero-copy view the dashboard uses shows the same bytes.
      assert.equal(firstDifference(new Uint8Array(memory.buffer, view.pixels_ptr(), w * h * 4), native), -1);
      const n = view.vector(true);
      const ops = records(readFileSync(join(dir, `${name}_${w}x${h}.ops`)));
      assert.equal(n, ops.length);
      for (let i = 0; i < n; i++) assert.deepEqual(Buffer.from(view.message(i)), Buffer.from(ops[i]));
      view.free();
    });
  }
}

test("a bad frame throws, the view keeps working", () => {
  const view = new View(336, 336);
  assert.throws(() => view.feed(new Uint8Array([9, 9, 9])));
  const frames = records(readFileSync(join(dir, "mid_epoch.frames")));
  for (const f of frames) view.feed(f);
  assert.equal(view.name(), "resnet18 pets");
  assert.equal(view.status(), "running");
  view.render();
  const native = readFileSync(join(dir, "mid_epoch_336x336.rgba"));
  assert.equal(firstDifference(view.pixels(), native), -1);
});

test("a changed pixel is detected", () => {
  const view = new View(336, 336);
  for (const f of records(readFileSync(join(dir, "stalled.frames")))) view.feed(f);
  view.render();
  const native = readFileSync(join(dir, "mid_epoch_336x336.rgba"));
  assert.notEqual(firstDifference(view.pixels(), native), -1);
});
