/**
 * The in-guest plan walker (walk_plan) on this machine's kernel, with plans built by hand from
 * its BTF: lists, pointers, arrays, bytes, conditions, dedupe and every bound. The node features
 * (covering nodes, guards, sparse runs) are in walker_plan_nodes_test.ts.
 */

import { assert, assertEquals, assertThrows, privilegedTest } from "../tests/support/mod.ts";
import {
  CondKind,
  EdgeKind,
  encodePlan,
  type Plan,
  type PlanCondition,
  StopReason,
} from "../protocol/mod.ts";
import { currentThreadId } from "./libbpf.ts";
import { type RunResult, Walker } from "./walker.ts";
import {
  addrsOfSize,
  ALL,
  fdTableNodes,
  kernel,
  LIMITS,
  off,
  ptr,
  type Rec,
  selectiveTask,
  size,
  sorted,
  taskPlan,
  tasksOf,
  u64,
  walk,
  wholeTask,
} from "./_walk_fixtures.ts";

privilegedTest(
  "walkPlan() visits every task of the task list once, as walkTasks() does",
  async () => {
    using walker = await Walker.open({ ringBytes: 16 << 20 });
    let root = 0n;
    let expected: bigint[] = [];
    let got: Rec[] = [];
    let run: RunResult | undefined;
    // Processes may come and go between the two walks: retry until two agree.
    for (let attempt = 0; attempt < 5; attempt++) {
      const before = tasksOf(walker);
      root = before.root;
      ({ run, records: got } = walk(walker, taskPlan(root, wholeTask())));
      // walk_tasks copies a parent that is not on the list once per child: compare sets.
      expected = sorted([...new Set(before.tasks)]);
      if (sorted(addrsOfSize(got, size("task_struct"))).join() === expected.join()) break;
    }
    assertEquals([run!.stop, run!.faults, run!.pruned], [StopReason.COMPLETE, 0, 0]);
    const tasks = addrsOfSize(got, size("task_struct"));
    assertEquals(sorted(tasks), expected);
    assertEquals(new Set(tasks).size, tasks.length, "each task exactly once");
    const creds = addrsOfSize(got, size("cred"));
    assertEquals(new Set(creds).size, creds.length, "each cred exactly once");
    assert(creds.length > 0 && creds.length < tasks.length, `${creds.length} creds`);

    const selective = walk(walker, taskPlan(root, selectiveTask())).run;
    assertEquals(selective.stop, StopReason.COMPLETE);
    assert(selective.bytes * 10 < run!.bytes, `${selective.bytes} vs ${run!.bytes} bytes`);
  },
);

privilegedTest("walkPlan() follows an array of file pointers and copies dentry names", async () => {
  using walker = await Walker.open({ ringBytes: 16 << 20 });
  const dir = await Deno.makeTempDir({ prefix: "ebpfmon-plan-" });
  const names = Array.from({ length: 5 }, (_, i) => `ebpfmon-plan-file-${i}-${Deno.pid}`);
  const files = names.map((name) => Deno.openSync(`${dir}/${name}`, { create: true, write: true }));
  try {
    const plan: Plan = {
      roots: [{ addr: walker.anchor(), node: 0 }],
      nodes: [
        ...fdTableNodes(false),
        {
          dedupe: true,
          ranges: [{ off: 0, len: size("file") }],
          edges: [{
            kind: EdgeKind.PTR,
            target: 4,
            off: off("file", "f_path.dentry"),
            delta: 0,
            max: 1,
          }],
        },
        {
          dedupe: true,
          ranges: [{ off: off("dentry", "d_name"), len: 16 }],
          edges: [{
            kind: EdgeKind.BYTES,
            target: 0,
            off: off("dentry", "d_name.name"),
            delta: 0,
            aux: off("dentry", "d_name.len"),
            countSize: 4,
            max: 256,
          }],
        },
      ],
      maxDepth: 8,
    };
    const { run, records } = walk(walker, plan);
    assertEquals([run.stop, run.faults], [StopReason.COMPLETE, 0]);
    const fdtable = records.find((r) => r.bytes.length === size("fdtable"))!;
    const view = new DataView(fdtable.bytes.buffer);
    const maxFds = view.getUint32(off("fdtable", "max_fds"), true);
    const fdArray = view.getBigUint64(off("fdtable", "fd"), true);
    assert(
      records.some((r) => r.addr === fdArray && r.bytes.length === maxFds * 8),
      "the array's slots are copied",
    );
    assert(addrsOfSize(records, size("file")).length >= files.length, "the open files");
    const copied = new Set(records.map((r) => new TextDecoder().decode(r.bytes)));
    for (const name of names) assert(copied.has(name), `name "${name}" copied`);
  } finally {
    for (const file of files) file.close();
    await Deno.remove(dir, { recursive: true });
  }
});

privilegedTest("walkPlan() follows an hlist from a struct pid to its tasks", async () => {
  using walker = await Walker.open({ ringBytes: 1 << 20 });
  const anchor = walker.anchor();
  const pid = off("task_struct", "pid");
  const links = off("task_struct", "pid_links");
  const { run, records } = walk(walker, {
    roots: [{ addr: anchor, node: 0 }],
    nodes: [
      { dedupe: false, ranges: [], edges: [ptr(1, "thread_pid")] },
      {
        dedupe: false,
        ranges: [],
        // tasks[PIDTYPE_PID] heads the tasks using this pid: only ours.
        edges: [{
          kind: EdgeKind.HLIST,
          target: 2,
          off: off("pid", "tasks"),
          delta: links,
          max: 8,
        }],
      },
      { dedupe: false, ranges: [{ off: pid, len: 4 }], edges: [] },
    ],
    maxDepth: 4,
  });
  assertEquals([run.stop, run.faults], [StopReason.COMPLETE, 0]);
  assertEquals(records.map((r) => r.addr), [anchor + BigInt(pid)]);
  // The anchor is the calling thread, which need not be the process's first.
  assertEquals(new DataView(records[0].bytes.buffer).getInt32(0, true), currentThreadId());
});

privilegedTest("walkPlan() follows an edge only when its condition holds", async () => {
  using walker = await Walker.open({ ringBytes: 16 << 20 });
  const { root } = tasksOf(walker);
  const comm = off("task_struct", "comm");
  const pid = off("task_struct", "pid");
  const tasks = off("task_struct", "tasks");
  // Each task on the list copies its pid; the comm of its real_parent only when cond holds.
  const parentComms = (cond: PlanCondition) =>
    addrsOfSize(
      walk(walker, {
        roots: [{ addr: root, node: 0 }],
        nodes: [
          {
            dedupe: false,
            ranges: [],
            edges: [{ kind: EdgeKind.LIST, target: 1, off: tasks, delta: tasks, max: 1_000_000 }],
          },
          {
            dedupe: false,
            ranges: [{ off: pid, len: 4 }],
            edges: [{ ...ptr(2, "real_parent"), cond }],
          },
          { dedupe: false, ranges: [{ off: comm, len: 16 }], edges: [] },
        ],
        maxDepth: 4,
      }).records,
      16,
    );
  const field = { off: pid, size: 4 } as const;

  const parent = u64(walker, walker.anchor() + BigInt(off("task_struct", "real_parent")));
  const mine = parentComms({
    kind: CondKind.EQ,
    ...field,
    mask: 0xffff_ffffn,
    value: BigInt(Deno.pid),
  });
  assertEquals(mine, [parent + BigInt(comm)]);

  // pid 1 (init) and pid 2 (kthreadd) are both children of init_task.
  const initAndKthreadd = parentComms({ kind: CondKind.IN_SET, ...field, mask: 0b110n });
  assertEquals(initAndKthreadd, [root + BigInt(comm), root + BigInt(comm)]);

  const above31 = parentComms({ kind: CondKind.IN_SET, ...field, mask: 1n << 40n });
  assertEquals(above31, [], "a field of 32 or more is in no set");
});

privilegedTest(
  "walkPlan() stops at its depth, budgets and stack, and survives bad pointers",
  async () => {
    using walker = await Walker.open({ ringBytes: 16 << 20 });
    const { root } = tasksOf(walker);

    const shallow = walk(walker, taskPlan(root, wholeTask(), 0));
    assertEquals(shallow.records.map((r) => r.addr), [root]);
    assertEquals([shallow.run.stop, shallow.run.pruned], [StopReason.COMPLETE, 3]);

    const few = walk(walker, taskPlan(root, wholeTask()), { maxObjects: 5, maxBytes: 1 << 30 }).run;
    assertEquals([few.objects, few.stop], [5, StopReason.MAX_OBJECTS]);
    const small = walk(walker, taskPlan(root, selectiveTask()), { maxObjects: ALL, maxBytes: 100 });
    assertEquals(small.run.stop, StopReason.MAX_BYTES);
    assert(small.run.bytes <= 100, `${small.run.bytes} bytes`);

    const anchor = walker.anchor();
    const garbage = walk(walker, {
      roots: [{ addr: anchor, node: 0 }, { addr: 0xffff_8000_0000_0000n, node: 1 }],
      nodes: [
        {
          dedupe: false,
          ranges: [],
          // comm holds text, not a list_head.
          edges: [{
            kind: EdgeKind.LIST,
            target: 1,
            off: off("task_struct", "comm"),
            delta: 0,
            max: ALL,
          }],
        },
        { dedupe: false, ranges: [{ off: 0, len: 64 }], edges: [ptr(1, "real_parent")] },
      ],
      maxDepth: 64,
    }).run;
    // One for the list's first entry, two for the unmapped root: its range and its pointer.
    assertEquals([garbage.stop, garbage.objects, garbage.faults], [StopReason.COMPLETE, 0, 3]);

    // An empty list_head points to itself, so its `prev` field, taken as a list head, leads into a
    // cycle that never comes back: only bpf_loop's step count ends it.
    const cycle = walk(walker, {
      roots: [{ addr: anchor, node: 0 }],
      nodes: [
        {
          dedupe: false,
          ranges: [],
          edges: [{
            kind: EdgeKind.LIST,
            target: 1,
            off: off("task_struct", "ptraced") + 8,
            delta: 0,
            max: ALL,
          }],
        },
        { dedupe: false, ranges: [], edges: [] },
      ],
      maxDepth: 64,
    });
    assertEquals([cycle.run.stop, cycle.run.objects], [StopReason.STEPS, 0]);

    // init_task is its own real_parent: without dedupe only the depth ends the walk, and the
    // default stack holds the deepest one.
    const deepest = walk(walker, {
      roots: [{ addr: root, node: 0 }],
      nodes: [{
        dedupe: false,
        ranges: [{ off: off("task_struct", "pid"), len: 4 }],
        edges: [ptr(0, "real_parent")],
      }],
      maxDepth: 64,
    }).run;
    assertEquals([deepest.stop, deepest.objects, deepest.pruned], [StopReason.COMPLETE, 65, 1]);

    using tiny = await Walker.open({ ringBytes: 1 << 20, stackItems: 3 });
    const full = walk(tiny, taskPlan(root, selectiveTask())).run;
    assertEquals(full.stop, StopReason.STACK_FULL);

    assertThrows(() => walker.walkPlan(new Uint8Array(16), LIMITS), RangeError, "16 bytes");
  },
);

privilegedTest("walkPlan() measured against walkTasks() on the task list", async () => {
  using walker = await Walker.open({ ringBytes: 16 << 20 });
  const { root } = tasksOf(walker);
  const whole = encodePlan(taskPlan(root, wholeTask()));
  const selective = encodePlan(taskPlan(root, selectiveTask()));
  const runs = 20;
  const measure = (name: string, run: () => RunResult) => {
    const results = Array.from({ length: runs + 1 }, () => {
      const result = run();
      walker.discard();
      return result;
    }).slice(1);
    const ns = results.map((r) => r.guestNs).sort((a, b) => a - b);
    const last = results[results.length - 1];
    console.log(
      `${name.padEnd(22)} median ${(ns[runs >> 1] / 1e3).toFixed(1).padStart(7)} µs in the guest,` +
        ` ${last.objects} records, ${last.bytes} bytes`,
    );
    assertEquals(last.stop, StopReason.COMPLETE);
  };
  measure("walk_tasks", () => walker.walkTasks(LIMITS));
  measure("plan, whole objects", () => walker.walkPlan(whole, LIMITS));
  measure("plan, selective ranges", () => walker.walkPlan(selective, LIMITS));
});

/** Every thread id in /proc now. */
function procTids(): Set<number> {
  const tids = new Set<number>();
  for (const p of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(p.name)) continue;
    try {
      for (const t of Deno.readDirSync(`/proc/${p.name}/task`)) tids.add(Number(t.name));
    } catch {
      // exited meanwhile
    }
  }
  return tids;
}

privilegedTest(
  "walkPlan() follows xarray slots: the init pid namespace's IDR holds every thread of /proc",
  async () => {
    using walker = await Walker.open({ ringBytes: 4 << 20 });
    const numbers = off("pid", "numbers");
    const slots = off("xa_node", "slots");
    const slotCount = size("xa_node") > 0 ? kernel().field("xa_node", "slots").size / 8 : 0;
    const tagged = (target: number, tagValue: number, at: number, count: number) => ({
      kind: EdgeKind.SLOTS,
      target,
      off: at,
      delta: tagValue,
      tagMask: 3,
      tagValue,
      max: count,
    });
    const head = off("pid_namespace", "idr.idr_rt.xa_head");
    const before = procTids();
    const { run, records } = walk(walker, {
      roots: [{ addr: walker.anchor(), node: 0 }],
      nodes: [
        { dedupe: false, ranges: [], edges: [ptr(1, "thread_pid")] },
        // The anchor's pid, and its namespace (numbers[0].ns): the init pid namespace.
        {
          dedupe: false,
          ranges: [],
          edges: [{
            kind: EdgeKind.PTR,
            target: 2,
            off: numbers + off("upid", "ns"),
            delta: 0,
            max: 1,
          }],
        },
        { dedupe: true, ranges: [], edges: [tagged(3, 2, head, 1), tagged(4, 0, head, 1)] },
        {
          dedupe: true,
          ranges: [],
          edges: [tagged(3, 2, slots, slotCount), tagged(4, 0, slots, slotCount)],
        },
        { dedupe: true, ranges: [{ off: numbers + off("upid", "nr"), len: 4 }], edges: [] },
      ],
      maxDepth: 16,
    });
    const after = procTids();
    assertEquals([run.stop, run.faults], [StopReason.COMPLETE, 0]);
    const nrs = new Set(records.map((r) => new DataView(r.bytes.buffer).getInt32(0, true)));
    const stable = [...before].filter((t) => after.has(t));
    assert(stable.length > 10, `${stable.length} threads in /proc`);
    for (const tid of stable) assert(nrs.has(tid), `thread ${tid} of /proc is in the pid IDR`);
  },
);
