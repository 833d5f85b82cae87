import { assertEquals } from "../../tests/support/mod.ts";
import type { BpfProgram, BpfPrograms } from "../linux/mod.ts";
import { bpfProgram } from "./bpf_program.ts";
import type { RuleSettings, Scan } from "./types.ts";

function program(id: number, name: string, type: string, extra: Partial<BpfProgram> = {}) {
  return {
    id,
    name,
    tag: `${id}`.padStart(16, "0"),
    type,
    loadTime: id * 1e9,
    jited: true,
    maps: [],
    own: false,
    seenIn: ["kallsyms"],
    missingFrom: [],
    prog: "0xffff888800001000",
    aux: "0xffff888800002000",
    ...extra,
  } satisfies BpfProgram;
}

const VIEW = { supported: true, truncated: false, entries: 0, dropped: 0 };

function scan(programs: BpfProgram[]): Scan {
  const value: BpfPrograms = {
    programs,
    views: { kallsyms: VIEW, prog_idr: { ...VIEW, supported: false, reason: "no symbol" } },
    subprograms: 0,
    races: 0,
    confirmReads: 0,
    unconfirmed: 0,
    agent: { programs: [], complete: true },
  };
  return { takenAt: 0, sections: { bpf: { supported: true, truncated: false, value } } };
}

const settings = (allow: string[] = [], severity: RuleSettings["severity"] = "medium") => ({
  severity,
  allow: new Set(allow),
});

const PROGRAMS = [
  program(3, "walk", "kprobe", { own: true }),
  program(4, "trigger", "kprobe", { own: true }),
  program(7, "sock_filter", "socket_filter"),
  program(8, "cgroup_dev", "cgroup_device"),
  program(9, "hook", "tracing"),
  program(10, "lsm_hook", "lsm"),
  program(11, "allowed_by_tag", "kprobe"),
];

const rows = (s: Scan, rs: RuleSettings) =>
  bpfProgram.detect(s, undefined, rs).map((f) => [f.subject, f.severity]);

Deno.test("bpf_program raises every program but the agent's own, high for powerful types", () => {
  assertEquals(rows(scan(PROGRAMS), settings()), [
    ["bpf prog 7 sock_filter", "medium"],
    ["bpf prog 8 cgroup_dev", "medium"],
    ["bpf prog 9 hook", "high"],
    ["bpf prog 10 lsm_hook", "high"],
    ["bpf prog 11 allowed_by_tag", "high"],
  ]);
});

Deno.test("bpf_program skips programs allow-listed by name or by tag", () => {
  assertEquals(rows(scan(PROGRAMS), settings(["sock_filter", "0000000000000011", "cgroup_dev"])), [
    ["bpf prog 9 hook", "high"],
    ["bpf prog 10 lsm_hook", "high"],
  ]);
});

Deno.test("bpf_program applies a severity override, never below high for powerful types", () => {
  assertEquals(rows(scan(PROGRAMS.slice(2, 5)), settings([], "low")), [
    ["bpf prog 7 sock_filter", "low"],
    ["bpf prog 8 cgroup_dev", "low"],
    ["bpf prog 9 hook", "high"],
  ]);
  assertEquals(rows(scan(PROGRAMS.slice(2, 5)), settings([], "critical")), [
    ["bpf prog 7 sock_filter", "critical"],
    ["bpf prog 8 cgroup_dev", "critical"],
    ["bpf prog 9 hook", "critical"],
  ]);
});

Deno.test("bpf_program raises a program hidden from one view as high, even allow-listed or own", () => {
  const hidden = [
    program(12, "sock_filter", "socket_filter", {
      seenIn: ["prog_idr"],
      missingFrom: ["kallsyms"],
    }),
    program(3, "walk", "kprobe", { own: true, seenIn: ["kallsyms"], missingFrom: ["prog_idr"] }),
    program(13, "interp", "socket_filter", { jited: false, seenIn: ["prog_idr"] }),
  ];
  const findings = bpfProgram.detect(scan(hidden), undefined, settings(["sock_filter", "interp"]));
  assertEquals(findings.map((f) => [f.subject, f.severity, f.evidence.missingFrom]), [
    ["bpf prog 12 sock_filter", "high", ["kallsyms"]],
    ["bpf prog 3 walk", "high", ["prog_idr"]],
  ]);
  assertEquals(
    findings[0].message,
    'socket_filter program 12 "sock_filter" (tag 0000000000000012) is hidden from kallsyms ' +
      "but held by prog_idr",
  );
});

Deno.test("bpf_program names a program without a name by its tag, and finds nothing without the section", () => {
  assertEquals(rows(scan([program(21, "", "xdp")]), settings()), [
    ["bpf prog 21 0000000000000021", "medium"],
  ]);
  const unsupported: Scan = {
    takenAt: 0,
    sections: { bpf: { supported: false, reason: "no list" } },
  };
  assertEquals(bpfProgram.detect(unsupported, undefined, settings()), []);
});
