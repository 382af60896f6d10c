// Used by start.sh: waits until zwave-server answers on the websocket and the lock node is fully
// interviewed (driver "allNodesReady" and node.ready). Fails early if a watched process dies.
//   node wait-ready.mjs <ws-url> <timeout-secs> <node-id> [pid...]
// Prints one JSON line: {"wsMs": <first successful connect>, "readyMs": <lock ready>}, in ms
// since this script started.
import { ZwjsClient, pickSchema } from "./client.mjs";

const [url, timeoutArg, nodeIdArg, ...pidArgs] = process.argv.slice(2);
const deadline = Date.now() + Number(timeoutArg ?? 60) * 1000;
const nodeId = Number(nodeIdArg ?? 2);
const pids = pidArgs.map(Number);
const t0 = Date.now();

function checkPids() {
	for (const pid of pids) {
		try {
			process.kill(pid, 0);
		} catch (e) {
			if (e.code === "ESRCH") throw new Error(`process ${pid} exited during start-up`);
		}
	}
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connect() {
	for (;;) {
		checkPids();
		if (Date.now() > deadline) throw new Error(`zwave-server did not accept a websocket connection on ${url}`);
		try {
			return await ZwjsClient.connect(url, { timeoutMs: 2000 });
		} catch {
			await sleep(100);
		}
	}
}

function nodeReady(state) {
	return state?.ready === true && state?.interviewStage === "Complete";
}

async function main() {
	const client = await connect();
	const wsMs = Date.now() - t0;
	await client.call("set_api_schema", { schemaVersion: pickSchema(client.version) });
	const { state } = await client.call("start_listening");
	let ready = state.driver?.allNodesReady === true && nodeReady(state.nodes.find((n) => n.nodeId === nodeId));
	while (!ready) {
		checkPids();
		if (Date.now() > deadline) throw new Error(`node ${nodeId} was not interviewed in time`);
		try {
			await client.waitFor(
				(e) =>
					(e.source === "driver" && e.event === "all nodes ready") ||
					(e.source === "node" && e.nodeId === nodeId && (e.event === "ready" || e.event === "interview completed")),
				{ timeoutMs: 500, what: "ready" },
			);
		} catch (e) {
			if (client.closed) throw e;
		}
		const res = await client.send("node.get_state", { nodeId });
		ready = res.success && nodeReady(res.result.state);
		if (ready) {
			// allNodesReady comes right after the last node; give it a moment to be reported.
			await client
				.waitFor((e) => e.source === "driver" && e.event === "all nodes ready", { timeoutMs: 2000 })
				.catch(() => {});
		}
	}
	client.close();
	console.log(JSON.stringify({ wsMs, readyMs: Date.now() - t0 }));
}

main().then(
	() => process.exit(0),
	(e) => {
		console.error(`wait-ready: ${e.message}`);
		process.exit(1);
	},
);
