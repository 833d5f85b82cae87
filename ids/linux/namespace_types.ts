/**
 * The kernel structures of a process's namespaces and cgroup (namespaces.ts), resolved once per
 * guest kernel. A kernel without the cgroup fields is not refused: its cgroup types say why it
 * has none, and the views leave cgroups out.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import {
  bytesLayout,
  firstPtr,
  LayoutError,
  offsetOf,
  ptr,
  resolveLayout,
  sint,
  uint,
} from "../kernel/mod.ts";

/** Bytes copied of a kernfs node's name: NAME_MAX and its NUL. */
export const NAME_BYTES = 256;

function resolveCgroupTypes(btf: Btf) {
  return {
    /** The task's css_set, in a layout of its own: a kernel without cgroups lacks the field. */
    task: resolveLayout(btf, "task_struct", { cgroups: ptr("cgroups") }),
    cssSet: resolveLayout(btf, "css_set", { dfl: ptr("dfl_cgrp") }),
    cgroup: resolveLayout(btf, "cgroup", { kn: ptr("kn"), root: ptr("root") }),
    root: resolveLayout(btf, "cgroup_root", { kfRoot: ptr("kf_root") }),
    kernfsRoot: resolveLayout(btf, "kernfs_root", { supersNext: ptr("supers.next") }),
    supersOffset: offsetOf(btf, "kernfs_root", "supers"),
    /** `parent` up to Linux 6.14, `__parent` (RCU-managed) since. */
    kernfsNode: resolveLayout(btf, "kernfs_node", {
      parent: ptr("__parent", "parent"),
      name: ptr("name"),
    }),
    name: bytesLayout("kernfs_node name", NAME_BYTES),
  };
}

/** The structures of a process's cgroup, or why this kernel has none the views can read. */
export type CgroupTypes =
  | ({ supported: true } & ReturnType<typeof resolveCgroupTypes>)
  | { supported: false; reason: string };

/**
 * Resolves the namespace and cgroup structures.
 * @throws {LayoutError} when the kernel lacks a pid or network namespace field; a kernel
 * without the cgroup fields gets `cgroup.supported: false` instead.
 */
export function resolveNamespaceTypes(btf: Btf) {
  let cgroup: CgroupTypes;
  try {
    cgroup = { supported: true, ...resolveCgroupTypes(btf) };
  } catch (error) {
    if (!(error instanceof LayoutError)) throw error;
    cgroup = { supported: false, reason: `this kernel has no cgroups: ${error.message}` };
  }
  const upid = resolveLayout(btf, "upid", { nr: sint("nr"), ns: ptr("ns") });
  return {
    /** `tasks` decodes to tasks[PIDTYPE_PID].first (pids.ts). */
    pid: resolveLayout(btf, "pid", { level: uint("level"), tasks: firstPtr("tasks") }),
    upid,
    /** `numbers[]`, one `struct upid` per level, trails struct pid at this offset. */
    numbersOffset: offsetOf(btf, "pid", "numbers"),
    upidNsOffset: upid.fields.find((f) => f.name === "ns")!.offset,
    pidNs: resolveLayout(btf, "pid_namespace", { inum: uint("ns.inum") }),
    nsproxy: resolveLayout(btf, "nsproxy", { netNs: ptr("net_ns") }),
    net: resolveLayout(btf, "net", { inum: uint("ns.inum") }),
    cgroup,
  };
}

/** The resolved namespace structures of one guest kernel. */
export type NamespaceTypes = ReturnType<typeof resolveNamespaceTypes>;
