#!/usr/bin/env bash
# Keyway's benchmarks, in one command: builds Keyway and the harness in release, installs Seam's
# fake server (npm), and runs every scenario on 127.0.0.1. Extra arguments go to
# `keyway-bench run` (e.g. --smoke, --only api,engine, --duration-secs 5).
# Results: bench/results/bench-<time>.{json,md} and bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin keyway -p keyway-server -p keyway-bench
(cd bench/fake && npm ci --no-audit --no-fund --loglevel=error)
exec target/release/keyway-bench run "$@"
