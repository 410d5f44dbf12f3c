#!/usr/bin/env bash
# Builds fitbit-app/build/app.fba: the Rust companion (wasm + wasm2js, FITBIT-WASM.md),
# then the Fitbit SDK build for atlas (Versa 3) and vulcan (Sense).
# Needs: the pinned wasm tools (scripts/wasm-tools) and `npm ci` in fitbit-app/.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
bin="$root/tools/node_modules/.bin"
out="$root/target/companion-wasm"
work="$out/fitbit"
rm -rf "$work" && mkdir -p "$work"

# 1. Rust -> MVP wasm. A target dir of its own: other wasm builds use other flags.
RUSTFLAGS="-C target-cpu=mvp" CARGO_TARGET_DIR="$out" \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_PANIC=abort \
  cargo build -q -p watchtrain-companion --release --target wasm32-unknown-unknown
# 2. Bindings: bundler glue (heap-object glue on an MVP module: one table, no multivalue).
wasm-bindgen --target bundler --no-typescript --out-dir "$work" \
  "$out/wasm32-unknown-unknown/release/watchtrain_companion.wasm"
# 3. Lower what the precompiled std still has (bulk memory, sign extension), then prove pure MVP.
"$bin/wasm-opt" -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --llvm-memory-copy-fill-lowering --signext-lowering \
  "$work/watchtrain_companion_bg.wasm" -o "$work/companion.wasm"
"$bin/wasm-opt" "$work/companion.wasm" --mvp-features --print-function-map >/dev/null \
  || { echo "build.sh: companion.wasm is not pure MVP" >&2; exit 1; }
# 4. wasm2js for runtimes without WebAssembly.
"$bin/wasm2js" "$work/companion.wasm" -Oz -o "$work/wasm2js.js"
node tools/build-companion.js "$work" "$work/companion.wasm" "$work/wasm2js.js" companion/gen
# 5. The element pool of index.view, sized by protocol/vectors/limits.json (generated from
#    the crates), and the face's icons for the <image> elements.
node tools/gen-view.js "$root/protocol/vectors/limits.json"
mkdir -p resources/icons
cp "$root"/watch-wasm/icons/*.png resources/icons/ 2>/dev/null || true
# 6. The Fitbit build.
npx fitbit-build
