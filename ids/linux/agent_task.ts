/**
 * The agent's own process as the guest kernel holds it: its task (the anchor every walk starts
 * from), whether it is alive, and whether something traces it (`task->ptrace`, and the tracer,
 * which `task->parent` points to while `real_parent` still points to the agent's parent). A
 * tracer can read and change the agent's memory, and so what it answers: the IDS checks from
 * outside, at every scan, that nothing does.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import {
  peekStruct,
  type PlanBuilder,
  ptr,
  readStruct,
  resolveLayout,
  sint,
  str,
  uint,
} from "../kernel/mod.ts";
import type { GuestMemory, KAddr } from "../memory/mod.ts";
import type { Source } from "../detect/mod.ts";

/** A task that has begun to exit (`PF_EXITING`). */
const PF_EXITING = 0x4;

/** Resolves the task fields the agent's check reads. @throws {LayoutError} naming a missing one. */
export function resolveAgentTaskTypes(btf: Btf) {
  return resolveLayout(btf, "task_struct", {
    pid: sint("pid"),
    tgid: sint("tgid"),
    comm: str("comm"),
    exitState: sint("exit_state"),
    flags: uint("flags"),
    /** Non-zero while traced (PT_PTRACED, PT_SEIZED and option bits). */
    ptrace: uint("ptrace"),
    parent: ptr("parent"),
    realParent: ptr("real_parent"),
  });
}

type AgentTaskLayout = ReturnType<typeof resolveAgentTaskTypes>;

/** A process as the agent's check names it. */
export interface TaskName {
  pid: number;
  comm: string;
  task: string;
}

/** The `agent` section of a scan. */
export interface AgentTask extends TaskName {
  tgid: number;
  /** The pid the agent gave in its HELLO. */
  claimedPid: number;
  /** Neither exiting (`PF_EXITING`) nor dead (`exit_state`). */
  alive: boolean;
  /** `task->ptrace`: 0 unless traced. */
  ptrace: number;
  /** The tracer, when traced: `task->parent` (which is not `real_parent` then). */
  tracer?: TaskName;
  /** The programs the agent said it loaded for this session (none: it serves its default). */
  loaded: { name: string; tag: string }[];
}

/** Adds the agent's task and its parent to `b`'s plan. */
export function planAgentTask(b: PlanBuilder, layout: AgentTaskLayout, anchor: KAddr): void {
  const task = b.node(layout);
  const parent = b.node(layout);
  b.root(anchor, task);
  b.ptr(task, "parent", parent);
}

async function readTask(mem: GuestMemory, at: KAddr, layout: AgentTaskLayout) {
  return peekStruct(mem, at, layout) ?? await readStruct(mem, at, layout);
}

/** Reads the agent's task at `anchor`, and its tracer when it has one. */
export async function readAgentTask(
  mem: GuestMemory,
  layout: AgentTaskLayout,
  anchor: KAddr,
  claimedPid: number,
  loaded: readonly { name: string; tag: string }[] = [],
): Promise<AgentTask> {
  const t = await readTask(mem, anchor, layout);
  const out: AgentTask = {
    pid: t.pid,
    tgid: t.tgid,
    comm: t.comm,
    task: mem.space.hex(anchor),
    claimedPid,
    alive: t.exitState === 0 && (t.flags & PF_EXITING) === 0,
    ptrace: t.ptrace,
    loaded: [...loaded],
  };
  if (t.ptrace !== 0 && typeof t.parent === "number") {
    const parent = await readTask(mem, t.parent, layout).catch(() => undefined);
    out.tracer = parent
      ? { pid: parent.pid, comm: parent.comm, task: mem.space.hex(t.parent) }
      : { pid: -1, comm: "", task: mem.space.hex(t.parent) };
  }
  return out;
}

const layouts = new WeakMap<Btf, AgentTaskLayout | Error>();

function layoutOf(btf: Btf): AgentTaskLayout | Error {
  let layout = layouts.get(btf);
  if (!layout) {
    try {
      layout = resolveAgentTaskTypes(btf);
    } catch (error) {
      layout = error as Error;
    }
    layouts.set(btf, layout);
  }
  return layout;
}

/** The `agent` section: the agent's own task, read from the anchor at every scan. */
export const agentSource: Source<"agent"> = {
  name: "agent",
  symbols: [],
  plan(b, ctx) {
    const layout = layoutOf(ctx.btf);
    if (!(layout instanceof Error)) planAgentTask(b, layout, ctx.anchor);
  },
  async read(memory, ctx) {
    const layout = layoutOf(ctx.btf);
    if (layout instanceof Error) {
      return { supported: false, reason: `not supported by this kernel: ${layout.message}` };
    }
    try {
      const value = await readAgentTask(memory, layout, ctx.anchor, ctx.agentPid, ctx.loaded);
      return { supported: true, value, truncated: false };
    } catch (error) {
      return { supported: false, reason: `the agent's task: ${(error as Error).message}` };
    }
  },
};
