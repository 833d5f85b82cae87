import { assertEquals } from "../tests/support/mod.ts";
import type { Process, ProcessViewName, ProcessViews } from "../ids/linux/mod.ts";
import { inconsistencies, WORKLOAD_COMM } from "./hold_report.ts";

function process(pid: number, ppid: number, comm: string, seenIn: ProcessViewName[]): Process {
  return { pid, tgid: pid, ppid, comm, seenIn } as Process;
}

const all: ProcessViewName[] = ["tasks", "pid_idr", "children"];

function views(processes: Process[], truncated = false): ProcessViews {
  const count = (v: ProcessViewName) => processes.filter((p) => p.seenIn?.includes(v)).length;
  return {
    processes,
    hidden: [],
    views: {
      tasks: { count: count("tasks"), truncated, ...(truncated ? { reason: "a loop" } : {}) },
      pid_idr: { count: count("pid_idr"), truncated: false },
      children: { count: count("children"), truncated: false },
    },
    cleared: 0,
    unconfirmed: 0,
    confirmed: 0,
    sharedCreds: [],
    credsCleared: 0,
    pidNamespace: "0xffff888000000000",
  };
}

Deno.test("inconsistencies() of a consistent list: none; pid 1 and kthreadd have parent 0", () => {
  const found = inconsistencies(views([
    process(1, 0, "init", all),
    process(2, 0, "kthreadd", all),
    process(10, 2, "kworker", all),
    process(20, 1, WORKLOAD_COMM, all),
    process(21, 20, WORKLOAD_COMM, all),
  ]));
  assertEquals(found.machine, { orphans: 0, truncated: false, countGap: 0 });
  assertEquals(found.own, { orphans: 0, truncated: false, countGap: 0 });
  assertEquals(found.workload, 2);
});

Deno.test("inconsistencies() counts orphans, a cut walk and the task list against the pid IDR", () => {
  const found = inconsistencies(views([
    process(1, 0, "init", all),
    process(30, 29, WORKLOAD_COMM, all), // its parent exited
    process(31, 1, WORKLOAD_COMM, ["pid_idr"]), // the task list walk missed it
    process(40, 39, "other", ["tasks", "children"]), // both
  ], true));
  assertEquals(found.machine, { orphans: 2, truncated: true, countGap: 2 });
  assertEquals(found.own, { orphans: 1, truncated: true, countGap: 1 });
  assertEquals(found.reasons, ["a loop"]);
});
