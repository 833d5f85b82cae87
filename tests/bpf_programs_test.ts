/**
 * BPF programs in the real kernel: a program the test loads itself (with bpftool, pinned in
 * bpffs) is listed by the `bpf` section with the id, name, tag, type and maps bpftool reports,
 * raises `bpf_program`, and is gone once unloaded; the agent's own programs (as its fds in /proc
 * show them) are `own: true` and raise nothing. In every mode.
 */

import { assert, assertEquals, privilegedTest } from "./support/mod.ts";
import { loadTestProgram, unloadTestProgram } from "./bpf_fixture.ts";
import { spawnAgent } from "../agent/mod.ts";
import { type GuestSession, type Mode, MODES, openSession } from "../ids/client/mod.ts";
import { runCheck, scanSections } from "../ids/detect/mod.ts";
import type { BpfPrograms } from "../ids/linux/mod.ts";
import { formatBpfPrograms } from "../ids/cli/mod.ts";

/** The ids of the BPF programs process `pid` holds open, from its /proc fds and fdinfo. */
function heldPrograms(pid: number): Set<number> {
  const ids = new Set<number>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`) !== "anon_inode:bpf-prog") continue;
      const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
      ids.add(Number(/^prog_id:\s*(\d+)$/m.exec(info)![1]));
    } catch {
      // closed meanwhile
    }
  }
  return ids;
}

async function programs(session: GuestSession, mode: Mode): Promise<BpfPrograms> {
  const { scan } = await scanSections(session, mode, ["bpf"]);
  const section = scan.sections.bpf;
  assert(
    section?.supported,
    `${mode}: bpf section: ${section && !section.supported && section.reason}`,
  );
  return section.value;
}

privilegedTest(
  "bpf lists a program the test loaded as bpftool shows it, and the agent's own as own",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ebpfmon-bpf-" });
    const pin = `/sys/fs/bpf/ebpfmon-test-${Deno.pid}`;
    try {
      const truth = await loadTestProgram(dir, pin);
      assertEquals(truth.name, "ebpfmon_t");

      await using agent = await spawnAgent({ stateDir: dir });
      using session = await openSession({ agent: agent.address, state: dir });
      const agentOwn = heldPrograms(agent.pid);
      assert(agentOwn.size > 0, "the agent holds BPF programs");

      for (const mode of MODES) {
        const list = await programs(session, mode);
        assertEquals(list.views.kallsyms.supported, true, list.views.kallsyms.reason);
        assertEquals(list.views.kallsyms.truncated, false, list.views.kallsyms.reason);
        const ids = list.programs.map((p) => p.id);
        assertEquals(new Set(ids).size, ids.length, `${mode}: no program listed twice`);

        const ours = list.programs.find((p) => p.id === truth.id);
        assert(ours, `${mode}: program ${truth.id} is listed`);
        assertEquals(
          [ours.name, ours.tag, ours.type, ours.jited, ours.maps.map((m) => m.id)],
          [truth.name, truth.tag, truth.type, truth.jited, truth.map_ids ?? []],
          `${mode}: program ${truth.id}`,
        );
        assertEquals(ours.maps.map((m) => [m.name, m.type]), [["ebpfmon_t_hits", "array"]]);
        assertEquals(ours.own, false);
        // load_time is nanoseconds since boot; bpftool shows it as wall-clock seconds.
        const uptime = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
        const bootedAt = Date.now() / 1000 - uptime;
        const loadedAt = bootedAt + ours.loadTime / 1e9;
        assert(
          Math.abs(loadedAt - truth.loaded_at) <= 2,
          `${mode}: loaded at ${loadedAt}, bpftool says ${truth.loaded_at}`,
        );
        assert(ours.seenIn.includes("kallsyms"), `${mode}: seen in ${ours.seenIn}`);

        // The agent's own programs are exactly those its fds hold.
        const own = new Set(list.programs.filter((p) => p.own).map((p) => p.id));
        assertEquals(own, agentOwn, `${mode}: own programs`);

        const { findings } = await runCheck(session, mode, {
          rules: Object.fromEntries(
            ["hidden_process", "shared_cred", "privilege_escalation", "new_listener"].map((r) => [
              r,
              { enabled: false },
            ]),
          ),
        });
        const raised = findings.filter((f) => f.rule === "bpf_program");
        const mine = raised.find((f) => f.evidence.id === truth.id);
        assert(mine, `${mode}: bpf_program raised for program ${truth.id}`);
        assertEquals([mine.subject, mine.severity], [`bpf prog ${truth.id} ebpfmon_t`, "medium"]);
        assertEquals(mine.evidence.tag, truth.tag);
        for (const id of agentOwn) {
          assert(
            !raised.some((f) => f.evidence.id === id),
            `${mode}: agent's program ${id} raised`,
          );
        }
      }

      await unloadTestProgram(pin, truth.id);
      for (const mode of MODES) {
        const list = await programs(session, mode);
        assert(!list.programs.some((p) => p.id === truth.id), `${mode}: ${truth.id} is gone`);
        assertEquals(new Set(list.programs.filter((p) => p.own).map((p) => p.id)), agentOwn);
      }
    } finally {
      await Deno.remove(pin).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("formatBpfPrograms() escapes names from guest memory and says what views are missing", () => {
  const view = { supported: true, truncated: false, entries: 3, dropped: 1 };
  const table = formatBpfPrograms({
    programs: [{
      id: 7,
      name: "evil\x1b[2J\n",
      tag: "a04f5eef06a7f555",
      type: "socket_filter",
      loadTime: 12_345_678_901,
      jited: true,
      maps: [],
      own: false,
      seenIn: ["kallsyms"],
      missingFrom: ["prog_idr"],
      prog: "0xffffc90000001000",
      aux: "0xffff888100002000",
    }],
    views: {
      kallsyms: view,
      prog_idr: { ...view, truncated: true, reason: "more than 2 entries" },
    },
    subprograms: 0,
    races: 0,
    confirmReads: 0,
    unconfirmed: 0,
    agent: { programs: [], complete: true },
  });
  assertEquals(table.split("\n").slice(0, 3), [
    "ID  TYPE           TAG               NAME            LOADED  OWN  SEEN-IN",
    " 7  socket_filter  a04f5eef06a7f555  evil\\x1b[2J\\n  12.346s  -    kallsyms  (missing from prog_idr)",
    "prog_idr: truncated: more than 2 entries",
  ]);
});
