// Send-to-paint latency on loopback: a producer's WebSocket send of a progress frame to
// the moment the fake watch has applied the paint (real relay, built companion and app).
// Usage: node test/bench-latency.js wasm|wasm2js [SAMPLES]   (prints one line of figures)
"use strict";
const path = require("path");
const WebSocket = require("ws");
const { startFitbit, startRelay, until, tmpDir, TOKEN } = require("./sim");

const mode = process.argv[2] || "wasm";
const samples = Number(process.argv[3] || 8);

function varint(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
const str = (s) => { const b = Buffer.from(s); return [...varint(b.length), ...b]; };
// Frames by hand, per protocol/WIRE.md: version 1, then postcard of (training_id, seq, action).
const register = () => Buffer.from([1, 0, 0, 0, ...str("latency"), ...str(`latency-${mode}`), 1, ...str("loss"), 10, 100]);
const progress = (id, seq, batch) => Buffer.from([1, ...varint(id), ...varint(seq), 1, 0, 0, 10, ...varint(batch), 100]);

(async () => {
  const relay = startRelay({ port: 0, db: path.join(tmpDir(), "relay.sqlite3"), stallAfter: "60s" });
  const port = await relay.ready;
  const fit = await startFitbit({ relayUrl: `ws://127.0.0.1:${port}`, withWasm: mode === "wasm" });
  const producer = new WebSocket(`ws://127.0.0.1:${port}/v1/produce?token=${TOKEN}`);
  await new Promise((r) => producer.on("open", r));
  const ack = new Promise((r) => producer.once("message", (d) => r(Buffer.from(d))));
  producer.send(register());
  const reply = await ack;
  const id = reply[1]; // a small id: one varint byte
  const paints = [];
  await until("the first face", () => fit.received.length > 0);
  const latencies = [];
  for (let i = 1; i <= samples; i++) {
    // Past the companion's one-paint-a-second coalescing since the last paint.
    await until("a quiet second", () => Date.now() - fit.lastPaint() > 1100, 5000, 20);
    const before = fit.received.length;
    const t0 = process.hrtime.bigint();
    producer.send(progress(id, i, i * 5));
    await until("the paint", () => fit.received.length > before, 5000, 0);
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    paints.push(fit.received.at(-1).length / 2);
  }
  latencies.sort((a, b) => a - b);
  const med = latencies[Math.floor(latencies.length / 2)];
  console.log(`latency ${mode}: send-to-paint median ${med.toFixed(1)} ms, max ${latencies.at(-1).toFixed(1)} ms over ${samples} progress frames; paint ${Math.max(...paints)} B`);
  producer.close();
  fit.stop();
  relay.child.kill("SIGKILL");
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
