/**
 * The service keeps a guest whose agent's connection breaks while the agent goes on running (what
 * a live migration does to it): the same agent answering again is a `migrated` event with the
 * monitoring gap, not a reboot, and the guest keeps its history. The agent is reached through a
 * relay the test cuts, at the second of its two configured addresses (the first refuses).
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

/** A TCP relay of 127.0.0.1 to `target` whose connections can be cut. */
class Relay implements Disposable {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly address = `127.0.0.1:${(this.listener.addr as Deno.NetAddr).port}`;
  #open = new Set<Deno.Conn>();

  constructor(target: Deno.ConnectOptions) {
    (async () => {
      for await (const inbound of this.listener) {
        const outbound = await Deno.connect(target).catch(() => undefined);
        if (!outbound) {
          inbound.close();
          continue;
        }
        for (const c of [inbound, outbound]) this.#open.add(c);
        const pipe = (from: Deno.Conn, to: Deno.Conn) =>
          from.readable.pipeTo(to.writable).catch(() => {}).finally(() => this.#close(from, to));
        pipe(inbound, outbound);
        pipe(outbound, inbound);
      }
    })().catch(() => {});
  }

  #close(...conns: Deno.Conn[]): void {
    for (const c of conns) {
      if (!this.#open.delete(c)) continue;
      try {
        c.close();
      } catch {
        // closed by its pipe
      }
    }
  }

  /** Cuts every connection relayed now; new ones are relayed again. Returns how many. */
  cut(): number {
    const n = this.#open.size / 2;
    this.#close(...this.#open);
    return n;
  }

  [Symbol.dispose](): void {
    this.cut();
    this.listener.close();
  }
}

privilegedTest(
  "serve tells a broken connection to the same agent (a migration) from a restart, with its gap",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-move-" });
    const agentPort = freePort();
    await using agent = await spawnAgent({ stateDir: state, listen: `127.0.0.1:${agentPort}` });
    using relay = new Relay({ hostname: "127.0.0.1", port: agentPort });
    await using children = await TestProcesses.start("ebpfmon-move-", [65534]);
    const child = children.children[0];
    const refused = `127.0.0.1:${freePort()}`;
    await using serve = await serveConfig(state, {
      listen: "127.0.0.1:0",
      stateDir: state,
      guests: [{ name: "vm1", agent: [refused, relay.address], refreshMs: 200 }],
    });
    const get = async (path: string) => await (await serve.request(path)).json();

    const first = await eventually("the test process in the API", async () => {
      const body = await get(`/v1/vms/vm1/processes?comm=${child.name}`);
      return body.processes?.length ? body : undefined;
    });
    assertEquals(first.processes[0].pid, child.process.pid);
    const before = await get("/v1/vms/vm1");
    assertEquals([before.agent, before.agents], [relay.address, [refused, relay.address]]);
    assertEquals(
      before.events.filter((e: { kind?: string }) => e.kind).map((e: { kind: string }) => e.kind),
      ["connected"],
    );

    assert(relay.cut() >= 1, "the service's connection went through the relay");
    const moved = await eventually("a migrated event", async () => {
      const vm = await get("/v1/vms/vm1");
      return vm.events.find((e: { kind?: string }) => e.kind === "migrated");
    });
    assert(typeof moved.gapMs === "number" && moved.gapMs > 0, JSON.stringify(moved));
    assert(moved.message.includes(`pid ${agent.pid}`), moved.message);

    const after = await get("/v1/vms/vm1");
    const kinds = after.events.filter((e: { kind?: string }) => e.kind).map((e: { kind: string }) =>
      e.kind
    );
    assertEquals(kinds, ["connected", "migrated"], "neither a reboot nor a new agent");
    assertEquals(after.state, "up");
    const listed = await eventually("a snapshot taken after the switch", async () => {
      const body = await get(`/v1/vms/vm1/processes?comm=${child.name}`);
      return body.snapshot?.takenAt > moved.at ? body : undefined;
    });
    assertEquals(listed.processes[0].pid, child.process.pid);
  },
);
