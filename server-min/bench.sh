#!/usr/bin/env bash
# The relay vs Mosquitto on loopback: 1 producer -> 1, 100, 1000 consumers.
# Prints delivered frames/s, p50/p99 latency at 1,000 frames/s, peak RSS, and the ratios.
# Usage: server-min/bench.sh [consumer counts...]     (figures: server-min/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/mosquitto ] && ! command -v mosquitto >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p watchtrain-relay --bin watchtrain-relay --example bench
exec target/release/examples/bench "$@"
