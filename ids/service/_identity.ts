/**
 * Who answered when a guest's agent connects: the same agent process of the same boot and kernel
 * as before (its connection was lost: a live migration moved the guest, or the network broke),
 * another agent process, another boot, or another kernel. What a guest's history may keep
 * follows from it: snapshots and scans of another boot or kernel describe memory that is gone.
 *
 * @module
 */

import type { KernelInfo, VmEventKind } from "./types.ts";
import { describeLoaded } from "../client/mod.ts";

/** What identifies the agent behind a connection. */
export interface AgentIdentity {
  kernel: KernelInfo;
  /** The agent's pid in the guest. */
  pid: number;
  /** Address of the agent's own task_struct: another process of the same pid has another. */
  anchor: bigint;
}

/** How a connection's agent relates to the one before. */
export interface IdentityChange {
  kind: VmEventKind;
  /** The event's message. */
  message: string;
  /** The guest's snapshots and scans describe another boot or kernel: drop them. */
  forget: boolean;
}

/** Compares the agent that answered at `address` with the one before (none: the first). */
export function compareIdentity(
  before: AgentIdentity | undefined,
  now: AgentIdentity,
  address: string,
): IdentityChange {
  const { kernel } = now;
  if (!before) {
    return {
      kind: "connected",
      message: `connected at ${address}: ${kernel.release}, ${describeLoaded(kernel.programs)}`,
      forget: false,
    };
  }
  if (before.kernel.btfHash !== kernel.btfHash) {
    return {
      kind: "kernel-changed",
      message: `kernel changed (BTF ${before.kernel.btfHash.slice(0, 12)} -> ${
        kernel.btfHash.slice(0, 12)
      }, ${kernel.release}): snapshots dropped`,
      forget: true,
    };
  }
  if (before.kernel.bootId !== kernel.bootId) {
    return {
      kind: "rebooted",
      message: `guest rebooted (boot id ${kernel.bootId}): snapshots dropped`,
      forget: true,
    };
  }
  if (before.pid !== now.pid || before.anchor !== now.anchor) {
    return {
      kind: "agent-restarted",
      message:
        `agent reconnected at ${address} after a restart (pid ${before.pid} -> ${now.pid}), ` +
        "same kernel and boot",
      forget: false,
    };
  }
  return {
    kind: "migrated",
    message: `the same agent (pid ${now.pid}) reconnected at ${address}, same kernel and boot ` +
      "(a live migration, or a broken connection)",
    forget: false,
  };
}
