import { assert, assertEquals } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { AddressSpace, CachedMemory, type KAddr } from "../memory/mod.ts";
import {
  type BpfPrograms,
  listBpfPrograms,
  planBpfPrograms,
  resolveBpfTypes,
} from "./bpf_programs.ts";
import { SyntheticFds, SyntheticKernel } from "./testing/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from this machine's real kernel BTF; the memory image is synthetic.
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const core = resolveKernelTypes(btf);
const types = resolveBpfTypes(btf);

// enum bpf_prog_type and enum bpf_map_type values (include/uapi/linux/bpf.h).
const SOCKET_FILTER = 1;
const KPROBE = 2;
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
class SyntheticBpf {
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
   * file named as a program's ("bpf-prog") unless `name` says otherwise.
   */
  files(task: KAddr, objects: (KAddr | null)[], name = "bpf-prog"): void {
    const files = objects.map((o) => {
      if (o === null) return null;
      const dentry = this.kernel.place(types.dentry, {
        name: new TextEncoder().encode(`${name}\0`),
      });
      return this.kernel.place(types.fd.file, { privateData: o, dentry });
    });
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
function image() {
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
  bpf.files(kernel.tasks[0], [null, junk, p.walk.prog, null, p.trigger.prog]);
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

const summary = (list: BpfPrograms) =>
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

const KALLSYMS_ONLY = [
  [3, "walk", "0123456789abcdef", "kprobe", true, "kallsyms", "events,plans"],
  [4, "trigger", "1111111111111111", "kprobe", true, "kallsyms", "events"],
  [7, "evil_filter", "a04f5eef06a7f555", "socket_filter", false, "kallsyms", ""],
  [9, "hook\x1b[2J", "deadbeefcafef00d", "tracing", false, "kallsyms", ""],
];

Deno.test("listBpfPrograms() walks bpf_kallsyms from the agent's own programs, dropping the head and trampolines", async () => {
  const { kernel, maps } = image();
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[0],
  );
  assertEquals(summary(list), KALLSYMS_ONLY);
  assertEquals(list.views.kallsyms, { supported: true, truncated: false, entries: 6, dropped: 2 });
  assertEquals(list.views.prog_idr.supported, false);
  assertEquals(list.subprograms, 1);
  assertEquals(list.programs[0].maps[0], {
    id: 11,
    name: "events",
    type: "ringbuf",
    map: list.programs[0].maps[0].map,
  });
  assertEquals(list.programs[0].maps[1].type, "hash");
  assertEquals(list.programs.map((p) => [p.jited, p.loadTime, p.missingFrom]), [
    [true, 3e9, []],
    [true, 4e9, []],
    [true, 7e9, []],
    [true, 9e9, []],
  ]);
  assert(maps.events > 0);
});

Deno.test("listBpfPrograms() reads only what its plan prefetched, in both copy modes", async () => {
  const { kernel } = image();
  const check = await checkPlan(
    kernel.build(),
    (b) => planBpfPrograms(b, core, types, kernel.tasks[0]),
    (mem) => listBpfPrograms(mem, core, types, kernel.tasks[0]),
  );
  for (const mode of [check.whole, check.selective]) {
    assertEquals(mode.misses, []);
    assertEquals(summary(mode.result), KALLSYMS_ONLY);
  }
  // The BPF objects are copied field by field in both modes; only the agent's task is whole.
  assert(check.selective.bytes < check.whole.bytes);
});

Deno.test("listBpfPrograms() reads only what its plan prefetched, with prog_idr too", async () => {
  const { kernel, bpf, p } = image();
  const hidden = bpf.program({ id: 12, name: "hidden", tag: "3333333333333333", type: KPROBE });
  const progIdr = bpf.idr(
    new Map([[3, p.walk.prog], [4, p.trigger.prog], [7, p.filter.prog], [12, hidden.prog]]),
  );
  const cache = kernel.build();
  const confirm = new CachedMemory(cache);
  const check = await checkPlan(
    cache,
    (b) => planBpfPrograms(b, core, types, kernel.tasks[0], { progIdr }),
    (mem) => listBpfPrograms(mem, core, types, kernel.tasks[0], { progIdr, confirm }),
  );
  for (const mode of [check.whole, check.selective]) {
    assertEquals(mode.misses, []);
    assertEquals(
      mode.result.programs.map((p) => [p.id, p.seenIn.join(","), p.missingFrom.join(",")]),
      [
        [3, "prog_idr,kallsyms", ""],
        [4, "prog_idr,kallsyms", ""],
        [7, "prog_idr,kallsyms", ""],
        [9, "kallsyms", "prog_idr"],
        [12, "prog_idr", "kallsyms"],
      ],
    );
  }
});

Deno.test("listBpfPrograms() stops a bpf_kallsyms list that loops, as truncated", async () => {
  const { kernel, p } = image();
  // filter -> trampoline -> sub -> filter: a ring that never returns to the agent's program.
  kernel.mutate(p.sub.aux, { ksymNext: p.filter.lnode });
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[0],
  );
  assertEquals(list.views.kallsyms.truncated, true);
  assert(list.views.kallsyms.reason?.includes("loops"), list.views.kallsyms.reason);
  assertEquals(summary(list).map((r) => r[0]), [3, 7]);
});

Deno.test("listBpfPrograms() bounds the bpf_kallsyms walk", async () => {
  const { kernel } = image();
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[0],
    {
      maxPrograms: 2,
    },
  );
  assertEquals(list.views.kallsyms.truncated, true);
  assert(list.views.kallsyms.reason?.includes("more than 2 entries"), list.views.kallsyms.reason);
});

Deno.test("listBpfPrograms() says the list is unreachable when the agent holds no program", async () => {
  const { kernel } = image();
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[1],
  );
  assertEquals(list.programs, []);
  assertEquals(list.views.kallsyms.supported, false);
  assert(list.views.kallsyms.reason?.includes("no BPF program in the agent's fd table"));
});

Deno.test("listBpfPrograms() cross-checks prog_idr and bpf_kallsyms and confirms what one view lacks", async () => {
  const { kernel, bpf, p, head, trampoline } = image();
  // id 12 is JITed but unlinked from the list (hidden); id 13 is not JITed (on no list, by
  // design); id 9 is on the list but not in the IDR (hidden); id 14 is on the list, out of the
  // IDR and has refcount 0 (being freed: a race).
  const hidden = bpf.program({ id: 12, name: "hidden", tag: "3333333333333333", type: KPROBE });
  const interp = bpf.program({
    id: 13,
    name: "interp",
    tag: "4444444444444444",
    type: SOCKET_FILTER,
    jited: false,
  });
  const dying = bpf.program({
    id: 14,
    name: "dying",
    tag: "5555555555555555",
    type: KPROBE,
    refcnt: 0,
  });
  bpf.link([
    head,
    p.walk.lnode,
    p.filter.lnode,
    trampoline,
    p.sub.lnode,
    p.trigger.lnode,
    p.fentry.lnode,
    dying.lnode,
  ]);
  const progIdr = bpf.idr(
    new Map([[3, p.walk.prog], [4, p.trigger.prog], [7, p.filter.prog], [12, hidden.prog], [
      13,
      interp.prog,
    ]]),
  );
  const memory = new CachedMemory(kernel.build());
  const list = await listBpfPrograms(memory, core, types, kernel.tasks[0], {
    progIdr,
    confirm: memory,
  });
  assertEquals(
    list.programs.map((p) => [p.id, p.seenIn.join(","), p.missingFrom.join(","), p.jited]),
    [
      [3, "prog_idr,kallsyms", "", true],
      [4, "prog_idr,kallsyms", "", true],
      [7, "prog_idr,kallsyms", "", true],
      [9, "kallsyms", "prog_idr", true],
      [12, "prog_idr", "kallsyms", true],
      [13, "prog_idr", "", false],
    ],
  );
  assertEquals(list.races, 1);
  assert(list.confirmReads > 0);
  assertEquals(list.views.prog_idr, { supported: true, truncated: false, entries: 5, dropped: 0 });
});

Deno.test("listBpfPrograms() takes a program the live guest shows linked meanwhile for a race", async () => {
  const build = (linked: boolean) => {
    const { kernel, bpf, p, head, trampoline } = image();
    const late = bpf.program({ id: 20, name: "late", tag: "6666666666666666", type: KPROBE });
    const ring = [
      head,
      p.walk.lnode,
      p.filter.lnode,
      trampoline,
      p.sub.lnode,
      p.trigger.lnode,
      p.fentry.lnode,
    ];
    bpf.link(linked ? [...ring, late.lnode] : ring);
    const progIdr = bpf.idr(
      new Map([[3, p.walk.prog], [4, p.trigger.prog], [7, p.filter.prog], [9, p.fentry.prog], [
        20,
        late.prog,
      ]]),
    );
    return { memory: new CachedMemory(kernel.build()), progIdr, task: kernel.tasks[0] };
  };
  const snapshot = build(false);
  const live = build(true);
  const list = await listBpfPrograms(snapshot.memory, core, types, snapshot.task, {
    progIdr: snapshot.progIdr,
    confirm: live.memory,
  });
  assertEquals(list.programs.map((p) => p.id), [3, 4, 7, 9]);
  assertEquals(list.races, 1);
});

Deno.test("listBpfPrograms() refuses a map count beyond the kernel's limit and a bad list link", async () => {
  const { kernel, p } = image();
  kernel.mutate(p.filter.aux, { usedMapCnt: 1000 });
  kernel.mutate(p.sub.aux, { ksymNext: { raw: 0x1234n } });
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[0],
  );
  const filter = list.programs.find((x) => x.id === 7)!;
  assertEquals([filter.maps, filter.error], [[], "used_map_cnt 1000 is more than 64"]);
  assertEquals(list.views.kallsyms.truncated, true);
  assert(
    list.views.kallsyms.reason?.includes("0x000001234 is not a kernel address"),
    list.views.kallsyms.reason,
  );
  assertEquals(list.programs.map((x) => x.id), [3, 7]);
});

Deno.test("listBpfPrograms() bounds the re-reads, leaving the rest unconfirmed and not missing", async () => {
  const { kernel, bpf, p } = image();
  const progIdr = bpf.idr(new Map([[3, p.walk.prog], [4, p.trigger.prog]]));
  const memory = new CachedMemory(kernel.build());
  const list = await listBpfPrograms(memory, core, types, kernel.tasks[0], {
    progIdr,
    confirm: memory,
    maxConfirms: 1,
  });
  assertEquals(list.programs.map((x) => [x.id, x.missingFrom.join(",")]), [
    [3, ""],
    [4, ""],
    [7, "prog_idr"],
    [9, ""],
  ]);
  assertEquals(list.unconfirmed, 1);
});

Deno.test("listBpfPrograms() compares no views when one is truncated", async () => {
  const { kernel, bpf, p } = image();
  kernel.mutate(p.trigger.aux, { ksymNext: p.filter.lnode });
  const progIdr = bpf.idr(new Map([[3, p.walk.prog], [4, p.trigger.prog], [9, p.fentry.prog]]));
  const memory = new CachedMemory(kernel.build());
  const list = await listBpfPrograms(memory, core, types, kernel.tasks[0], {
    progIdr,
    confirm: memory,
  });
  assertEquals(list.views.kallsyms.truncated, true);
  assertEquals(list.programs.map((x) => [x.id, x.seenIn.join(","), x.missingFrom.join(",")]), [
    [3, "prog_idr,kallsyms", ""],
    [4, "prog_idr,kallsyms", ""],
    [7, "kallsyms", ""],
    [9, "prog_idr", ""],
  ]);
  assertEquals(list.confirmReads, 0);
});
