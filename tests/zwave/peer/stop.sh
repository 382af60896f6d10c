#!/usr/bin/env bash
# Stops a peer started by start.sh: SIGTERM to every PID in <run-dir>/pids, waits up to 10 s,
# then SIGKILL for whatever is left. Only PIDs whose command line is one of ours are signalled
# (a PID may have been reused after the peer exited on its own).
#   stop.sh <run-dir>
set -euo pipefail
if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 <run-dir>" >&2
	exit 2
fi
run="$1"
if [[ ! -f "$run/pids" ]]; then
	echo "stop.sh: no $run/pids, nothing to stop"
	exit 0
fi

ours() {
	local cmd
	cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
	[[ "$cmd" == *run-mock.cjs* || "$cmd" == *@zwave-js/server/dist-esm/bin/server.js* ]]
}

pids=()
while read -r pid; do
	[[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" && pids+=("$pid")
done <"$run/pids"

# The server first, so it does not log reconnect attempts when the mock goes away.
for (( i = ${#pids[@]} - 1; i >= 0; i-- )); do
	kill -TERM "${pids[$i]}" 2>/dev/null || true
done
t0=$(date +%s%N)
for _ in $(seq 1 100); do
	left=()
	for pid in "${pids[@]}"; do ours "$pid" && left+=("$pid"); done
	(( ${#left[@]} == 0 )) && break
	sleep 0.1
done
left=()
for pid in "${pids[@]}"; do ours "$pid" && left+=("$pid"); done
if (( ${#left[@]} > 0 )); then
	echo "stop.sh: still running after 10 s, sending SIGKILL to ${left[*]}" >&2
	kill -KILL "${left[@]}" 2>/dev/null || true
fi
rm -f "$run/pids"
echo "stopped ${#pids[@]} process(es) in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
