/**
 * The plan interpreter against the real walker (bpf/plan_walk.h) on this machine's kernel, on
 * plans made for the walker's edge cases: budgets, a full stack, the step limit, dedupe
 * collisions, bad pointers, counts that wrap, sparse windows that fault, an rbtree. Each is
 * walked by both over the same memory (tests/plan_walks.ts) and compared record for record, with
 * the stop reason and the counts (see tests/plan_equivalence_test.ts for the views' plans).
 */

import { assert, assertEquals, privilegedTest } from "./support/mod.ts";
import { readKernel, UNLIMITED, WalkerPair } from "./plan_walks.ts";
import { type KAddr } from "../ids/memory/mod.ts";
import { listProcesses, planTasks } from "../ids/linux/mod.ts";
import {
  CondKind,
  EdgeKind,
  ElemKind,
  type Plan,
  type PlanEdge,
  StopReason,
} from "../protocol/mod.ts";
import {
  btf,
  build,
  kernelMemory,
  off,
  report,
  scanContext,
  SPACE,
  THREAD_SIZE,
  types,
  u64At,
  viewPlans,
} from "./plan_context.ts";

privilegedTest(
  "interpretPlan() stops where the walker stops: budgets, a full stack, the step limit",
  async () => {
    using pair = await WalkerPair.open();
    const ctx = await scanContext(pair.walker);
    const ps = build("whole", (b) => planTasks(b, types, ctx.initTask));
    const full = pair.agree(ps).walked.run;
    for (const maxObjects of [7, full.objects >> 1]) {
      const agreed = pair.agree(ps, { ...UNLIMITED, maxObjects });
      report(`ps, at most ${maxObjects} records`, agreed);
      assertEquals(agreed.walked.run.stop, StopReason.MAX_OBJECTS);
    }
    for (const maxBytes of [10_000, (full.bytes >> 1) + 1]) {
      const agreed = pair.agree(ps, { ...UNLIMITED, maxBytes });
      report(`ps, at most ${maxBytes} bytes`, agreed);
      assertEquals(agreed.walked.run.stop, StopReason.MAX_BYTES);
    }

    {
      using small = await WalkerPair.open({ stackItems: 3 });
      const agreed = small.agree(ps);
      report("ps, a stack of 3", agreed);
      assertEquals(agreed.walked.run.stop, StopReason.STACK_FULL);
    }
    {
      using ring = await WalkerPair.open({ ringBytes: 256 << 10 });
      const every = viewPlans(ctx).at(-1)![1];
      const agreed = ring.agree(build("whole", every));
      report("every section, a ring of 256 KiB", agreed);
      assertEquals(agreed.walked.run.stop, StopReason.COMPLETE);
      assert(agreed.walked.run.bytes > 256 << 10, "the walk was resumed");
    }

    // An empty list_head points to itself: its `prev`, taken as a list head, leads into a
    // cycle that never comes back. Each entry fans out to 8 * 8 objects whose 8 edges are
    // each pruned: the pruned count is nearly the step count, which the limit cuts.
    const ptraced = off("task_struct", "ptraced");
    const self = (target: number): PlanEdge => ({
      kind: EdgeKind.PTR,
      target,
      off: 0,
      delta: 0,
      max: 1,
    });
    const fan = (target: number) => Array.from({ length: 8 }, () => self(target));
    const steps = pair.agree({
      roots: [{ addr: SPACE.fromKAddr(ctx.anchor), node: 0 }],
      nodes: [
        {
          dedupe: false,
          ranges: [],
          edges: [{ kind: EdgeKind.LIST, target: 1, off: ptraced + 8, delta: 0, max: 2 ** 32 - 1 }],
        },
        { dedupe: false, ranges: [{ off: 0, len: 8 }], edges: fan(2) },
        { dedupe: false, ranges: [], edges: fan(3) },
        { dedupe: false, ranges: [], edges: fan(3) },
      ],
      maxDepth: 3,
    });
    report("a cycle, to the step limit", steps);
    assertEquals(steps.walked.run.stop, StopReason.STEPS);
  },
);

privilegedTest(
  "interpretPlan() dedupes as the walker's direct-mapped table does, collisions included",
  async () => {
    using pair = await WalkerPair.open();
    const ctx = await scanContext(pair.walker);
    const ps = build("whole", (b) => planTasks(b, types, ctx.initTask).thread());
    const exact = pair.agree(ps);
    report("ps --threads, 2^18 slots", exact);
    for (const dedupeEntries of [1, 64]) {
      using small = await WalkerPair.open({ dedupeEntries });
      const agreed = small.agree(ps);
      report(`ps --threads, ${dedupeEntries} slots`, agreed);
      assert(
        agreed.walked.run.objects > exact.walked.run.objects,
        `${dedupeEntries} slots: objects copied again`,
      );
    }
  },
);

privilegedTest(
  "interpretPlan() survives bad pointers and reads counts as the walker does",
  async () => {
    using pair = await WalkerPair.open();
    const ctx = await scanContext(pair.walker);
    const anchor = SPACE.fromKAddr(ctx.anchor);
    const comm = off("task_struct", "comm");
    const pid = off("task_struct", "pid");
    const stack = off("task_struct", "stack");
    const at = (kind: EdgeKind, field: number, more: Partial<PlanEdge> = {}): PlanEdge => ({
      kind,
      target: 1,
      off: field,
      delta: 0,
      max: 64,
      ...more,
    });
    const bad = pair.agree({
      roots: [
        { addr: anchor, node: 0 },
        { addr: 0xffff_8000_0000_0000n, node: 1 },
        { addr: 0x1000n, node: 1 },
        { addr: 0xffff_ffff_ffff_fff8n, node: 1 },
      ],
      nodes: [
        {
          dedupe: false,
          ranges: [{ off: pid, len: 4 }],
          edges: [
            // comm holds text: as a list head, as a pointer, as bytes to copy, as xarray slots.
            at(EdgeKind.LIST, comm),
            at(EdgeKind.PTR, comm, { delta: -0x7fff_ffff }),
            at(EdgeKind.BYTES, comm, { aux: pid, countSize: 4 }),
            at(EdgeKind.SLOTS, comm, { tagMask: 0, tagValue: 0, max: 2 }),
            // The task's first words: a few are kernel pointers, visited as they are.
            at(EdgeKind.SLOTS, 0, { tagMask: 0, tagValue: 0, max: 64, target: 2 }),
            at(EdgeKind.SLOTS, 0, { tagMask: 3, tagValue: 2, max: 64, target: 2, delta: 2 }),
            // A bitmap at the stack's base as long as comm's first letter, in bits, rounded up.
            at(EdgeKind.BYTES, stack, { aux: comm, countSize: 1, bits: true }),
          ],
        },
        {
          dedupe: false,
          guard: { kind: CondKind.NE, off: 8, size: 8, mask: 1n, value: 1n },
          ranges: [{ off: 0, len: 64 }],
          edges: [at(EdgeKind.PTR, 8), at(EdgeKind.HLIST, 16), at(EdgeKind.HNULLS, 24)],
        },
        { dedupe: true, ranges: [{ off: 0, len: 8 }], edges: [] },
      ],
      maxDepth: 8,
    });
    report("bad pointers", bad);
    assert(bad.walked.run.faults > 5, `${bad.walked.run.faults} faults`);
    const letter = readKernel(pair.walker, anchor + BigInt(comm), 1)![0];
    const base = await u64At(kernelMemory(pair.walker), ctx.anchor + stack);
    assert(letter % 8 !== 0, `comm starts with ${letter}, a multiple of 8`);
    assert(
      bad.walked.records.some((r) => r.addr === base && r.bytes.length === Math.ceil(letter / 8)),
      "the bitmap, its last byte partly used",
    );

    // init_task's RLIMIT_CPU is RLIM_INFINITY: as a count that is a mask, all ones plus one
    // wraps to no elements at all.
    const signal = SPACE.toKAddr(
      await u64At(kernelMemory(pair.walker), ctx.initTask + off("task_struct", "signal")),
    )!;
    const rlimit = off("signal_struct", "rlim");
    const infinity = readKernel(pair.walker, SPACE.fromKAddr(signal) + BigInt(rlimit), 8)!;
    assertEquals(new DataView(infinity.buffer).getBigUint64(0, true), 2n ** 64n - 1n);
    const mask = (countIsMask: boolean): Plan => ({
      roots: [{ addr: SPACE.fromKAddr(signal), node: 0 }],
      nodes: [
        {
          dedupe: false,
          ranges: [],
          edges: [{
            kind: EdgeKind.ARRAY,
            target: 1,
            off: off("signal_struct", "thread_head"),
            delta: 0,
            elem: ElemKind.PTR,
            aux: rlimit,
            countSize: 8,
            countIsMask,
            stride: 8,
            max: 16,
          }],
        },
        { dedupe: false, ranges: [], edges: [] },
      ],
      maxDepth: 4,
    });
    const wrapped = pair.agree(mask(true));
    report("a count of 2^64, wrapped", wrapped);
    assertEquals(wrapped.walked.run.objects, 0);
    const unwrapped = pair.agree(mask(false));
    report("a count of 2^64 - 1, clamped", unwrapped);
    assertEquals([unwrapped.walked.run.objects, unwrapped.walked.run.bytes], [1, 16 * 8]);
  },
);

privilegedTest(
  "interpretPlan() walks sparse arrays, windows and runs as the walker does",
  async () => {
    using pair = await WalkerPair.open();
    const ctx = await scanContext(pair.walker);
    const files = Array.from({ length: 12 }, () => Deno.openSync("/dev/null"));
    // A process asleep: its kernel stack holds still, and ends at a guard page.
    const sleeper = new Deno.Command("sleep", { args: ["60"] }).spawn();
    try {
      const memory = kernelMemory(pair.walker);
      const filesStruct = SPACE.toKAddr(
        await u64At(memory, ctx.anchor + off("task_struct", "files")),
      )!;
      const table = SPACE.toKAddr(await u64At(memory, filesStruct + off("files_struct", "fdt")))!;
      const maxFds = Number(await u64At(memory, table + off("fdtable", "max_fds")) & 0xffff_ffffn);
      // The fd array read with a stride of 16, or from its second element: every element read
      // is still one of the array's (`max` elements).
      const fdt = (stride: number, elemOffset: number, max: number): Plan => ({
        roots: [{ addr: SPACE.fromKAddr(ctx.anchor), node: 0 }],
        nodes: [
          {
            dedupe: false,
            ranges: [],
            edges: [{
              kind: EdgeKind.PTR,
              target: 1,
              off: off("task_struct", "files"),
              delta: 0,
              max: 1,
            }],
          },
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
            ranges: [{ off: 0, len: btf.struct("fdtable").size }],
            edges: [{
              kind: EdgeKind.ARRAY,
              target: 3,
              off: off("fdtable", "fd"),
              delta: 0,
              elem: ElemKind.PTR,
              aux: off("fdtable", "max_fds"),
              countSize: 4,
              stride,
              elemOffset,
              sparse: true,
              max,
            }],
          },
          { dedupe: true, ranges: [{ off: 0, len: 8 }], edges: [] },
        ],
        maxDepth: 8,
      });
      for (
        const [stride, elemOffset, max] of [[8, 0, maxFds], [16, 0, maxFds / 2], [8, 8, maxFds - 1]]
      ) {
        const agreed = pair.agree(fdt(stride, elemOffset, max));
        report(`fd array, stride ${stride}, element at ${elemOffset}`, agreed);
        assert(agreed.walked.records.length > files.length, "the open files");
      }

      let task: KAddr | undefined;
      for (let tries = 0; task === undefined && tries < 100; tries++) {
        const stat = await Deno.readTextFile(`/proc/${sleeper.pid}/stat`);
        const asleep = stat.includes(") S ") && stat.includes("(sleep)");
        const list = asleep ? await listProcesses(memory.again(), types, ctx.initTask) : undefined;
        const found = list?.processes.find((p) => p.pid === sleeper.pid);
        if (found) task = SPACE.parseKAddr(found.task);
        else await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert(task !== undefined, "the sleeping child's task");
      // Its stack as a sparse array of pointers, the count the stack's own address (clamped to
      // `max`), to its end, then 13 elements beyond: the windows that run into the guard page
      // are read an element at a time, and each of its elements faults.
      const stack = (max: number): Plan => ({
        roots: [{ addr: SPACE.fromKAddr(task), node: 0 }],
        nodes: [
          {
            dedupe: false,
            ranges: [],
            edges: [{
              kind: EdgeKind.ARRAY,
              target: 1,
              off: off("task_struct", "stack"),
              delta: 0,
              elem: ElemKind.PTR,
              aux: off("task_struct", "stack"),
              countSize: 8,
              stride: 8,
              sparse: true,
              max,
            }],
          },
          { dedupe: false, ranges: [], edges: [] },
        ],
        maxDepth: 4,
      });
      const within = pair.agree(stack(THREAD_SIZE / 8));
      report("a sleeping task's kernel stack", within);
      const beyond = pair.agree(stack(THREAD_SIZE / 8 + 13));
      report("the stack and 13 elements beyond", beyond);
      assertEquals(beyond.walked.run.faults - within.walked.run.faults, 13);
    } finally {
      for (const file of files) file.close();
      sleeper.kill();
      await sleeper.status;
    }
  },
);

privilegedTest("interpretPlan() walks a kernfs directory's rbtree as the walker does", async () => {
  using pair = await WalkerPair.open();
  const ctx = await scanContext(pair.walker);
  const memory = kernelMemory(pair.walker);
  const cssSet = SPACE.toKAddr(await u64At(memory, ctx.anchor + off("task_struct", "cgroups")))!;
  const cgroup = SPACE.toKAddr(await u64At(memory, cssSet + off("css_set", "dfl_cgrp")))!;
  const kn = SPACE.toKAddr(await u64At(memory, cgroup + off("cgroup", "kn")))!;
  const rb = off("kernfs_node", "rb");
  const child = (field: string): PlanEdge => ({
    kind: EdgeKind.PTR,
    target: 1,
    off: rb + off("rb_node", field),
    delta: rb,
    max: 1,
  });
  const name = off("kernfs_node", "name");
  const agreed = pair.agree({
    roots: [{ addr: SPACE.fromKAddr(kn), node: 0 }],
    nodes: [
      {
        dedupe: true,
        ranges: [{ off: 0, len: btf.struct("kernfs_node").size }],
        edges: [{ ...child("rb_left"), off: off("kernfs_node", "dir.children") }],
      },
      {
        dedupe: true,
        ranges: [{ off: 0, len: btf.struct("kernfs_node").size }],
        edges: [child("rb_left"), child("rb_right"), {
          kind: EdgeKind.BYTES,
          target: 0,
          off: name,
          delta: 0,
          aux: off("kernfs_node", "hash"),
          countSize: 1,
          max: 16,
        }],
      },
    ],
    maxDepth: 32,
  });
  report("a kernfs directory", agreed);
  assert(agreed.walked.records.length > 10, `${agreed.walked.records.length} records`);
});
