// Writes resources/index.view: the fixed pool of SVG elements the companion paints.
// Usage: node tools/gen-view.js LIMITS_JSON
// The pool sizes and text lengths come from protocol/vectors/limits.json, generated from the
// watch face's crate (watch-wasm/src/limits.rs); test/fba.test.js checks the built view against it.
"use strict";
const fs = require("fs");
const path = require("path");
const limits = JSON.parse(fs.readFileSync(process.argv[2], "utf8")).watch;
const { rects, lines, texts, images } = limits;
if (![rects, lines, texts, images].every((n) => Number.isInteger(n) && n > 0)) {
  console.error("usage: node tools/gen-view.js LIMITS_JSON (with watch.rects, lines, texts, images)");
  process.exit(2);
}
const out = ["<svg>", '  <rect id="bg" x="0" y="0" width="100%" height="100%" fill="black" />'];
out.push("  <!-- rect pool: progress bars and boxes -->");
for (let i = 0; i < rects; i++) out.push(`  <rect id="r${i}" class="pool" x="0" y="0" width="0" height="0" fill="white" display="none" />`);
out.push("  <!-- line pool: chart segments and axes -->");
for (let i = 0; i < lines; i++) out.push(`  <line id="l${i}" class="pool" x1="0" y1="0" x2="0" y2="0" fill="white" stroke-width="2" display="none" />`);
out.push("  <!-- text pool: labels and values -->");
for (let i = 0; i < texts; i++) out.push(`  <text id="t${i}" class="pool" x="0" y="0" fill="white" font-size="20" text-length="${limits.max_text_len}" display="none" />`);
out.push("  <!-- image pool: status icons (resources/icons/NAME.png) -->");
for (let i = 0; i < images; i++) out.push(`  <image id="i${i}" class="pool" x="0" y="0" width="16" height="16" display="none" />`);
out.push("  <!-- the watch's own states: waiting for phone, relay offline, alerts -->");
out.push('  <text id="status" x="50%" y="50%" fill="#9e9e9e" font-size="26" text-anchor="middle" text-length="40">waiting for phone</text>');
out.push('  <rect id="alertbg" x="0" y="0" width="100%" height="64" fill="#c62828" display="none" />');
out.push(`  <text id="alert" x="50%" y="44" fill="white" font-size="26" text-anchor="middle" text-length="${limits.max_alert_len}" display="none" />`);
out.push("</svg>");
fs.writeFileSync(path.join(__dirname, "..", "resources", "index.view"), out.join("\n") + "\n");
