// Preloaded into both peer processes (`node --require ./lifetime.cjs ...`) so that neither can
// outlive a test run for ever, even if nobody calls stop.sh:
//   ZW_MAX_LIFETIME_SECS  (default 1800, 0 = no limit): after that long the process sends itself
//                         SIGTERM (its own graceful shutdown) and is forced out 10 s later.
//   ZW_WATCH_PID          (optional): a PID to watch, e.g. the test process; when it is gone the
//                         process shuts down the same way within about a second.
"use strict";

const tag = `[lifetime ${process.pid}]`;
let stopping = false;

function stop(reason) {
	if (stopping) return;
	stopping = true;
	console.error(`${tag} ${reason}: sending SIGTERM to myself`);
	setTimeout(() => {
		console.error(`${tag} still alive 10 s after SIGTERM: exiting`);
		process.exit(1);
	}, 10_000).unref();
	process.kill(process.pid, "SIGTERM");
}

const maxSecs = Number(process.env.ZW_MAX_LIFETIME_SECS ?? 1800);
if (Number.isFinite(maxSecs) && maxSecs > 0) {
	setTimeout(() => stop(`max lifetime of ${maxSecs} s reached`), maxSecs * 1000).unref();
}

const watchPid = Number(process.env.ZW_WATCH_PID ?? 0);
if (Number.isInteger(watchPid) && watchPid > 1) {
	setInterval(() => {
		try {
			process.kill(watchPid, 0);
		} catch (e) {
			// EPERM means it exists but belongs to someone else: still alive.
			if (e.code === "ESRCH") stop(`watched PID ${watchPid} is gone`);
			return;
		}
		// A dead process that its parent has not reaped yet still answers kill(0) (Linux).
		try {
			const stat = require("node:fs").readFileSync(`/proc/${watchPid}/stat`, "utf8");
			if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) stop(`watched PID ${watchPid} has exited (zombie)`);
		} catch {}
	}, 1000).unref();
}
