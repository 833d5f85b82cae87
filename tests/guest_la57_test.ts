/**
 * The agent inside a guest with 5-level paging: Debian 12's stock 6.1 in QEMU under software
 * emulation with `-cpu max` as it is (LA57 on), so that its kernel maps the direct map, vmalloc
 * and vmemmap below the 4-level kernel half, at bases KASLR chose at boot. The IDS learns the
 * guest's address space from the guest, and ps and lsmod must match the guest's own /proc as on
 * a 4-level guest; every other view must run without an error. Meanwhile the same IDS process
 * watches this machine's own agent (4-level), side by side: one guest's space is not another's.
 */

import { assert, assertEquals, privilegedTest } from "./support/mod.ts";
import { expectLsmodMatches, expectPsMatches, expectViewsRun } from "./guest_checks.ts";
import { spawnAgent } from "../agent/mod.ts";
import { openSession } from "../ids/client/mod.ts";
import { buildGuest, GUEST_KERNELS, GuestVm } from "../guest/mod.ts";

const KERNEL = GUEST_KERNELS["6.1"];
/** The 5-level kernel half, and the 4-level one below which a 5-level kernel maps its regions. */
const LA57_HALF = 0xff00_0000_0000_0000n;
const FOUR_LEVEL_HALF = 0xffff_8000_0000_0000n;

privilegedTest(
  `${KERNEL.distribution}'s stock kernel ${KERNEL.key} with 5-level paging in QEMU: ps and lsmod ` +
    "match the guest's /proc, every view runs, beside a 4-level guest",
  async (t) => {
    const image = await buildGuest({ kernel: KERNEL.key });
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-la57-" });
    await using _state = { [Symbol.asyncDispose]: () => Deno.remove(state, { recursive: true }) };
    await using vm = await GuestVm.boot(image, { stateDir: state, la57: true });
    using session = await openSession({ agent: vm.address, state });
    assertEquals(vm.release, KERNEL.release, "the kernel asked for");
    console.log(
      `LA57 guest: booted in ${(vm.bootMs / 1000).toFixed(1)} s; its windows: ` +
        session.space.windows.map((w) => `${w.name} ${w.base ?? ""} [${w.start}, ${w.end})`)
          .join(", "),
    );

    await t.step(
      "the guest runs with 5-level paging, by its own word and its addresses",
      async () => {
        // The guest's own view: the CPU flag its kernel keeps only with 5 levels, and a vmalloc
        // area larger than a 4-level kernel half.
        const flags = await vm.run("grep -c -w la57 /proc/cpuinfo");
        assertEquals([flags.status, Number(flags.output[0]) > 0], [0, true], "the la57 flag");
        const meminfo = await vm.run("grep VmallocTotal /proc/meminfo");
        const vmallocKiB = Number(/(\d+) kB/.exec(meminfo.output.join(" "))?.[1]);
        assert(vmallocKiB * 1024 > 2 ** 47, `VmallocTotal ${vmallocKiB} kB`);
        assertEquals(session.space.paging, "5-level");
        // The agent's own task is in the direct map, below the 4-level kernel half.
        const anchor = BigInt(session.space.hex(session.anchor));
        assertEquals(anchor, session.client.anchor);
        assert(anchor >= LA57_HALF && anchor < FOUR_LEVEL_HALF, `anchor 0x${anchor.toString(16)}`);
        const windows = session.space.windows.map((w) => w.name);
        assertEquals(windows, ["kernel half", "page_offset_base", "vmalloc_base", "vmemmap_base"]);
        const direct = session.space.windows[1];
        assert(anchor >= BigInt(direct.start) && anchor < BigInt(direct.end), "in the direct map");
      },
    );

    await t.step("ps in both modes matches the guest's /proc", () => expectPsMatches(vm, session));

    await t.step(
      "lsmod in both modes matches the guest's /proc/modules",
      () => expectLsmodMatches(vm, session),
    );

    await t.step("every other view runs in both modes without an error", async () => {
      const findings = await expectViewsRun(vm, session);
      assertEquals(findings, [], "what the rules found on a clean guest");
    });

    await t.step("a 4-level guest watched by the same IDS meanwhile reads as its own", async () => {
      await using host = await spawnAgent({ stateDir: state });
      using other = await openSession({ agent: host.address, state });
      assertEquals(other.space.paging, "4-level");
      // Both at once, interleaved in one process.
      const [here, there] = await Promise.all([
        other.processes("prefetch"),
        session.processes("prefetch"),
      ]);
      for (const { stats } of [here, there]) assert(!stats.truncated, stats.reason);
      const self = here.processes.find((p) => p.pid === Deno.pid);
      assertEquals(self?.comm, "deno", "this test's own process, on this machine");
      assert(BigInt(self!.task) >= FOUR_LEVEL_HALF, `its task ${self!.task}`);
      const agent = there.processes.find((p) => p.pid === vm.agentPid);
      assertEquals(agent?.comm, "deno", "the guest's agent");
      assert(BigInt(agent!.task) < FOUR_LEVEL_HALF, `its task ${agent!.task}`);
    });
  },
);
