// The dashboard in a real headless Chromium against a real relay running its demo
// training: the page loads, the wasm draws the face from the live WebSocket, and
// the canvas pixels equal the native render of the state the page holds; a relay
// with a token asks for it; at phone width the face comes first; behind a reverse
// proxy under a sub-path every request stays under it.
// Env: RELAY_BIN (watchtrain-relay), RENDER_BIN (the `render` example), OUT (artifacts dir).
// Run: node --test watch-wasm/js/dashboard.browser.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import http from "node:http";
import net from "node:net";
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
async function startRelay(name, ...args) {
  const relay = spawn(RELAY_BIN, ["--demo", "--demo-speed", "4", "--listen", "127.0.0.1:0", "--db", join(work, name + ".db"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  after(() => relay.kill());
  let err = "";
  relay.stderr.on("data", (d) => { err = (err + d).slice(-4000); });
  return await new Promise((resolve, reject) => {
    let out = "";
    relay.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (\S+)/);
      if (m) resolve(m[1]);
    });
    relay.on("exit", (code) => reject(new Error(`relay exited ${code}: ${out}${err}`)));
    setTimeout(() => reject(new Error(`relay did not start: ${out}${err}`)), 30000);
  });
}
const addr = await startRelay("relay");

// A tiny reverse proxy serving the relay under `prefix` (HTTP and WebSocket upgrades), as
// nginx's `location /watchtrain/ { proxy_pass http://relay:8555/; }` would.
async function subPathProxy(target, prefix) {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const inner = (url) => (url.startsWith(prefix) ? url.slice(prefix.length - 1) : null);
  const server = http.createServer((req, res) => {
    const path = inner(req.url);
    if (path === null) return res.writeHead(404).end(`not under ${prefix}\n`);
    const up = http.request({ host, port, path, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on("error", (e) => res.writeHead(502).end(String(e)));
    req.pipe(up);
  });
  server.on("upgrade", (req, socket, head) => {
    const path = inner(req.url);
    if (path === null) return socket.destroy();
    const up = net.connect(port, host, () => {
      const headers = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${req.method} ${path} HTTP/1.1\r\n${headers.join("\r\n")}\r\n\r\n`);
      up.write(head);
      socket.pipe(up).pipe(socket);
    });
    up.on("error", () => socket.destroy());
    socket.on("error", () => up.destroy());
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  after(() => { server.closeAllConnections(); server.close(); });
  return `127.0.0.1:${server.address().port}`;
}

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

// Waits until the page has applied `n` frames of the live demo.
async function framesArrive(page, n) {
  await page.waitForFunction((n) => window.watchtrain && window.watchtrain.frames() >= n, n, { timeout: 90000, polling: 200 });
}

test("a relay with a token asks for it, keeps it, and asks again for a wrong one", { timeout: 120000 }, async () => {
  const tokenRelay = await startRelay("token", "--token", "s3cret");
  const context = await browser.newContext({ viewport: { width: 1500, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://${tokenRelay}/`);
  await page.locator("#token-form").waitFor({ state: "visible", timeout: 30000 });
  assert.equal(await page.textContent("#conn"), "token needed");
  assert.match(await page.textContent("#token-reason"), /needs a token/);
  assert.doesNotMatch(await page.textContent("main"), /none yet|unreachable/);
  await page.screenshot({ path: join(OUT, "dashboard-token.png") });

  await page.fill("#token", "s3cret");
  await page.press("#token", "Enter");
  await framesArrive(page, 20);
  assert.ok(await page.locator("#token-form").isHidden());
  assert.equal(await page.evaluate(() => localStorage.getItem("watchtrain-token")), "s3cret");

  // Kept: a reload without `?token=` goes straight to the face.
  await page.goto(`http://${tokenRelay}/`);
  await framesArrive(page, 20);
  assert.ok(await page.locator("#token-form").isHidden());

  // A wrong token from the address bar replaces the kept one, is taken off the URL, and is refused.
  await page.goto(`http://${tokenRelay}/?token=nope`);
  await page.locator("#token-form").waitFor({ state: "visible", timeout: 30000 });
  assert.match(await page.textContent("#token-reason"), /wrong token/);
  assert.equal(new URL(page.url()).search, "");
  assert.deepEqual(errors, []);
  await context.close();
});

test("at phone width the chosen training's face comes before the list", { timeout: 120000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
  await page.goto(`http://${addr}/`);
  await framesArrive(page, 20);
  const [face, list] = [await page.locator("#face").boundingBox(), await page.locator("#list").boundingBox()];
  assert.ok(face.y + face.height <= list.y, `face ${JSON.stringify(face)} not above the list ${JSON.stringify(list)}`);
  assert.ok(face.x >= 0 && face.x + face.width <= 390, "the face fits the phone's width");
  await page.screenshot({ path: join(OUT, "dashboard-phone.png"), fullPage: true });
  await page.close();
});

test("behind a reverse proxy under a sub-path, every request stays under it", { timeout: 120000 }, async () => {
  const proxy = await subPathProxy(addr, "/watchtrain/");
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  const urls = [];
  page.on("request", (r) => urls.push(r.url()));
  page.on("websocket", (ws) => urls.push(ws.url()));
  await page.goto(`http://${proxy}/watchtrain/`);
  await framesArrive(page, 20);
  await page.evaluate(() => fetch(document.querySelector("#png").href));
  const outside = urls.filter((u) => !/^(http|ws):\/\/[^/]+\/watchtrain\//.test(u) || !u.includes(proxy));
  assert.deepEqual(outside, []);
  assert.ok(urls.some((u) => u.startsWith(`ws://${proxy}/watchtrain/v1/trainings/`)), urls.join("\n"));
  assert.ok(urls.some((u) => u.startsWith(`http://${proxy}/watchtrain/v1/trainings`)));
  await page.close();
});

test("at desktop size the large view reads out the epoch under the pointer", { timeout: 120000 }, async () => {
  // A high-density screen: the large view is drawn in device pixels, scaled up by the face.
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 }, deviceScaleFactor: 2 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://${addr}/`);
  await framesArrive(page, 250); // a few epochs done
  const big = await page.locator("#big").boundingBox();
  const canvasWidth = await page.evaluate(() => document.querySelector("#big").width);
  assert.ok(canvasWidth >= 1.9 * big.width, `canvas ${canvasWidth} px for ${big.width} CSS px`);
  const epochAt = async (fx) => {
    await page.mouse.move(big.x + big.width * fx, big.y + big.height * 0.5);
    await page.locator("#readout").waitFor({ state: "visible", timeout: 5000 });
    const text = await page.textContent("#readout");
    const m = text.match(/^epoch (\d+)\ntrain_loss (\S+)\nvalid_loss (\S+)\naccuracy (\S+)$/);
    assert.ok(m, `read-out: ${JSON.stringify(text)}`);
    return { epoch: Number(m[1]), values: m.slice(2).map(Number), text };
  };
  const left = await epochAt(0.12);
  const right = await epochAt(0.6);
  assert.equal(left.epoch, 1, left.text);
  assert.ok(right.epoch > left.epoch, `${left.text} / ${right.text}`);
  // The values are the relay's, for that epoch.
  const id = await page.evaluate(() => window.watchtrain.chosen());
  const state = await page.evaluate(async (id) => (await fetch(`v1/trainings/${id}`)).json(), id);
  for (const r of [left, right]) {
    const row = state.history.find((h) => h.epoch === r.epoch - 1);
    assert.ok(row, `epoch ${r.epoch} in the relay's history`);
    r.values.forEach((v, i) => assert.ok(Math.abs(v - row.values[i]) <= 1e-3 * Math.max(1, Math.abs(v)), `${r.text} vs ${row.values}`));
  }
  await page.screenshot({ path: join(OUT, "dashboard-desktop.png") });
  await page.mouse.move(big.x - 20, big.y - 20);
  await page.locator("#readout").waitFor({ state: "hidden", timeout: 5000 });
  assert.deepEqual(errors, []);
  await page.close();
});
