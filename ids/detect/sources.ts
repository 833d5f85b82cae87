/**
 * The sources of the sections the Linux views provide: processes (three views) and sockets.
 *
 * @module
 */

import {
  findInitPidNamespace,
  listHeldSockets,
  listProcesses,
  listThreads,
  type PidTypes,
  planHeldSockets,
  planProcessViews,
  planTasks,
  type ProcessList,
  readProcessViews,
  resolvePidTypes,
  resolveSocketTypes,
} from "../linux/mod.ts";
import type { GuestMemory, KAddr } from "../memory/mod.ts";
import type { ScanContext, SharedNodes, Source } from "./types.ts";
import type { PlanBuilder } from "../kernel/mod.ts";

/** Per-kernel values the sources resolve once, kept with the context they came from. */
const resolved = new WeakMap<ScanContext, Map<string, unknown>>();

/** Resolves `key` once per context (a kernel's types, an anchor found by reading memory). */
export function once<T>(ctx: ScanContext, key: string, make: () => T): T {
  let map = resolved.get(ctx);
  if (!map) resolved.set(ctx, map = new Map());
  if (!map.has(key)) map.set(key, make());
  return map.get(key) as T;
}

/** The shared task walk of one plan, made on first use. */
export function sharedNodes(b: PlanBuilder, ctx: ScanContext): SharedNodes {
  let tasks: ReturnType<typeof planTasks> | undefined;
  return { tasks: () => tasks ??= planTasks(b, ctx.types, ctx.initTask) };
}

/** The task list of a snapshot, read once for every section that walks it. */
const lists = new WeakMap<GuestMemory, Promise<ProcessList>>();
function taskList(memory: GuestMemory, ctx: ScanContext): Promise<ProcessList> {
  let list = lists.get(memory);
  if (!list) lists.set(memory, list = listProcesses(memory, ctx.types, ctx.initTask));
  return list;
}

function pidTypes(ctx: ScanContext): PidTypes {
  return once(ctx, "pid-types", () => resolvePidTypes(ctx.btf));
}

/** The init pid namespace, which the context's `prepare` found. */
function pidNamespace(ctx: ScanContext): KAddr {
  const ns = ctx.anchors.get("init_pid_ns");
  if (ns === undefined) {
    throw new Error("Cannot plan the pid IDR: the init pid namespace is unknown");
  }
  return ns;
}

export const processesSource: Source<"processes"> = {
  name: "processes",
  symbols: [],
  async prepare(ctx, memory) {
    return {
      init_pid_ns: await findInitPidNamespace(memory, ctx.types, pidTypes(ctx), ctx.initTask),
    };
  },
  plan(b, ctx, shared) {
    planProcessViews(b, ctx.types, pidTypes(ctx), shared.tasks(), pidNamespace(ctx));
  },
  async read(memory, ctx, confirm) {
    const value = await readProcessViews(
      memory,
      ctx.types,
      pidTypes(ctx),
      ctx.initTask,
      pidNamespace(ctx),
      confirm,
      { list: await taskList(memory, ctx) },
    );
    // Every process's threads, for `ps --threads` and the API's `threads=true`.
    const threads = await listThreads(memory, ctx.types, value.processes);
    const cut = Object.entries(value.views).filter(([, w]) => w.truncated)
      .map(([v, w]) => `${v}: ${w.reason}`);
    if (threads.length) cut.push(`threads: ${threads.slice(0, 5).join("; ")}`);
    return {
      supported: true,
      value,
      truncated: cut.length > 0,
      ...(cut.length ? { reason: cut.join("; ") } : {}),
    };
  },
};

/**
 * The TCP and UDP sockets processes hold, through their fd tables (ids/linux/sockets.ts's
 * listHeldSockets): no hash table is read, so a socket unlinked from them is still seen.
 */
export const socketsSource: Source<"sockets"> = {
  name: "sockets",
  symbols: [],
  plan(b, ctx, shared) {
    const types = once(ctx, "socket-types", () => resolveSocketTypes(ctx.btf));
    planHeldSockets(b, types, shared.tasks());
  },
  async read(memory, ctx) {
    const types = once(ctx, "socket-types", () => resolveSocketTypes(ctx.btf));
    const list = await listHeldSockets(memory, ctx.types, types, ctx.initTask, {
      list: await taskList(memory, ctx),
    });
    return {
      supported: true,
      value: list.sockets,
      truncated: list.truncated,
      ...(list.reason ? { reason: list.reason } : {}),
    };
  },
};
