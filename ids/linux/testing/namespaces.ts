/**
 * Synthetic namespaces and cgroups for unit tests: each task's `struct pid` (one level, or two
 * in a nested pid namespace), signal_struct and thread list, nsproxy and net, and css_set with
 * its cgroup v2 kernfs chain, laid out with a real kernel's offsets in a
 * {@linkcode SyntheticKernel}.
 *
 * @module
 */

import type { AddressSpace, KAddr } from "../../memory/mod.ts";
import { type KernelTypes, NAME_BYTES, PLANNED_LEVELS } from "../mod.ts";
import type { SyntheticKernel } from "./synthetic.ts";

/** The initial namespaces' inode numbers, as on Linux. */
export const INIT_PID_NS = 0xeffffffc;
export const INIT_NET_NS = 0xeffffff8;

/** What a task's namespaces, cgroup and threads are. */
export interface NamespaceSpec {
  /** Its cgroup v2 path. @default "/" */
  cgroup?: string;
  /** A nested pid namespace (level 1) it is in, with its pid there. */
  pidNs?: { inum: number; nr: number };
  /** Its network namespace's inum. @default INIT_NET_NS */
  netNs?: number;
  /** Its threads beyond the leader. */
  threads?: { tid: number; comm: string }[];
}

/** Lays out the namespace structures of a synthetic kernel's tasks. */
export class SyntheticNamespaces {
  readonly initPidNs: KAddr;
  readonly cgroupRoot: KAddr;
  readonly kernfsRoot: KAddr;
  readonly #pidNs = new Map<number, KAddr>();
  readonly #nsproxy = new Map<number, KAddr>();
  readonly #net = new Map<number, KAddr>();
  readonly #cssSet = new Map<string, KAddr>();
  readonly #kn = new Map<string, KAddr>();
  /** Each task's pid, signal, css_set and extra threads. */
  readonly pids = new Map<KAddr, KAddr>();
  readonly signals = new Map<KAddr, KAddr>();
  readonly cssSets = new Map<KAddr, KAddr>();
  readonly threads = new Map<KAddr, KAddr[]>();

  constructor(readonly kernel: SyntheticKernel, readonly types: KernelTypes) {
    this.initPidNs = this.#pidNamespace(INIT_PID_NS);
    const cg = this.#cg();
    const kernfsRoot = kernel.place(cg.kernfsRoot, {});
    // A mounted hierarchy: one superblock on the kernfs root's list.
    const superInfo = kernel.placeBytes(new Uint8Array(64));
    kernel.mutate(kernfsRoot, { supersNext: superInfo });
    this.kernfsRoot = kernfsRoot;
    this.cgroupRoot = kernel.place(cg.root, { kfRoot: kernfsRoot });
    this.#kn.set("/", kernel.place(cg.kernfsNode, { parent: null, name: this.#name("") }));
  }

  #cg() {
    const cg = this.types.ns.cgroup;
    if (!cg.supported) throw new TypeError(`No cgroup types: ${cg.reason}`);
    return cg;
  }

  /** A name, with what follows it in its slab page: as many bytes as a plan copies. */
  #name(text: string): KAddr {
    const bytes = new Uint8Array(NAME_BYTES);
    bytes.set(new TextEncoder().encode(text).subarray(0, NAME_BYTES - 1));
    return this.kernel.placeBytes(bytes);
  }

  #pidNamespace(inum: number): KAddr {
    let at = this.#pidNs.get(inum);
    if (at === undefined) {
      this.#pidNs.set(inum, at = this.kernel.place(this.types.ns.pidNs, { inum }));
    }
    return at;
  }

  /** The kernfs node of cgroup `path`, its parents made as needed. */
  kernfsNode(path: string): KAddr {
    let at = this.#kn.get(path);
    if (at !== undefined) return at;
    const cut = path.lastIndexOf("/");
    const parent = this.kernfsNode(cut === 0 ? "/" : path.slice(0, cut));
    at = this.kernel.place(this.#cg().kernfsNode, {
      parent,
      name: this.#name(path.slice(cut + 1)),
    });
    this.#kn.set(path, at);
    return at;
  }

  /** The css_set of tasks in cgroup `path`. */
  cssSet(path: string): KAddr {
    let at = this.#cssSet.get(path);
    if (at === undefined) {
      const cg = this.#cg();
      const cgroup = this.kernel.place(cg.cgroup, {
        kn: this.kernfsNode(path),
        root: this.cgroupRoot,
      });
      this.#cssSet.set(path, at = this.kernel.place(cg.cssSet, { dfl: cgroup }));
    }
    return at;
  }

  /** The nsproxy of tasks in network namespace `inum`. */
  nsproxy(inum: number): KAddr {
    let at = this.#nsproxy.get(inum);
    if (at === undefined) {
      at = this.kernel.place(this.types.ns.nsproxy, { netNs: this.net(inum) });
      this.#nsproxy.set(inum, at);
    }
    return at;
  }

  /** The network namespace `inum`. */
  net(inum: number): KAddr {
    let at = this.#net.get(inum);
    if (at === undefined) this.#net.set(inum, at = this.kernel.place(this.types.ns.net, { inum }));
    return at;
  }

  /** Lays out the task at `at` (pid `pid`) as `spec` says. */
  task(at: KAddr, pid: number, spec: NamespaceSpec = {}): void {
    const t = this.types;
    const ns = t.ns;
    const levels = spec.pidNs ? 2 : 1;
    const pidAt = this.kernel.place(ns.pid, { level: levels - 1 });
    // The pid and its numbers are one allocation (and more bytes lie after it in a slab).
    this.kernel.placeBytes(new Uint8Array(PLANNED_LEVELS * ns.upid.size), pidAt + ns.numbersOffset);
    this.kernel.place(ns.upid, { nr: pid, ns: this.initPidNs }, { at: pidAt + ns.numbersOffset });
    if (spec.pidNs) {
      this.kernel.place(ns.upid, { nr: spec.pidNs.nr, ns: this.#pidNamespace(spec.pidNs.inum) }, {
        at: pidAt + ns.numbersOffset + ns.upid.size,
      });
    }
    const extra = (spec.threads ?? []).map((th) =>
      this.kernel.place(t.thread, {
        pid: th.tid,
        tgid: pid,
        state: 1,
        exitState: 0,
        comm: th.comm,
        groupLeader: at,
      })
    );
    const members = [at, ...extra];
    const signal = this.kernel.place(t.signal, {
      threadHeadNext: at + t.threadNodeOffset,
      nrThreads: members.length,
    });
    const head = signal + t.threadHeadOffset;
    members.forEach((m, i) => {
      const next = i + 1 < members.length ? members[i + 1] + t.threadNodeOffset : head;
      this.kernel.mutate(m, { signal, threadNext: next });
    });
    this.kernel.mutate(at, { threadPid: pidAt, groupLeader: at });
    const cssSet = this.cssSet(spec.cgroup ?? "/");
    this.kernel.mutate(at, { nsproxy: this.nsproxy(spec.netNs ?? INIT_NET_NS) });
    this.kernel.placeBytes(u64(cssSet, this.kernel.space), at + this.#cg().task.fields[0].offset);
    this.pids.set(at, pidAt);
    this.signals.set(at, signal);
    this.cssSets.set(at, cssSet);
    this.threads.set(at, extra);
  }
}

function u64(addr: KAddr, space: AddressSpace): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, space.fromKAddr(addr), true);
  return bytes;
}
