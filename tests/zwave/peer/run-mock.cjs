#!/usr/bin/env node
// Starts zwave-js' stock MockServer (mock Z-Wave controller + mock nodes behind a TCP "serial port")
// with two run-time fixes; nothing in node_modules is modified:
//
// 1. Framing. The stock TCP bridge hands every TCP read to the mock controller as one chunk, but
//    the mock controller expects exactly one Serial API frame per chunk. When TCP merges the
//    driver's ACK with its next request (e.g. `06 01 03 00 08 f4`), the mock dies with "does not
//    start with SOF". Here every connection gets its own SerialAPIParser (upstream's, from
//    @zwave-js/serial), so the bridge sees single ACK/NAK/CAN bytes and complete SOF frames.
// 2. mDNS. MockServer always advertises `_zwave._tcp` via @homebridge/ciao; the responder is
//    replaced by a stub that does nothing, so no multicast traffic leaves the machine.
//
// Usage: node run-mock.cjs [-i 127.0.0.1] [-p 5555] -c mock/lock.cjs
// The config file is loaded like the stock `mock-server` bin does it: `module.exports.default` is
// a config object or a function `({ require }) => config`.
"use strict";

const path = require("node:path");
const { createRequire } = require("node:module");

// Resolve everything from zwave-js' point of view, so we patch the very modules MockServer uses.
const zwRequire = createRequire(require.resolve("zwave-js/package.json"));

// --- 2. mDNS stub (must be in place before MockServer.start() calls getResponder()) ---------
const ciao = zwRequire("@homebridge/ciao");
const stubService = {
	advertise: async () => {},
	end: async () => {},
	destroy: async () => {},
};
ciao.getResponder = () => ({
	createService: () => stubService,
	shutdown: async () => {},
});

const { MockServer } = require("zwave-js/Testing");
const { SerialAPIParser, ZWaveSerialFrameType } = require("@zwave-js/serial");

// --- 1. per-connection re-framing ------------------------------------------------------------
// The stock connection handler does `socket.on("data", chunk => serialport.writeAsync(chunk))`.
// We put a parser between the socket and every "data" listener: raw TCP chunks go into the
// parser, and each parsed frame is emitted to the listeners as its own "data" event, in order.
const framing = { chunks: 0, frames: 0 };
function reframeSocket(socket) {
	const parser = new SerialAPIParser();
	const parserWriter = parser.writable.getWriter();
	const originalEmit = socket.emit;
	// The stock bridge has no socket error handler; an ECONNRESET from a killed driver would
	// otherwise crash the mock.
	socket.on("error", (e) => console.error(`[run-mock] socket error: ${e.message}`));
	parser.readable
		.pipeTo(
			new WritableStream({
				write(frame) {
					if (frame.type !== ZWaveSerialFrameType.SerialAPI) {
						console.error(`[run-mock] discarding ${Buffer.from(frame.data).toString("hex")} from the host`);
						return;
					}
					const bytes = typeof frame.data === "number" ? Buffer.from([frame.data]) : Buffer.from(frame.data);
					framing.frames++;
					originalEmit.call(socket, "data", bytes);
				},
			}),
		)
		.catch(() => {});
	socket.emit = function (event, ...args) {
		if (event === "data") {
			framing.chunks++;
			parserWriter.write(args[0]).catch(() => {});
			return true;
		}
		if (event === "close") parserWriter.abort().catch(() => {});
		return originalEmit.call(this, event, ...args);
	};
}

const originalStart = MockServer.prototype.start;
MockServer.prototype.start = async function (...args) {
	await originalStart.apply(this, args);
	// start() created and bound this.server synchronously after its last await, so no client can
	// have connected yet; a prepended listener runs before the stock one.
	this.server.prependListener("connection", reframeSocket);
	this.server.on("error", (e) => {
		console.error(`[run-mock] server error: ${e.message}`);
		process.exit(1);
	});
};

// --- CLI -------------------------------------------------------------------------------------
function arg(short, long) {
	const argv = process.argv.slice(2);
	const i = argv.findIndex((a) => a === short || a === long);
	return i === -1 ? undefined : argv[i + 1];
}

const iface = arg("-i", "--interface") ?? "127.0.0.1";
const port = Number(arg("-p", "--port") ?? 5555);
const configArg = arg("-c", "--config");
if (!configArg || !Number.isInteger(port)) {
	console.error("usage: node run-mock.cjs [-i 127.0.0.1] [-p 5555] -c <config.cjs>");
	process.exit(2);
}

let config = require(path.resolve(configArg)).default;
if (typeof config === "function") config = config({ require: zwRequire });

const server = new MockServer({ interface: iface, port, config });
let stopping = false;
async function shutdown(signal) {
	if (stopping) return;
	stopping = true;
	console.log(`[run-mock] ${signal}: stopping; host->mock traffic was ${framing.chunks} TCP chunks, re-framed into ${framing.frames} frames`);
	setTimeout(() => process.exit(0), 3000).unref();
	try {
		await config.onStop?.();
		await server.stop();
	} catch (e) {
		console.error(`[run-mock] error while stopping: ${e.message}`);
	}
	process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("unhandledRejection", (e) => {
	// MockServer.start() rejects a promise nobody awaits when the port is taken.
	console.error(`[run-mock] unhandled rejection: ${e?.stack ?? e}`);
	if (e?.code === "EADDRINUSE") process.exit(1);
});

server.start().catch((e) => {
	console.error(`[run-mock] failed to start: ${e?.stack ?? e}`);
	process.exit(1);
});
