import { assertEquals } from "../../tests/support/mod.ts";
import type { AgentTask, BpfPrograms } from "../linux/mod.ts";
import { agentIntegrity } from "./agent_integrity.ts";
import type { Scan } from "./types.ts";

const AGENT: AgentTask = {
  pid: 812,
  tgid: 812,
  comm: "deno",
  task: "0xffff888104a0c000",
  claimedPid: 812,
  alive: true,
  ptrace: 0,
  loaded: [],
};
const PROGRAMS = [
  { name: "walk_tasks", tag: "2c1b64fcbd1a5e20", prog: "0xffffc90000a01000" },
  { name: "walk_plan", tag: "9e0a3b5e0f2d7c11", prog: "0xffffc90000a02000" },
];
const VIEW = { supported: true, truncated: false, entries: 0, dropped: 0 };

function scan(
  agent: Partial<AgentTask> = {},
  programs = PROGRAMS,
  complete = true,
): Scan {
  const bpf: BpfPrograms = {
    programs: [],
    views: { kallsyms: VIEW, prog_idr: VIEW },
    subprograms: 0,
    races: 0,
    confirmReads: 0,
    unconfirmed: 0,
    agent: { programs, complete },
  };
  return {
    takenAt: 0,
    sections: {
      agent: { supported: true, truncated: false, value: { ...AGENT, ...agent } },
      bpf: { supported: true, truncated: false, value: bpf },
    },
  };
}

const settings = (allow: string[] = []) => ({ severity: "high" as const, allow: new Set(allow) });
const rules = (now: Scan, first?: Scan, allow?: string[]) =>
  agentIntegrity.detect(now, undefined, settings(allow), first).map((f) => [f.subject, f.message]);

Deno.test("agent_integrity: the agent as its first scan found it raises nothing", () => {
  const first = scan();
  assertEquals(rules(scan(), first), []);
  assertEquals(rules(first, first), []);
});

Deno.test("agent_integrity: a tracer of the agent is named, unless allow-listed", () => {
  const tracer = { pid: 4242, comm: "gdb", task: "0xffff888100200000" };
  const traced = scan({ ptrace: 0x10001, tracer });
  assertEquals(rules(traced), [[
    "agent pid 812",
    "the agent (pid 812) is traced by pid 4242 (gdb)",
  ]]);
  assertEquals(rules(traced, undefined, ["gdb"]), []);
});

Deno.test("agent_integrity: another process at the anchor, or an exiting one", () => {
  assertEquals(rules(scan({ pid: 99, tgid: 99, comm: "sh" })), [[
    "agent pid 812",
    "the agent's task 0xffff888104a0c000 is pid 99 (sh), not the agent's 812",
  ]]);
  assertEquals(rules(scan({ alive: false })), [[
    "agent pid 812",
    "the agent's task 0xffff888104a0c000 is exiting",
  ]]);
});

Deno.test("agent_integrity: a program gone, replaced or added since the first scan", () => {
  const first = scan();
  const replaced = [PROGRAMS[0], { ...PROGRAMS[1], tag: "0000000000000bad" }];
  assertEquals(rules(scan({}, replaced), first), [
    [
      "agent program walk_plan 9e0a3b5e0f2d7c11",
      "the agent's program walk_plan (tag 9e0a3b5e0f2d7c11) is no longer loaded",
    ],
    [
      "agent program walk_plan 0000000000000bad",
      "the agent holds a program it neither loaded for this IDS nor held at the first scan: " +
      "walk_plan (tag 0000000000000bad)",
    ],
  ]);
  // Another session's copy of the same object is the same tags: nothing.
  assertEquals(rules(scan({}, [...PROGRAMS, ...PROGRAMS]), first), []);
});

Deno.test("agent_integrity: the programs the agent loaded for this IDS must stay loaded", () => {
  const loaded = PROGRAMS.map(({ name, tag }) => ({ name, tag }));
  // Checked from the first scan on: what LOADED named is the baseline.
  assertEquals(rules(scan({ loaded })), []);
  assertEquals(rules(scan({ loaded }, [PROGRAMS[0]])), [[
    "agent program walk_plan 9e0a3b5e0f2d7c11",
    "the agent's program walk_plan (tag 9e0a3b5e0f2d7c11) is no longer loaded",
  ]]);
  const other = { name: "spy", tag: "1111111111111111", prog: "0xffffc90000a03000" };
  assertEquals(rules(scan({ loaded }, [...PROGRAMS, other])).map(([subject]) => subject), [
    "agent program spy 1111111111111111",
  ]);
  // One the first scan saw already is not news.
  assertEquals(rules(scan({ loaded }, [...PROGRAMS, other]), scan({}, [...PROGRAMS, other])), []);
});

Deno.test("agent_integrity: an fd table not read whole proves no program gone", () => {
  assertEquals(rules(scan({}, [], false), scan()), []);
  assertEquals(rules(scan(), scan({}, [], false)), []);
});
