/**
 * Load on the REST API: `GET /v1/vms/{vm}/processes` served from cache (a snapshot of at least
 * 500 processes) by the service in this process, driven by `wrk` from a second process on
 * loopback. Prints requests per second and latency percentiles, and how they compare with the
 * targets (5,000 requests/s, p99 under 10 ms).
 *
 * Usage: `deno task bench:api [--seconds 10] [--connections 32] [--processes 500]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { spawnAgent } from "../agent/mod.ts";
import { parseConfig } from "../ids/service/mod.ts";
import { startService } from "../ids/mod.ts";
import { readProc, TestProcesses } from "../tests/support/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    processes: { type: "string", default: "500" },
  },
});
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const wanted = Number(values.processes);

/** wrk's latency with its unit, in milliseconds. */
function ms(value: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(value);
  if (!match) throw new Error(`Cannot read wrk latency "${value}"`);
  const n = Number(match[1]);
  return { us: n / 1000, ms: n, s: n * 1000, m: n * 60_000 }[match[2] as "us" | "ms" | "s" | "m"];
}

const state = await Deno.makeTempDir({ prefix: "ebpfmon-bench-api-" });
await using agent = await spawnAgent({ stateDir: state });
const extra = Math.max(0, wanted - readProc().size);
await using _children = await TestProcesses.start("load-", Array(extra).fill(0));
const config = parseConfig({
  listen: "127.0.0.1:0",
  stateDir: state,
  guests: [{ name: "bench", agent: agent.address, refreshMs: 3_600_000 }],
}, state);
await using service = await startService(config, { log: () => {} });
const { snapshot } = await service.monitor.processes("bench");
const url = `${service.url}/v1/vms/bench/processes`;
const probe = await fetch(url, { headers: { Authorization: `Bearer ${service.token}` } });
const bodyBytes = (await probe.arrayBuffer()).byteLength;

const wrk = await new Deno.Command("wrk", {
  args: [
    `-t2`,
    `-c${connections}`,
    `-d${seconds}s`,
    "--latency",
    "-H",
    `Authorization: Bearer ${service.token}`,
    url,
  ],
  stdout: "piped",
  stderr: "inherit",
}).output();
const out = new TextDecoder().decode(wrk.stdout);
if (!wrk.success) throw new Error(`wrk failed:\n${out}`);
const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(out)?.[1]);
const percentile = (p: string) => ms(new RegExp(`^\\s*${p}%\\s+(\\S+)`, "m").exec(out)![1]);
const non2xx = Number(/Non-2xx or 3xx responses:\s*(\d+)/.exec(out)?.[1] ?? 0);
const result = {
  processes: snapshot.value.length,
  bodyBytes,
  seconds,
  connections,
  requestsPerSecond: rps,
  p50Ms: percentile("50"),
  p90Ms: percentile("90"),
  p99Ms: percentile("99"),
  non2xx,
};
console.log(JSON.stringify(result, null, 2));
console.log(
  `${result.processes} processes, ${bodyBytes} bytes per response: ${rps.toFixed(0)} requests/s ` +
    `(target 5000: ${rps >= 5000 ? "met" : "missed"}), p50 ${result.p50Ms} ms, ` +
    `p99 ${result.p99Ms} ms (target < 10: ${result.p99Ms < 10 ? "met" : "missed"})`,
);
