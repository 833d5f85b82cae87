/**
 * Measures what a lying guest costs the IDS: a monitor service watches a real guest (a spawned
 * agent) and a hostile one (tests/hostile_agent.ts, cycling through its lies) for a while, and
 * prints, every few seconds and at the end, the IDS's RSS, the real guest's snapshots and
 * failures, and the hostile guest's connections and alerts. Needs what the agent needs (root,
 * CAP_BPF).
 *
 *   deno run -A tools/hostile.ts [--seconds 120] [--lies a,b,c] [--refresh-ms 200]
 *
 * @module
 */

import { spawnAgent, spawnReady } from "../agent/mod.ts";
import { ensureAgentCredentials, fingerprint, freePort } from "../protocol/mod.ts";
import { procMemory } from "../bench/mod.ts";
import { MonitorService, parseConfig } from "../ids/service/mod.ts";

function option(name: string, fallback: string): string {
  const at = Deno.args.indexOf(name);
  return at >= 0 && at + 1 < Deno.args.length ? Deno.args[at + 1] : fallback;
}

/** Snapshots of the real guest alone before the hostile agent starts. */
const WARM_UP = 25;
const seconds = Number(option("--seconds", "120"));
const refreshMs = Number(option("--refresh-ms", "200"));
const lies = option("--lies", "");
const state = await Deno.makeTempDir({ prefix: "ebpfmon-hostile-run-" });
const hostileState = `${state}/hostile`;
const agent = await spawnAgent({ stateDir: state });
try {
  await Deno.mkdir(hostileState, { mode: 0o700 });
  for (const file of ["ca.pem", "ca.key"]) {
    await Deno.copyFile(`${state}/${file}`, `${hostileState}/${file}`);
  }
  // The hostile guest's identity, from the same pairing CA, made before its agent starts.
  await ensureAgentCredentials(hostileState);
  const pinOf = async (dir: string) => fingerprint(await Deno.readTextFile(`${dir}/agent.pem`));
  const hostilePort = freePort();
  const config = parseConfig({
    stateDir: state,
    guests: [
      { name: "real", agent: agent.address, pin: await pinOf(state), refreshMs },
      {
        name: "hostile",
        agent: `127.0.0.1:${hostilePort}`,
        pin: await pinOf(hostileState),
        refreshMs: 100,
      },
    ],
  }, state);
  const events: string[] = [];
  await using monitor = MonitorService.start(config, {
    log: (line) => events.push(line),
    agentTimeouts: { idleMs: 1000, requestMs: 3000 },
  });
  // The real guest alone first, until its memory use settles.
  const alone = Date.now();
  while (monitor.stats("real").fetches < 5) await new Promise((r) => setTimeout(r, 50));
  const aloneFrom = { at: Date.now(), fetches: monitor.stats("real").fetches };
  while (monitor.stats("real").fetches < WARM_UP) await new Promise((r) => setTimeout(r, 50));
  const aloneRate = (monitor.stats("real").fetches - aloneFrom.fetches) * 1000 /
    (Date.now() - aloneFrom.at);
  console.log(
    `real guest alone: ${aloneRate.toFixed(2)} snapshots/s (warm-up ${Date.now() - alone} ms)`,
  );
  let connections = 0;
  await using _hostile = await spawnReady({
    main: new URL("../tests/hostile_agent.ts", import.meta.url),
    permissions: ["--allow-all"],
    args: [
      "--state",
      hostileState,
      "--listen",
      `127.0.0.1:${hostilePort}`,
      ...(lies ? ["--lies", lies] : []),
    ],
    ready: /hostile agent listening on (\S+)/,
    log: (line) => line.includes("gets") && connections++,
  });
  const started = Date.now();
  const rssStart = procMemory().rssKb / 1024;
  const base = monitor.stats("real");
  let rssMax = rssStart;
  const report = (label: string) => {
    const real = monitor.stats("real");
    const rss = procMemory().rssKb / 1024;
    rssMax = Math.max(rssMax, rss);
    const misbehaving = monitor.alerts({ vm: "hostile", rule: "agent_misbehaving" }).length;
    console.log(
      `${label} t=${((Date.now() - started) / 1000).toFixed(0)}s rss=${rss.toFixed(0)}MiB (start ${
        rssStart.toFixed(0)
      }, max ${rssMax.toFixed(0)}) real: ${real.fetches - base.fetches} snapshots, ${
        real.failures - base.failures
      } failed; hostile: ${connections} connections, ${misbehaving} agent_misbehaving alert episodes`,
    );
  };
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 5000));
    report("  ");
  }
  report("end");
  const last = (await monitor.processes("real")).snapshot.stats;
  console.log(
    `real guest's last scan: ${last.prefetch?.objects} records, ${last.prefetch?.bytes} bytes prefetched, ${last.roundTrips} round trips`,
  );
  const rate = (monitor.stats("real").fetches - base.fetches) * 1000 / (Date.now() - started);
  console.log(
    `real guest: refresh every ${refreshMs} ms; ${rate.toFixed(2)} snapshots/s with the hostile ` +
      `guest, ${aloneRate.toFixed(2)} alone`,
  );
} finally {
  await agent.stop();
  await Deno.remove(state, { recursive: true });
}
