/**
 * The in-guest plan walker (walk_plan) on this machine's kernel, with plans built by hand from
 * its BTF: lists, pointers, arrays, bytes, conditions, dedupe and every bound.
 */

import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { privilegedTest } from "../tests/privileged.ts";
import { parseBtf } from "../ids/btf/mod.ts";
import type { Btf } from "../ids/btf/mod.ts";
import {
  CondKind,
  EdgeKind,
  ElemKind,
  encodePlan,
  type Plan,
  type PlanCondition,
  type PlanNode,
  StopReason,
} from "../protocol/mod.ts";
import { currentThreadId } from "./libbpf.ts";
import { type RunResult, Walker, type WalkLimits } from "./walker.ts";

const LIMITS: WalkLimits = { maxObjects: 1 << 20, maxBytes: 64 << 20 };
const ALL = 0xffff_ffff;

let btf: Btf | undefined;
function kernel(): Btf {
  btf ??= parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
  return btf;
}
function off(struct: string, path: string): number {
  return kernel().field(struct, path).offset;
}
function size(struct: string): number {
  return kernel().struct(struct).size;
}

interface Rec {
  addr: bigint;
  bytes: Uint8Array;
}

function walk(walker: Walker, plan: Plan, limits = LIMITS): { run: RunResult; records: Rec[] } {
  const run = walker.walkPlan(encodePlan(plan), limits);
  const records: Rec[] = [];
  walker.drain((addr, bytes) => records.push({ addr, bytes: bytes.slice() }) > 0);
  assertEquals(records.length, run.objects);
  return { run, records };
}

function addrsOfSize(records: Rec[], len: number): bigint[] {
  return records.filter((r) => r.bytes.length === len).map((r) => r.addr);
}

function u64(walker: Walker, addr: bigint): bigint {
  walker.read(addr, 8);
  let value = 0n;
  walker.drain((_, bytes) => {
    value = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    return true;
  });
  return value;
}

const ptr = (target: number, field: string) => ({
  kind: EdgeKind.PTR,
  target,
  off: off("task_struct", field),
  delta: 0,
  max: 1,
});

/**
 * init_task's task list: node 0 walks the list (copying nothing), node 1 is a task (deduped)
 * following real_parent and real_cred, node 2 a cred (deduped). init_task itself is a second
 * root at node 1, since a list never visits its head.
 */
function taskPlan(initTask: bigint, taskRanges: PlanNode["ranges"], maxDepth = 64): Plan {
  const tasks = off("task_struct", "tasks");
  return {
    roots: [{ addr: initTask, node: 0 }, { addr: initTask, node: 1 }],
    nodes: [
      {
        dedupe: false,
        ranges: [],
        edges: [{ kind: EdgeKind.LIST, target: 1, off: tasks, delta: tasks, max: 1_000_000 }],
      },
      { dedupe: true, ranges: taskRanges, edges: [ptr(1, "real_parent"), ptr(2, "real_cred")] },
      { dedupe: true, ranges: [{ off: 0, len: size("cred") }], edges: [] },
    ],
    maxDepth,
  };
}

function wholeTask(): PlanNode["ranges"] {
  return [{ off: 0, len: size("task_struct") }];
}

function selectiveTask(): PlanNode["ranges"] {
  return [
    { off: off("task_struct", "pid"), len: 4 },
    { off: off("task_struct", "comm"), len: 16 },
    { off: off("task_struct", "tasks"), len: 16 },
  ];
}

function tasksOf(walker: Walker): { root: bigint; tasks: bigint[] } {
  const run = walker.walkTasks(LIMITS);
  const records: Rec[] = [];
  walker.drain((addr, bytes) => records.push({ addr, bytes }) > 0);
  assertEquals(run.stop, StopReason.COMPLETE);
  return { root: run.root, tasks: addrsOfSize(records, size("task_struct")) };
}

const sorted = (xs: bigint[]) => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

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
        { dedupe: false, ranges: [], edges: [ptr(1, "files")] },
        {
          dedupe: false,
          ranges: [],
          edges: [{
            kind: EdgeKind.PTR,
            target: 2,
            off: off("files_struct", "fdt"),
            delta: 0,
            max: 1,
          }],
        },
        {
          dedupe: false,
          ranges: [{ off: 0, len: size("fdtable") }],
          edges: [{
            kind: EdgeKind.ARRAY,
            target: 3,
            off: off("fdtable", "fd"),
            delta: 0,
            elem: ElemKind.PTR,
            aux: off("fdtable", "max_fds"),
            countSize: 4,
            stride: 8,
            max: 1 << 16,
          }],
        },
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

privilegedTest(
  "walkPlan() skips an object already visited as the node that covers it",
  async () => {
    using walker = await Walker.open({ ringBytes: 16 << 20 });
    const tasks = off("task_struct", "tasks");
    const pid = off("task_struct", "pid");
    const root = tasksOf(walker).root;
    // The task list twice: as node 1 (whole tasks), then as node 3 (the pid alone).
    const plan = (coveredBy?: number): Plan => ({
      roots: [{ addr: root, node: 0 }, { addr: root, node: 2 }],
      nodes: [
        {
          dedupe: false,
          ranges: [],
          edges: [{ kind: EdgeKind.LIST, target: 1, off: tasks, delta: tasks, max: 1_000_000 }],
        },
        { dedupe: true, ranges: wholeTask(), edges: [] },
        {
          dedupe: false,
          ranges: [],
          edges: [{ kind: EdgeKind.LIST, target: 3, off: tasks, delta: tasks, max: 1_000_000 }],
        },
        { dedupe: true, coveredBy, ranges: [{ off: pid, len: 4 }], edges: [] },
      ],
      maxDepth: 4,
    });
    const plain = walk(walker, plan());
    const covered = walk(walker, plan(1));
    assertEquals([plain.run.stop, covered.run.stop], [StopReason.COMPLETE, StopReason.COMPLETE]);
    const wholeOf = (r: Rec[]) => addrsOfSize(r, size("task_struct")).length;
    assert(wholeOf(plain.records) > 10, `${wholeOf(plain.records)} tasks`);
    // Each task once more as a pid without the cover, never with it (tasks may come and go).
    const pids = addrsOfSize(plain.records, 4).length;
    assert(Math.abs(pids - wholeOf(plain.records)) <= 5, `${pids} pids`);
    assertEquals(addrsOfSize(covered.records, 4), [], "covered: no pid copied on its own");
    assert(wholeOf(covered.records) > 10, `${wholeOf(covered.records)} tasks`);
  },
);

privilegedTest(
  "walkPlan() copies a sparse fd array in runs that hold every open fd's slot",
  async () => {
    using walker = await Walker.open({ ringBytes: 16 << 20 });
    const files = Array.from({ length: 12 }, () => Deno.openSync("/dev/null"));
    try {
      // The fds open now: the listing's own fd is closed once it is read.
      const open = [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name))
        .filter((fd) => {
          try {
            return Deno.readLinkSync(`/proc/self/fd/${fd}`) !== "";
          } catch {
            return false;
          }
        });
      const { run, records } = walk(walker, {
        roots: [{ addr: walker.anchor(), node: 0 }],
        nodes: [
          { dedupe: false, ranges: [], edges: [ptr(1, "files")] },
          {
            dedupe: false,
            ranges: [],
            edges: [{
              kind: EdgeKind.PTR,
              target: 2,
              off: off("files_struct", "fdt"),
              delta: 0,
              max: 1,
            }],
          },
          {
            dedupe: false,
            ranges: [{ off: 0, len: size("fdtable") }],
            edges: [{
              kind: EdgeKind.ARRAY,
              target: 3,
              off: off("fdtable", "fd"),
              delta: 0,
              elem: ElemKind.PTR,
              aux: off("fdtable", "max_fds"),
              countSize: 4,
              stride: 8,
              sparse: true,
              max: 1 << 16,
            }],
          },
          { dedupe: true, ranges: [{ off: 0, len: 8 }], edges: [] },
        ],
        maxDepth: 8,
      });
      assertEquals([run.stop, run.faults], [StopReason.COMPLETE, 0]);
      const fdtable = records.find((r) => r.bytes.length === size("fdtable"))!;
      const view = new DataView(fdtable.bytes.buffer);
      const array = view.getBigUint64(off("fdtable", "fd"), true);
      const maxFds = BigInt(view.getUint32(off("fdtable", "max_fds"), true));
      const runs = records.filter((r) => r.addr >= array && r.addr < array + maxFds * 8n);
      const slot = (fd: number) =>
        runs.find((r) =>
          array + BigInt(fd) * 8n >= r.addr &&
          array + BigInt(fd) * 8n + 8n <= r.addr + BigInt(r.bytes.length)
        );
      for (const fd of open) {
        const r = slot(fd);
        assert(r, `fd ${fd}'s slot is copied`);
        const at = Number(array + BigInt(fd) * 8n - r.addr);
        const p = new DataView(r.bytes.buffer, r.bytes.byteOffset).getBigUint64(at, true);
        assert(p !== 0n, `fd ${fd}'s slot holds its file`);
      }
      for (const r of runs) assert(r.bytes.length <= 64, `a run of ${r.bytes.length} bytes`);
      assert(runs.length < open.length / 2, `${runs.length} runs for ${open.length} open fds`);
    } finally {
      for (const file of files) file.close();
    }
  },
);

privilegedTest(
  "walkPlan() visits only the objects whose own field passes a node's guard",
  async () => {
    using walker = await Walker.open({ ringBytes: 16 << 20 });
    const root = tasksOf(walker).root;
    const pid: PlanCondition = {
      kind: CondKind.EQ,
      off: off("task_struct", "pid"),
      size: 4,
      mask: 0xffff_ffffn,
      value: 1n,
    };
    const guarded = (guard: PlanCondition): Plan => {
      const plan = taskPlan(root, wholeTask());
      plan.nodes[1] = { ...plan.nodes[1], edges: [], guard };
      return plan;
    };
    const one = walk(walker, guarded(pid));
    assertEquals(one.run.stop, StopReason.COMPLETE);
    const tasks = addrsOfSize(one.records, size("task_struct"));
    assertEquals(tasks.length, 1, "only the task with pid 1");
    const view = new DataView(one.records.find((r) => r.addr === tasks[0])!.bytes.buffer);
    assertEquals(view.getInt32(off("task_struct", "pid"), true), 1);
    const others = walk(walker, guarded({ ...pid, kind: CondKind.NE }));
    const all = tasksOf(walker).tasks.length;
    const rest = addrsOfSize(others.records, size("task_struct")).length;
    assert(Math.abs(rest - (all - 1)) <= 5, `${rest} tasks but pid 1, of ${all}`);
  },
);
