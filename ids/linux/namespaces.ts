/**
 * What a process's namespaces and cgroup are, as /proc shows them:
 *
 * - its pid namespace (`readlink /proc/PID/ns/pid`, `pid:[N]`): the namespace of the last level
 *   of its `struct pid` (`thread_pid->numbers[level].ns`), its `ns.inum`; and its pid there, the
 *   last value of `NSpid:` in /proc/PID/status (`numbers[level].nr`);
 * - its network namespace (`/proc/PID/ns/net`): `nsproxy->net_ns->ns.inum` (none for a task
 *   that has exited: the kernel drops its nsproxy);
 * - its cgroup in the cgroup v2 hierarchy (the `0::PATH` line of /proc/PID/cgroup):
 *   `cgroups->dfl_cgrp->kn`, and the names of the kernfs nodes up to the hierarchy's root. A
 *   path is from the root of the hierarchy, as /proc shows it to a reader in the initial cgroup
 *   namespace. A guest that has no cgroup v2 hierarchy mounted (its cgroups are all v1: the v2
 *   root's kernfs has no superblock) has no such line, and the processes no cgroup: the list
 *   says so instead.
 *
 * A snapshot holds every structure this reads (namespace_plan.ts); what it lacks is read on
 * demand. Most of these are shared by many processes: each is decoded once per snapshot.
 *
 * Guest memory is hostile: the pid level is bounded by the kernel's own limit, a kernfs chain by
 * depth and total length and checked for loops, a name by NAME_MAX, and each field that cannot
 * be read is left out with the reason in the process's `error`.
 *
 * @module
 */

import { type GuestMemory, type KAddr, PAGE_SIZE, type Pointer } from "../memory/mod.ts";
import { decodeName, peekStruct, type StructLayout } from "../kernel/mod.ts";
import { NAME_BYTES, type NamespaceTypes } from "./namespace_types.ts";

/** The kernel's limit of nested pid namespaces (MAX_PID_NS_LEVEL). */
export const MAX_PID_LEVEL = 32;
/** Most kernfs nodes from a cgroup up to its hierarchy's root. */
export const MAX_CGROUP_DEPTH = 128;
/** Longest cgroup path (PATH_MAX, its NUL left out). */
export const MAX_CGROUP_PATH = 4095;

/** A process's namespaces and cgroup, as far as they could be read. */
export interface NamespaceFields {
  pidNs?: number;
  nsPid?: number;
  netNs?: number;
  cgroup?: string;
  /** What could not be read, one reason per field. */
  errors?: string[];
}

/** What a task holds that leads to its namespaces (fields of the views' task layout). */
export interface TaskNamespaceLinks {
  threadPid: Pointer;
  nsproxy: Pointer;
}

/** Bytes not at hand: fetch them, then try again. */
class Missing {
  constructor(readonly addr: KAddr, readonly len: number) {}
}

function need<T>(mem: GuestMemory, at: KAddr, layout: StructLayout<T>): T {
  const value = peekStruct(mem, at, layout);
  if (value === undefined) throw new Missing(at + layout.start, layout.end - layout.start);
  return value;
}

/** Most fetches one field may need on demand (a deep cgroup: a node and a name per level). */
const MAX_FETCHES = 2 * MAX_CGROUP_DEPTH + 8;

/** Where cgroup v2 paths stand in a snapshot. */
export interface CgroupSupport {
  supported: boolean;
  reason?: string;
}

/**
 * Decodes processes' namespaces and cgroups over one snapshot, each shared structure once.
 * {@linkcode peek} answers from the memory at hand without I/O (a prefetched snapshot);
 * {@linkcode read} fetches what is missing.
 */
export class NamespaceReader {
  readonly #pidNs = new Map<KAddr, number>();
  readonly #netOf = new Map<KAddr, number>();
  readonly #cgroupOf = new Map<KAddr, string | Error>();
  readonly #paths = new Map<KAddr, string | Error>();
  #mounted?: boolean;
  #unmounted?: string;
  /** The default hierarchy's root: every css_set's dfl_cgrp is in it. */
  #root?: KAddr;
  #found = 0;

  constructor(readonly mem: GuestMemory, readonly types: NamespaceTypes) {}

  /** Whether the processes of this snapshot have cgroup paths, or why not. */
  cgroupSupport(): CgroupSupport {
    const cg = this.types.cgroup;
    if (!cg.supported) return { supported: false, reason: cg.reason };
    if (this.#unmounted !== undefined && this.#found === 0) {
      return { supported: false, reason: this.#unmounted };
    }
    return { supported: true };
  }

  /** The fields of the task at `at`, from the memory at hand; undefined when some are not. */
  peek(task: TaskNamespaceLinks, at: KAddr): NamespaceFields | undefined {
    const out: NamespaceFields = {};
    for (const field of FIELDS) {
      try {
        field(this, task, at, out);
      } catch (error) {
        if (error instanceof Missing) return undefined;
        (out.errors ??= []).push((error as Error).message);
      }
    }
    return out;
  }

  /** The fields of the task at `at`, fetching what the memory at hand lacks. */
  async read(task: TaskNamespaceLinks, at: KAddr): Promise<NamespaceFields> {
    const out: NamespaceFields = {};
    for (const field of FIELDS) {
      for (let fetches = 0;; fetches++) {
        try {
          field(this, task, at, out);
          break;
        } catch (error) {
          let problem = error;
          if (error instanceof Missing && fetches < MAX_FETCHES) {
            try {
              await this.mem.read(error.addr, error.len);
              continue;
            } catch (failed) {
              problem = failed;
            }
          }
          const message = problem instanceof Missing
            ? `more than ${MAX_FETCHES} reads`
            : (problem as Error).message;
          (out.errors ??= []).push(message);
          break;
        }
      }
    }
    return out;
  }

  /** The pid namespace's inum and the pid there, from the task's `struct pid`. */
  pidFields(task: TaskNamespaceLinks, at: KAddr, out: NamespaceFields): void {
    const ns = this.types;
    const pid = this.mem.space.follow(task.threadPid, "thread_pid of task", at);
    const { level } = need(this.mem, pid, ns.pid);
    if (level > MAX_PID_LEVEL) {
      throw new Error(
        `pid ${this.mem.space.hex(pid)} has level ${level}, more than ${MAX_PID_LEVEL}`,
      );
    }
    const upid = need(this.mem, pid + ns.numbersOffset + level * ns.upid.size, ns.upid);
    const pidNs = this.mem.space.follow(upid.ns, `numbers[${level}].ns of pid`, pid);
    let inum = this.#pidNs.get(pidNs);
    if (inum === undefined) this.#pidNs.set(pidNs, inum = need(this.mem, pidNs, ns.pidNs).inum);
    out.pidNs = inum;
    out.nsPid = upid.nr;
  }

  /** The network namespace's inum; none for a task without nsproxy (it has exited). */
  netFields(task: TaskNamespaceLinks, at: KAddr, out: NamespaceFields): void {
    if (task.nsproxy === null) return;
    const nsproxy = this.mem.space.follow(task.nsproxy, "nsproxy of task", at);
    let inum = this.#netOf.get(nsproxy);
    if (inum === undefined) {
      const net = this.mem.space.follow(
        need(this.mem, nsproxy, this.types.nsproxy).netNs,
        "net_ns of",
        nsproxy,
      );
      this.#netOf.set(nsproxy, inum = need(this.mem, net, this.types.net).inum);
    }
    out.netNs = inum;
  }

  /** The task's cgroup v2 path. */
  cgroupFields(_task: TaskNamespaceLinks, at: KAddr, out: NamespaceFields): void {
    const cg = this.types.cgroup;
    if (!cg.supported) return;
    const cssSet = this.mem.space.follow(
      need(this.mem, at, cg.task).cgroups,
      "cgroups of task",
      at,
    );
    let path = this.#cgroupOf.get(cssSet);
    if (path === undefined) {
      try {
        path = this.#cgroupPath(cssSet);
      } catch (error) {
        if (error instanceof Missing) throw error;
        path = error as Error;
      }
      this.#cgroupOf.set(cssSet, path);
    }
    if (path instanceof Error) throw path;
    if (path !== "") out.cgroup = path;
  }

  /** The path of a css_set's default-hierarchy cgroup; "" when that hierarchy is not mounted. */
  #cgroupPath(cssSet: KAddr): string {
    const cg = this.types.cgroup;
    if (!cg.supported) return "";
    const cgroupAt = this.mem.space.follow(
      need(this.mem, cssSet, cg.cssSet).dfl,
      "dfl_cgrp of css_set",
      cssSet,
    );
    const cgroup = need(this.mem, cgroupAt, cg.cgroup);
    const rootAt = this.mem.space.follow(cgroup.root, "root of cgroup", cgroupAt);
    if ((this.#root ??= rootAt) !== rootAt) {
      throw new Error(
        `cgroup ${this.mem.space.hex(cgroupAt)} has root ${
          this.mem.space.hex(rootAt)
        }, not the default hierarchy's ` +
          this.mem.space.hex(this.#root),
      );
    }
    let mounted = this.#mounted;
    if (mounted === undefined) {
      const kfRoot = this.mem.space.follow(
        need(this.mem, rootAt, cg.root).kfRoot,
        "kf_root of",
        rootAt,
      );
      const supers = need(this.mem, kfRoot, cg.kernfsRoot).supersNext;
      this.#mounted =
        mounted =
          this.mem.space.follow(supers, "supers of kernfs_root", kfRoot) !==
            kfRoot + cg.supersOffset;
    }
    if (!mounted) {
      this.#unmounted = "no cgroup v2 hierarchy is mounted in the guest (its cgroups are v1 " +
        "only): /proc/PID/cgroup has no 0:: line to show";
      return "";
    }
    const path = this.#kernfsPath(this.mem.space.follow(cgroup.kn, "kn of cgroup", cgroupAt));
    this.#found++;
    return path || "/";
  }

  /**
   * The path of the kernfs node at `kn` from its root ("" for the root itself), each node's
   * path kept for the nodes below it.
   */
  #kernfsPath(kn: KAddr): string {
    const cg = this.types.cgroup;
    if (!cg.supported) return "";
    const chain: { at: KAddr; name: string }[] = [];
    const onChain = new Set<KAddr>();
    let base: string | undefined;
    for (let at = kn;;) {
      const known = this.#paths.get(at);
      if (known instanceof Error) throw known;
      if (known !== undefined) {
        base = known;
        break;
      }
      if (onChain.has(at)) {
        throw this.#fail(chain, `the kernfs parents of ${this.mem.space.hex(kn)} loop`);
      }
      onChain.add(at);
      const node = need(this.mem, at, cg.kernfsNode);
      if (node.parent === null) {
        base = "";
        this.#paths.set(at, base);
        break;
      }
      if (chain.length >= MAX_CGROUP_DEPTH) {
        throw this.#fail(
          chain,
          `more than ${MAX_CGROUP_DEPTH} kernfs parents above ${this.mem.space.hex(kn)}`,
        );
      }
      chain.push({
        at,
        name: this.#name(this.mem.space.follow(node.name, "name of kernfs_node", at), at),
      });
      at = this.mem.space.follow(node.parent, "parent of kernfs_node", at);
    }
    for (let i = chain.length - 1; i >= 0; i--) {
      base = `${base}/${chain[i].name}`;
      if (base.length > MAX_CGROUP_PATH) {
        throw this.#fail(
          chain,
          `the path of ${this.mem.space.hex(kn)} is longer than ${MAX_CGROUP_PATH}`,
        );
      }
      this.#paths.set(chain[i].at, base);
    }
    return base;
  }

  /** Remembers `message` as the failure of every node of `chain`; returns it as an error. */
  #fail(chain: { at: KAddr }[], message: string): Error {
    const error = new Error(message);
    for (const { at } of chain) this.#paths.set(at, error);
    return error;
  }

  /** The NUL-terminated name at `at` (of the kernfs node `of`), at most NAME_MAX bytes. */
  #name(at: KAddr, of: KAddr): string {
    let bytes = this.mem.peek(at, NAME_BYTES);
    if (!bytes) {
      // A short name near the end of a page is read up to it: the next page may not be mapped.
      const first = Math.min(NAME_BYTES, PAGE_SIZE - (at % PAGE_SIZE));
      bytes = this.mem.peek(at, first);
      if (!bytes) throw new Missing(at, first);
      if (first < NAME_BYTES && bytes.indexOf(0) < 0) throw new Missing(at, NAME_BYTES);
    }
    const nul = bytes.indexOf(0);
    if (nul < 0) {
      throw new Error(
        `the name of kernfs_node ${this.mem.space.hex(of)} is longer than ${NAME_BYTES - 1} bytes`,
      );
    }
    if (nul === 0) throw new Error(`the name of kernfs_node ${this.mem.space.hex(of)} is empty`);
    const name = decodeName(bytes.subarray(0, nul));
    if (name.includes("/")) {
      throw new Error(`the name of kernfs_node ${this.mem.space.hex(of)} holds a "/"`);
    }
    return name;
  }
}

type Field = (
  reader: NamespaceReader,
  task: TaskNamespaceLinks,
  at: KAddr,
  out: NamespaceFields,
) => void;

const FIELDS: readonly Field[] = [
  (r, t, at, out) => r.pidFields(t, at, out),
  (r, t, at, out) => r.netFields(t, at, out),
  (r, t, at, out) => r.cgroupFields(t, at, out),
];
