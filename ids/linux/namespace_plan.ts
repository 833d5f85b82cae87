/**
 * What a snapshot copies of each process's namespaces and cgroup, in its one round trip, so that
 * `NamespaceReader` (namespaces.ts) decodes them without a read of its own: struct pid with its
 * first {@linkcode PLANNED_LEVELS} levels (deeper nesting is read on demand), the pid namespace
 * of its last level (an edge per level, each taken only at that `level`), nsproxy and the net,
 * the css_set, the cgroup, its kernfs nodes up to the root, their names, and the hierarchy's
 * root.
 *
 * @module
 */

import type { NodeRef, PlanBuilder } from "../kernel/mod.ts";
import type { NamespaceTypes } from "./namespace_types.ts";

/** Levels of `struct pid`'s `numbers[]` a plan copies: the initial namespace and three nested. */
export const PLANNED_LEVELS = 4;

/** The bytes of the task structure beyond `task`'s fields that {@linkcode planNamespaces} reads. */
export function namespaceTaskRanges(ns: NamespaceTypes): { off: number; len: number }[] {
  return ns.cgroup.supported ? [...ns.cgroup.task.ranges].map(shift(ns.cgroup.task.start)) : [];
}

const shift = (by: number) => (r: { off: number; len: number }) => ({
  off: r.off + by,
  len: r.len,
});

/**
 * Adds to `b`, from each `task`, what `NamespaceReader` (namespaces.ts) reads. Returns the node
 * of the tasks' `struct pid`s, which the pid IDR's walk (pids.ts) shares.
 */
export function planNamespaces(
  b: PlanBuilder,
  ns: NamespaceTypes,
  task: NodeRef,
): NodeRef<NamespaceTypes["pid"]> {
  const pid = b.node(ns.pid, {
    extra: [{ off: ns.numbersOffset, len: PLANNED_LEVELS * ns.upid.size }],
  });
  b.ptr(task, "threadPid", pid);
  const pidNs = b.node(ns.pidNs, { fieldsOnly: true });
  for (let level = 0; level < PLANNED_LEVELS; level++) {
    const off = ns.numbersOffset + level * ns.upid.size + ns.upidNsOffset;
    b.ptrAt(pid, off, pidNs, 0, { when: { field: "level", inSet: 1n << BigInt(level) } });
  }
  const nsproxy = b.node(ns.nsproxy);
  const net = b.node(ns.net, { fieldsOnly: true });
  b.ptr(task, "nsproxy", nsproxy);
  b.ptr(nsproxy, "netNs", net);
  const cg = ns.cgroup;
  if (cg.supported) {
    const cssSet = b.node(cg.cssSet, { fieldsOnly: true });
    const cgroup = b.node(cg.cgroup, { fieldsOnly: true });
    const root = b.node(cg.root, { fieldsOnly: true });
    const kernfsRoot = b.node(cg.kernfsRoot, { fieldsOnly: true });
    const kn = b.node(cg.kernfsNode, { fieldsOnly: true });
    const name = b.node(cg.name);
    b.ptrAt(task, cg.task.fields[0].offset, cssSet);
    b.ptr(cssSet, "dfl", cgroup);
    b.ptr(cgroup, "root", root);
    b.ptr(root, "kfRoot", kernfsRoot);
    b.ptr(cgroup, "kn", kn);
    b.ptr(kn, "name", name);
    b.ptr(kn, "parent", kn);
  }
  return pid;
}
