// The real SDK build's archive: app.fba holds the app for atlas and vulcan and the companion.
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const fs = require("fs");
const path = require("path");
const JSZip = require("jszip");
const { fromJSZip } = require("@fitbit/app-package");

const FBA = path.join(__dirname, "..", "build", "app.fba");

async function open() {
  return fromJSZip(await JSZip.loadAsync(fs.readFileSync(FBA)));
}

// Pool sizes declared by the watch face (watch-wasm/src/scene.rs).
function poolSizes() {
  const src = fs.readFileSync(path.join(__dirname, "..", "..", "watch-wasm", "src", "scene.rs"), "utf8");
  const get = (name) => Number(src.match(new RegExp(`pub const ${name}: usize = (\\d+);`))[1]);
  return { r: get("MAX_RECTS"), l: get("MAX_LINES"), t: get("MAX_TEXTS"), i: get("MAX_IMAGES") };
}

test("app.fba holds the app for atlas and vulcan, with the element pool", async () => {
  const pkg = await open();
  assert.deepStrictEqual(Object.keys(pkg.components.device).sort(), ["atlas", "vulcan"]);
  assert.ok(pkg.requestedPermissions.includes("access_internet"));
  const sizes = poolSizes();
  for (const family of ["atlas", "vulcan"]) {
    const zip = await JSZip.loadAsync(pkg.components.device[family].artifact);
    const app = await zip.file("app/index.js").async("string");
    assert.match(app, /appTimeoutEnabled/);
    assert.match(app, /require\("messaging"\)/);
    const view = await zip.file("resources/index.view").async("string");
    for (const [prefix, n] of Object.entries(sizes)) {
      assert.ok(view.includes(`id="${prefix}${n - 1}"`), `${family}: ${prefix}${n - 1} declared`);
      assert.ok(!view.includes(`id="${prefix}${n}"`), `${family}: no ${prefix}${n}`);
    }
    for (const id of ["status", "alert", "alertbg"]) assert.ok(view.includes(`id="${id}"`));
  }
});

test("app.fba holds the companion with both backends and the settings", async () => {
  const pkg = await open();
  assert.ok(pkg.components.companion, "a companion component");
  const zip = await JSZip.loadAsync(pkg.components.companion);
  const manifest = JSON.parse(await zip.file("manifest.json").async("string"));
  assert.strictEqual(manifest.companion.main, "companion.js");
  assert.strictEqual(manifest.settings.main, "settings.js");
  const js = await zip.file("companion.js").async("string");
  assert.match(js, /WebAssembly/, "the loader tries WebAssembly");
  assert.match(js, /"AGFzbQ/, "the wasm bytes are embedded (base64 of \\0asm)");
  assert.match(js, /Math\.imul|__wasm_memory_grow|memory\.grow|grow/, "the wasm2js translation is there");
  const settings = await zip.file("settings.js").async("string");
  for (const key of ["relay_url", "token", "training"]) assert.ok(settings.includes(key), key);
});
