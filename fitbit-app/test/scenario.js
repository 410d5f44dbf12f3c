// One training watched end to end on the fake Fitbit: see sim.js for the parts.
"use strict";
const assert = require("node:assert");
const fs = require("fs");
const path = require("path");
const { startFitbit, startRelay, startProducer, relaySnapshot, faceCheck, getJson, until, sleep, tmpDir, LIMITS, TOKEN } = require("./sim");

// Long enough that a relay restart (silence since its last save, plus the producer's reconnect
// backoff) never looks like a stall; short enough for the stall step.
const STALL_AFTER_MS = 5000;
const METRICS = ["train_loss", "valid_loss", "accuracy"];

async function scenario(t, { withWasm }) {
  const mode = withWasm ? "wasm" : "wasm2js";
  const dir = tmpDir();
  const db = path.join(dir, "relay.sqlite3");
  let relay = startRelay({ port: 0, db, stallAfter: `${STALL_AFTER_MS}ms` });
  const port = await relay.ready;
  const base = `http://127.0.0.1:${port}`;
  const fit = await startFitbit({ relayUrl: "", withWasm });
  const producer = startProducer(base);
  t.after(() => {
    fit.shutdown();
    producer.child.kill("SIGKILL");
    relay.child.kill("SIGKILL");
  });

  assert.strictEqual(fit.backend, `watchtrain companion: ${mode}`);
  assert.strictEqual(fit.me.appTimeoutEnabled, false, "the app keeps itself open");
  // No relay in the settings yet: the watch says so; typing the URL connects.
  await until("'set the relay in settings'", () => fit.status() === "set the relay in settings");
  fit.setSetting("relay_url", `ws://127.0.0.1:${port}`);
  await until("the relay online on the watch", () => fit.relayStates.includes(1) && fit.status() === "");

  await producer.start({ name: `sim ${mode}`, metrics: METRICS, epochs: 6, batches: 20, run_key: `sim-${mode}` });
  const { training_id: id } = await producer.send({ op: "connected" });
  assert.ok(id > 0, "the relay assigned an id");

  async function epoch(e, values, batches = 20) {
    for (let b = 1; b <= batches; b++) {
      await producer.send({ op: "progress", epoch: e, batch: b, batches: 20 });
      await sleep(5);
    }
    await producer.send({ op: "stats", epoch: e, values, duration: 30 });
  }
  async function relayState(what, check) {
    return until(what, async () => {
      const s = await getJson(`${base}/v1/trainings/${id}?token=${TOKEN}`);
      return check(s) && s;
    });
  }
  // The watch shows exactly the face of the relay's state: every element, and the picture.
  // (Its document is what counts: a paint made from a picture the watch no longer shows is
  // received but not applied, so replaying all that was received proves nothing.)
  async function watchShowsRelayState(what, png) {
    return until(what, async () => {
      const snapshot = await relaySnapshot(port, id);
      const r = faceCheck({ snapshot, received: fit.received, doc: fit.doc, png: png && path.join(dir, png) });
      if (r.document_equals_face) return r;
      throw new Error(`not yet: ${JSON.stringify(r.mismatches)}`);
    }, 15000, 300);
  }

  // Two epochs: bars, curves and texts follow the relay's state.
  await epoch(0, [0.9, 0.95, 0.52]);
  await epoch(1, [0.7, 0.8, 0.61]);
  await producer.send({ op: "progress", epoch: 2, batch: 7, batches: 20 });
  await relayState("epoch 1 on the relay", (s) => s.latest_epoch === 1 && s.epoch === 2);
  let check = await watchShowsRelayState("the watch to show epoch 1", `${mode}-mid`);
  assert.ok(check.max_difference_document <= 4, `document vs raster: ${check.max_difference_document}`);
  assert.ok(fit.texts().includes(`sim ${mode}`), `the name is shown: ${fit.texts()}`);
  assert.ok(fit.texts().some((x) => x.includes("epoch 3/6")), `epoch text: ${fit.texts()}`);
  assert.ok(check.visible[1] >= 3, "chart lines are shown");
  assert.strictEqual(fit.vibrations.length, 0, "nothing to buzz about yet");

  // A metric turns NaN: one buzz.
  await epoch(2, ["nan", 0.75, 0.66]);
  await until("a buzz for NaN", () => fit.vibrations.length >= 1);
  assert.deepStrictEqual(fit.alerts[0].slice(0, 3), [3, 4, "train_loss is NaN"]);
  assert.strictEqual(fit.vibrations[0].pattern, "nudge-max");
  assert.ok(fit.pokes.length >= 1, "the alert wakes the screen");

  // The relay is killed mid-epoch and comes back: the watch says so, then shows the right picture.
  await producer.send({ op: "progress", epoch: 3, batch: 5, batches: 20 });
  await sleep(200);
  relay.child.kill("SIGKILL");
  await until("'relay offline' on the watch", () => fit.status() === "relay offline");
  await epoch(3, [0.5, 0.7, 0.7], 12); // buffered by the producer while the relay is down
  relay = startRelay({ port, db, stallAfter: `${STALL_AFTER_MS}ms` });
  await relay.ready;
  await until("the watch back online", () => fit.status() === "" && fit.relayStates.at(-1) === 1);
  await producer.send({ op: "progress", epoch: 4, batch: 3, batches: 20 });
  await relayState("epoch 3 on the restarted relay", (s) => s.latest_epoch === 3 && s.epoch === 4);
  check = await watchShowsRelayState("the watch to show the restarted relay's state", `${mode}-restart`);
  assert.strictEqual(fit.vibrations.length, 1, "a relay restart buzzes nothing");

  // The producer goes quiet: the relay says stalled, one buzz.
  await sleep(STALL_AFTER_MS + 500);
  await until("a buzz for the stall", () => fit.vibrations.length >= 2, 10000);
  assert.deepStrictEqual(fit.alerts[1].slice(0, 2), [3, 3]);

  // Screen off: no paints, only alerts; screen on: one full repaint.
  fit.setScreen(false);
  await sleep(300);
  const paintsBefore = fit.received.length;
  await epoch(4, [0.4, 0.65, 0.75]);
  await relayState("epoch 4 on the relay", (s) => s.latest_epoch === 4);
  await sleep(1500);
  assert.strictEqual(fit.received.length, paintsBefore, "no paint while the screen is off");
  fit.setScreen(true);
  await until("a repaint when the screen turns on", () => fit.received.length > paintsBefore);

  // The last epoch and the end: one buzz, and the final picture.
  await epoch(5, [0.35, 0.6, 0.8]);
  await producer.send({ op: "finish", outcome: "completed" });
  await until("a buzz for the finish", () => fit.vibrations.length >= 3);
  // The banner takes one or two lines (the companion fits the text to the watch's font).
  assert.deepStrictEqual([...fit.alerts[2].slice(0, 2), fit.alerts[2][2].replace("\n", " ")], [3, 1, `sim ${mode} completed`]);
  await relayState("completed on the relay", (s) => s.status === "completed");
  check = await watchShowsRelayState("the final picture", `${mode}-final`);
  assert.ok(check.max_difference_document <= 4);
  await sleep(1500);
  assert.deepStrictEqual(fit.vibrations.map((v) => v.pattern), ["nudge-max", "nudge", "nudge"], "one buzz per event");

  // The phone goes out of reach: "waiting for phone"; back: the same face (the watch kept
  // its picture, so the companion's diff from the acknowledged one is empty).
  await fit.disconnectPhone();
  assert.strictEqual(fit.status(), "waiting for phone");
  await fit.reconnectPhone();
  await until("the watch back with the phone", () => fit.status() === "");
  await watchShowsRelayState("the same face after the phone came back");

  // Follow a chosen training: the settings list it (GET /v1/trainings) and the
  // companion re-subscribes by id.
  const statesBefore = fit.relayStates.length;
  fit.chooseTraining(id);
  await until("the settings list of trainings", () =>
    JSON.parse(fit.settings.get("trainings_list") || "[]").some((x) => x.id === id && x.name === `sim ${mode}`));
  await until("a new connection, by id", () =>
    fit.relayStates.slice(statesBefore).includes(0) && fit.relayStates.at(-1) === 1 && fit.status() === "");
  await watchShowsRelayState("the chosen training's face");
  assert.strictEqual(fit.vibrations.length, 3, "re-subscribing buzzes nothing");

  // Every message to the watch fits Fitbit's limit, CBOR wrapping included.
  const toWatch = fit.messages.filter((m) => m.from === "companion");
  const biggest = Math.max(...toWatch.map((m) => m.size));
  assert.ok(toWatch.every((m) => m.size <= LIMITS.max_message_size), `biggest ${biggest} B`);
  const paints = toWatch.filter((m) => m.binary);
  const report = {
    mode,
    messages_to_watch: toWatch.length,
    paint_messages: paints.length,
    paint_bytes: paints.reduce((s, m) => s + m.payload, 0),
    biggest_message: biggest,
    pictures: dir,
  };
  console.log(`# simulator ${JSON.stringify(report)}`);
  fs.writeFileSync(path.join(dir, "report.json"), JSON.stringify(report));
  return report;
}

module.exports = { scenario };
