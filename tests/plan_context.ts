/**
 * What the plan-equivalence tests share: this machine's kernel types, its memory read through
 * the walker, the scan context the views plan from (stand-ins where this kernel's kallsyms gives
 * no data symbol), every plan the views build, and how a comparison is reported.
 *
 * @module
 */

import { type Agreement, readKernel } from "./plan_walks.ts";
import type { Walker } from "../agent/mod.ts";
import { parseBtf } from "../ids/btf/mod.ts";
import { type ScanContext, sharedNodes, type Source, SOURCES } from "../ids/detect/mod.ts";
import { type CopyMode, PlanBuilder } from "../ids/kernel/mod.ts";
import {
  findInitTask,
  planFiles,
  planModules,
  planSockets,
  planTasks,
  resolveFileTypes,
  resolveKernelTypes,
  resolveModuleTypes,
  resolveSocketTypes,
} from "../ids/linux/mod.ts";
import { AddressSpace, type KAddr, MemoryCache, RemoteMemory } from "../ids/memory/mod.ts";
import { type Plan, StopReason } from "../protocol/mod.ts";

/** This machine's kernel: 4-level paging. */
export const SPACE = AddressSpace.FOUR_LEVEL;

export const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
export const types = resolveKernelTypes(btf);
export const off = (struct: string, path: string) => btf.field(struct, path).offset;
export const MODES: readonly CopyMode[] = ["whole", "selective"];
/** x86-64's kernel stack (THREAD_SIZE), followed by a vmalloc guard page (CONFIG_VMAP_STACK). */
export const THREAD_SIZE = 16384;

/** Guest memory read through the walker's READ, page by page, as a session reads it. */
export function kernelMemory(walker: Walker): RemoteMemory {
  return new RemoteMemory(new MemoryCache(), (addr, len) => {
    const bytes = readKernel(walker, SPACE.fromKAddr(addr), len);
    return bytes ? Promise.resolve(bytes) : Promise.reject(new Error("unreadable"));
  });
}

export async function u64At(memory: RemoteMemory, at: KAddr): Promise<bigint> {
  const bytes = await memory.read(at, 8);
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
}

/**
 * What the views start at that this kernel does not give, each at real memory: the task list
 * walked as the module list and as the module kset's list, the pid IDR walked as the program
 * IDR, and the kernel's read-only data for the tables and lists of kernel image symbols.
 */
export function standIns(initTask: KAddr, pidNs: KAddr): Map<string, KAddr> {
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
export function kallsyms(names: readonly string[]): Map<string, KAddr> {
  const wanted = new Set(names);
  const found = new Map<string, KAddr>();
  for (const line of Deno.readTextFileSync("/proc/kallsyms").split("\n")) {
    const [addr, , name] = line.split(" ");
    const at = addr ? SPACE.toKAddr(BigInt("0x" + addr)) : undefined;
    if (wanted.has(name) && at !== undefined && !found.has(name)) found.set(name, at);
  }
  return found;
}

export const ALL_SOURCES = Object.values(SOURCES) as Source<keyof typeof SOURCES>[];

/** The scan context of a check of this machine, as `ids/detect/check.ts` makes it. */
export async function scanContext(walker: Walker): Promise<ScanContext> {
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
export function viewPlans(ctx: ScanContext): [string, (b: PlanBuilder) => void][] {
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

export function build(mode: CopyMode, plan: (b: PlanBuilder) => void): Plan {
  const b = new PlanBuilder(mode);
  plan(b);
  return b.build();
}

/** One line of what a comparison walked, for the test's output. */
export function report(name: string, a: Agreement): void {
  const r = a.walked.run;
  const stop = Object.entries(StopReason).find(([, v]) => v === r.stop)![0].toLowerCase();
  console.log(
    `${name.padEnd(34)} ${stop.padEnd(11)} ${String(r.objects).padStart(6)} records ` +
      `${String(r.bytes).padStart(9)} bytes ${String(r.faults).padStart(4)} faults ` +
      `${String(r.pruned).padStart(7)} pruned ${String(a.live).padStart(5)} live reads` +
      (a.attempts > 1 ? ` (agreed on walk ${a.attempts})` : ""),
  );
}
