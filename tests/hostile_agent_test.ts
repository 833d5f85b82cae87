/**
 * The IDS against a lying agent, over real TLS with real credentials: the client refuses each
 * lie with the limit it breaks, and the monitor service keeps a real guest's snapshots coming
 * while a hostile guest lies, alerts on it, and alerts on agents it cannot reach.
 */

import {
  assert,
  assertEquals,
  assertRejects,
  eventually,
  freePort,
  privilegedTest,
  retainedBytes,
  TestProcesses,
} from "./support/mod.ts";
import { HostileAgent, type Lie } from "./hostile_agent.ts";
import { spawnAgent, spawnReady } from "../agent/mod.ts";
import { procMemory } from "../bench/mod.ts";
import { AgentClient, AgentMisbehaviorError, GuestSession } from "../ids/client/mod.ts";
import { ensureAgentCredentials, ensureIdsCredentials, fingerprint } from "../protocol/mod.ts";
import { MonitorService, parseConfig } from "../ids/service/mod.ts";
import type { Alert } from "../ids/alerts/mod.ts";

/** Each lie the agent tells through the protocol, and the limit the IDS must name for it. */
const PROTOCOL_LIES: [Lie, string, string][] = [
  ["huge-btf", "frame", "BTF size 67108865 exceeds the limit 67108864"],
  ["endless-btf", "btfChunk", "a chunk of 1048576 bytes at 0, expected the bytes at 1048576"],
  ["endless-data", "maxBytes", "Agent sent more bytes than the"],
  ["one-byte-records", "maxObjects", "Agent sent more records than the"],
  ["outside-read", "readRange", "outside what was asked"],
  ["outside-kernel", "kernelHalf", "record at 0x00007fff00000000, outside the kernel half"],
  ["wrong-id", "requestId", "which is not pending"],
  ["wrong-type", "frameType", "answered PREFETCH with an unexpected BTF frame"],
  ["no-end", "idleTimeout", "sent no frame of request"],
  ["slow-drip", "requestTimeout", "did not finish request"],
  ["byte-drip", "idleTimeout", "sent no frame of request"],
  ["huge-frame", "frame", "length 16777216 is outside"],
  ["carried-run", "carried", "Agent sent a carried run to a PREFETCH that held no base"],
  ["loaded-twice", "answers", "Agent answered LOAD more than once"],
  [
    "wrong-paging",
    "addressSpace",
    "page_offset_base 0xffff888000000000 is in the 4-level kernel half, where no 5-level kernel",
  ],
];
/** Lies told with memory: the view must report the problem, not hang or crash. */
const MEMORY_LIES: [Lie, string][] = [
  ["task-cycle", "the tasks list loops back to"],
  ["non-canonical", "0x123456789000 is not a kernel address"],
];
/** The limits the client test asks a snapshot to keep to. */
const SCAN = { maxObjects: 100_000, maxBytes: 20_000_000 };

/**
 * What one scan of the hostile guest may bring: its lies of endless data stop here. Holding it
 * takes a few times its size at once (the frames, the records, the cache), and garbage waits for
 * the collector, so the resident set may rise to a multiple of it while the lies go on;
 * a lie the IDS did not bound would take gigabytes within one request's timeout.
 */
const HOSTILE_LIMITS = { maxObjects: 1 << 16, maxBytes: 32 << 20 };
const PEAK_BOUND = 6 * HOSTILE_LIMITS.maxBytes;
/** What the IDS may still hold once the lies are over: nothing of theirs. */
const RETAINED_BOUND = 8 << 20;

/**
 * The least of a few readings of what this process retains: a snapshot of the real guest in
 * flight holds its buffers for a moment, and the least reading is the one between snapshots.
 */
async function settledRetained(): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < 5; i++) {
    least = Math.min(least, retainedBytes());
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return least;
}

Deno.test("AgentClient refuses every lie of a hostile agent with the limit it breaks", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-hostile-" });
  try {
    const credentials = await ensureIdsCredentials(state);
    await using agent = await HostileAgent.start({
      stateDir: state,
      lies: [...PROTOCOL_LIES.map(([lie]) => lie), ...MEMORY_LIES.map(([lie]) => lie)],
    });
    const attempt = async () => {
      const client = await AgentClient.connect({
        hostname: agent.hostname,
        port: agent.port,
        credentials,
        idleTimeoutMs: 500,
        requestTimeoutMs: 2000,
      });
      try {
        const session = await GuestSession.open(client, state);
        return await session.processes("prefetch", SCAN);
      } finally {
        client.close();
      }
    };
    for (const [lie, limit, says] of PROTOCOL_LIES) {
      const error = await assertRejects(attempt, Error);
      let cause: unknown = error;
      while (!(cause instanceof AgentMisbehaviorError) && cause instanceof Error) {
        cause = cause.cause;
      }
      assert(cause instanceof AgentMisbehaviorError, `${lie}: ${error.message}`);
      assertEquals([lie, cause.limit], [lie, limit]);
      assert(cause.message.includes(says), `${lie}: "${cause.message}" lacks "${says}"`);
      if (limit === "maxObjects") assertEquals([cause.value, cause.allowed], [100_001, 100_000]);
      if (limit === "maxBytes") {
        assertEquals(cause.allowed, 20_000_000);
        assert((cause.value as number) > 20_000_000, `${cause.value} bytes is within the limit`);
      }
    }
    for (const [lie, says] of MEMORY_LIES) {
      const { processes, stats } = await attempt();
      assertEquals([lie, stats.truncated], [lie, true]);
      assert(stats.reason?.includes(says), `${lie}: "${stats.reason}" lacks "${says}"`);
      const pids = processes.map((p) => p.pid);
      assertEquals(new Set(pids).size, pids.length, `${lie}: a process listed twice`);
    }
    assertEquals(agent.served.size, PROTOCOL_LIES.length + MEMORY_LIES.length);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

privilegedTest(
  "the service keeps a real guest's snapshots coming while a hostile guest lies, and alerts",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-hostile-svc-" });
    const hostileState = `${state}/hostile`;
    const agent = await spawnAgent({ stateDir: state });
    try {
      await using children = await TestProcesses.start("ebpfmon-hst-", [65534]);
      const child = children.children[0];
      // The hostile guest has its own identity from the same pairing CA, made before it starts.
      await Deno.mkdir(hostileState, { mode: 0o700 });
      for (const file of ["ca.pem", "ca.key"]) {
        await Deno.copyFile(`${state}/${file}`, `${hostileState}/${file}`);
      }
      await ensureAgentCredentials(hostileState);
      const pinOf = async (dir: string) => fingerprint(await Deno.readTextFile(`${dir}/agent.pem`));
      const hostileAddress = `127.0.0.1:${freePort()}`;
      const gonePort = freePort();
      // A peer that accepts TCP connections and never says a word: the TLS handshake times out.
      using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const held = new DisposableStack();
      using _held = held;
      (async () => {
        for await (const conn of silent) {
          held.defer(() => {
            try {
              conn.close();
            } catch {
              // Closed by the peer already.
            }
          });
        }
      })().catch(() => {});
      const shared = { pin: await pinOf(state), sharedPin: true };
      const config = parseConfig({
        stateDir: state,
        guests: [
          { name: "real", agent: agent.address, ...shared, refreshMs: 200 },
          {
            name: "hostile",
            agent: hostileAddress,
            pin: await pinOf(hostileState),
            refreshMs: 100,
            scanLimits: HOSTILE_LIMITS,
          },
          { name: "gone", agent: `127.0.0.1:${gonePort}`, ...shared, refreshMs: 100 },
          { name: "silent", agent: `127.0.0.1:${silent.addr.port}`, ...shared, refreshMs: 100 },
          // The hostile agent's address, pinned to another agent's certificate.
          { name: "impostor", agent: hostileAddress, ...shared, refreshMs: 500 },
        ],
      }, state);
      const log: string[] = [];
      await using monitor = MonitorService.start(config, {
        log: (line) => log.push(line),
        agentTimeouts: { idleMs: 1000, requestMs: 3000, connectMs: 1000 },
      });
      // The real guest alone first, until the IDS's memory use settles.
      await eventually("the real guest's first snapshots", async () => {
        const { snapshot } = await monitor.processes("real");
        const seen = snapshot.value.some((p) => p.pid === child.process.pid);
        return seen && monitor.stats("real").fetches >= 25 ? true : undefined;
      });
      const open = (vm: string, rule: string): Alert | undefined =>
        monitor.alerts({ vm, rule, state: "open" })[0];
      const retainedBefore = await settledRetained();
      const residentBytes = () => procMemory().rssKb * 1024;
      const rssBefore = residentBytes();
      const realBefore = monitor.stats("real");
      let rssMax = rssBefore;
      const sampler = setInterval(() => rssMax = Math.max(rssMax, residentBytes()), 100);
      try {
        await using _hostile = await spawnReady({
          main: new URL("./hostile_agent.ts", import.meta.url),
          permissions: ["--allow-all"],
          args: ["--state", hostileState, "--listen", hostileAddress],
          ready: /hostile agent listening on (\S+)/,
        });
        const hostileLog = () => log.filter((line) => line.startsWith("hostile: "));
        const expected = [...PROTOCOL_LIES, ...MEMORY_LIES.map(([lie, says]) => [lie, "", says])];
        for (const [lie, , says] of expected) {
          await eventually(
            `the hostile guest's error for "${lie}"`,
            () => Promise.resolve(hostileLog().some((line) => line.includes(says)) || undefined),
            45_000,
          );
        }
        // The impostor's alert holds the cause of its latest attempt: look while the hostile
        // agent still listens (once it is gone, the cause is "refused"), and wait with a
        // generous bound, for an attempt may find the agent busy lying to another guest.
        const impostor = await eventually(
          "agent_unreachable of the impostor, for its pin",
          () => {
            const alert = open("impostor", "agent_unreachable");
            return Promise.resolve(alert?.evidence.cause === "pin-mismatch" ? alert : undefined);
          },
          60_000,
        );
        assertEquals([impostor.severity, impostor.subject], ["high", "impostor"]);
        assertEquals(open("impostor", "agent_misbehaving"), undefined);
      } finally {
        clearInterval(sampler);
      }
      const retainedAfter = await settledRetained();
      const realAfter = monitor.stats("real");
      const snapshots = realAfter.fetches - realBefore.fetches;
      const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
      console.log(
        `real guest: ${snapshots} snapshots, ${realAfter.failures - realBefore.failures} failed; ` +
          `IDS resident ${mib(rssBefore)} before the hostile agent, at most ${mib(rssMax)} while ` +
          `it lied; retained after a collection ${mib(retainedBefore)} before, ` +
          `${mib(retainedAfter)} after`,
      );
      assertEquals(realAfter.failures - realBefore.failures, 0, "a real guest snapshot failed");
      assert(snapshots >= 10, `only ${snapshots} snapshots of the real guest`);
      assertEquals(monitor.vm("real").state, "up");
      const { snapshot } = await monitor.processes("real", { maxAgeMs: 0 });
      assert(snapshot.value.some((p) => p.pid === child.process.pid), "the test process is gone");
      assert(
        rssMax - rssBefore < PEAK_BOUND,
        `the resident set rose by ${mib(rssMax - rssBefore)}`,
      );
      assert(
        retainedAfter - retainedBefore < RETAINED_BOUND,
        `the lies left ${mib(retainedAfter - retainedBefore)} behind`,
      );

      // The hostile guest's health alerts: an episode per lie after a whole snapshot, never
      // one per retry.
      const misbehaving = monitor.alerts({ vm: "hostile", rule: "agent_misbehaving" });
      assert(misbehaving.length > 0, "no agent_misbehaving alert");
      for (const alert of misbehaving) {
        assertEquals([alert.severity, alert.subject], ["high", "hostile"]);
        const limit = alert.evidence.limit as string;
        assert(PROTOCOL_LIES.some(([, l]) => l === limit), `unknown limit "${limit}"`);
      }
      const causes = new Set(
        monitor.alerts({ vm: "hostile", rule: "agent_unreachable" }).map((a) => a.evidence.cause),
      );
      for (const cause of ["refused", "misbehaving", "closed"]) {
        assert(causes.has(cause), `no "${cause}" among ${[...causes].join(", ")}`);
      }

      const gone = await eventually("agent_unreachable of the guest nobody answers for", () => {
        const alert = open("gone", "agent_unreachable");
        return Promise.resolve(alert && alert.count >= 5 ? alert : undefined);
      });
      assertEquals([gone.severity, gone.subject, gone.evidence.cause], ["high", "gone", "refused"]);
      const goneEvents = monitor.alertsAfter(0, 1000).filter((c) => c.alert.vm === "gone");
      assertEquals(goneEvents.map((c) => c.kind), ["opened"], "one alert, updated on each retry");
      const silentAlert = await eventually(
        "agent_unreachable of the silent peer",
        () => Promise.resolve(open("silent", "agent_unreachable")),
      );
      assertEquals(silentAlert.evidence.cause, "timeout");

      // The guest nobody answered for comes back: its alert is resolved.
      await using back = await HostileAgent.start({
        stateDir: state,
        port: gonePort,
        lies: ["honest"],
        closeAfter: Infinity,
      });
      await eventually(
        "agent_unreachable of the guest resolved",
        () => Promise.resolve(open("gone", "agent_unreachable") ? undefined : true),
      );
      assertEquals(back.served.get("honest")! >= 1, true);
      const resolved = monitor.alerts({ vm: "gone", rule: "agent_unreachable" });
      assertEquals(resolved.map((a) => [a.state, a.id]), [["resolved", gone.id]]);
      assertEquals(monitor.alerts({ vm: "real", rule: "agent_unreachable" }), []);
      assertEquals(monitor.alerts({ vm: "real", rule: "agent_misbehaving" }), []);
    } finally {
      await agent.stop();
      await Deno.remove(state, { recursive: true });
    }
  },
);
