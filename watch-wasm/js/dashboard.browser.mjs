// The dashboard in a real headless Chromium against a real relay running its demo
// training: the page loads, the wasm draws the face from the live WebSocket, and
// the canvas pixels equal the native render of the state the page holds.
// Env: RELAY_BIN (watchtrain-relay), RENDER_BIN (the `render` example), OUT (artifacts dir).
// Run: node --test watch-wasm/js/dashboard.browser.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const { RELAY_BIN, RENDER_BIN } = process.env;
const OUT = process.env.OUT || "target/watch-browser";
if (!RELAY_BIN || !RENDER_BIN) throw new Error("set RELAY_BIN and RENDER_BIN");
mkdirSync(OUT, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "watch-browser-"));

// The browser first: its start-up can be slow, and the demo run is timed.
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
after(() => browser.close());

// A real relay on a loopback port, its demo training sped up 4 times (a 12-epoch run
// lasts about a minute, so the page joins one run and sees it live).
const relay = spawn(RELAY_BIN, ["--demo", "--demo-speed", "4", "--listen", "127.0.0.1:0", "--db", join(work, "relay.db")], {
  stdio: ["ignore", "pipe", "inherit"],
});
after(() => relay.kill());
const addr = await new Promise((resolve, reject) => {
  let out = "";
  relay.stdout.on("data", (d) => {
    out += d;
    const m = out.match(/listening on (\S+)/);
    if (m) resolve(m[1]);
  });
  relay.on("exit", (code) => reject(new Error("relay exited " + code + ": " + out)));
  setTimeout(() => reject(new Error("relay did not start: " + out)), 30000);
});


function nativeRender(snapshot, w, h) {
  // One record (u16 LE length, bytes); no snapshot is no record: the empty state.
  const rec = Buffer.alloc(snapshot.length ? 2 + snapshot.length : 0);
  if (snapshot.length) {
    rec.writeUInt16LE(snapshot.length, 0);
    Buffer.from(snapshot).copy(rec, 2);
  }
  writeFileSync(join(work, "snapshot.frames"), rec);
  execFileSync(RENDER_BIN, [join(work, "snapshot.frames"), String(w), String(h), join(work, "native.rgba")]);
  return readFileSync(join(work, "native.rgba"));
}

function differing(a, b) {
  let n = 0;
  for (let i = 0; i < a.length; i += 4) {
    if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2] || a[i + 3] !== b[i + 3]) n++;
  }
  return n;
}

test("the dashboard draws the live demo face, pixel for pixel the native render", { timeout: 120000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://${addr}/`);
  // Frames arrive over the WebSocket: wait for two epochs' worth.
  await page.waitForFunction(() => window.watchtrain && window.watchtrain.frames() >= 150, null, { timeout: 90000, polling: 200 });
  assert.equal(await page.evaluate(() => window.watchtrain.status()), "running");

  for (const size of ["336x336", "348x250"]) {
    await page.selectOption("#screen", size);
    const shot = await page.evaluate(() => window.watchtrain.capture());
    const [w, h] = size.split("x").map(Number);
    assert.deepEqual([shot.width, shot.height], [w, h]);
    const canvas = Buffer.from(shot.pixels, "base64");
    const native = nativeRender(shot.snapshot, w, h);
    assert.equal(canvas.length, native.length);
    assert.equal(differing(canvas, native), 0, `${size}: canvas differs from the native render`);
    // The comparison can fail: the face of an empty state is another picture.
    assert.ok(differing(canvas, nativeRender([], w, h)) > 1000);
  }
  await page.selectOption("#screen", "336x336");
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(OUT, "dashboard.png") });
  await page.locator("#face").screenshot({ path: join(OUT, "face.png") });
  assert.deepEqual(errors, []);
  await page.close();
});
