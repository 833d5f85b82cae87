/**
 * The agent inside a real distribution guest: Debian's stock kernels (Debian 12's 6.1 and Debian
 * 13's 6.12, with loadable modules) in QEMU under software emulation, monitored from this machine
 * through a forwarded port. The guest prints its own /proc and /proc/modules on its console; the
 * IDS's views must match them. One boot per kernel, about a minute or more each (Deno starts
 * slowly under emulation).
 */

import { assert, assertEquals } from "./assert.ts";
import { privilegedTest } from "./privileged.ts";
import { sameComm, stableAcross } from "./procfs.ts";
import { serveConfig } from "./serve.ts";
import { describePrograms, WALK_OBJECT, Walker, WALKER_PROGRAMS } from "../agent/mod.ts";
import { openSession } from "../ids/connect.ts";
import type { GuestSession } from "../ids/session.ts";
import { IDS_PERMISSIONS } from "../ids/permissions.ts";
import type { Process } from "../ids/linux/processes.ts";
import type { Module } from "../ids/linux/modules.ts";
import { PrefetchTarget, StopReason } from "../protocol/mod.ts";
import { buildGuest, GUEST_KERNELS, GUEST_PROCESSES, GuestVm } from "../guest/mod.ts";
import type { GuestModule } from "../guest/console.ts";

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A module as the IDS and /proc/modules both describe it. */
function comparable(m: Module | GuestModule) {
  return {
    name: m.name,
    size: m.size,
    state: m.state.toLowerCase(),
    refcount: m.refcount,
    base: m.base,
    taints: "taintFlags" in m ? m.taintFlags : m.taints,
  };
}

for (const kernel of Object.values(GUEST_KERNELS)) {
  privilegedTest(
    `${kernel.distribution}'s stock kernel ${kernel.key} in QEMU: the same objects load, ps and ` +
      "lsmod match the guest's /proc",
    async (t) => {
      const image = await buildGuest({ kernel: kernel.key });
      const state = await Deno.makeTempDir({ prefix: "ebpfmon-guest-" });
      await using _state = { [Symbol.asyncDispose]: () => Deno.remove(state, { recursive: true }) };
      await using vm = await GuestVm.boot(image, { stateDir: state });
      using session = await openSession({ agent: vm.address, state });
      assertEquals(vm.release, kernel.release, "the kernel asked for");
      await checkGuest(t, vm, session, state);
    },
  );
}

/** Every check of one booted guest, against its own view of itself. */
async function checkGuest(
  t: Deno.TestContext,
  vm: GuestVm,
  session: GuestSession,
  state: string,
): Promise<void> {
  await t.step(
    "the same walk.bpf.o loads, unchanged, in this machine's kernel and the guest's",
    async () => {
      const object = await Deno.readFile(WALK_OBJECT);
      assertEquals(vm.objectSha256, await sha256(object), "the guest loads our very object");
      assert(vm.release !== Deno.osRelease(), `a second kernel: ${vm.release}`);
      assertEquals(session.client.info.kernelRelease, vm.release);
      // The agent's own default object, as it announced it, and the IDS's, which it loaded for
      // this connection: the same bytes on the same kernel, so the same kernel tags.
      assertEquals(session.client.info.programs, vm.programs);
      assertEquals(
        new Set(session.programs.map((p) => p.name)),
        new Set(WALKER_PROGRAMS),
        "the IDS's object was loaded",
      );
      assertEquals(describePrograms(session.programs), vm.programs);
      const walker = await Walker.open({ object, ringBytes: 1 << 20 });
      walker.close();
    },
  );

  await t.step("every program of the object runs in the guest", async () => {
    const anchor = BigInt(session.client.info.anchor);
    assertEquals((await session.client.read(anchor, 64)).length, 64);
    let records = 0;
    const end = await session.client.prefetch(
      PrefetchTarget.TASKS,
      { maxObjects: 100_000, maxBytes: 64 << 20 },
      () => records++,
    );
    assertEquals(end.stop, StopReason.COMPLETE);
    assert(records > 10 && records === end.objects, `walk_tasks copied ${records} objects`);
  });

  await t.step("ps in both modes matches the guest's /proc", async () => {
    const before = await vm.processes();
    const prefetch = await session.processes("prefetch");
    const onDemand = await session.processes("on-demand");
    const after = await vm.processes();
    const stable = stableAcross(before, after);
    assert(stable.length > 30, `${stable.length} processes stable in the guest`);
    for (const { processes, stats } of [prefetch, onDemand]) {
      assert(!stats.truncated, `${stats.mode} was truncated: ${stats.reason}`);
      const listed = new Map<number, Process>(processes.map((p) => [p.pid, p]));
      for (const truth of stable) {
        const p = listed.get(truth.pid);
        assert(p, `${stats.mode}: pid ${truth.pid} (${truth.comm}) is in the guest's /proc only`);
        const { comm: _comm, ...rest } = truth;
        assertEquals(
          { pid: p.pid, ppid: p.ppid, uid: p.uid, euid: p.euid, gid: p.gid, kthread: p.kthread },
          rest,
          `${stats.mode}: pid ${truth.pid}`,
        );
        assert(sameComm(p.comm, truth), `${stats.mode}: pid ${truth.pid} is "${p.comm}"`);
      }
      for (const known of vm.knownProcesses) {
        const p = listed.get(known.pid);
        assertEquals([p?.comm, p?.uid], [known.name, known.uid], `${stats.mode}: ${known.name}`);
      }
      assertEquals(listed.get(vm.agentPid)?.comm, "deno", `${stats.mode}: the agent`);
      for (const p of processes) assertEquals(p.error, undefined, `pid ${p.pid}: ${p.error}`);
    }
    assertEquals(vm.knownProcesses.length, GUEST_PROCESSES.uids.length);
    assertEquals(prefetch.stats.roundTrips, 1);
    assertEquals(prefetch.stats.misses, 0);
  });

  await t.step("lsmod in both modes matches the guest's /proc/modules", async () => {
    const truth = await vm.modules();
    assert(truth.some((m) => m.name === "virtio_net"), "the guest loaded its modules");
    for (const mode of ["prefetch", "on-demand"] as const) {
      const { answer, stats } = await session.modules(mode);
      assert(answer.supported, `${mode}: ${answer.reason}`);
      assert(!stats.truncated, `${mode} was truncated: ${stats.reason}`);
      assertEquals(answer.modules.map(comparable), truth.map(comparable), mode);
      for (const m of answer.modules) assertEquals(m.error, undefined, `${m.name}: ${m.error}`);
      if (mode === "prefetch") assertEquals([stats.roundTrips, stats.misses], [1, 0]);
      else assert(stats.roundTrips > truth.length, `${stats.roundTrips} round trips`);
    }
  });

  await t.step("ps --json and GET /v1/vms/{vm} name the programs loaded", async () => {
    const ps = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...IDS_PERMISSIONS,
        new URL("../ids/main.ts", import.meta.url).href,
        ...["ps", "--agent", vm.address, "--state", state, "--json"],
      ],
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(ps.stderr);
    assert(ps.success, stderr);
    const { stats } = JSON.parse(new TextDecoder().decode(ps.stdout));
    assertEquals(describePrograms(stats.programs), vm.programs);

    await using serve = await serveConfig(state, {
      listen: "127.0.0.1:0",
      stateDir: state,
      guests: [{ name: "debian", agent: vm.address, refreshMs: 60_000 }],
    });
    for (let tries = 0;; tries++) {
      const res = await serve.request("/v1/vms/debian");
      const body = await res.json();
      if (body.kernel) {
        assertEquals(
          [body.kernel.release, describePrograms(body.kernel.programs)],
          [vm.release, vm.programs],
        );
        break;
      }
      assert(tries < 600, `the service never connected: ${JSON.stringify(body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
}
