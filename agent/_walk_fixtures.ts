/**
 * What the walker's plan tests share: this kernel's BTF, plans built by hand from it, and a walk
 * that drains every record.
 *
 * @module
 */

import { assertEquals } from "../tests/support/mod.ts";
import { type Btf, parseBtf } from "../ids/btf/mod.ts";
import {
  EdgeKind,
  ElemKind,
  encodePlan,
  type Plan,
  type PlanNode,
  StopReason,
} from "../protocol/mod.ts";
import { type RunResult, Walker, type WalkLimits } from "./walker.ts";

export const LIMITS: WalkLimits = { maxObjects: 1 << 20, maxBytes: 64 << 20 };
export const ALL = 0xffff_ffff;

export let btf: Btf | undefined;
export function kernel(): Btf {
  btf ??= parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
  return btf;
}
export function off(struct: string, path: string): number {
  return kernel().field(struct, path).offset;
}
export function size(struct: string): number {
  return kernel().struct(struct).size;
}

export interface Rec {
  addr: bigint;
  bytes: Uint8Array;
}

export function walk(
  walker: Walker,
  plan: Plan,
  limits = LIMITS,
): { run: RunResult; records: Rec[] } {
  const run = walker.walkPlan(encodePlan(plan), limits);
  const records: Rec[] = [];
  walker.drain((addr, bytes) => records.push({ addr, bytes: bytes.slice() }) > 0);
  assertEquals(records.length, run.objects);
  return { run, records };
}

export function addrsOfSize(records: Rec[], len: number): bigint[] {
  return records.filter((r) => r.bytes.length === len).map((r) => r.addr);
}

export function u64(walker: Walker, addr: bigint): bigint {
  walker.read(addr, 8);
  let value = 0n;
  walker.drain((_, bytes) => {
    value = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    return true;
  });
  return value;
}

export const ptr = (target: number, field: string) => ({
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
export function taskPlan(initTask: bigint, taskRanges: PlanNode["ranges"], maxDepth = 64): Plan {
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

export function wholeTask(): PlanNode["ranges"] {
  return [{ off: 0, len: size("task_struct") }];
}

export function selectiveTask(): PlanNode["ranges"] {
  return [
    { off: off("task_struct", "pid"), len: 4 },
    { off: off("task_struct", "comm"), len: 16 },
    { off: off("task_struct", "tasks"), len: 16 },
  ];
}

/**
 * Nodes 0-2 of a walk of the fd table from the walker's own task (the root at node 0): the task,
 * its files_struct, its fdtable (copied whole) and the fd array, each file a node 3.
 */
export function fdTableNodes(sparse: boolean): PlanNode[] {
  return [
    { dedupe: false, ranges: [], edges: [ptr(1, "files")] },
    {
      dedupe: false,
      ranges: [],
      edges: [{ kind: EdgeKind.PTR, target: 2, off: off("files_struct", "fdt"), delta: 0, max: 1 }],
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
        sparse,
        max: 1 << 16,
      }],
    },
  ];
}

export function tasksOf(walker: Walker): { root: bigint; tasks: bigint[] } {
  const run = walker.walkTasks(LIMITS);
  const records: Rec[] = [];
  walker.drain((addr, bytes) => records.push({ addr, bytes }) > 0);
  assertEquals(run.stop, StopReason.COMPLETE);
  return { root: run.root, tasks: addrsOfSize(records, size("task_struct")) };
}

export const sorted = (xs: bigint[]) => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
