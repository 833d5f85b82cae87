/**
 * What the BPF program view's tests share: this kernel's BTF and the layouts resolved from it,
 * {@linkcode SyntheticBpf} to lay programs, maps, list entries, an IDR and the agent's program
 * fds out in a synthetic kernel, and the one image most tests read.
 *
 * @module
 */

import { parseBtf } from "../btf/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { AddressSpace, type KAddr } from "../memory/mod.ts";
import { type BpfPrograms, resolveBpfTypes } from "./bpf_programs.ts";
import { SyntheticFds, SyntheticKernel } from "./testing/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from this machine's real kernel BTF; the memory image is synthetic.
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
export const core = resolveKernelTypes(btf);
export const types = resolveBpfTypes(btf);

// enum bpf_prog_type and enum bpf_map_type values (include/uapi/linux/bpf.h).
/** The f_op of program files (`bpf_prog_fops`) and of others, at kernel-image addresses. */
export const PROG_FOPS = 0x7f00_0300_0000;
export const OTHER_FOPS = 0x7f00_0300_1000;
/** Where nothing is: the private_data of a file whose object the walk cannot read. */
export const NOWHERE = 0x0888_6666_0000;

export const SOCKET_FILTER = 1;
export const KPROBE = 2;
const TRACING = 26;
const HASH = 1;
const RINGBUF = 27;

interface ProgramSpec {
  id: number;
  name: string;
  tag: string;
  type: number;
  jited?: boolean;
  maps?: KAddr[];
  refcnt?: number;
  loadTime?: number;
}

interface Placed {
  prog: KAddr;
  aux: KAddr;
  lnode: KAddr;
}

/** Builds programs, maps, list entries and an IDR in a synthetic kernel. */
export class SyntheticBpf {
  readonly fds: SyntheticFds;
  constructor(readonly kernel: SyntheticKernel) {
    this.fds = new SyntheticFds(kernel, types.fd);
  }

  map(id: number, name: string, type: number): KAddr {
    return this.kernel.place(types.map, { id, name, type });
  }

  program(spec: ProgramSpec): Placed {
    const k = this.kernel;
    let usedMaps: KAddr | null = null;
    if (spec.maps?.length) {
      const bytes = new Uint8Array(spec.maps.length * 8);
      const view = new DataView(bytes.buffer);
      spec.maps.forEach((m, i) => view.setBigUint64(i * 8, space.fromKAddr(m), true));
      usedMaps = k.placeBytes(bytes);
    }
    const aux = k.place(types.aux, {
      refcnt: spec.refcnt ?? 1,
      id: spec.id,
      name: spec.name,
      loadTime: spec.loadTime ?? spec.id * 1_000_000_000,
      usedMapCnt: spec.maps?.length ?? 0,
      usedMaps,
      ksymProg: spec.jited === false ? 0 : 1,
    }, { prefix: 64 });
    const tag = Uint8Array.from(spec.tag.match(/../g)!.map((b) => parseInt(b, 16)));
    const prog = k.place(types.prog, { type: spec.type, tag, aux });
    if (spec.jited !== false) {
      k.placeBytes(new Uint8Array([1 << types.jited.bit]), prog + types.jited.offset);
    }
    const lnode = aux + types.lnodeOffset;
    // An unlinked program's lnode is an empty list: it points to itself.
    k.mutate(aux, { prog, ksymNext: lnode, ksymPrev: lnode });
    return { prog, aux, lnode };
  }

  /**
   * A bpf_ksym that is not a program's (a trampoline's: `prog` false) in a small allocation,
   * with no aux-sized memory around it; returns its lnode.
   */
  trampoline(): KAddr {
    const lnode = this.kernel.place(types.ksym, { prog: 0 }, { prefix: 32 }) +
      types.ksymLnodeOffset;
    this.trampolines.add(lnode);
    return lnode;
  }

  readonly trampolines = new Set<KAddr>();

  /** The global list head: a bare list_head amid other kernel data; returns it. */
  head(): KAddr {
    const bytes = new Uint8Array(types.aux.size).fill(0x5a);
    const container = this.kernel.placeBytes(bytes);
    return this.kernel.place(types.aux, {}, { at: container }) + types.lnodeOffset;
  }

  /** Links `lnodes` into one circular list, in order. */
  link(lnodes: KAddr[]): void {
    lnodes.forEach((lnode, i) => {
      const next = lnodes[(i + 1) % lnodes.length];
      if (this.trampolines.has(lnode)) {
        this.kernel.mutate(lnode - types.ksymLnodeOffset, { next });
        return;
      }
      this.kernel.mutate(lnode - types.lnodeOffset, {
        ksymNext: next,
        ksymPrev: lnodes[(i + lnodes.length - 1) % lnodes.length],
      });
    });
  }

  /**
   * Gives `task` an fd table whose files' private_data are `objects` (null: an empty slot), each
   * file's f_op {@linkcode PROG_FOPS} when it holds a program of `programs`, else
   * {@linkcode OTHER_FOPS}.
   */
  files(task: KAddr, objects: (KAddr | null)[], programs: KAddr[] = []): void {
    const files = objects.map((o) =>
      o === null ? null : this.kernel.place(types.fd.file, {
        privateData: o,
        fOp: programs.includes(o) ? PROG_FOPS : OTHER_FOPS,
      })
    );
    this.fds.table(task, files);
  }

  /** An IDR whose xarray is one node of `entries` (index -> prog), at a kernel-image address. */
  idr(entries: Map<number, KAddr>): KAddr {
    const slots = new Uint8Array(types.xarray.slotCount * 8);
    const view = new DataView(slots.buffer);
    for (const [index, prog] of entries) view.setBigUint64(index * 8, space.fromKAddr(prog), true);
    const node = this.kernel.place(types.xarray.node, { shift: 0, slots });
    return this.kernel.place(types.idr, { head: { raw: space.fromKAddr(node) + 2n } }, {
      at: 0x7f00_0200_0000,
    });
  }
}

/**
 * The agent (pid 50) holds two programs (ids 3, 4); another loader's programs (ids 7, 9) and a
 * subprogram are on the list too, with a trampoline and the global head. The agent's fds also
 * hold a socket-like object whose bytes look like a program type but whose aux does not point
 * back.
 */
export function image(options: { unreadableFile?: boolean } = {}) {
  const kernel = new SyntheticKernel(core, [{ pid: 50, comm: "ebpfmon" }, { pid: 60, comm: "x" }]);
  const bpf = new SyntheticBpf(kernel);
  const events = bpf.map(11, "events", RINGBUF);
  const plans = bpf.map(12, "plans", HASH);
  const p = {
    walk: bpf.program({
      id: 3,
      name: "walk",
      tag: "0123456789abcdef",
      type: KPROBE,
      maps: [events, plans],
    }),
    trigger: bpf.program({
      id: 4,
      name: "trigger",
      tag: "1111111111111111",
      type: KPROBE,
      maps: [events],
    }),
    filter: bpf.program({
      id: 7,
      name: "evil_filter",
      tag: "a04f5eef06a7f555",
      type: SOCKET_FILTER,
    }),
    fentry: bpf.program({ id: 9, name: "hook\x1b[2J", tag: "deadbeefcafef00d", type: TRACING }),
    sub: bpf.program({ id: 0, name: "F", tag: "2222222222222222", type: TRACING }),
  };
  const junkAux = kernel.place(types.aux, { prog: 0x0888_7777_0000 });
  const junk = kernel.place(types.prog, { type: SOCKET_FILTER, aux: junkAux });
  const head = bpf.head();
  const trampoline = bpf.trampoline();
  bpf.files(
    kernel.tasks[0],
    [null, junk, p.walk.prog, null, p.trigger.prog, ...options.unreadableFile ? [NOWHERE] : []],
    [p.walk.prog, p.trigger.prog],
  );
  bpf.link([
    head,
    p.walk.lnode,
    p.filter.lnode,
    trampoline,
    p.sub.lnode,
    p.trigger.lnode,
    p.fentry.lnode,
  ]);
  return { kernel, bpf, p, head, trampoline, maps: { events, plans } };
}

export const summary = (list: BpfPrograms) =>
  list.programs.map((
    p,
  ) => [
    p.id,
    p.name,
    p.tag,
    p.type,
    p.own,
    p.seenIn.join(","),
    p.maps.map((m) => m.name).join(","),
  ]);

export const KALLSYMS_ONLY = [
  [3, "walk", "0123456789abcdef", "kprobe", true, "kallsyms", "events,plans"],
  [4, "trigger", "1111111111111111", "kprobe", true, "kallsyms", "events"],
  [7, "evil_filter", "a04f5eef06a7f555", "socket_filter", false, "kallsyms", ""],
  [9, "hook\x1b[2J", "deadbeefcafef00d", "tracing", false, "kallsyms", ""],
];
