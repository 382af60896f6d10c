#!/usr/bin/env bash
# Runs Seam's official SDKs (npm @seamapi/http, legacy npm seamapi v8, PyPI seam) against a
# freshly started, seeded Keyway server, and exits non-zero if any of them fails.
#
#   bash tests/sdk/run.sh
#
# KEYWAY_BIN   path of a built `keyway` binary; when unset the script runs
#              `cargo build -p keyway-server` and uses target/debug/keyway.
# PYTHON       interpreter for the virtualenv (default python3).
#
# Dependencies are installed by the script itself (npm ci into tests/sdk/js/node_modules,
# a virtualenv at tests/sdk/python/.venv) and skipped when already up to date.
# Every wait is bounded; the server and its temporary data directory are removed on exit.
set -euo pipefail

SDK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SDK_DIR/../.." && pwd)"
JS_DIR="$SDK_DIR/js"
PY_DIR="$SDK_DIR/python"
VENV="$PY_DIR/.venv"
PYTHON="${PYTHON:-python3}"

STARTUP_TIMEOUT=60   # seconds for the server to print its URL and answer /health
TEST_TIMEOUT=600     # seconds for each SDK test run
INSTALL_TIMEOUT=900  # seconds for each dependency install
BUILD_TIMEOUT=3600   # seconds for cargo build

log() { printf '[sdk] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

for tool in node npm "$PYTHON" curl timeout sha256sum mktemp; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not installed"
done

# --- the keyway binary -------------------------------------------------------------------
if [[ -n "${KEYWAY_BIN:-}" ]]; then
  [[ "$KEYWAY_BIN" == /* ]] || KEYWAY_BIN="$PWD/$KEYWAY_BIN"
  [[ -x "$KEYWAY_BIN" ]] || die "KEYWAY_BIN=$KEYWAY_BIN is not an executable file"
else
  command -v cargo >/dev/null 2>&1 || die "cargo is required to build keyway (or set KEYWAY_BIN)"
  log "building keyway: cargo build -p keyway-server"
  (cd "$REPO_ROOT" && timeout -k 10 "$BUILD_TIMEOUT" cargo build -p keyway-server) ||
    die "cargo build -p keyway-server failed"
  target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
  [[ "$target_dir" == /* ]] || target_dir="$REPO_ROOT/$target_dir"
  KEYWAY_BIN="$target_dir/debug/keyway"
  [[ -x "$KEYWAY_BIN" ]] || die "cargo build succeeded but $KEYWAY_BIN is missing"
fi

# --- dependencies --------------------------------------------------------------------------
install_js() {
  local stamp="$JS_DIR/node_modules/.keyway-deps-stamp" want
  want="$(cat "$JS_DIR/package.json" "$JS_DIR/package-lock.json" | sha256sum | cut -d' ' -f1) node $(node --version)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "JS dependencies up to date"
    return
  fi
  log "installing JS dependencies (npm ci)"
  (cd "$JS_DIR" && timeout -k 10 "$INSTALL_TIMEOUT" npm ci --no-audit --no-fund) || die "npm ci failed"
  printf '%s\n' "$want" >"$stamp"
}

install_py() {
  local stamp="$VENV/.keyway-deps-stamp" want
  want="$(sha256sum <"$PY_DIR/requirements.txt" | cut -d' ' -f1) $("$PYTHON" --version 2>&1)"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "Python dependencies up to date"
    return
  fi
  log "creating $VENV and installing requirements.txt"
  rm -rf "$VENV"
  timeout -k 10 120 "$PYTHON" -m venv "$VENV" || die "could not create a virtualenv with $PYTHON -m venv"
  timeout -k 10 "$INSTALL_TIMEOUT" "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    -r "$PY_DIR/requirements.txt" || die "pip install -r requirements.txt failed"
  printf '%s\n' "$want" >"$stamp"
}

install_js
install_py

sdk_versions="$(cd "$JS_DIR" && node -e '
  const fs = require("node:fs")
  const v = (p) => JSON.parse(fs.readFileSync(`node_modules/${p}/package.json`, "utf8")).version
  console.log(`@seamapi/http ${v("@seamapi/http")}, seamapi ${v("seamapi")}`)
')"
sdk_versions+=", PyPI seam $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("seam"))')"
log "SDKs: $sdk_versions; node $(node --version); $("$VENV/bin/python" --version)"

# --- the server ----------------------------------------------------------------------------
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/keyway-sdk.XXXXXX")"
DATA_DIR="$WORK_DIR/data"
mkdir -p "$DATA_DIR"
SERVER_OUT="$WORK_DIR/server.stdout"
SERVER_ERR="$WORK_DIR/server.stderr"
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
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if ((rc != 0)) && [[ -s "$SERVER_ERR" ]]; then
    log "last lines of the server's stderr:"
    tail -n 40 "$SERVER_ERR" >&2 || true
  fi
  rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting $KEYWAY_BIN serve --seed --listen 127.0.0.1:0 --data-dir $DATA_DIR --sandbox-delay-ms 100"
# KEYWAY_DATABASE_URL would override --data-dir: never point the tests at a persistent database.
env -u KEYWAY_DATABASE_URL "$KEYWAY_BIN" serve --seed --listen 127.0.0.1:0 --data-dir "$DATA_DIR" \
  --sandbox-delay-ms 100 >"$SERVER_OUT" 2>"$SERVER_ERR" </dev/null &
SERVER_PID=$!

# The first stdout line is exactly "Keyway listening on http://127.0.0.1:PORT".
deadline=$((SECONDS + STARTUP_TIMEOUT))
first_line=""
while :; do
  if [[ -s "$SERVER_OUT" ]] && (($(wc -l <"$SERVER_OUT") >= 1)); then
    IFS= read -r first_line <"$SERVER_OUT" || true
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || die "keyway exited before printing its address"
  ((SECONDS < deadline)) || die "keyway printed no address within ${STARTUP_TIMEOUT}s"
  sleep 0.1
done
[[ "$first_line" =~ ^Keyway\ listening\ on\ (http://127\.0\.0\.1:[0-9]+)$ ]] ||
  die "unexpected first stdout line from keyway: '$first_line'"
KEYWAY_URL="${BASH_REMATCH[1]}"

# The second line names the seeded API key: "API key: seam_apikey1_token (workspace seed_workspace_1)".
KEYWAY_API_KEY="seam_apikey1_token"
for _ in $(seq 20); do
  (($(wc -l <"$SERVER_OUT") >= 2)) && break
  sleep 0.1
done
second_line="$(sed -n 2p "$SERVER_OUT")"
if [[ "$second_line" =~ ^API\ key:\ ([^[:space:]]+) ]]; then
  KEYWAY_API_KEY="${BASH_REMATCH[1]}"
else
  log "no 'API key:' second line (got '$second_line'); using $KEYWAY_API_KEY"
fi

until curl -fsS --max-time 2 -o /dev/null "$KEYWAY_URL/health" 2>/dev/null; do
  kill -0 "$SERVER_PID" 2>/dev/null || die "keyway exited before /health answered"
  ((SECONDS < deadline)) || die "$KEYWAY_URL/health did not answer 200 within ${STARTUP_TIMEOUT}s"
  sleep 0.2
done
log "keyway is up at $KEYWAY_URL (API key $KEYWAY_API_KEY)"
export KEYWAY_URL KEYWAY_API_KEY

# --- the SDK suites ------------------------------------------------------------------------
failed=()

log "JavaScript: @seamapi/http and seamapi v8 (node --test)"
if ! (cd "$JS_DIR" && timeout -k 10 "$TEST_TIMEOUT" \
  node --test --test-reporter=spec seam-http.test.mjs seamapi-v8.test.mjs); then
  failed+=("JavaScript SDKs")
fi

log "Python: seam (pytest)"
if ! (cd "$PY_DIR" && PYTHONDONTWRITEBYTECODE=1 timeout -k 10 "$TEST_TIMEOUT" \
  "$VENV/bin/python" -m pytest -p no:cacheprovider -v test_seam_python.py); then
  failed+=("Python SDK")
fi

kill -0 "$SERVER_PID" 2>/dev/null || {
  log "keyway died during the tests"
  failed+=("server stayed up")
}

if ((${#failed[@]})); then
  log "FAILED: ${failed[*]} ($sdk_versions)"
  exit 1
fi
log "all SDK suites passed ($sdk_versions)"
