// Smoke test of a running peer (start.sh): drives the lock through zwave-server's websocket API
// and the mock's control API, checks every answer and event, prints timings, exits 1 on failure.
//   set -a; . <run-dir>/env; set +a; node smoke.mjs
// Env: ZW_WS_URL, ZW_CONTROL_URL (required); ZW_LOCK_NODE_ID (2); SMOKE_TRANSCRIPT=<file> writes
// the lock's node state and every event seen as JSON lines.
import { writeFileSync } from "node:fs";
import { ZwjsClient, pickSchema } from "./client.mjs";

const WS_URL = process.env.ZW_WS_URL;
const CONTROL_URL = process.env.ZW_CONTROL_URL;
const NODE = Number(process.env.ZW_LOCK_NODE_ID ?? 2);
if (!WS_URL || !CONTROL_URL) {
	console.error("smoke: ZW_WS_URL and ZW_CONTROL_URL must be set (source <run-dir>/env)");
	process.exit(2);
}

const USER_CODE = 99;
const DOOR_LOCK = 98;
const NOTIFICATION = 113;
const t0 = Date.now();
let checks = 0;

function check(cond, what, detail) {
	checks++;
	if (!cond) throw new Error(`check failed: ${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
}

async function step(name, fn) {
	const start = Date.now();
	const out = await fn();
	const extra = out ? ` (${out})` : "";
	console.log(`ok  ${String(Date.now() - start).padStart(5)} ms  ${name}${extra}`);
}

async function control(method, path, body) {
	const res = await fetch(CONTROL_URL + path, {
		method,
		headers: body ? { "content-type": "application/json" } : undefined,
		body: body ? JSON.stringify(body) : undefined,
	});
	const json = await res.json();
	return { status: res.status, json };
}

const isValueEvent = (e, cc, property, key) =>
	e.source === "node" &&
	e.nodeId === NODE &&
	(e.event === "value added" || e.event === "value updated") &&
	e.args.commandClass === cc &&
	e.args.property === property &&
	(key === undefined || e.args.propertyKey === key);

const isAccessControl = (e, event) =>
	e.source === "node" && e.nodeId === NODE && e.event === "notification" && e.ccId === NOTIFICATION && e.args.type === 6 && e.args.event === event;

const valueId = (commandClass, property, propertyKey) => ({ commandClass, property, ...(propertyKey === undefined ? {} : { propertyKey }) });

async function setValue(client, vid, value) {
	const result = await client.call("node.set_value", { nodeId: NODE, valueId: vid, value });
	return result.result; // {status, message?}
}

async function main() {
	const client = await ZwjsClient.connect(WS_URL);
	const schema = pickSchema(client.version);
	let node;
	let supportedUsers;

	try {
		await step(`handshake: driver ${client.version.driverVersion}, server ${client.version.serverVersion}, schema ${schema}`, async () => {
			await client.call("set_api_schema", { schemaVersion: schema });
			const { state } = await client.call("start_listening");
			check(state.driver.ready === true && state.driver.allNodesReady === true, "driver ready", state.driver);
			node = state.nodes.find((n) => n.nodeId === NODE);
			check(node, `node ${NODE} present`);
		});

		await step(`node ${NODE} is an interviewed keypad lock`, async () => {
			check(node.ready === true && node.status === 4 && node.interviewStage === "Complete", "ready/alive/complete", node.status);
			check(node.deviceClass?.generic?.key === 0x40, "generic device class Entry Control", node.deviceClass);
			const ccs = node.endpoints[0].commandClasses.map((c) => `${c.id}v${c.version}`);
			check(ccs.includes("99v2") && ccs.includes("98v4") && ccs.includes("113v8"), "User Code v2, Door Lock v4, Notification v8", ccs);
			const users = await client.call("node.get_value", { nodeId: NODE, valueId: valueId(USER_CODE, "supportedUsers") });
			supportedUsers = users.value;
			const slots = node.values.filter((v) => v.commandClass === USER_CODE && v.property === "userIdStatus").map((v) => v.propertyKey);
			check(slots.length === supportedUsers && supportedUsers >= 5, "one userIdStatus value per slot", { slots: slots.length, supportedUsers });
			const mode = node.values.find((v) => v.commandClass === DOOR_LOCK && v.property === "currentMode");
			check(mode?.value === 255, "door starts secured", mode?.value);
			return `${node.manufacturer ?? "?"} ${node.label ?? "?"}, ${supportedUsers} slots`;
		});

		await step("control API answers and the lock starts empty", async () => {
			const { status, json } = await control("POST", "/reset");
			check(status === 200 && Object.keys(json.slots).length === 0 && json.locked === true, "reset", json);
		});

		await step('set slot 1 = "1234" (set_value) and wait for the confirming value event', async () => {
			const from = client.mark();
			const t = Date.now();
			const res = await setValue(client, valueId(USER_CODE, "userCode", 1), "1234");
			const resultMs = Date.now() - t;
			check(res.status === 255 || res.status === 254, "set_value status success", res);
			const ev = await client.waitFor((e) => isValueEvent(e, USER_CODE, "userCode", 1) && e.args.newValue === "1234", {
				from,
				timeoutMs: 5000,
				what: "userCode 1 value event",
			});
			const st = await client.waitFor((e) => isValueEvent(e, USER_CODE, "userIdStatus", 1) && e.args.newValue === 1, { from, timeoutMs: 2000 });
			return `result ${res.status} after ${resultMs} ms, "${ev.event.event}" after ${ev.at - t} ms, userIdStatus 1 after ${st.at - t} ms`;
		});

		await step('duplicate "1234" in slot 2 is rejected (status 2 + notification 0x0F)', async () => {
			const from = client.mark();
			const t = Date.now();
			const res = await setValue(client, valueId(USER_CODE, "userCode", 2), "1234");
			check(res.status === 2, "set_value status 2 (Fail)", res);
			const ev = await client.waitFor((e) => isAccessControl(e, 0x0f), { from, timeoutMs: 3000, what: "notification 6/0x0F" });
			check(ev.event.args.parameters?.userId === 2, "0x0F names slot 2", ev.event.args);
			const { json } = await control("GET", "/state");
			check(!json.slots["2"], "slot 2 stays empty in the lock", json.slots);
			return `status 2 after ${Date.now() - t} ms, 0x0F after ${ev.at - t} ms`;
		});

		await step('invalid code "12ab" is refused by the driver (status 5, nothing sent)', async () => {
			const res = await setValue(client, valueId(USER_CODE, "userCode", 3), "12ab");
			check(res.status === 5 && /ZW0322/.test(res.message ?? ""), "status 5 with ZW0322", res);
		});

		await step("owner programs slot 5 at the keypad: notification 0x0E + unsolicited report", async () => {
			const from = client.mark();
			const t = Date.now();
			const { status, json } = await control("POST", "/keypad/program", { slot: 5, code: "2468", report: true });
			check(status === 200 && json.ok, "control /keypad/program", json);
			const n = await client.waitFor((e) => isAccessControl(e, 0x0e), { from, timeoutMs: 3000, what: "notification 6/0x0E" });
			check(n.event.args.parameters?.userId === 5, "0x0E names slot 5", n.event.args);
			const v = await client.waitFor((e) => isValueEvent(e, USER_CODE, "userCode", 5) && e.args.newValue === "2468", {
				from,
				timeoutMs: 3000,
				what: "userCode 5 value event",
			});
			return `0x0E after ${n.at - t} ms, value event after ${v.at - t} ms`;
		});

		await step("keypad duplicate of slot 1 is refused (409 + 0x0F)", async () => {
			const from = client.mark();
			const { status } = await control("POST", "/keypad/program", { slot: 6, code: "1234" });
			check(status === 409, "409", status);
			const ev = await client.waitFor((e) => isAccessControl(e, 0x0f), { from, timeoutMs: 3000 });
			check(ev.event.args.parameters?.userId === 6, "0x0F names slot 6", ev.event.args);
		});

		await step("wrong code at the keypad: 404, door stays locked", async () => {
			const { status, json } = await control("POST", "/keypad/unlock", { code: "9999" });
			check(status === 404 && json.ok === false, "404", { status, json });
		});

		await step("someone unlocks with 2468: notification 6/6 userId 5 + currentMode 0", async () => {
			const from = client.mark();
			const t = Date.now();
			const { status, json } = await control("POST", "/keypad/unlock", { code: "2468" });
			check(status === 200 && json.slot === 5, "control /keypad/unlock", json);
			const n = await client.waitFor((e) => isAccessControl(e, 0x06), { from, timeoutMs: 3000, what: "notification 6/6" });
			check(n.event.args.parameters?.userId === 5, "keypad unlock names slot 5", n.event.args);
			const m = await client.waitFor((e) => isValueEvent(e, DOOR_LOCK, "currentMode") && e.args.newValue === 0, { from, timeoutMs: 3000 });
			return `notification after ${n.at - t} ms, currentMode 0 after ${m.at - t} ms`;
		});

		await step("lock via set_value targetMode 255: status 255 + currentMode 255", async () => {
			const from = client.mark();
			const t = Date.now();
			const res = await setValue(client, valueId(DOOR_LOCK, "targetMode"), 255);
			check(res.status === 255, "status 255", res);
			const m = await client.waitFor((e) => isValueEvent(e, DOOR_LOCK, "currentMode") && e.args.newValue === 255, { from, timeoutMs: 3000 });
			const { json } = await control("GET", "/state");
			check(json.locked === true, "mock says locked", json);
			return `currentMode 255 after ${m.at - t} ms`;
		});

		await step("manual unlock + lock at the door: notifications 6/2, 6/1 + currentMode", async () => {
			let from = client.mark();
			await control("POST", "/manual/unlock");
			await client.waitFor((e) => isAccessControl(e, 0x02), { from, timeoutMs: 3000 });
			await client.waitFor((e) => isValueEvent(e, DOOR_LOCK, "currentMode") && e.args.newValue === 0, { from, timeoutMs: 3000 });
			from = client.mark();
			await control("POST", "/manual/lock");
			await client.waitFor((e) => isAccessControl(e, 0x01), { from, timeoutMs: 3000 });
			await client.waitFor((e) => isValueEvent(e, DOOR_LOCK, "currentMode") && e.args.newValue === 255, { from, timeoutMs: 3000 });
		});

		await step("clear slot 1 via userIdStatus = 0 and wait for the confirming value event", async () => {
			const from = client.mark();
			const t = Date.now();
			const res = await setValue(client, valueId(USER_CODE, "userIdStatus", 1), 0);
			const resultMs = Date.now() - t;
			check(res.status === 255 || res.status === 254, "status success", res);
			const ev = await client.waitFor((e) => isValueEvent(e, USER_CODE, "userIdStatus", 1) && e.args.newValue === 0, {
				from,
				timeoutMs: 5000,
				what: "userIdStatus 1 = 0",
			});
			const code = await client.call("node.get_value", { nodeId: NODE, valueId: valueId(USER_CODE, "userCode", 1) });
			check(code.value === "", "cached userCode 1 is empty", code);
			return `result ${res.status} after ${resultMs} ms, event after ${ev.at - t} ms`;
		});

		await step("GET /state shows slot 5 only, door locked", async () => {
			const { status, json } = await control("GET", "/state");
			check(status === 200, "200", status);
			check(JSON.stringify(json.slots) === JSON.stringify({ 5: { code: "2468", status: 1 } }), "slots", json.slots);
			check(json.locked === true && json.numUsers === supportedUsers, "locked, numUsers", json);
		});

		await step("control API errors are JSON 4xx", async () => {
			const bad = [
				await control("POST", "/keypad/program", { slot: 0, code: "1111" }),
				await control("POST", "/keypad/program", { slot: 1, code: "12" }),
				await control("GET", "/nope"),
				await control("GET", "/keypad/program"),
			];
			check(
				bad.map((b) => b.status).join() === "400,400,404,405" && bad.every((b) => b.json.ok === false && b.json.error),
				"400,400,404,405",
				bad,
			);
			const raw = await fetch(CONTROL_URL + "/keypad/unlock", { method: "POST", body: "{not json" });
			check(raw.status === 400, "invalid JSON -> 400", raw.status);
		});

		await step('POST /reset {"notify": true}: lock empty and locked, driver clears its cache (0x0C)', async () => {
			const from = client.mark();
			const { status, json } = await control("POST", "/reset", { notify: true });
			check(status === 200 && Object.keys(json.slots).length === 0 && json.locked === true, "reset", json);
			await client.waitFor((e) => isAccessControl(e, 0x0c), { from, timeoutMs: 3000 });
			const code = await client.call("node.get_value", { nodeId: NODE, valueId: valueId(USER_CODE, "userIdStatus", 5) });
			check(code.value === 0, "driver cache: slot 5 available", code);
		});
	} finally {
		if (process.env.SMOKE_TRANSCRIPT) {
			const lines = [JSON.stringify({ kind: "node", node }), ...client.events.map((e) => JSON.stringify({ kind: "event", at: e.at - t0, event: e.event }))];
			writeFileSync(process.env.SMOKE_TRANSCRIPT, lines.join("\n") + "\n");
		}
		client.close();
	}
	console.log(`smoke: PASS, ${checks} checks in ${Date.now() - t0} ms`);
}

main().then(
	() => process.exit(0),
	(e) => {
		console.error(`smoke: FAIL after ${Date.now() - t0} ms, ${checks} checks: ${e.message}`);
		process.exit(1);
	},
);
