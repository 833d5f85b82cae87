/**
 * The monitored system in a container of the Debian test guest, the agent outside it: the known
 * processes run in pid, mount, UTS, network and IPC namespaces of their own and in the workload
 * cgroup (guest/container.sh), the agent in the guest's root namespaces and root cgroup. From
 * inside, the agent is not seen and cannot be signalled; from outside, ebpfmon lists the
 * container's processes, in prefetch and on-demand mode, as the guest's root /proc does. The
 * guest boots once per guest kernel (6.1 and 6.12; about a minute or more each under emulation).
 */

import { assert, assertEquals, privilegedTest, sameComm } from "./support/mod.ts";
import { openSession } from "../ids/client/mod.ts";
import type { Process } from "../ids/linux/mod.ts";
import {
  buildGuest,
  GUEST_AGENT_PORT,
  GUEST_CONTAINER,
  GUEST_HOSTNAME,
  GUEST_KERNELS,
  GUEST_PROCESSES,
  GuestVm,
  unifiedCgroup,
} from "../guest/mod.ts";

/** The namespaces a container is made of, as /proc/PID/ns names them. */
const NAMESPACES = ["pid", "mnt", "uts", "net", "ipc"] as const;

/** The agent's port as /proc/net/tcp prints a local address's port (hex, upper case). */
const PORT_HEX = GUEST_AGENT_PORT.toString(16).toUpperCase().padStart(4, "0");

for (const kernel of Object.values(GUEST_KERNELS)) {
  privilegedTest(
    `${kernel.distribution} guest (${kernel.key}): its workload in a container cannot see or ` +
      "signal the agent, ebpfmon sees it",
    async (t) => {
      const image = await buildGuest({ kernel: kernel.key });
      const state = await Deno.makeTempDir({ prefix: "ebpfmon-container-" });
      await using _state = { [Symbol.asyncDispose]: () => Deno.remove(state, { recursive: true }) };
      await using vm = await GuestVm.boot(image, { stateDir: state });
      const { container, agentPid, knownProcesses: known } = vm;
      assertEquals(known.map((p) => p.uid), [...GUEST_PROCESSES.uids]);
      assertEquals([container.hostname, container.cgroup], [
        GUEST_CONTAINER.hostname,
        GUEST_CONTAINER.cgroup,
      ]);

      await t.step(
        "the known processes share the container's namespaces, the agent none",
        async () => {
          const pids = [1, agentPid, container.pid, ...known.map((p) => p.pid)];
          const links = NAMESPACES.map((ns) => `$(readlink /proc/$p/ns/${ns})`).join(" ");
          const { status, output } = await vm.run(
            `for p in ${pids.join(" ")}; do echo $p ${links}; done`,
          );
          assertEquals(status, 0, output.join("\n"));
          const of = new Map(output.map((line) => {
            const [pid, ...ns] = line.split(" ");
            return [Number(pid), ns] as const;
          }));
          const root = of.get(1)!;
          assertEquals(root.length, NAMESPACES.length, output.join("\n"));
          assertEquals(of.get(agentPid), root, "the agent is in the guest's root namespaces");
          const inside = of.get(container.pid)!;
          NAMESPACES.forEach((ns, i) => {
            assert(inside[i] !== root[i], `the container has a ${ns} namespace of its own`);
          });
          for (const p of known) assertEquals(of.get(p.pid), inside, `${p.name}'s namespaces`);
        },
      );

      await t.step("NSpid has two levels in the container, cgroups say where each is", async () => {
        const placed = await vm.namespaces([agentPid, container.pid, ...known.map((p) => p.pid)]);
        assertEquals(placed.get(agentPid)?.nspid, [agentPid]);
        assertEquals(unifiedCgroup(placed.get(agentPid)!), "/", "the agent is in the root cgroup");
        assertEquals(placed.get(container.pid)?.nspid, [container.pid, 1]);
        assertEquals(unifiedCgroup(placed.get(container.pid)!), GUEST_CONTAINER.cgroup);
        for (const p of known) {
          assertEquals(placed.get(p.pid)?.nspid, [p.pid, p.nspid], p.name);
          assertEquals(unifiedCgroup(placed.get(p.pid)!), GUEST_CONTAINER.cgroup, p.name);
        }
        const procs = await vm.run(`cat /sys/fs/cgroup${GUEST_CONTAINER.cgroup}/cgroup.procs`);
        assertEquals(
          procs.output.map(Number).sort((a, b) => a - b),
          [container.pid, ...known.map((p) => p.pid)].sort((a, b) => a - b),
          "the workload cgroup holds the container and nothing else",
        );
        const self = await vm.runInContainer("cat /proc/self/cgroup; grep NSpid /proc/self/status");
        assertEquals(self.output[0], `0::${GUEST_CONTAINER.cgroup}`, "a runin command is in it");
        assert(/^NSpid:\s+\d+$/.test(self.output[1]), `inside, one level: ${self.output[1]}`);
      });

      await t.step(
        "inside the container the agent is not listed and cannot be signalled",
        async () => {
          const listing = await vm.runInContainer(
            'cd /proc && for p in [0-9]*; do echo "$p $(cat $p/comm)"; done',
          );
          assertEquals(listing.status, 0, listing.output.join("\n"));
          const seen = new Map(listing.output.map((line) => {
            const at = line.indexOf(" ");
            return [Number(line.slice(0, at)), line.slice(at + 1)] as const;
          }));
          assertEquals(seen.get(1), "sh", "the container's init is its pid 1");
          for (const p of known) {
            assertEquals(
              seen.get(p.nspid),
              p.name,
              `${p.name} at its pid inside`,
            );
          }
          assert(!seen.has(agentPid), `pid ${agentPid} is in the container's /proc`);
          assert(![...seen.values()].includes("deno"), `the agent is listed: ${listing.output}`);
          const ps = await vm.runInContainer("ps");
          assert(!ps.output.some((line) => line.includes("deno")), ps.output.join("\n"));

          const kill = await vm.runInContainer(`kill -0 ${agentPid}`);
          assert(kill.status !== 0, "the agent could be signalled from inside");
          assert(kill.output.join("\n").includes("No such process"), kill.output.join("\n"));
          assertEquals(
            (await vm.runInContainer(`kill -0 ${known[0].nspid}`)).status,
            0,
            "a control",
          );
          assertEquals((await vm.run(`kill -0 ${agentPid}`)).status, 0, "outside, it can be");
        },
      );

      await t.step(
        "inside the container: another hostname, network, and no agent state",
        async () => {
          assertEquals((await vm.runInContainer("hostname")).output, [GUEST_CONTAINER.hostname]);
          assertEquals((await vm.run("hostname")).output, [GUEST_HOSTNAME]);
          const links = (await vm.runInContainer("ip -o link")).output.map((l) => l.split(":")[1]);
          assertEquals(links.map((name) => name.trim()), ["lo"], "only its own loopback");
          assert(
            (await vm.run("ip -o link")).output.some((l) => l.includes("eth0")),
            "outside: eth0",
          );
          const listening = `grep -c ':${PORT_HEX} 00000000:0000 0A' /proc/net/tcp`;
          assertEquals(
            (await vm.runInContainer(listening)).output,
            ["0"],
            "the agent's port inside",
          );
          assertEquals((await vm.run(listening)).output, ["1"], "the agent's port outside");
          assertEquals((await vm.runInContainer("ls -A /var/lib/ebpfmon")).output, []);
          assert((await vm.run("ls /var/lib/ebpfmon")).output.includes("agent.key"), "outside");
        },
      );

      await t.step("ebpfmon lists the container's processes as the root /proc does", async () => {
        using session = await openSession({ agent: vm.address, state });
        const truth = await vm.processes();
        const placed = await vm.namespaces();
        const inContainer = [...placed.values()]
          .filter((p) => p.nspid.length === 2 && unifiedCgroup(p) === GUEST_CONTAINER.cgroup)
          .map((p) => p.pid).sort((a, b) => a - b);
        assertEquals(
          inContainer,
          [container.pid, ...known.map((p) => p.pid)].sort((a, b) => a - b),
          "the guest's view of the container",
        );
        for (const mode of ["prefetch", "on-demand"] as const) {
          const { processes, stats } = await session.processes(mode);
          assert(!stats.truncated, `${mode} was truncated: ${stats.reason}`);
          const listed = new Map<number, Process>(processes.map((p) => [p.pid, p]));
          for (const pid of inContainer) {
            const p = listed.get(pid);
            const proc = truth.get(pid)!;
            assert(p, `${mode}: pid ${pid} (${proc.comm}) is in the guest's /proc only`);
            const { comm: _comm, ...rest } = proc;
            assertEquals(
              {
                pid: p.pid,
                ppid: p.ppid,
                uid: p.uid,
                euid: p.euid,
                gid: p.gid,
                kthread: p.kthread,
              },
              rest,
              `${mode}: pid ${pid}`,
            );
            assert(sameComm(p.comm, proc), `${mode}: pid ${pid} is "${p.comm}"`);
            assertEquals(p.error, undefined, `${mode}: pid ${pid}: ${p.error}`);
          }
          for (const k of known) {
            const p = listed.get(k.pid);
            assertEquals([p?.comm, p?.uid, p?.ppid], [k.name, k.uid, container.pid], `${mode}`);
          }
          assertEquals(listed.get(container.pid)?.comm, "sh", `${mode}: the container's init`);
          assertEquals(listed.get(agentPid)?.comm, "deno", `${mode}: the agent`);
          // The container fields, against the guest's own NSpid and /proc/PID/cgroup.
          for (const [pid, where] of placed) {
            const p = listed.get(pid);
            if (!p || p.kthread) continue;
            assertEquals(
              [p.nsPid, p.cgroup],
              [where.nspid.at(-1), unifiedCgroup(where)],
              `${mode}: pid ${pid} (${p.comm})'s pid in its namespace and its cgroup`,
            );
          }
          const pidNs = new Set(inContainer.map((pid) => listed.get(pid)?.pidNs));
          const netNs = new Set(inContainer.map((pid) => listed.get(pid)?.netNs));
          assertEquals([pidNs.size, netNs.size], [1, 1], `${mode}: one pid and one net namespace`);
          const agent = listed.get(agentPid)!;
          assert(!pidNs.has(agent.pidNs) && !netNs.has(agent.netNs), `${mode}: not the agent's`);
        }
      });

      await t.step(
        "the agent holds the container still for a snapshot and thaws it after",
        async () => {
          using session = await openSession({ agent: vm.address, state });
          session.holdMs = 5_000;
          const { processes, stats } = await session.processes("on-demand");
          assertEquals(stats.hold?.state, "held", JSON.stringify(stats.hold));
          assert(processes.some((p) => p.pid === vm.agentPid), "the agent is listed");
          const frozen = await vm.run(`cat /sys/fs/cgroup${GUEST_CONTAINER.cgroup}/cgroup.freeze`);
          assertEquals(frozen.output, ["0"], "thawed after the snapshot");
        },
      );
    },
  );
}
