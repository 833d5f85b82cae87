import { assert, assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { type Btf, BtfBuilder, parseBtf } from "../btf/mod.ts";
import { LayoutError, readStruct } from "../kernel/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { AddressSpace, CachedMemory } from "../memory/mod.ts";
import { listModules, planModules, taintLetters } from "./modules.ts";
import { type ModuleTypes, resolveModuleTypes } from "./module_types.ts";
import { SyntheticKernel } from "./testing/mod.ts";
import { guestBtf } from "./_guest_btf.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from this machine's real kernel BTF (Linux 6.18, `mem[]`, no CONFIG_MODULE_UNLOAD
// hence no refcnt); the memory image is synthetic.
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const core = resolveKernelTypes(btf);
const types = resolveModuleTypes(btf);

interface ModuleSpec {
  name: string;
  state?: number;
  taints?: bigint;
  /** Bytes of each memory region (6.4+), or core and init sizes (6.1). */
  sizes: number[];
  base: bigint;
  refcnt?: number;
}

/** The modules list: a head at a kernel-image address and modules on the heap. */
function modulesImage(t: ModuleTypes, specs: ModuleSpec[]) {
  const kernel = new SyntheticKernel(core, []);
  const head = kernel.place(t.head, {}, { at: 0x7f00_2000_0000 });
  const modules = specs.map((spec) => {
    const at = kernel.place(t.module, {
      state: spec.state ?? 0,
      name: spec.name,
      taints: { raw: spec.taints ?? 0n },
    });
    const memory = t.memory;
    if (memory.kind === "mem") {
      const bytes = new Uint8Array(memory.count * memory.stride);
      const view = new DataView(bytes.buffer);
      spec.sizes.forEach((size, i) => {
        const region = spec.base ? spec.base + BigInt(i) * 0x10_0000n : 0n;
        view.setBigUint64(i * memory.stride + memory.base, region, true);
        view.setUint32(i * memory.stride + memory.size, size, true);
      });
      kernel.place(memory.layout, { mem: bytes }, { at });
    } else {
      kernel.place(memory.layout, {
        coreBase: { raw: spec.base },
        coreSize: spec.sizes[0],
        initSize: spec.sizes[1],
      }, { at });
    }
    if (t.refcnt) kernel.place(t.refcnt, { refcnt: spec.refcnt ?? 1 }, { at });
    return at;
  });
  const links = [head, ...modules.map((m) => m + t.listOffset)];
  kernel.mutate(head, { next: links[1] ?? head });
  modules.forEach((m, i) => kernel.mutate(m, { next: links[(i + 2) % links.length] }));
  return { kernel, head, modules };
}

const SPECS: ModuleSpec[] = [
  { name: "ext4", sizes: [0x8000, 0x4000, 0x2000, 0x1000, 0, 0, 0], base: 0xffff_ffff_c000_0000n },
  {
    name: "nvidia",
    taints: (1n << 0n) | (1n << 12n) | (1n << 13n),
    sizes: [0x10_0000, 0x2000],
    base: 0xffff_ffff_c100_0000n,
  },
  { name: "hello", state: 1, taints: (1n << 12n) | (1n << 13n), sizes: [0x1000], base: 0n },
  { name: "bye", state: 2, sizes: [0x1000, 0x1000], base: 0xffff_ffff_c200_0000n },
  { name: "half", state: 3, sizes: [], base: 0n },
];

Deno.test("listModules() rebuilds every module with its state, size, base and taints", async () => {
  const { kernel, head, modules } = modulesImage(types, SPECS);
  const list = await listModules(new CachedMemory(kernel.build()), types, head);
  assertEquals(list.truncated, false);
  assertEquals(list.modules[0], {
    name: "ext4",
    module: space.hex(modules[0]),
    base: "0xffffffffc0000000",
    size: 0xf000,
    state: "live",
    refcount: null,
    taints: "0x0000000000000000",
    taintFlags: "",
  });
  assertEquals(
    list.modules.map((m) => [m.name, m.state, m.size, m.taintFlags, m.taints]),
    [
      ["ext4", "live", 0xf000, "", "0x0000000000000000"],
      ["nvidia", "live", 0x10_2000, "POE", "0x0000000000003001"],
      ["hello", "coming", 0x1000, "OE", "0x0000000000003000"],
      ["bye", "going", 0x2000, "", "0x0000000000000000"],
      ["half", "unformed", 0, "", "0x0000000000000000"],
    ],
  );
});

Deno.test("listModules() reports a module list that loops without reaching its head", async () => {
  const { kernel, head, modules } = modulesImage(types, SPECS);
  kernel.mutate(modules[3], { next: modules[1] + types.listOffset });
  const list = await listModules(new CachedMemory(kernel.build()), types, head);
  assert(list.truncated);
  assert(list.reason!.includes("loops back to " + space.hex(modules[1])), list.reason);
  assertEquals(list.modules.map((m) => m.name), ["ext4", "nvidia", "hello", "bye"]);
});

Deno.test("listModules() stops at a non-kernel list.next and says where", async () => {
  const { kernel, head, modules } = modulesImage(types, SPECS);
  kernel.mutate(modules[1], { next: { raw: 0x7fff_4141_4141n } });
  const list = await listModules(new CachedMemory(kernel.build()), types, head);
  assert(list.truncated);
  assert(list.reason!.includes("0x7fff41414141") && list.reason!.includes(space.hex(modules[1])));
  assertEquals(list.modules.map((m) => m.name), ["ext4", "nvidia"]);
});

Deno.test("listModules() stops at a module missing from memory, reported as truncated", async () => {
  const { kernel, head, modules } = modulesImage(types, SPECS);
  kernel.remove(modules[2]);
  const list = await listModules(new CachedMemory(kernel.build()), types, head);
  assert(list.truncated);
  assert(list.reason!.includes("Cannot read"), list.reason);
  assertEquals(list.modules.length, 2);
});

Deno.test("listModules() lists a module with an unknown state with an error and goes on", async () => {
  const { kernel, head, modules } = modulesImage(types, SPECS);
  kernel.mutate(modules[0], { state: 99 });
  const list = await listModules(new CachedMemory(kernel.build()), types, head);
  assertEquals(list.truncated, false);
  assertEquals(list.modules[0].state, "unknown");
  assert(list.modules[0].error?.includes("state 99"), list.modules[0].error);
  assertEquals(list.modules.length, 5);
});

Deno.test("listModules() bounds the walk by maxModules", async () => {
  const { kernel, head } = modulesImage(types, SPECS);
  const list = await listModules(new CachedMemory(kernel.build()), types, head, { maxModules: 2 });
  assert(list.truncated);
  assertEquals(list.modules.length, 2);
});

Deno.test("listModules() returns no module for an empty list", async () => {
  const { kernel, head } = modulesImage(types, []);
  assertEquals(await listModules(new CachedMemory(kernel.build()), types, head), {
    modules: [],
    truncated: false,
    reason: undefined,
  });
});

Deno.test("taintLetters() shows the module taint flags in the kernel's order", () => {
  assertEquals(taintLetters(0n), "");
  assertEquals(taintLetters((1n << 12n) | (1n << 13n)), "OE");
  assertEquals(taintLetters((1n << 13n) | (1n << 0n) | (1n << 9n)), "PE");
  assertEquals(taintLetters((1n << 10n) | (1n << 15n) | (1n << 18n)), "CKN");
});

/** A Linux 6.1 `struct module`: core_layout and init_layout, refcnt, no mem[]. */
function linux61(options: { taints?: boolean } = {}): Btf {
  const b = new BtfBuilder();
  const int = b.addInt("int", 4, { signed: true });
  const uint = b.addInt("unsigned int", 4);
  const ulong = b.addInt("long unsigned int", 8);
  const char = b.addInt("char", 1, { char: true });
  const voidPtr = b.addPtr(0);
  const listHead = b.addStruct("list_head", {
    size: 16,
    members: [
      { name: "next", typeId: b.typeCount + 2, bitOffset: 0 },
      { name: "prev", typeId: b.typeCount + 2, bitOffset: 64 },
    ],
  });
  b.addPtr(listHead);
  const state = b.addEnum("module_state", {
    values: [
      ["MODULE_STATE_LIVE", 0],
      ["MODULE_STATE_COMING", 1],
      ["MODULE_STATE_GOING", 2],
      ["MODULE_STATE_UNFORMED", 3],
    ],
  });
  const atomic = b.addStruct("", {
    size: 4,
    members: [{ name: "counter", typeId: int, bitOffset: 0 }],
  });
  const atomicT = b.addTypedef("atomic_t", atomic);
  const layout = b.addStruct("module_layout", {
    size: 64,
    members: [
      { name: "base", typeId: voidPtr, bitOffset: 0 },
      { name: "size", typeId: uint, bitOffset: 64 },
      { name: "text_size", typeId: uint, bitOffset: 96 },
    ],
  });
  b.addStruct("module", {
    size: 512,
    members: [
      { name: "state", typeId: state, bitOffset: 0 },
      { name: "list", typeId: listHead, bitOffset: 64 },
      { name: "name", typeId: b.addArray(char, 56), bitOffset: 192 },
      { name: "core_layout", typeId: layout, bitOffset: 320 * 8 },
      { name: "init_layout", typeId: layout, bitOffset: 384 * 8 },
      { name: "refcnt", typeId: atomicT, bitOffset: 448 * 8 },
      ...(options.taints === false ? [] : [{ name: "taints", typeId: ulong, bitOffset: 456 * 8 }]),
    ],
  });
  return parseBtf(b.build());
}

Deno.test("resolveModuleTypes() reads Linux 6.1's core_layout, init_layout and refcnt", async () => {
  const t61 = resolveModuleTypes(linux61());
  assertEquals(t61.memory.kind, "layout");
  const { kernel, head } = modulesImage(t61, [
    { name: "xfs", sizes: [0x9000, 0x3000], base: 0xffff_ffff_c040_0000n, refcnt: 3 },
    { name: "loop", sizes: [0x2000, 0x1000], base: 0xffff_ffff_c050_0000n, refcnt: 1 },
  ]);
  const image = kernel.build();
  const list = await listModules(new CachedMemory(image), t61, head);
  assertEquals(
    list.modules.map((m) => [m.name, m.base, m.size, m.refcount]),
    [["xfs", "0xffffffffc0400000", 0xc000, 2], ["loop", "0xffffffffc0500000", 0x3000, 0]],
  );
  const checks = await checkPlan(
    image,
    (b) => planModules(b, t61, head),
    (mem) => listModules(mem, t61, head),
  );
  for (const check of Object.values(checks)) {
    assertEquals([check.misses, check.result], [[], list]);
  }
});

Deno.test("resolveModuleTypes() names the field a kernel lacks", () => {
  assertThrows(() => resolveModuleTypes(linux61({ taints: false })), LayoutError, "taints");
});

Deno.test("planModules() covers listModules() in both modes; selective copies less", async () => {
  const { kernel, head } = modulesImage(types, SPECS);
  const image = kernel.build();
  const expected = await listModules(new CachedMemory(image), types, head);
  const checks = await checkPlan(
    image,
    (b) => planModules(b, types, head),
    (mem) => listModules(mem, types, head),
  );
  for (const check of Object.values(checks)) {
    assertEquals(check.misses, []);
    assertEquals(check.result, expected);
  }
  assert(checks.selective.bytes * 2 < checks.whole.bytes);
});

// The Debian 6.1 guest kernel's BTF has what this machine's lacks: CONFIG_MODULE_UNLOAD's
// source_list, module_use and exit.
const guest = await guestBtf();
const btf61 = "btf" in guest ? guest.btf : undefined;

/**
 * `names` on the module list of a 6.1 image, each used by the modules `users` names (in that
 * order on its source_list), permanent when `permanent` names it.
 */
function usersImage(
  names: string[],
  users: Record<string, string[]>,
  permanent: string[] = [],
) {
  const t = resolveModuleTypes(btf61!);
  const u = t.users!;
  const kernel = new SyntheticKernel(resolveKernelTypes(btf61!), []);
  const head = kernel.place(t.head, {}, { at: 0x7f00_2000_0000 });
  const at = new Map(names.map((name) => [name, kernel.place(t.module, { state: 0, name })]));
  for (const [name, m] of at) {
    if (t.memory.kind !== "layout") throw new TypeError("a 6.1 kernel has core_layout");
    kernel.place(t.memory.layout, { coreBase: { raw: 0n }, coreSize: 0x1000, initSize: 0 }, {
      at: m,
    });
    kernel.place(t.refcnt!, { refcnt: 1 + (users[name]?.length ?? 0) }, { at: m });
    const uses = (users[name] ?? []).map((user) => kernel.place(u.use, { source: at.get(user)! }));
    const links = [m + u.listOffset, ...uses.map((use) => use + u.useOffset)];
    uses.forEach((use, i) => kernel.mutate(use, { next: links[(i + 2) % links.length] }));
    const exit = permanent.includes(name) ? null : 0x7fff_c000_0100;
    kernel.place(u.module, { first: links[1 % links.length], init: 0x7fff_c000_0000, exit }, {
      at: m,
    });
  }
  const entries = [head, ...[...at.values()].map((m) => m + t.listOffset)];
  kernel.mutate(head, { next: entries[1] ?? head });
  [...at.values()].forEach((m, i) => kernel.mutate(m, { next: entries[(i + 2) % entries.length] }));
  return { kernel, head, types: t, at };
}

Deno.test({
  name: "listModules() lists each module's users as /proc/modules does, and [permanent]",
  ignore: !btf61,
  async fn() {
    const { kernel, head, types } = usersImage(
      ["virtio_net", "virtio_pci", "virtio_ring", "virtio", "crc32_generic"],
      { virtio_ring: ["virtio_net", "virtio_pci"], virtio: ["virtio_net", "virtio_pci"] },
      ["crc32_generic"],
    );
    const image = kernel.build();
    const list = await listModules(new CachedMemory(image), types, head);
    assertEquals(
      list.modules.map((m) => [m.name, m.refcount, m.usedBy, m.permanent, m.error]),
      [
        ["virtio_net", 0, [], undefined, undefined],
        ["virtio_pci", 0, [], undefined, undefined],
        ["virtio_ring", 2, ["virtio_net", "virtio_pci"], undefined, undefined],
        ["virtio", 2, ["virtio_net", "virtio_pci"], undefined, undefined],
        ["crc32_generic", 0, [], true, undefined],
      ],
    );
    const checks = await checkPlan(
      image,
      (b) => planModules(b, types, head),
      (mem) => listModules(mem, types, head),
    );
    for (const check of Object.values(checks)) {
      assertEquals([check.misses, check.result], [[], list]);
    }
  },
});

Deno.test({
  name: "listModules() reports a users' list that loops or leaves the kernel, and goes on",
  ignore: !btf61,
  async fn() {
    const { kernel, head, types, at } = usersImage(["a", "b", "c"], { a: ["b"], b: ["c"] });
    const u = types.users!;
    // a's only use links back to itself, not to a's head; b's use names no kernel address.
    const useOfA = (await readStruct(new CachedMemory(kernel.build()), at.get("a")!, u.module))
      .first as number - u.useOffset;
    kernel.mutate(useOfA, { next: useOfA + u.useOffset });
    const useOfB = (await readStruct(new CachedMemory(kernel.build()), at.get("b")!, u.module))
      .first as number - u.useOffset;
    kernel.mutate(useOfB, { source: { raw: 0x4141_4141n } });
    const list = await listModules(new CachedMemory(kernel.build()), types, head, {
      maxModules: 10,
    });
    assertEquals(list.modules.map((m) => [m.name, m.usedBy]), [
      ["a", undefined],
      ["b", undefined],
      ["c", []],
    ]);
    assert(list.modules[0].error?.includes("loops back"), list.modules[0].error);
    assert(list.modules[1].error?.includes("not a kernel address"), list.modules[1].error);
    assertEquals(list.truncated, false);
  },
});
