/**
 * The plan interpreter (ids/kernel/plan_interpreter.ts), over which the views' unit tests prove
 * their plans, against the real walker (bpf/plan_walk.h) on this machine's kernel: every plan
 * the views build, whole and selective, and plans made for the walker's edge cases (budgets,
 * stack, step limit, dedupe collisions, bad pointers, sparse windows that fault, a count that
 * wraps), each walked by both over the same memory (tests/plan_walks.ts) and compared record
 * for record, with the stop reason and the counts.
 *
 * This kernel has no loadable modules, and its kallsyms gives no data symbols: the plans of the
 * views that start at one are rooted at a stand-in, real memory of this kernel
 * ({@linkcode standIns}). The walker interprets nothing, so a plan's steps are the view's
 * whatever the memory holds.
 */

import { assert, assertEquals } from "./assert.ts";
import { privilegedTest } from "./privileged.ts";
import { type Agreement, readKernel, UNLIMITED, WalkerPair } from "./plan_walks.ts";
import type { Walker } from "../agent/walker.ts";
import { parseBtf } from "../ids/btf/mod.ts";
import { SOURCES } from "../ids/detect/registry.ts";
import { sharedNodes } from "../ids/detect/sources.ts";
import type { ScanContext, Source } from "../ids/detect/types.ts";
import { type CopyMode, PlanBuilder } from "../ids/kernel/plan.ts";
import { resolveKernelTypes } from "../ids/kernel/types.ts";
import { AddressSpace, type KAddr } from "../ids/memory/address.ts";
import { MemoryCache } from "../ids/memory/cache.ts";
import { RemoteMemory } from "../ids/memory/guest_memory.ts";
import { planFiles, resolveFileTypes } from "../ids/linux/files.ts";
import { planModules, resolveModuleTypes } from "../ids/linux/modules.ts";
import { findInitTask, listProcesses, planTasks } from "../ids/linux/processes.ts";
import { planSockets, resolveSocketTypes } from "../ids/linux/sockets.ts";
import {
  CondKind,
  EdgeKind,
  ElemKind,
  type Plan,
  type PlanEdge,
  StopReason,
} from "../protocol/mod.ts";

/** This machine's kernel: 4-level paging. */
const SPACE = AddressSpace.FOUR_LEVEL;

const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const types = resolveKernelTypes(btf);
const off = (struct: string, path: string) => btf.field(struct, path).offset;
const MODES: readonly CopyMode[] = ["whole", "selective"];
/** x86-64's kernel stack (THREAD_SIZE), followed by a vmalloc guard page (CONFIG_VMAP_STACK). */
const THREAD_SIZE = 16384;

/** Guest memory read through the walker's READ, page by page, as a session reads it. */
function kernelMemory(walker: Walker): RemoteMemory {
  return new RemoteMemory(new MemoryCache(), (addr, len) => {
    const bytes = readKernel(walker, SPACE.fromKAddr(addr), len);
    return bytes ? Promise.resolve(bytes) : Promise.reject(new Error("unreadable"));
  });
}

async function u64At(memory: RemoteMemory, at: KAddr): Promise<bigint> {
  const bytes = await memory.read(at, 8);
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
}

/**
 * What the views start at that this kernel does not give, each at real memory: the task list
 * walked as the module list and as the module kset's list, the pid IDR walked as the program
 * IDR, and the kernel's read-only data for the tables and lists of kernel image symbols.
 */
function standIns(initTask: KAddr, pidNs: KAddr): Map<string, KAddr> {
  const tasks = initTask + types.tasksOffset;
  const rodata = kallsyms(["__start_rodata"]).get("__start_rodata")!;
  const image = [
    "sys_call_table",
    "ia32_sys_call_table",
    "idt_table",
    "tcp4_seq_ops",
    "udp_seq_ops",
    "tcp6_seq_ops",
    "udp6_seq_ops",
    "proc_root",
    "ftrace_ops_list",
    "ftrace_list_end",
  ];
  return new Map<string, KAddr>([
    ["modules", tasks],
    // init_task's tasks.prev points to the last task's: a pointer to a list, as module_kset is.
    ["module_kset", tasks + 8],
    ["prog_idr", pidNs + off("pid_namespace", "idr")],
    ...image.map((name, i) => [name, rodata + i * 0x2000] as [string, KAddr]),
  ]);
}

/** The addresses /proc/kallsyms gives of `names` (none for a name it lacks). */
function kallsyms(names: readonly string[]): Map<string, KAddr> {
  const wanted = new Set(names);
  const found = new Map<string, KAddr>();
  for (const line of Deno.readTextFileSync("/proc/kallsyms").split("\n")) {
    const [addr, , name] = line.split(" ");
    const at = addr ? SPACE.toKAddr(BigInt("0x" + addr)) : undefined;
    if (wanted.has(name) && at !== undefined && !found.has(name)) found.set(name, at);
  }
  return found;
}

const ALL_SOURCES = Object.values(SOURCES) as Source<keyof typeof SOURCES>[];

/** The scan context of a check of this machine, as `ids/detect/check.ts` makes it. */
async function scanContext(walker: Walker): Promise<ScanContext> {
  const memory = kernelMemory(walker);
  const anchor = SPACE.toKAddr(walker.anchor())!;
  const initTask = await findInitTask(memory, types, anchor);
  const symbols = new Map<string, KAddr | undefined>(
    kallsyms(ALL_SOURCES.flatMap((s) => s.symbols)),
  );
  const anchors = new Map<string, KAddr>();
  const ctx: ScanContext = {
    btf,
    types,
    initTask,
    anchor,
    space: SPACE,
    agentPid: Deno.pid,
    loaded: [],
    symbols,
    features: ["modules"],
    anchors,
  };
  for (const source of ALL_SOURCES) {
    for (const [name, at] of Object.entries(await source.prepare?.(ctx, memory) ?? {})) {
      anchors.set(name, at);
    }
  }
  for (const [name, at] of standIns(initTask, anchors.get("init_pid_ns")!)) {
    if (symbols.get(name) === undefined) symbols.set(name, at);
  }
  return ctx;
}

/** Every plan the views build: the CLI's and the API's, and each source of a check. */
function viewPlans(ctx: ScanContext): [string, (b: PlanBuilder) => void][] {
  const sockets = resolveSocketTypes(btf);
  const files = resolveFileTypes(btf);
  const tasks = (b: PlanBuilder) => planTasks(b, types, ctx.initTask);
  const udpTable = sockets.net.fields.some((f) => f.name === "udpTable")
    ? undefined
    : ctx.symbols.get("udp_table");
  return [
    ["ps", tasks],
    ["ps --threads", (b) => tasks(b).thread()],
    ["ss", (b) => planSockets(b, sockets, tasks(b), { udpTable })],
    ["lsof", (b) => planFiles(b, files, tasks(b))],
    ["lsof -p", (b) => planFiles(b, files, tasks(b), { pid: Deno.pid })],
    ["modules", (b) => planModules(b, resolveModuleTypes(btf), ctx.symbols.get("modules")!)],
    ...ALL_SOURCES.map((source): [string, (b: PlanBuilder) => void] => [
      `check: ${source.name}`,
      (b) => source.plan(b, ctx, sharedNodes(b, ctx)),
    ]),
    ["check: every section", (b) => {
      const shared = sharedNodes(b, ctx);
      for (const source of ALL_SOURCES) source.plan(b, ctx, shared);
    }],
  ];
}

function build(mode: CopyMode, plan: (b: PlanBuilder) => void): Plan {
  const b = new PlanBuilder(mode);
  plan(b);
  return b.build();
}

/** One line of what a comparison walked, for the test's output. */
function report(name: string, a: Agreement): void {
  const r = a.walked.run;
  const stop = Object.entries(StopReason).find(([, v]) => v === r.stop)![0].toLowerCase();
  console.log(
    `${name.padEnd(34)} ${stop.padEnd(11)} ${String(r.objects).padStart(6)} records ` +
      `${String(r.bytes).padStart(9)} bytes ${String(r.faults).padStart(4)} faults ` +
      `${String(r.pruned).padStart(7)} pruned ${String(a.live).padStart(5)} live reads` +
      (a.attempts > 1 ? ` (agreed on walk ${a.attempts})` : ""),
  );
}

privilegedTest("interpretPlan() copies what the walker copies for every view's plan", async () => {
  using pair = await WalkerPair.open();
  const ctx = await scanContext(pair.walker);
  for (const [name, plan] of viewPlans(ctx)) {
    for (const mode of MODES) {
      const built = build(mode, plan);
      assert(built.roots.length > 0, `${name} (${mode}) plans nothing`);
      const agreed = pair.agree(built);
      report(`${name} (${mode})`, agreed);
      assertEquals(agreed.walked.run.stop, StopReason.COMPLETE, `${name} (${mode})`);
      assert(agreed.walked.records.length > 0, `${name} (${mode}) copies nothing`);
    }
  }
});

privilegedTest(
  "interpretPlan() cuts lists, chains, arrays, slots and bytes at their max, edges at the depth",
  async () => {
    using pair = await WalkerPair.open();
    const ctx = await scanContext(pair.walker);
    const every = viewPlans(ctx).at(-1)![1];
    for (const mode of MODES) {
      const plan = build(mode, every);
      for (const max of [1, 3]) {
        const cut: Plan = {
          ...plan,
          nodes: plan.nodes.map((n) => ({
            ...n,
            edges: n.edges.map((e) => ({ ...e, max: Math.min(e.max, max) })),
          })),
        };
        report(`every section (${mode}), max ${max}`, pair.agree(cut));
      }
      for (const maxDepth of [1, 4]) {
        const agreed = pair.agree({ ...plan, maxDepth });
        report(`every section (${mode}), depth ${maxDepth}`, agreed);
        assert(agreed.walked.run.pruned > 0, `depth ${maxDepth}: pruned`);
      }
    }
  },
);

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
