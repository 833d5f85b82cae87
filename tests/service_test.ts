/**
 * The IDS service end to end: `serve` (as ebpfmon-ids runs it) with a configuration for a real
 * local agent, queried over HTTP.
 */

import {
  assert,
  assertEquals,
  eventually,
  freePort,
  privilegedTest,
  TestProcesses,
} from "./support/mod.ts";
import { spawnAgent } from "../agent/mod.ts";
import { serveConfig } from "./serve.ts";

privilegedTest(
  "serve lists a spawned process, answers 503 while its agent is down, and recovers",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-svc-" });
    const agentAddress = `127.0.0.1:${freePort()}`;
    let agent = await spawnAgent({ stateDir: state, listen: agentAddress });
    await using children = await TestProcesses.start("ebpfmon-svc-", [65534]);
    const child = children.children[0];
    await using serve = await serveConfig(state, {
      listen: "127.0.0.1:0",
      stateDir: state,
      guests: [{ name: "vm1", agent: agentAddress, refreshMs: 200 }],
    });
    const { url } = serve;
    const get = (path: string) => serve.request(path);

    try {
      const listed = await eventually("the test process in the API", async () => {
        const res = await get(`/v1/vms/vm1/processes?comm=${child.name}`);
        const body = await res.json();
        return res.status === 200 && body.processes.length ? body : undefined;
      });
      assertEquals(listed.processes.length, 1);
      assertEquals(
        [listed.processes[0].pid, listed.processes[0].uid, listed.processes[0].comm],
        [child.process.pid, 65534, child.name],
      );
      assertEquals(listed.snapshot.mode, "prefetch");
      // The loop's refreshes after its first say how late they started.
      const late = await eventually("a refresh of the loop with its lateness", async () => {
        const stats = await (await get("/v1/vms/vm1/stats")).json();
        return stats.recent.find((r: { view: string; lateMs?: number }) =>
          r.view === "processes" && r.lateMs !== undefined
        );
      });
      assert(Number.isInteger(late.lateMs) && late.lateMs >= 0, JSON.stringify(late));
      assertEquals((await get("/v1/vms/vm1/processes")).status, 200);
      assertEquals((await fetch(`${url}/v1/vms`)).status, 401);

      await agent.stop();
      const down = await eventually("503 after the agent stopped", async () => {
        const res = await get("/v1/vms/vm1/processes");
        const body = await res.json();
        return res.status === 503 ? body : undefined;
      });
      assertEquals(down.error.code, "agent_unreachable");
      assert(typeof down.error.lastSnapshotAgeMs === "number" && down.error.lastSnapshotAgeMs >= 0);
      const stale = await get("/v1/vms/vm1/processes?allow_stale=true");
      assertEquals(stale.status, 200);
      assertEquals((await stale.json()).snapshot.stale, true);
      const status = await (await get("/v1/vms/vm1")).json();
      assertEquals(status.state, "down");

      agent = await spawnAgent({ stateDir: state, listen: agentAddress });
      const back = await eventually("recovery after the agent restarted", async () => {
        const res = await get(`/v1/vms/vm1/processes?comm=${child.name}`);
        const body = await res.json();
        return res.status === 200 && !body.snapshot.stale ? body : undefined;
      });
      assertEquals(back.processes[0].pid, child.process.pid);
      const vm = await (await get("/v1/vms/vm1")).json();
      assertEquals(vm.state, "up");
      assert(
        vm.events.some((e: { kind?: string }) => e.kind === "agent-restarted"),
        JSON.stringify(vm.events),
      );
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assert(metrics.includes('ebpfmon_agent_up{vm="vm1"} 1'), metrics);
    } finally {
      await agent.stop();
    }
  },
);
