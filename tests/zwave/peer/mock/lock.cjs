// Mock Z-Wave network for zwave-js' MockServer (loaded by ../run-mock.cjs): one keypad door lock,
// node 2, non-secure, always listening.
//
//   User Code CC v2 (MOCK_NUM_USERS slots, default 20; codes of 4-10 digits), Door Lock CC v4,
//   Notification CC v8 (Access Control, type 6), Supervision, Battery, Version, Manufacturer
//   Specific, Z-Wave Plus Info. Identity: Yale YRD256-ZW3 (0x0129/0x8002/0x46d5), so the driver
//   attaches its real device config (manufacturer and label); MOCK_DEVICE=generic gives an unknown
//   device (0xffff/0xffff/0xfffe) instead.
//
// Behaviours added on top of zwave-js' stock mock behaviours (custom ones run first):
//   * duplicate codes are rejected like a real lock does: Supervision FAIL (so `set_value` answers
//     status 2) and an Access Control notification 0x0F "New user code not added due to duplicate
//     code" (MOCK_REJECT_DUPLICATES=0 turns this off and the lock stores duplicates);
//   * User Code Set for user 0 clears every slot (v1 path);
//   * Notification Get is answered (the stock mock lets it time out, +1.1 s per interview);
//   * Door Lock Operation Get reports bolt/door/latch status that match the mode;
//   * Battery Get is answered (level from state, default 90 %);
//   * an out-of-band HTTP control API on 127.0.0.1:MOCK_CONTROL_PORT (default 5556) simulates
//     what happens at the door: see README.md or the routes in startControlApi() below.
//
// Env: MOCK_NUM_USERS, MOCK_REJECT_DUPLICATES (default 1), MOCK_TXDELAY (ms per frame, default 10),
//      MOCK_SEED_CODES (JSON {"slot":"code"}, codes present before the driver sees the lock),
//      MOCK_CONTROL_PORT, MOCK_DEVICE (yale|generic).
"use strict";

const http = require("node:http");
const {
	BatteryCCGet,
	BatteryCCReport,
	DoorLockCCOperationGet,
	DoorLockCCOperationReport,
	DoorLockMode,
	DoorLockOperationType,
	KeypadMode,
	NotificationCCGet,
	NotificationCCReport,
	UserCodeCCExtendedUserCodeSet,
	UserCodeCCReport,
	UserCodeCCSet,
	UserIDStatus,
} = require("@zwave-js/cc");
const { CommandClasses, Duration } = require("@zwave-js/core");
const { ccCaps, createMockZWaveRequestFrame } = require("@zwave-js/testing");

const LOCK_NODE_ID = 2;
const ACCESS_CONTROL = 6;
const EVT = {
	manualLock: 0x01,
	manualUnlock: 0x02,
	keypadLock: 0x05,
	keypadUnlock: 0x06,
	allCodesDeleted: 0x0c,
	codeDeleted: 0x0d,
	codeAdded: 0x0e,
	duplicateCode: 0x0f,
};
const DIGITS = "0123456789";

function intEnv(name, dflt, min, max) {
	const raw = process.env[name];
	if (raw === undefined || raw === "") return dflt;
	const n = Number(raw);
	if (!Number.isInteger(n) || n < min || n > max) {
		throw new Error(`${name} must be an integer in ${min}..${max}, got ${JSON.stringify(raw)}`);
	}
	return n;
}

const NUM_USERS = intEnv("MOCK_NUM_USERS", 20, 1, 255);
const REJECT_DUPLICATES = (process.env.MOCK_REJECT_DUPLICATES ?? "1") !== "0";
const TX_DELAY = intEnv("MOCK_TXDELAY", 10, 0, 10_000);
const CONTROL_PORT = intEnv("MOCK_CONTROL_PORT", 5556, 0, 65535);
const GENERIC_DEVICE = process.env.MOCK_DEVICE === "generic";

// The mock node's state map, with the keys the stock behaviours use too.
const K = {
	code: (slot) => `UserCode_userCode_${slot}`,
	status: (slot) => `UserCode_userIdStatus_${slot}`,
	mode: "DoorLock_currentMode",
	battery: "Battery_level",
};

function codeString(code) {
	if (code == undefined) return "";
	return typeof code === "string" ? code : Buffer.from(code).toString("latin1");
}

function validCode(code) {
	return typeof code === "string" && code.length >= 4 && code.length <= 10 && [...code].every((c) => DIGITS.includes(c));
}

function isOccupied(status) {
	return status != undefined && status !== UserIDStatus.Available && status !== UserIDStatus.StatusNotAvailable;
}

/** The other slot that already holds `code`, if any. */
function slotWithCode(node, code, exceptSlot) {
	for (let slot = 1; slot <= NUM_USERS; slot++) {
		if (slot === exceptSlot) continue;
		if (isOccupied(node.state.get(K.status(slot))) && codeString(node.state.get(K.code(slot))) === code) {
			return slot;
		}
	}
	return undefined;
}

function storeCode(node, slot, status, code) {
	node.state.set(K.status(slot), status);
	node.state.set(K.code(slot), isOccupied(status) ? code : undefined);
}

function clearAll(node) {
	for (let slot = 1; slot <= NUM_USERS; slot++) storeCode(node, slot, UserIDStatus.Available);
}

// ---- frames the lock sends on its own --------------------------------------------------------

async function send(controller, node, cc) {
	// ackRequested (the default): resolves once the mock controller ACKed the frame.
	await node.sendToController(createMockZWaveRequestFrame(cc));
}

function accessControl(controller, node, event, eventParameters) {
	return send(
		controller,
		node,
		new NotificationCCReport({
			nodeId: controller.ownNodeId,
			notificationType: ACCESS_CONTROL,
			notificationEvent: event,
			eventParameters: eventParameters && Uint8Array.from(eventParameters),
		}),
	);
}

/** Event parameter "User Code Report" (CC 0x63, cmd 0x03) as locks send it with keypad (un)lock events. */
function userCodeReportBytes(slot, status, code) {
	return [CommandClasses["User Code"], 0x03, slot, status, ...Buffer.from(code, "latin1")];
}

function operationReport(controller, node) {
	const mode = node.state.get(K.mode) ?? DoorLockMode.Secured;
	return new DoorLockCCOperationReport({
		nodeId: controller.ownNodeId,
		currentMode: mode,
		targetMode: mode,
		duration: new Duration(0, "seconds"),
		outsideHandlesCanOpenDoor: [true, true, true, true],
		insideHandlesCanOpenDoor: [true, true, true, true],
		doorStatus: "closed",
		boltStatus: mode === DoorLockMode.Unsecured ? "unlocked" : "locked",
		latchStatus: "closed",
	});
}

function userCodeReport(controller, node, slot) {
	const status = node.state.get(K.status(slot)) ?? UserIDStatus.Available;
	return new UserCodeCCReport({
		nodeId: controller.ownNodeId,
		userId: slot,
		userIdStatus: status,
		userCode: isOccupied(status) ? codeString(node.state.get(K.code(slot))) : "",
	});
}

// ---- behaviours (run before the stock ones) ---------------------------------------------------

/** Reject a Set whose code another slot already holds; returns a response or undefined. */
function rejectDuplicate(controller, self, entries) {
	if (!REJECT_DUPLICATES) return undefined;
	for (const { userId, userIdStatus, userCode } of entries) {
		if (!isOccupied(userIdStatus) || userId < 1 || userId > NUM_USERS) continue;
		const code = codeString(userCode);
		const other = slotWithCode(self, code, userId);
		if (other !== undefined) {
			console.log(`[lock] rejecting code for slot ${userId}: slot ${other} holds the same code`);
			// After the (Supervision) answer, like a real lock.
			setTimeout(() => {
				accessControl(controller, self, EVT.duplicateCode, [userId]).catch((e) =>
					console.error(`[lock] could not send duplicate notification: ${e.message}`),
				);
			}, 0);
			return { action: "fail" };
		}
	}
	return undefined;
}

const userCodeSet = {
	handleCC(controller, self, cc) {
		if (cc instanceof UserCodeCCSet) {
			if (cc.userId === 0 && cc.userIdStatus === UserIDStatus.Available) {
				clearAll(self);
				return { action: "ok" };
			}
			return rejectDuplicate(controller, self, [cc]);
		}
		if (cc instanceof UserCodeCCExtendedUserCodeSet) {
			return rejectDuplicate(controller, self, cc.userCodes);
		}
		return undefined;
	},
};

const notificationGet = {
	handleCC(controller, self, cc) {
		if (!(cc instanceof NotificationCCGet)) return undefined;
		let type = cc.notificationType;
		if (!type || type === 0xff) type = ACCESS_CONTROL;
		return {
			action: "sendCC",
			cc: new NotificationCCReport({ nodeId: controller.ownNodeId, notificationType: type, notificationEvent: 0 }),
		};
	},
};

const doorLockOperationGet = {
	handleCC(controller, self, cc) {
		if (!(cc instanceof DoorLockCCOperationGet)) return undefined;
		return { action: "sendCC", cc: operationReport(controller, self) };
	},
};

const batteryGet = {
	handleCC(controller, self, cc) {
		if (!(cc instanceof BatteryCCGet)) return undefined;
		return {
			action: "sendCC",
			cc: new BatteryCCReport({ nodeId: controller.ownNodeId, level: self.state.get(K.battery) ?? 90 }),
		};
	},
};

// ---- out-of-band control API ------------------------------------------------------------------

class HttpError extends Error {
	constructor(status, message) {
		super(message);
		this.status = status;
	}
}

function parseSlot(value) {
	const slot = Number(value);
	if (!Number.isInteger(slot) || slot < 1 || slot > NUM_USERS) {
		throw new HttpError(400, `slot must be an integer in 1..${NUM_USERS}`);
	}
	return slot;
}

function parseCode(value) {
	if (!validCode(value)) throw new HttpError(400, "code must be a string of 4 to 10 digits");
	return value;
}

function snapshot(node) {
	const slots = {};
	for (let slot = 1; slot <= NUM_USERS; slot++) {
		const status = node.state.get(K.status(slot));
		if (isOccupied(status)) slots[String(slot)] = { code: codeString(node.state.get(K.code(slot))), status };
	}
	const mode = node.state.get(K.mode) ?? DoorLockMode.Secured;
	return {
		slots,
		locked: mode !== DoorLockMode.Unsecured,
		doorLockMode: mode,
		battery: node.state.get(K.battery) ?? 90,
		numUsers: NUM_USERS,
		rejectDuplicates: REJECT_DUPLICATES,
	};
}

function seed(node, codes, what) {
	if (codes == undefined) return;
	if (typeof codes !== "object" || Array.isArray(codes)) throw new HttpError(400, `${what} must be an object {"slot": "code"}`);
	const parsed = Object.entries(codes).map(([slot, code]) => [parseSlot(slot), parseCode(code)]);
	for (const [slot, code] of parsed) storeCode(node, slot, UserIDStatus.Enabled, code);
}

function makeRoutes(controller, node) {
	const notify = (event, params) => accessControl(controller, node, event, params);
	return {
		"GET /state": async () => snapshot(node),

		// The owner programs a code at the keypad.
		"POST /keypad/program": async (body) => {
			const slot = parseSlot(body.slot);
			const code = parseCode(body.code);
			const other = slotWithCode(node, code, slot);
			if (other !== undefined && REJECT_DUPLICATES) {
				await notify(EVT.duplicateCode, [slot]);
				throw new HttpError(409, `slot ${other} already holds this code (notification 0x0F sent)`);
			}
			storeCode(node, slot, UserIDStatus.Enabled, code);
			// `silent`: a lock that tells nobody (no notification, no report); only a read finds it.
			if (body.silent) return { ok: true, slot, code, notification: null, reported: false };
			await notify(EVT.codeAdded, [slot]);
			if (body.report) await send(controller, node, userCodeReport(controller, node, slot));
			return { ok: true, slot, code, notification: EVT.codeAdded, reported: !!body.report };
		},

		// The owner erases one slot at the keypad.
		"POST /keypad/delete": async (body) => {
			const slot = parseSlot(body.slot);
			storeCode(node, slot, UserIDStatus.Available);
			if (body.silent) return { ok: true, slot, notification: null, reported: false };
			await notify(EVT.codeDeleted, [slot]);
			if (body.report) await send(controller, node, userCodeReport(controller, node, slot));
			return { ok: true, slot, notification: EVT.codeDeleted, reported: !!body.report };
		},

		// The owner erases every slot at the keypad (the driver clears its own cache on 0x0C).
		"POST /keypad/delete-all": async () => {
			clearAll(node);
			await notify(EVT.allCodesDeleted);
			return { ok: true, notification: EVT.allCodesDeleted };
		},

		// Someone types a code at the keypad.
		"POST /keypad/unlock": async (body) => {
			const code = parseCode(body.code);
			let slot;
			for (let s = 1; s <= NUM_USERS; s++) {
				if (node.state.get(K.status(s)) === UserIDStatus.Enabled && codeString(node.state.get(K.code(s))) === code) {
					slot = s;
					break;
				}
			}
			if (slot === undefined) throw new HttpError(404, "no enabled slot holds this code: the lock stays locked, nothing is sent");
			node.state.set(K.mode, DoorLockMode.Unsecured);
			await notify(EVT.keypadUnlock, userCodeReportBytes(slot, UserIDStatus.Enabled, code));
			await send(controller, node, operationReport(controller, node));
			return { ok: true, slot, notification: EVT.keypadUnlock, locked: false };
		},

		// Someone locks at the keypad (one-touch lock): 0x05 with no user.
		"POST /keypad/lock": async () => {
			node.state.set(K.mode, DoorLockMode.Secured);
			await notify(EVT.keypadLock);
			await send(controller, node, operationReport(controller, node));
			return { ok: true, notification: EVT.keypadLock, locked: true };
		},

		"POST /manual/lock": async () => {
			node.state.set(K.mode, DoorLockMode.Secured);
			await notify(EVT.manualLock);
			await send(controller, node, operationReport(controller, node));
			return { ok: true, notification: EVT.manualLock, locked: true };
		},

		"POST /manual/unlock": async () => {
			node.state.set(K.mode, DoorLockMode.Unsecured);
			await notify(EVT.manualUnlock);
			await send(controller, node, operationReport(controller, node));
			return { ok: true, notification: EVT.manualUnlock, locked: false };
		},

		// Battery level changes; the lock reports it.
		"POST /battery": async (body) => {
			const level = Number(body.level);
			if (!Number.isInteger(level) || level < 0 || level > 100) throw new HttpError(400, "level must be an integer in 0..100");
			node.state.set(K.battery, level);
			await send(controller, node, new BatteryCCReport({ nodeId: controller.ownNodeId, level }));
			return { ok: true, level };
		},

		// Between tests: empty every slot and lock the door, silently (the driver's cache is NOT
		// told unless {"notify": true}: then 0x0C "all user codes deleted" + a Door Lock report).
		// Optional {"codes": {"slot": "code"}} seeds codes afterwards (silently).
		"POST /reset": async (body) => {
			const codes = body.codes;
			if (codes != undefined) Object.entries(codes ?? {}).forEach(([s, c]) => (parseSlot(s), parseCode(c)));
			clearAll(node);
			node.state.set(K.mode, DoorLockMode.Secured);
			node.state.delete(K.battery);
			seed(node, codes, "codes");
			if (body.notify) {
				await notify(EVT.allCodesDeleted);
				await send(controller, node, operationReport(controller, node));
			}
			return { ok: true, ...snapshot(node) };
		},
	};
}

function readJson(req) {
	return new Promise((resolve, reject) => {
		let size = 0;
		const chunks = [];
		req.on("data", (c) => {
			size += c.length;
			if (size > 64 * 1024) {
				reject(new HttpError(413, "body too large"));
				req.destroy();
			} else chunks.push(c);
		});
		req.on("error", reject);
		req.on("end", () => {
			const text = Buffer.concat(chunks).toString("utf8").trim();
			if (!text) return resolve({});
			try {
				const body = JSON.parse(text);
				if (body === null || typeof body !== "object" || Array.isArray(body)) {
					reject(new HttpError(400, "body must be a JSON object"));
				} else resolve(body);
			} catch {
				reject(new HttpError(400, "body is not valid JSON"));
			}
		});
	});
}

let controlServer;

function startControlApi(controller, node) {
	const routes = makeRoutes(controller, node);
	const knownPaths = new Set(Object.keys(routes).map((r) => r.split(" ")[1]));
	// One request at a time, like one person at one door; keeps the frame order predictable.
	let queue = Promise.resolve();

	controlServer = http.createServer((req, res) => {
		const reply = (status, obj) => {
			const text = JSON.stringify(obj);
			res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
			res.end(text);
		};
		const path = (req.url ?? "/").split("?")[0].replace(/\/+$/, "") || "/";
		const handler = routes[`${req.method} ${path}`];
		const started = Date.now();
		const work = async () => {
			try {
				if (!handler) {
					if (knownPaths.has(path)) throw new HttpError(405, `method ${req.method} not allowed on ${path}`);
					throw new HttpError(404, `no route ${req.method} ${path}`);
				}
				const body = req.method === "GET" ? {} : await readJson(req);
				const result = await handler(body);
				reply(200, result);
				console.log(`[lock] control ${req.method} ${path} -> 200 (${Date.now() - started} ms)`);
			} catch (e) {
				const status = e instanceof HttpError ? e.status : 500;
				reply(status, { ok: false, error: e?.message ?? String(e) });
				console.log(`[lock] control ${req.method} ${path} -> ${status}: ${e?.message ?? e}`);
			}
		};
		queue = queue.then(work, work);
	});
	controlServer.on("clientError", (err, socket) => socket.destroy());
	controlServer.on("error", (e) => {
		console.error(`[lock] control API failed on 127.0.0.1:${CONTROL_PORT}: ${e.message}`);
		process.exit(1);
	});
	controlServer.listen(CONTROL_PORT, "127.0.0.1", () => {
		console.log(`[lock] control API listening on http://127.0.0.1:${controlServer.address().port}`);
	});
}

// ---- the mock network ---------------------------------------------------------------------------

let seedCodes = {};
if (process.env.MOCK_SEED_CODES) {
	seedCodes = JSON.parse(process.env.MOCK_SEED_CODES);
	for (const [slot, code] of Object.entries(seedCodes)) {
		const n = Number(slot);
		if (!Number.isInteger(n) || n < 1 || n > NUM_USERS || !validCode(code)) {
			throw new Error(`MOCK_SEED_CODES: bad entry ${JSON.stringify(slot)}: ${JSON.stringify(code)}`);
		}
	}
}

const identity = GENERIC_DEVICE
	? { manufacturerId: 0xffff, productType: 0xffff, productId: 0xfffe }
	: { manufacturerId: 0x0129, productType: 0x8002, productId: 0x46d5 }; // Yale YRD256-ZW3

module.exports.default = {
	nodes: [
		{
			id: LOCK_NODE_ID,
			capabilities: {
				...identity,
				firmwareVersion: "1.8",
				genericDeviceClass: 0x40, // Entry Control
				specificDeviceClass: 0x03, // Secure Keypad Door Lock
				isListening: true,
				isFrequentListening: false,
				txDelay: TX_DELAY,
				commandClasses: [
					ccCaps({ ccId: CommandClasses["Z-Wave Plus Info"], isSupported: true, version: 2 }),
					ccCaps({ ccId: CommandClasses.Version, isSupported: true, version: 3 }),
					ccCaps({ ccId: CommandClasses["Manufacturer Specific"], isSupported: true, version: 2 }),
					ccCaps({ ccId: CommandClasses.Supervision, isSupported: true, version: 1 }),
					ccCaps({ ccId: CommandClasses.Battery, isSupported: true, version: 1 }),
					ccCaps({
						ccId: CommandClasses["Door Lock"],
						isSupported: true,
						version: 4,
						supportedOperationTypes: [DoorLockOperationType.Constant],
						supportedDoorLockModes: [DoorLockMode.Unsecured, DoorLockMode.Secured],
						travelTime: 0,
					}),
					ccCaps({
						ccId: CommandClasses["User Code"],
						isSupported: true,
						version: 2,
						numUsers: NUM_USERS,
						supportedASCIIChars: DIGITS,
						supportsAdminCode: false,
						supportsAdminCodeDeactivation: false,
						// Without a checksum the driver reads every slot when it interviews with
						// queryAllUserCodes, so each slot has a value (most real locks have none).
						supportsUserCodeChecksum: false,
						supportedKeypadModes: [KeypadMode.Normal],
						supportedUserIDStatuses: [UserIDStatus.Available, UserIDStatus.Enabled, UserIDStatus.Disabled],
					}),
					ccCaps({
						ccId: CommandClasses.Notification,
						isSupported: true,
						version: 8,
						supportsV1Alarm: false,
						notificationTypesAndEvents: {
							[ACCESS_CONTROL]: [
								EVT.manualLock,
								EVT.manualUnlock,
								EVT.keypadLock,
								EVT.keypadUnlock,
								EVT.allCodesDeleted,
								EVT.codeDeleted,
								EVT.codeAdded,
								EVT.duplicateCode,
							],
						},
					}),
				],
			},
			behaviors: [userCodeSet, notificationGet, doorLockOperationGet, batteryGet],
		},
	],

	onInit(controller, nodes) {
		const node = nodes.find((n) => n.id === LOCK_NODE_ID);
		node.state.set(K.mode, DoorLockMode.Secured);
		for (const [slot, code] of Object.entries(seedCodes)) storeCode(node, Number(slot), UserIDStatus.Enabled, code);
		console.log(
			`[lock] node ${LOCK_NODE_ID}: ${NUM_USERS} slots, duplicates ${REJECT_DUPLICATES ? "rejected" : "accepted"}, ` +
				`txDelay ${TX_DELAY} ms, seeded slots [${Object.keys(seedCodes).join(",")}]`,
		);
		startControlApi(controller, node);
	},

	// Called by run-mock.cjs on shutdown (the stock bin ignores it).
	onStop() {
		return new Promise((resolve) => (controlServer ? controlServer.close(() => resolve()) : resolve()));
	},
};
