/**
 * The kernel structures the Linux views read, resolved once per guest kernel from its BTF.
 * A kernel missing one of them fails here, at start-up, with the struct and field named.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import { hexInt, ptr, resolveLayout, sint, str, uint } from "../kernel/mod.ts";
import { resolveNamespaceTypes } from "./namespace_types.ts";

/** Resolves every layout the views use. @throws {LayoutError} naming what is missing. */
export function resolveKernelTypes(btf: Btf) {
  return {
    task: resolveLayout(btf, "task_struct", {
      pid: sint("pid"),
      tgid: sint("tgid"),
      state: uint("__state", "state"),
      exitState: sint("exit_state"),
      flags: uint("flags"),
      comm: str("comm"),
      realParent: ptr("real_parent"),
      realCred: ptr("real_cred"),
      tasksNext: ptr("tasks.next"),
      /** Open files (files.ts, sockets.ts); NULL for an exiting task. */
      files: ptr("files"),
      /** Namespaces; init_task's leads to the initial network namespace (sockets.ts). */
      nsproxy: ptr("nsproxy"),
      // The task's other kernel views (pids.ts): its links in the task list, its parent's
      // children list, its thread group and its pid.
      tasksPrev: ptr("tasks.prev"),
      childrenNext: ptr("children.next"),
      siblingNext: ptr("sibling.next"),
      siblingPrev: ptr("sibling.prev"),
      groupLeader: ptr("group_leader"),
      signal: ptr("signal"),
      threadNext: ptr("thread_node.next"),
      threadPid: ptr("thread_pid"),
      /** Subjective credentials (creds.ts); real_cred is the objective ones. */
      cred: ptr("cred"),
      /** Counts execs (creds.ts: a uid change without an exec). */
      selfExecId: uint("self_exec_id"),
      startTime: uint("start_time"),
    }),
    /**
     * The links of a task to the other kernel views (pids.ts), all it reads of a thread: a
     * thread is reached for its group leader and its children, not described.
     */
    taskLinks: resolveLayout(btf, "task_struct", {
      pid: sint("pid"),
      tgid: sint("tgid"),
      groupLeader: ptr("group_leader"),
      signal: ptr("signal"),
      threadNext: ptr("thread_node.next"),
      childrenNext: ptr("children.next"),
      siblingNext: ptr("sibling.next"),
    }),
    /**
     * What a thread is listed with (threads.ts), and what pids.ts reads of it (`taskLinks`): a
     * thread of a process is copied for these fields only.
     */
    thread: resolveLayout(btf, "task_struct", {
      pid: sint("pid"),
      tgid: sint("tgid"),
      state: uint("__state", "state"),
      exitState: sint("exit_state"),
      comm: str("comm"),
      signal: ptr("signal"),
      threadNext: ptr("thread_node.next"),
      groupLeader: ptr("group_leader"),
      childrenNext: ptr("children.next"),
      siblingNext: ptr("sibling.next"),
    }),
    /** What an fd-table walk reads of a task (files.ts). */
    taskFiles: resolveLayout(btf, "task_struct", { pid: sint("pid"), files: ptr("files") }),
    /** Offsets of list heads of task_struct: an entry minus its offset is its task. */
    childrenOffset: btf.field("task_struct", "children").offset,
    siblingOffset: btf.field("task_struct", "sibling").offset,
    pidLinksOffset: btf.field("task_struct", "pid_links").offset,
    threadNodeOffset: btf.field("task_struct", "thread_node").offset,
    /** A process's threads: `signal->thread_head`, entries linked by `thread_node`. */
    signal: resolveLayout(btf, "signal_struct", {
      threadHeadNext: ptr("thread_head.next"),
      /** Threads in the group, as /proc/PID/status `Threads:` shows. */
      nrThreads: sint("nr_threads"),
    }),
    threadHeadOffset: btf.field("signal_struct", "thread_head").offset,
    /** Offset of `tasks` in task_struct: a list entry minus this is its task. */
    tasksOffset: btf.field("task_struct", "tasks").offset,
    /** A process's namespaces and cgroup (namespaces.ts). */
    ns: resolveNamespaceTypes(btf),
    cred: resolveLayout(btf, "cred", {
      uid: uint("uid.val"),
      gid: uint("gid.val"),
      suid: uint("suid.val"),
      sgid: uint("sgid.val"),
      euid: uint("euid.val"),
      egid: uint("egid.val"),
      fsuid: uint("fsuid.val"),
      fsgid: uint("fsgid.val"),
      // kernel_cap_t is 8 bytes: `u64 val` (6.3+) or `__u32 cap[2]` (6.1), little-endian either way.
      capInheritable: hexInt("cap_inheritable"),
      capPermitted: hexInt("cap_permitted"),
      capEffective: hexInt("cap_effective"),
    }),
  };
}

/** The resolved kernel structures of one guest kernel. */
export type KernelTypes = ReturnType<typeof resolveKernelTypes>;
