// Minimal zwave-js-server websocket client shared by wait-ready.mjs and smoke.mjs.
// Every command gets a fresh messageId; results are matched by it; events are kept in a log and
// can be awaited with a predicate (events that arrived before the wait started count too, if they
// are at or after the given start index).
import WebSocket from "ws";

export class ZwjsClient {
	/** @param {string} url */
	static connect(url, { timeoutMs = 5000 } = {}) {
		return new Promise((resolve, reject) => {
			const ws = new WebSocket(url, { handshakeTimeout: timeoutMs });
			const client = new ZwjsClient(ws);
			const fail = (e) => {
				ws.removeAllListeners();
				ws.on("error", () => {});
				ws.terminate();
				reject(e);
			};
			ws.once("error", fail);
			ws.once("close", () => fail(new Error("websocket closed before the version message")));
			client.once("version").then((v) => {
				ws.removeListener("error", fail);
				ws.removeAllListeners("close");
				ws.on("error", (e) => client.closeWith(e));
				ws.on("close", () => client.closeWith(new Error("websocket closed")));
				client.version = v;
				resolve(client);
			});
		});
	}

	constructor(ws) {
		this.ws = ws;
		this.nextId = 1;
		this.pending = new Map();
		this.events = []; // { at: ms since epoch, event: {...} }
		this.waiters = new Set();
		this.onceWaiters = new Map();
		this.closed = undefined;
		ws.on("message", (data) => this.onMessage(data));
	}

	once(type) {
		return new Promise((resolve) => this.onceWaiters.set(type, resolve));
	}

	onMessage(data) {
		let msg;
		try {
			msg = JSON.parse(data.toString());
		} catch {
			return;
		}
		if (msg.type === "result") {
			const p = this.pending.get(msg.messageId);
			if (p) {
				this.pending.delete(msg.messageId);
				clearTimeout(p.timer);
				p.resolve(msg);
			}
		} else if (msg.type === "event") {
			const entry = { at: Date.now(), event: msg.event };
			this.events.push(entry);
			for (const w of [...this.waiters]) w.check(entry, this.events.length - 1);
		} else {
			const w = this.onceWaiters.get(msg.type);
			if (w) {
				this.onceWaiters.delete(msg.type);
				w(msg);
			}
		}
	}

	closeWith(err) {
		if (this.closed) return;
		this.closed = err;
		for (const p of this.pending.values()) {
			clearTimeout(p.timer);
			p.reject(err);
		}
		this.pending.clear();
		for (const w of [...this.waiters]) w.fail(err);
	}

	/** Sends a command; resolves with the whole result message ({type, messageId, success, result|error...}). */
	send(command, args = {}, { timeoutMs = 15000 } = {}) {
		if (this.closed) return Promise.reject(this.closed);
		const messageId = `m${this.nextId++}`;
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				this.pending.delete(messageId);
				reject(new Error(`no result for ${command} (${messageId}) within ${timeoutMs} ms`));
			}, timeoutMs);
			this.pending.set(messageId, { resolve, reject, timer });
			this.ws.send(JSON.stringify({ messageId, command, ...args }));
		});
	}

	/** Like send(), but throws unless success is true; returns the `result` object. */
	async call(command, args = {}, opts) {
		const msg = await this.send(command, args, opts);
		if (!msg.success) {
			throw new Error(`${command} failed: ${JSON.stringify(msg)}`);
		}
		return msg.result;
	}

	/** Index to pass as `from` to only consider events arriving from now on. */
	mark() {
		return this.events.length;
	}

	/** Resolves with the first event (index >= from) matching pred; rejects after timeoutMs. */
	waitFor(pred, { from = 0, timeoutMs = 5000, what = "event" } = {}) {
		for (let i = from; i < this.events.length; i++) {
			if (pred(this.events[i].event)) return Promise.resolve(this.events[i]);
		}
		if (this.closed) return Promise.reject(this.closed);
		return new Promise((resolve, reject) => {
			const waiter = {
				check: (entry, idx) => {
					if (idx >= from && pred(entry.event)) {
						this.waiters.delete(waiter);
						clearTimeout(timer);
						resolve(entry);
					}
				},
				fail: (err) => {
					this.waiters.delete(waiter);
					clearTimeout(timer);
					reject(err);
				},
			};
			const timer = setTimeout(() => {
				this.waiters.delete(waiter);
				reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
			}, timeoutMs);
			this.waiters.add(waiter);
		});
	}

	close() {
		this.closed ??= new Error("closed by client");
		this.ws.close();
	}
}

/** Picks the schema: 50, or the server's maximum if lower. */
export function pickSchema(version, wanted = 50) {
	return Math.max(version.minSchemaVersion ?? 0, Math.min(wanted, version.maxSchemaVersion ?? wanted));
}
