#!/usr/bin/env bash
# Keyway managing a Z-Wave lock: the real zwave-js driver inside zwave-server (npm @zwave-js/server)
# on zwave-js' mock controller with a mock lock node (peer/), Keyway connected to it, and
#   1. e2e.test.mjs: Seam's official SDK (@seamapi/http) drives Keyway end to end;
#   2. the model-based test (crates/keyway-server/tests/it/zwave.rs) against the same lock.
#
#   bash tests/zwave/run.sh
#
# KEYWAY_BIN              a built `keyway` binary (default: cargo build, target/debug/keyway)
# KEYWAY_ZWAVE_MODEL_SEEDS / KEYWAY_ZWAVE_MODEL_STEPS   size of the model run (default 2 × 25)
# Everything listens on 127.0.0.1 only; every wait is bounded; the peer, the server and their
# temporary directories are removed on exit.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$DIR/../.." && pwd)"
STARTUP_TIMEOUT=60
TEST_TIMEOUT=600

log() { printf '[zwave] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

for tool in node npm curl timeout sha256sum mktemp; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not installed"
done

if [[ -n "${KEYWAY_BIN:-}" ]]; then
  [[ "$KEYWAY_BIN" == /* ]] || KEYWAY_BIN="$PWD/$KEYWAY_BIN"
else
  log "building keyway: cargo build -p keyway-server"
  (cd "$REPO_ROOT" && cargo build -q -p keyway-server) || die "cargo build failed"
  target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
  [[ "$target_dir" == /* ]] || target_dir="$REPO_ROOT/$target_dir"
  KEYWAY_BIN="$target_dir/debug/keyway"
fi
[[ -x "$KEYWAY_BIN" ]] || die "$KEYWAY_BIN is not an executable file"

# --- the SDK (the peer's own dependencies are installed by peer/start.sh) ------------------
stamp="$DIR/node_modules/.keyway-deps-stamp"
want="$(cat "$DIR/package.json" "$DIR/package-lock.json" | sha256sum | cut -d' ' -f1) node $(node --version)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing the SDK (npm ci)"
  (cd "$DIR" && timeout -k 10 600 npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
  printf '%s\n' "$want" >"$stamp"
fi

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/keyway-zwave.XXXXXX")"
SERVER_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  bash "$DIR/peer/stop.sh" "$WORK_DIR/peer" >/dev/null 2>&1 || true
  if ((rc != 0)); then
    for f in "$WORK_DIR/server.stderr" "$WORK_DIR/peer/server.log"; do
      [[ -s "$f" ]] && { log "last lines of $f:"; tail -n 30 "$f" >&2 || true; }
    done
  fi
  rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the peer: mock controller + mock lock + zwave-server ----------------------------------
started=$(date +%s%N)
ZW_WATCH_PID=$$ bash "$DIR/peer/start.sh" "$WORK_DIR/peer" >"$WORK_DIR/peer-start.log" 2>&1 ||
  { cat "$WORK_DIR/peer-start.log" >&2; die "the Z-Wave peer did not start"; }
set -a
# shellcheck disable=SC1091
. "$WORK_DIR/peer/env"
set +a
log "$(tail -n 1 "$WORK_DIR/peer-start.log")"

# --- Keyway, pointed at the peer -----------------------------------------------------------
env -u KEYWAY_DATABASE_URL "$KEYWAY_BIN" serve --seed --listen 127.0.0.1:0 \
  --data-dir "$WORK_DIR/data" --sandbox-delay-ms 100 --poll-interval-secs 5 \
  --zwave-js-url "$ZW_WS_URL" >"$WORK_DIR/server.stdout" 2>"$WORK_DIR/server.stderr" </dev/null &
SERVER_PID=$!
deadline=$((SECONDS + STARTUP_TIMEOUT))
until [[ -s "$WORK_DIR/server.stdout" ]]; do
  kill -0 "$SERVER_PID" 2>/dev/null || die "keyway exited at start"
  ((SECONDS < deadline)) || die "keyway printed no address within ${STARTUP_TIMEOUT}s"
  sleep 0.1
done
first_line="$(head -n 1 "$WORK_DIR/server.stdout")"
[[ "$first_line" =~ (http://127\.0\.0\.1:[0-9]+) ]] || die "unexpected first line: $first_line"
export KEYWAY_URL="${BASH_REMATCH[1]}" KEYWAY_API_KEY=seam_apikey1_token

failed=()
log "end to end through @seamapi/http against $KEYWAY_URL"
(cd "$DIR" && timeout -k 10 "$TEST_TIMEOUT" node --test --test-reporter=spec e2e.test.mjs) ||
  failed+=("SDK end-to-end")
# The model test starts its own Keyway on the same lock: this one must be gone first.
kill -TERM "$SERVER_PID" 2>/dev/null || true
for _ in $(seq 100); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
kill -KILL "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

log "model-based test against the mock Z-Wave lock"
(cd "$REPO_ROOT" && KEYWAY_ZWAVE_WS_URL="$ZW_WS_URL" KEYWAY_ZWAVE_CONTROL_URL="$ZW_CONTROL_URL" \
  timeout -k 10 "$TEST_TIMEOUT" cargo test -q -p keyway-server --test it zwave:: -- --ignored --nocapture) ||
  failed+=("model-based test")

total_ms=$((($(date +%s%N) - started) / 1000000))
if ((${#failed[@]})); then
  die "FAILED: ${failed[*]} (${total_ms} ms)"
fi
log "Z-Wave suites passed in ${total_ms} ms"
