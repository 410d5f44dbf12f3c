// The chaos scenario: a 50-epoch training watched over the harsh link (sim.js: CBOR, a
// small send buffer with BUFFER_FULL, latency, limited throughput, losses on disconnect),
// with random disconnects (some asymmetric), buffer-full bursts, the companion unloaded and
// relaunched with the socket open, a settings launch unloaded after a while, the screen
// turning off by itself and an alert's poke turning it on, and the relay going silent.
// At the end the watch's elements equal the face of the relay's state, and the NaN, the
// stall and the finish each buzzed exactly once. Prints the link's figures.
"use strict";
const assert = require("node:assert");
const fs = require("fs");
const path = require("path");
const { startFitbit, startRelay, startProducer, relaySnapshot, faceCheck, until, sleep, tmpDir, rng } = require("./sim");

// Longer than the relay is stopped for below, so that only the stall step stalls.
const STALL_AFTER_MS = 10000;
const EPOCHS = 50;
// The device-like link: 4 KB/s, 30-250 ms on the air, a 2 KiB send buffer.
const LINK = { capacity: 2048, bytesPerMs: 4, latencyMs: [30, 250] };
// How long the companion may take to show "relay offline" after the relay falls silent:
// its watchdog allows 2.5 heartbeat gaps (at least 3 s), plus slack for a loaded machine.
const OFFLINE_WITHIN_MS = 15000;

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN;
}

async function chaos(t, { withWasm, binaryAs, seed, wasmLimit = 0, textCodec = true, expectBackend }) {
  const name = `chaos ${expectBackend} ${binaryAs}`;
  const random = rng(seed);
  const dir = tmpDir();
  const relay = startRelay({ port: 0, db: path.join(dir, "relay.sqlite3"), stallAfter: `${STALL_AFTER_MS}ms`, pingInterval: "2s" });
  const port = await relay.ready;
  const fit = await startFitbit({
    relayUrl: `ws://127.0.0.1:${port}`, withWasm, wasmLimit, textCodec, binaryAs, harsh: { seed, ...LINK },
  });
  const producer = startProducer(`http://127.0.0.1:${port}`);
  t.after(() => {
    fit.shutdown();
    producer.child.kill("SIGKILL");
    relay.child.kill("SIGCONT");
    relay.child.kill("SIGKILL");
  });
  assert.strictEqual(fit.backend, `watchtrain companion: ${expectBackend}`);

  // Screen-on and screen-off spans, to split the figures.
  const spans = [{ on: true, from: Date.now() }];
  const screen = (on) => { if (spans.at(-1).on !== on) spans.push({ on, from: Date.now() }); };
  const display = fit.display;
  const onchange = () => screen(display.on);
  const appOnChange = display.onchange;
  display.onchange = () => { onchange(); appOnChange(); };

  await producer.start({ name, metrics: ["loss", "acc"], epochs: EPOCHS, batches: 4, run_key: name.replace(/ /g, "-") });
  const { training_id: id } = await producer.send({ op: "connected" });
  const epochAt = [];
  const events = [];
  for (let e = 0; e < EPOCHS; e++) {
    epochAt.push({ e, at: Date.now(), on: display.on });
    for (let b = 1; b <= 4; b++) {
      await producer.send({ op: "progress", epoch: e, batch: b, batches: 4 });
      await sleep(40 + random() * 60);
    }
    await producer.send({ op: "stats", epoch: e, values: [e === 20 ? "nan" : 1 / (e + 1), e / EPOCHS], duration: 1 });
    // Random short disconnects, some asymmetric.
    if (e % 9 === 4 && random() < 0.9) {
      events.push(`disconnect@${e}`);
      await fit.disconnectPhone(random() < 0.5 ? 200 : 0);
      await sleep(300 + random() * 1200);
      await fit.reconnectPhone(random() < 0.5 ? 300 : 0);
    }
    if (e === 12) {
      events.push("buffer-full burst");
      fit.squeeze(120);
      await sleep(1500);
      fit.unsqueeze();
    }
    // The screen turns off by itself; the NaN alert's poke turns it on.
    if (e === 16) {
      events.push("screen off");
      display.on = false;
      display.onchange();
    }
    if (e === 20) {
      await until("the NaN alert to poke the screen on", () => display.on, 10000);
    }
    if (e === 25) {
      events.push("companion relaunch");
      fit.unloadCompanion();
      await sleep(500);
      fit.loadCompanion("relaunch");
    }
    if (e === 30) {
      events.push("settings launch");
      fit.unloadCompanion();
      await sleep(300);
      fit.loadCompanion("settings");
      fit.setSetting("relay_url", `http://127.0.0.1:${port}`);
      await sleep(1500); // a settings launch lives ~15 s on a phone
      fit.unloadCompanion();
      await sleep(300);
      fit.loadCompanion("launch");
    }
    if (e === 35) {
      events.push("stall");
      await sleep(STALL_AFTER_MS + 1500);
    }
    if (e === 42) {
      events.push("relay silent");
      relay.child.kill("SIGSTOP");
      const stoppedAt = Date.now();
      await until("'relay offline' on the watch", () => fit.status() === "relay offline", OFFLINE_WITHIN_MS);
      events.push(`offline after ${Date.now() - stoppedAt} ms`);
      relay.child.kill("SIGCONT");
      await until("the relay back online on the watch", () => fit.status() === "", 20000);
    }
  }
  // The phone is away when the training finishes: the alert waits for the watch.
  await fit.disconnectPhone(100);
  await producer.send({ op: "finish", outcome: "completed" });
  await sleep(1000);
  await fit.reconnectPhone(100);
  events.push("finish while away");

  await until("the finish to buzz", () => fit.vibrations.length >= 3, 20000);
  const check = await until("the watch to show the relay's state", async () => {
    const snapshot = await relaySnapshot(port, id);
    const r = faceCheck({ snapshot, received: [], doc: fit.doc });
    if (r.document_equals_face) return r;
    throw new Error(`not yet: ${JSON.stringify(r.mismatches).slice(0, 400)}`);
  }, 20000, 300);
  assert.ok(check.max_difference_document <= 4);
  await sleep(3000); // time for any duplicate buzz to show
  const kinds = fit.alerts.map((a) => a[1]);
  assert.deepStrictEqual(fit.vibrations.map((v) => v.pattern), ["nudge-max", "nudge", "nudge"], `buzzes (alerts sent: ${JSON.stringify(kinds)})`);

  // The diagnostics view, a tap away.
  fit.tap();
  const diag = fit.diagnostics();
  const want = { ArrayBuffer: "ArrayBuffer", Uint8Array: "typed array", object: "numeric-key object" }[binaryAs];
  assert.strictEqual(diag[0], `binary as: ${want}`, JSON.stringify(diag));
  assert.match(diag[1], /^received: \d+ msgs, \d+ B$/);
  assert.match(diag[4], /^memory: \d+\/\d+ B$/);

  // Figures.
  const toWatch = fit.messages.filter((m) => m.from === "companion");
  assert.ok(toWatch.every((m) => m.size <= 1024), "every message fits");
  const spanOf = (at) => (spans.filter((s) => s.from <= at).at(-1) || spans[0]).on;
  const split = (on) => {
    const ms = toWatch.filter((m) => spanOf(m.at) === on);
    const epochs = epochAt.filter((x) => x.on === on).length;
    const time = spans.reduce((sum, s, i) => (s.on === on ? sum + ((spans[i + 1] || { from: Date.now() }).from - s.from) : sum), 0) / 1000;
    return { ms, epochs, time };
  };
  const on = split(true);
  const off = split(false);
  const pictures = toWatch.filter((m) => m.binary && m.last);
  const latency = pictures.filter((m) => m.deliveredAt).map((m) => m.deliveredAt - m.at).sort((a, b) => a - b);
  // Screen off: nothing but alerts and relay states once the companion has heard of it.
  const lateOffPaints = off.ms.filter((m) => m.binary && m.at - spans.find((s) => !s.on).from > 1500);
  assert.deepStrictEqual(lateOffPaints.length, 0, "no paint while the screen is off");
  const picturesOn = on.ms.filter((m) => m.binary && m.last).length;
  // About one a second, plus for each event the repaint on reopen and one resend.
  const allowed = on.time + 2 * events.length;
  assert.ok(picturesOn <= allowed, `${picturesOn} pictures in ${on.time} s with the screen on (at most ${allowed})`);
  const figures = {
    mode: expectBackend, binary: binaryAs, seed, events,
    per_epoch_screen_on: { messages: +(on.ms.length / on.epochs).toFixed(2), bytes: Math.round(on.ms.reduce((s, m) => s + m.size, 0) / on.epochs) },
    per_epoch_screen_off: { messages: +(off.ms.length / Math.max(1, off.epochs)).toFixed(2), bytes: Math.round(off.ms.reduce((s, m) => s + m.size, 0) / Math.max(1, off.epochs)) },
    per_s_screen_on: { messages: +(on.ms.length / on.time).toFixed(2), pictures: +(picturesOn / on.time).toFixed(2) },
    repaints: pictures.length,
    buffer_full: fit.bufferFull(),
    send_to_paint_ms: { p50: percentile(latency, 0.5), p95: percentile(latency, 0.95) },
    companion_launches: fit.companionLaunches.length,
  };
  console.log(`# chaos ${JSON.stringify(figures)}`);
  fs.writeFileSync(path.join(dir, "figures.json"), JSON.stringify(figures));
  return figures;
}

module.exports = { chaos };
