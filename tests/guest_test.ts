/**
 * The agent inside a real distribution guest: Debian's stock kernels (Debian 12's 6.1 and Debian
 * 13's 6.12, with loadable modules) in QEMU under software emulation, monitored from this machine
 * through a forwarded port. The guest prints its own /proc on its console (guest/init.sh): every
 * process's status, its sockets, every process's fds, its modules. The IDS's views must match
 * them both ways, in every mode (tests/truth.ts: what is listed existed, what existed before and
 * after the snapshot is listed, with every field). One boot per kernel, about a minute or more
 * each (Deno starts slowly under emulation); each prints one line of counts and timings.
 */

import { assert, assertEquals, privilegedTest, type ProcNetSocket } from "./support/mod.ts";
import { serveConfig } from "./serve.ts";
import { compareFds, compareModules, compareProcesses, compareSockets } from "./truth.ts";
import { describePrograms, WALK_OBJECT, Walker, WALKER_PROGRAMS } from "../agent/mod.ts";
import { type GuestSession, MODES, NoSuchProcessError, openSession } from "../ids/client/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import { PrefetchTarget, sha256Hex as sha256, StopReason } from "../protocol/mod.ts";
import {
  buildGuest,
  GUEST_KERNELS,
  GUEST_PROCESSES,
  GUEST_SOCKETS,
  type GuestNetNamespace,
  GuestVm,
  measureModules,
} from "../guest/mod.ts";

/**
 * The sockets the holder (guest/sockets.c) keeps, as ss shows them, from its first port `p`:
 * protocol, family, local address and port, remote address and port, state (0: any port).
 */
function holderSockets(p: number): unknown[][] {
  return [
    ["tcp", "inet", "127.0.0.1", p, "0.0.0.0", 0, "LISTEN"],
    ["tcp", "inet", "127.0.0.1", 0, "127.0.0.1", p, "ESTABLISHED"],
    ["tcp", "inet", "127.0.0.1", p, "127.0.0.1", 0, "ESTABLISHED"],
    ["tcp", "inet6", "::1", p + 1, "::", 0, "LISTEN"],
    ["tcp", "inet6", "::1", 0, "::1", p + 1, "ESTABLISHED"],
    ["tcp", "inet6", "::1", p + 1, "::1", 0, "ESTABLISHED"],
    ["tcp", "inet6", "::", p + 2, "::", 0, "LISTEN"],
    ["tcp", "inet", "127.0.0.1", 0, "127.0.0.1", p + 2, "ESTABLISHED"],
    ["tcp", "inet6", "::ffff:127.0.0.1", p + 2, "::ffff:127.0.0.1", 0, "ESTABLISHED"],
    ["udp", "inet", "127.0.0.1", p + 3, "0.0.0.0", 0, "UNCONN"],
    ["udp", "inet", "127.0.0.1", 0, "127.0.0.1", p + 3, "ESTABLISHED"],
    ["udp", "inet6", "::1", p + 4, "::", 0, "UNCONN"],
    ["udp", "inet6", "::1", 0, "::1", p + 4, "ESTABLISHED"],
  ];
}

/** A socket's fields as {@linkcode holderSockets} gives them, ephemeral ports as 0. */
function holderFields(s: ProcNetSocket, p: number): unknown[] {
  const port = (n: number) => n >= p && n <= p + 4 ? n : 0;
  const state = s.protocol === "udp"
    ? (s.state === 1 ? "ESTABLISHED" : "UNCONN")
    : ({ 1: "ESTABLISHED", 10: "LISTEN" } as Record<number, string>)[s.state];
  return [
    s.protocol,
    s.family,
    s.localAddress,
    port(s.localPort),
    s.remoteAddress,
    port(s.remotePort),
    state,
  ];
}

/** How many objects were compared each way (IDS → /proc, /proc → IDS), by view and mode. */
type Counts = Record<string, Record<string, string>>;

function count(counts: Counts, view: string, mode: string, c: { listed: number; stable: number }) {
  (counts[view] ??= {})[mode] = `${c.listed}/${c.stable}`;
}

for (const kernel of Object.values(GUEST_KERNELS)) {
  privilegedTest(
    `${kernel.distribution}'s stock kernel ${kernel.key} in QEMU: the same objects load; ps, ss, ` +
      "lsof and lsmod match the guest's /proc both ways, in every mode",
    async (t) => {
      const image = await buildGuest({ kernel: kernel.key });
      const state = await Deno.makeTempDir({ prefix: "ebpfmon-guest-" });
      await using _state = { [Symbol.asyncDispose]: () => Deno.remove(state, { recursive: true }) };
      await using vm = await GuestVm.boot(image, { stateDir: state });
      using session = await openSession({ agent: vm.address, state });
      assertEquals(vm.release, kernel.release, "the kernel asked for");
      const counts: Counts = {};
      await checkGuest(t, vm, session, state, counts);
      const ratio = await measureModules(session, { runs: 5, warmup: 1 });
      const views = Object.entries(counts).map(([view, modes]) =>
        `${view} ${MODES.map((m) => modes[m]).join(" ")}`
      );
      console.log(
        `guest ${kernel.key}: boot ${(vm.bootMs / 1000).toFixed(1)} s; compared IDS->/proc / ` +
          `/proc->IDS in ${MODES.join(" ")}: ${views.join("; ")}; lsmod on-demand/prefetch ` +
          `${ratio.ratio.toFixed(1)}x (${ratio.onDemand.medianMs.toFixed(0)} / ` +
          `${ratio.prefetch.medianMs.toFixed(0)} ms, median of ${ratio.runs})`,
      );
    },
  );
}

/** Every check of one booted guest, against its own view of itself. */
async function checkGuest(
  t: Deno.TestContext,
  vm: GuestVm,
  session: GuestSession,
  state: string,
  counts: Counts,
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

  await t.step("ps in every mode: the guest's processes, every field, both ways", async () => {
    for (const mode of MODES) {
      const before = await vm.statuses();
      const { processes, stats } = await session.processes(mode);
      const after = await vm.statuses();
      assert(!stats.truncated, `${mode} was truncated: ${stats.reason}`);
      const compared = compareProcesses(mode, processes, before, after);
      assert(compared.stable > 30, `${mode}: ${compared.stable} processes stable in the guest`);
      count(counts, "processes", mode, compared);
      const listed = new Map(processes.map((p) => [p.pid, p]));
      for (const known of vm.knownProcesses) {
        const p = listed.get(known.pid);
        assertEquals([p?.comm, p?.uid], [known.name, known.uid], `${mode}: ${known.name}`);
      }
      assertEquals(listed.get(vm.agentPid)?.comm, "deno", `${mode}: the agent`);
      assertEquals(listed.get(vm.socketHolder.pid)?.comm, "ebpfmon-sockets", `${mode}: holder`);
      for (const p of processes) assertEquals(p.error, undefined, `pid ${p.pid}: ${p.error}`);
      if (mode === "prefetch") assertEquals([stats.roundTrips, stats.misses], [1, 0]);
    }
    assertEquals(vm.knownProcesses.length, GUEST_PROCESSES.uids.length);
  });

  await t.step("ss in every mode: the guest's sockets, both ways", async () => {
    const union = (namespaces: GuestNetNamespace[]) =>
      new Map<number, ProcNetSocket>(namespaces.flatMap((ns) => [...ns.sockets]));
    for (const mode of MODES) {
      const before = await vm.sockets();
      const { sockets, stats, namespaces } = await session.sockets(mode);
      const after = await vm.sockets();
      assert(!stats.truncated, `${mode} was truncated: ${stats.reason}`);
      const netNs = new Set(before.map((ns) => ns.inode));
      assertEquals(netNs.size, 2, "the guest's network namespace and the container's");
      for (const ns of netNs) assert(namespaces.includes(ns), `${mode}: netns ${ns} walked`);
      const compared = compareSockets(mode, sockets, union(before), union(after), netNs);
      count(counts, "sockets", mode, compared);
      // The holder's sockets, each kind, are among those compared (the agent's are too).
      const { port } = vm.socketHolder;
      assertEquals(port, GUEST_SOCKETS.port);
      const truth = [...before[0].sockets.values()].map((s) => holderFields(s, port));
      for (const expected of holderSockets(port)) {
        assert(
          truth.some((s) => JSON.stringify(s) === JSON.stringify(expected)),
          `${mode}: the guest's /proc/net has ${expected.join(" ")}`,
        );
      }
      assert(compared.stable >= holderSockets(port).length + 2, `${mode}: ${compared.stable}`);
    }
  });

  await t.step("lsof in every mode: every process's fds, both ways", async () => {
    for (const mode of MODES) {
      const before = await vm.fds();
      const answers = new Map<number, Awaited<ReturnType<typeof session.files>>>();
      const gone = new Set<number>();
      for (const pid of before.keys()) {
        try {
          answers.set(pid, await session.files(pid, mode));
        } catch (error) {
          if (!(error instanceof NoSuchProcessError)) throw error;
          gone.add(pid);
        }
      }
      const after = await vm.fds();
      const ownMnt = before.get(1)?.mntNs;
      assert(ownMnt !== undefined, "the guest's init has a mount namespace");
      let listed = 0;
      let stable = 0;
      let processes = 0;
      for (const [pid, b] of before) {
        const a = after.get(pid);
        if (!a) continue; // it exited
        assert(!gone.has(pid), `${mode}: pid ${pid} is in the guest's /proc, lsof says no process`);
        const { answer, stats } = answers.get(pid)!;
        assert(!stats.truncated, `${mode}: pid ${pid}: truncated: ${stats.reason}`);
        // Paths are the process's own: compared where its root is init's (one mount namespace).
        const sameRoot = b.mntNs === ownMnt && a.mntNs === ownMnt;
        const c = compareFds(`${mode}: pid ${pid}`, answer.files, b.fds, a.fds, sameRoot);
        listed += c.listed;
        stable += c.stable;
        processes++;
        for (const f of answer.files) assertEquals(f.error, undefined, `pid ${pid}: ${f.error}`);
      }
      assert(processes > 30, `${mode}: only ${processes} processes compared`);
      count(counts, "fds", mode, { listed, stable });
      // The holder's unlinked file and pipe, as readlink shows them.
      const holder = before.get(vm.socketHolder.pid)!;
      const targets = [...holder.fds.values()];
      assert(targets.some((p) => /^\/tmp\/ebpfmon-sockets\.\w+ \(deleted\)$/.test(p!)), mode);
      assertEquals(targets.filter((p) => /^pipe:\[\d+\]$/.test(p!)).length, 2, mode);
      assertEquals(targets.filter((p) => /^socket:\[\d+\]$/.test(p!)).length, 13, mode);
    }
  });

  await t.step(
    "lsmod in every mode: the guest's /proc/modules, every column, both ways",
    async () => {
      for (const mode of MODES) {
        const before = await vm.modules();
        const { answer, stats } = await session.modules(mode);
        const after = await vm.modules();
        assert(answer.supported, `${mode}: ${answer.reason}`);
        assert(!stats.truncated, `${mode} was truncated: ${stats.reason}`);
        assert(before.some((m) => m.name === "virtio_net"), "the guest loaded its modules");
        assert(before.some((m) => m.usedBy.length), "some of its modules are used by others");
        const compared = compareModules(mode, answer.modules, before, after);
        assertEquals(compared.stable, before.length, `${mode}: modules stable in the guest`);
        count(counts, "modules", mode, compared);
        for (const m of answer.modules) assertEquals(m.error, undefined, `${m.name}: ${m.error}`);
        if (mode === "prefetch") assertEquals([stats.roundTrips, stats.misses], [1, 0]);
        if (mode === "on-demand") assert(stats.roundTrips > before.length, `${stats.roundTrips}`);
      }
    },
  );

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
