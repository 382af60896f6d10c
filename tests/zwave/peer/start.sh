#!/usr/bin/env bash
# Starts the Z-Wave JS test peer in the background: zwave-js' mock controller with a mock lock
# (node 2) on tcp://127.0.0.1:<mock port>, the real zwave-server (zwave-js driver + websocket API)
# on ws://127.0.0.1:<ws port>, and the mock's control API on http://127.0.0.1:<control port>.
# Returns once the lock is fully interviewed.
#
#   start.sh <run-dir>        (logs, driver cache, env and pids files go there)
#
# Env (all optional): ZW_WS_PORT, ZW_MOCK_PORT, MOCK_CONTROL_PORT (default: free loopback ports),
#   ZW_START_TIMEOUT_SECS (60), ZW_MAX_LIFETIME_SECS (1800; both processes exit by themselves after
#   that), ZW_WATCH_PID (both processes exit when this PID is gone), and the mock's knobs
#   MOCK_NUM_USERS, MOCK_REJECT_DUPLICATES, MOCK_TXDELAY, MOCK_SEED_CODES, MOCK_DEVICE.
# Writes <run-dir>/env (ZW_WS_URL=..., ZW_CONTROL_URL=..., ...) and <run-dir>/pids (one PID a
# line), prints the same, exits 0. On failure: stops what it started, prints the log tails, exits 1.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 <run-dir>" >&2
	exit 2
fi
mkdir -p "$1"
run="$(cd "$1" && pwd)"
t0=$(date +%s%N)
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

if [[ -f "$run/pids" ]]; then
	while read -r pid; do
		if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
			echo "start.sh: a peer from $run is still running (PID $pid); run stop.sh $run first" >&2
			exit 1
		fi
	done <"$run/pids"
	rm -f "$run/pids"
fi
rm -rf "$run/zwave-cache"
rm -f "$run/env" "$run/mock.log" "$run/server.log" "$run/npm.log"

# ---- dependencies: npm ci when node_modules is missing or package-lock.json changed ----------
stamp="$here/node_modules/.keyway-lock.sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
	(
		# One npm ci at a time when several test runs start together.
		flock 9
		if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
			t_npm=$(date +%s%N)
			if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >"$run/npm.log" 2>&1; then
				echo "start.sh: npm ci failed:" >&2
				tail -n 40 "$run/npm.log" >&2
				exit 1
			fi
			echo "$want" >"$stamp"
			echo "npm ci: $(ms_since "$t_npm") ms"
		fi
	) 9>"${TMPDIR:-/tmp}/keyway-zwave-peer-npm.lock"
fi

# ---- ports ------------------------------------------------------------------------------------
read -r free1 free2 free3 < <(node -e '
	const net = require("net");
	const servers = [0, 1, 2].map(() => net.createServer());
	Promise.all(servers.map((s) => new Promise((r) => s.listen(0, "127.0.0.1", () => r(s.address().port)))))
		.then((ports) => { console.log(ports.join(" ")); servers.forEach((s) => s.close()); });
')
ws_port="${ZW_WS_PORT:-$free1}"
mock_port="${ZW_MOCK_PORT:-$free2}"
control_port="${MOCK_CONTROL_PORT:-$free3}"

export ZW_MAX_LIFETIME_SECS="${ZW_MAX_LIFETIME_SECS:-1800}"
timeout_secs="${ZW_START_TIMEOUT_SECS:-60}"
deadline=$(( $(date +%s) + timeout_secs ))

mock_pid=""
server_pid=""
fail() {
	echo "start.sh: $*" >&2
	for pid in $server_pid $mock_pid; do kill -TERM "$pid" 2>/dev/null || true; done
	for _ in $(seq 1 50); do
		alive=""
		for pid in $server_pid $mock_pid; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[[ -z "$alive" ]] && break
		sleep 0.1
	done
	for pid in $server_pid $mock_pid; do kill -KILL "$pid" 2>/dev/null || true; done
	for log in mock.log server.log; do
		if [[ -f "$run/$log" ]]; then
			echo "---- last lines of $run/$log ----" >&2
			tail -n 40 "$run/$log" >&2
		fi
	done
	rm -f "$run/pids"
	exit 1
}
trap 'fail "interrupted"' INT TERM

# ---- 1. mock controller + mock lock -----------------------------------------------------------
t_mock=$(date +%s%N)
(
	cd "$here"
	MOCK_CONTROL_PORT="$control_port" exec node --require ./lifetime.cjs run-mock.cjs \
		-i 127.0.0.1 -p "$mock_port" -c mock/lock.cjs
) >"$run/mock.log" 2>&1 </dev/null &
mock_pid=$!
echo "$mock_pid" >"$run/pids"

until grep -q "^Server listening on tcp://" "$run/mock.log" 2>/dev/null \
	&& grep -q "control API listening" "$run/mock.log" 2>/dev/null; do
	kill -0 "$mock_pid" 2>/dev/null || fail "the mock exited during start-up"
	(( $(date +%s) < deadline )) || fail "the mock did not listen within ${timeout_secs} s"
	sleep 0.05
done
mock_ms=$(ms_since "$t_mock")

# ---- 2. zwave-server (real zwave-js driver + websocket API) ----------------------------------
(
	cd "$run"
	exec node --require "$here/lifetime.cjs" "$here/node_modules/@zwave-js/server/dist-esm/bin/server.js" \
		"tcp://127.0.0.1:$mock_port" --config "$here/zwave-server.json" \
		--host 127.0.0.1 --port "$ws_port" --disable-dns-sd
) >"$run/server.log" 2>&1 </dev/null &
server_pid=$!
echo "$server_pid" >>"$run/pids"

# ---- 3. wait for the lock's interview ---------------------------------------------------------
remaining=$(( deadline - $(date +%s) ))
(( remaining > 0 )) || remaining=1
if ! ready_json="$(node "$here/wait-ready.mjs" "ws://127.0.0.1:$ws_port" "$remaining" 2 "$mock_pid" "$server_pid" 2>"$run/wait-ready.err")"; then
	fail "$(cat "$run/wait-ready.err") (timeout ${timeout_secs} s)"
fi
rm -f "$run/wait-ready.err"
trap - INT TERM
total_ms=$(ms_since "$t0")
startup_ms=$(ms_since "$t_mock")
read -r ws_up ready_at < <(node -e 'const j = JSON.parse(process.argv[1]); console.log(j.wsMs, j.readyMs)' "$ready_json")

cat >"$run/env" <<EOF
ZW_WS_URL=ws://127.0.0.1:$ws_port
ZW_CONTROL_URL=http://127.0.0.1:$control_port
ZW_MOCK_URL=tcp://127.0.0.1:$mock_port
ZW_LOCK_NODE_ID=2
ZW_MOCK_PID=$mock_pid
ZW_SERVER_PID=$server_pid
EOF
cat "$run/env"
echo "pids: $(tr '\n' ' ' <"$run/pids")"
echo "zwave peer ready: start-up ${startup_ms} ms (mock listening ${mock_ms} ms, then zwave-server: websocket up +${ws_up} ms, lock interviewed +${ready_at} ms); start.sh total ${total_ms} ms"
