#!/usr/bin/env bash
# keyway-client's contract test against Seam's own fake server (npm @seamapi/fake-seam-connect,
# version pinned in package.json / package-lock.json): installs it, starts it seeded on a free
# loopback port, runs keyway-client's `fake_seam` test with KEYWAY_FAKE_SEAM_URL pointing at it,
# and stops it whatever happens. (`--workspace` keeps the features of the workspace build, so the
# test reuses what `cargo test --workspace` compiled.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

echo "==> npm ci (tests/fake-seam)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

port="$(node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })')"
log="$(mktemp)"
fake_pid=""
cleanup() {
  if [[ -n "$fake_pid" ]] && kill -0 "$fake_pid" 2>/dev/null; then
    kill "$fake_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$fake_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$fake_pid" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap cleanup EXIT INT TERM

echo "==> starting Seam's fake on 127.0.0.1:$port"
(cd "$here" && PORT="$port" NODE_ENV=production exec node serve.mjs) >"$log" 2>&1 &
fake_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
  if curl -fsS "$url/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$fake_pid" 2>/dev/null; then
    echo "the fake exited early:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.2
done
if ! curl -fsS "$url/health" >/dev/null 2>&1; then
  echo "the fake did not answer /health within 30 s:" >&2; cat "$log" >&2; exit 1
fi

echo "==> cargo test --workspace --test fake_seam against $url"
cd "$root"
KEYWAY_FAKE_SEAM_URL="$url" cargo test --workspace --test fake_seam -- --nocapture
