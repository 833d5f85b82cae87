/**
 * The plan walker's node features on this machine's kernel: a node covered by another, a node's
 * guard, and a sparse array copied in runs.
 */

import { assert, assertEquals, privilegedTest } from "../tests/support/mod.ts";
import { CondKind, EdgeKind, type Plan, type PlanCondition, StopReason } from "../protocol/mod.ts";
import { Walker } from "./walker.ts";
import {
  addrsOfSize,
  fdTableNodes,
  off,
  type Rec,
  size,
  taskPlan,
  tasksOf,
  u64,
  walk,
  wholeTask,
} from "./_walk_fixtures.ts";
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
    // Covered, a pid is copied on its own only for a task the first walk did not reach (one
    // forked between the two walks of the list), never for one it copied whole.
    const copiedWhole = new Set(
      addrsOfSize(covered.records, size("task_struct")).map((t) => t + BigInt(pid)),
    );
    const alone = addrsOfSize(covered.records, 4);
    assertEquals(alone.filter((a) => copiedWhole.has(a)), [], "covered: a pid copied again");
    assert(alone.length <= 5, `covered: ${alone.length} pids copied on their own`);
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
          ...fdTableNodes(true),
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
  "walkPlan() tests the difference of two fields of an object (a DIFF guard)",
  async () => {
    using walker = await Walker.open({ ringBytes: 16 << 20 });
    const root = tasksOf(walker).root;
    // A task's real_parent is its parent unless a tracer adopted it: none is, here.
    const parents = (value: bigint): PlanCondition => ({
      kind: CondKind.DIFF,
      off: off("task_struct", "real_parent"),
      size: 8,
      mask: BigInt(off("task_struct", "parent")),
      value,
    });
    const guarded = (guard: PlanCondition): Plan => {
      const plan = taskPlan(root, wholeTask());
      plan.nodes[1] = { ...plan.nodes[1], edges: [], guard };
      return plan;
    };
    const before = new Set(tasksOf(walker).tasks);
    const same = walk(walker, guarded(parents(0n)));
    const after = new Set(tasksOf(walker).tasks);
    assertEquals(same.run.stop, StopReason.COMPLETE);
    const visited = new Set(addrsOfSize(same.records, size("task_struct")));
    const field = (task: bigint, name: string) =>
      Number(u64(walker, task + BigInt(off("task_struct", name))) & 0xffff_ffffn);
    // Threads are not on the tasks list the plan follows.
    const stable = [...before].filter((task) =>
      after.has(task) && field(task, "pid") === field(task, "tgid")
    );
    const missed = stable.filter((task) => !visited.has(task));
    assertEquals(missed.length, 0, `${missed.length} of ${stable.length} tasks not visited`);
    const apart = walk(walker, guarded(parents(8n)));
    assertEquals(apart.run.stop, StopReason.COMPLETE);
    assertEquals(addrsOfSize(apart.records, size("task_struct")), []);
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
    // The other guard, against the tasks read just before and just after it: every process on
    // both (that neither started nor exited meanwhile; threads are not on the tasks list the
    // plan follows) but pid 1's is visited, and every task visited has another pid.
    const before = new Set(tasksOf(walker).tasks);
    const others = walk(walker, guarded({ ...pid, kind: CondKind.NE }));
    const after = new Set(tasksOf(walker).tasks);
    assertEquals(others.run.stop, StopReason.COMPLETE);
    const rest = new Set(addrsOfSize(others.records, size("task_struct")));
    assert(!rest.has(tasks[0]), "pid 1's task passed the guard pid != 1");
    const field = (task: bigint, name: string) =>
      Number(u64(walker, task + BigInt(off("task_struct", name))) & 0xffff_ffffn);
    const stable = [...before].filter((task) =>
      after.has(task) && task !== tasks[0] && field(task, "pid") === field(task, "tgid")
    );
    const missed = stable.filter((task) => !rest.has(task));
    assertEquals(missed.length, 0, `${missed.length} of ${stable.length} tasks not visited`);
    for (const record of others.records) {
      if (!rest.has(record.addr) || record.bytes.length !== size("task_struct")) continue;
      const bytes = new DataView(record.bytes.buffer, record.bytes.byteOffset);
      assert(bytes.getInt32(off("task_struct", "pid"), true) !== 1, "a task with pid 1 visited");
    }
  },
);
