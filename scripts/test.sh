#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and integration tests, and the official
# Seam SDKs (npm `@seamapi/http`, npm `seamapi` v8, PyPI `seam`) run against a real Keyway, and
# a Z-Wave lock through the real zwave-js driver and zwave-server on zwave-js' mock controller.
# Installs what the SDK tests need (npm / pip packages) by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets -- -D warnings
# The Rust suite runs twice: on SQLite, then on PostgreSQL (a fresh database per test, dropped
# afterwards), where the tests of several instances and of a lost database run too. Point the
# second run elsewhere with KEYWAY_TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB (a database
# the user may connect to, and CREATE DATABASE from).
POSTGRES_URL="${KEYWAY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
echo "==> cargo test (SQLite)"
env -u KEYWAY_TEST_DATABASE_URL cargo test --workspace
echo "==> cargo test (PostgreSQL at ${POSTGRES_URL})"
KEYWAY_TEST_DATABASE_URL="$POSTGRES_URL" cargo test --workspace
echo "==> official SDKs against keyway serve --seed"
bash tests/sdk/run.sh
echo "==> webhook deliveries verified by the official @seamapi/webhook"
bash tests/webhooks/run.sh
echo "==> a Z-Wave lock: zwave-js on its mock controller, Keyway through the official SDK, and the model test"
bash tests/zwave/run.sh
echo "==> keyway-client against Seam's fake"
bash tests/fake-seam/run.sh
echo "==> benchmark harness smoke run (tiny sizes; the real run is bench/run.sh)"
(cd bench/fake && npm ci --no-audit --no-fund --loglevel=error)
smoke_dir="$(mktemp -d)"
cargo run -q -p keyway-bench -- run --smoke --keyway-bin target/debug/keyway --out-dir "$smoke_dir"
rm -rf "$smoke_dir"
echo "==> all tests passed"
