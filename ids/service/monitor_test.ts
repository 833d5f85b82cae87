import { assert, assertEquals, privilegedTest } from "../../tests/support/mod.ts";
import { spawnAgent } from "../../agent/mod.ts";
import { parseConfig } from "./config.ts";
import { MonitorService } from "./monitor.ts";
import { AgentUnavailableError, NoSuchProcessError } from "./types.ts";

/** Rejects unless `promise` rejects with an instance of `type`. */
async function assertRejectsWith(promise: Promise<unknown>, type: new (...args: never[]) => Error) {
  try {
    await promise;
  } catch (error) {
    assert(error instanceof type, `expected ${type.name}, got ${error}`);
    return;
  }
  throw new Error(`expected ${type.name}, got no error`);
}

privilegedTest(
  "MonitorService takes modules, sockets and open files on request, shared while fresh",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-monitor-" });
    const agent = await spawnAgent({ stateDir: state });
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const open = await Deno.open(`${state}/held-open`, { create: true, write: true });
    const config = parseConfig({
      stateDir: state,
      // Long enough that only the first refresh of the loop runs during the test.
      guests: [{ name: "vm1", agent: agent.address, refreshMs: 600_000 }],
    }, state);
    const log: string[] = [];
    const monitor = MonitorService.start(config, { log: (line) => log.push(line) });
    try {
      await monitor.processes("vm1");
      const fetches = () => monitor.stats("vm1").recent.map((record) => record.view);

      const [first, second] = await Promise.all([
        monitor.sockets("vm1"),
        monitor.sockets("vm1"),
      ]);
      assert(first.snapshot === second.snapshot, "concurrent reads share one fetch");
      assertEquals(fetches().filter((view) => view === "sockets").length, 1);
      const cached = await monitor.sockets("vm1");
      assert(cached.snapshot === first.snapshot, "a read within refreshMs is served the snapshot");
      assertEquals(cached.stale, false);

      await new Promise((resolve) => setTimeout(resolve, 2));
      const { snapshot } = await monitor.sockets("vm1", { maxAgeMs: 0 });
      assert(snapshot !== first.snapshot, "maxAgeMs: 0 takes a new snapshot");
      assertEquals(snapshot.mode, "prefetch");
      const mine = snapshot.value.find((socket) =>
        socket.protocol === "tcp" && socket.state === "LISTEN" && socket.localPort === port
      );
      assert(mine, `the test's listener on port ${port} is listed`);
      assert(mine.owners.some((owner) => owner.pid === Deno.pid), JSON.stringify(mine.owners));

      const files = await monitor.files("vm1", Deno.pid);
      assertEquals(files.snapshot.value.pid, Deno.pid);
      assert(
        files.snapshot.value.files.some((file) => file.path === `${state}/held-open`),
        "the file the test holds open is listed",
      );
      assert((await monitor.files("vm1", Deno.pid)).snapshot === files.snapshot, "kept per pid");

      const modules = await monitor.modules("vm1");
      let procModules: string[] | undefined;
      try {
        procModules = (await Deno.readTextFile("/proc/modules")).trim().split("\n")
          .map((line) => line.split(" ")[0]);
      } catch {
        procModules = undefined;
      }
      if (procModules === undefined) {
        assertEquals(modules.snapshot.value.supported, false);
        assert(modules.snapshot.value.reason, "an unsupported answer says why");
        assertEquals(modules.snapshot.value.modules, []);
      } else {
        assertEquals(modules.snapshot.value.supported, true);
        const names = new Set(modules.snapshot.value.modules.map((module) => module.name));
        assert(procModules.some((name) => names.has(name)), "the loaded modules are listed");
      }

      const failures = monitor.stats("vm1").failures;
      await assertRejectsWith(monitor.files("vm1", 4_194_304), NoSuchProcessError);
      assertEquals(monitor.vm("vm1").state, "up", "an unknown pid is not a failure of the agent");
      assertEquals(monitor.stats("vm1").failures, failures);
      assertEquals(fetches().filter((view) => view === "files").length, 2);

      const metrics = await monitor.metrics();
      assert(
        metrics.includes('ebpfmon_fetch_seconds_count{vm="vm1",view="sockets",mode="prefetch"} 2'),
        metrics,
      );

      await agent.stop();
      await assertRejectsWith(monitor.sockets("vm1", { maxAgeMs: 0 }), AgentUnavailableError);
      const stale = await monitor.sockets("vm1", { maxAgeMs: 0, allowStale: true });
      assertEquals(stale.stale, true);
      assert(stale.snapshot === snapshot, "the last snapshot, marked stale");
    } finally {
      await monitor.close();
      await agent.stop();
      open.close();
      listener.close();
      await Deno.remove(state, { recursive: true });
    }
  },
);
