import { assert, assertEquals } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { AddressSpace, CachedMemory } from "../memory/mod.ts";
import { hiddenModule, type ScanContext } from "../detect/mod.ts";
import { offsetOf } from "../kernel/mod.ts";
import { modulesSource, planModuleViews, readModuleViews } from "./module_views.ts";
import {
  type ModuleAnchors,
  type ModuleViewTypes,
  resolveModuleViewTypes,
} from "./_module_view_types.ts";
import { SyntheticKernel } from "./testing/mod.ts";
import { guestBtf } from "./_guest_btf.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from the Debian 6.1 guest kernel's real BTF (core_layout, refcnt, mod_tree with
// CONFIG_MODULES_TREE_LOOKUP); the memory image is synthetic.
const guest = await guestBtf();
const ignore = !("btf" in guest);
if (ignore) console.warn(`module_views_test: 6.1 tests skipped: ${guest.reason}`);
const btf61 = "btf" in guest ? guest.btf : undefined;

interface Spec {
  name: string;
  /** 0 live, 1 coming, 2 going. @default 0 */
  state?: number;
  list?: boolean;
  kset?: boolean;
  tree?: boolean;
}

const MODULE_BASE = 0x7fff_c000_0000; // ffffffffc0000000: the module area

/**
 * A guest with `specs` modules: each on the module list, in the kset (its own mkobj) and in
 * mod_tree (its core_layout.mtn) unless its spec says not; plus `builtins` param-only kobjects
 * (mod NULL) in the kset. A module off the list has its list_head pointing to itself, as
 * list_del_init leaves it; off the kset, its kobject entry likewise.
 */
function image(types: ModuleViewTypes, specs: Spec[], builtins = 2) {
  const btf = btf61!;
  const kernel = new SyntheticKernel(resolveKernelTypes(btf), []);
  const t = types.modules;
  const kset = ok(types.kset);
  const tree = ok(types.tree);
  const mkobj = offsetOf(btf, "module", "mkobj");
  const mtn = offsetOf(btf, "module", "core_layout.mtn");
  const anchors: ModuleAnchors = {
    modules: 0x7f00_2000_0000,
    moduleKset: 0x7f00_2000_1000,
    modTree: 0x7f00_2000_2000,
  };
  const ksetAt = 0x0888_2000_0000;
  const modules = specs.map((spec, i) => {
    const at = kernel.place(t.module, {
      state: spec.state ?? 0,
      name: spec.name,
      taints: { raw: 0n },
    });
    const base = BigInt(MODULE_BASE + i * 0x10_0000) + 0xffff_8000_0000_0000n;
    if (types.text.kind !== "layout") throw new TypeError("a 6.1 kernel has core_layout");
    kernel.place(types.text.layout, {
      coreBase: base,
      coreSize: 0x4000,
      coreText: 0x2000,
      initBase: null,
      initSize: 0,
      initText: 0,
    }, { at });
    if (t.refcnt) kernel.place(t.refcnt, { refcnt: 1 }, { at });
    // No users: source_list is empty (points to itself), and the module has an exit function.
    const users = t.users!;
    kernel.place(users.module, { first: at + users.listOffset, init: null, exit: null }, { at });
    kernel.place(types.links, {}, { at });
    kernel.place(kset.kobject, { mod: at }, { at: at + mkobj });
    return at;
  });
  // The module list.
  const listed = modules.filter((_, i) => specs[i].list !== false);
  kernel.place(types.listHead, {}, { at: anchors.modules });
  const links = [anchors.modules, ...listed.map((m) => m + t.listOffset)];
  links.forEach((at, i) => {
    const next = links[(i + 1) % links.length];
    const prev = links[(i - 1 + links.length) % links.length];
    if (i === 0) kernel.mutate(at, { next, prev });
    else kernel.mutate(at - t.listOffset, { next, prev });
  });
  modules.forEach((m, i) => {
    if (specs[i].list === false) {
      kernel.mutate(m, { next: m + t.listOffset, prev: m + t.listOffset });
    }
  });
  // The kset: the modules' own kobjects and param-only ones.
  kernel.placeBytes(pointerBytes(ksetAt), anchors.moduleKset);
  kernel.place(kset.kset, {}, { at: ksetAt });
  const kobjects = [
    ...Array.from({ length: builtins }, () => kernel.place(kset.kobject, { mod: null })),
    ...modules.filter((_, i) => specs[i].kset !== false).map((m) => m + mkobj),
  ];
  const entries = [ksetAt + kset.listOffset, ...kobjects.map((k) => k + kset.entryOffset)];
  entries.forEach((entry, i) => {
    const next = entries[(i + 1) % entries.length];
    if (i === 0) kernel.mutate(ksetAt, { next });
    else kernel.mutate(entry - kset.entryOffset, { next });
  });
  entries.forEach((entry, i) => {
    const next = entries[(i + 1) % entries.length];
    const prev = entries[(i - 1 + entries.length) % entries.length];
    kernel.place(types.listHead, { next, prev }, { at: entry });
  });
  modules.forEach((m) => {
    const own = m + mkobj + kset.entryOffset;
    const at = entries.indexOf(own);
    const next = at < 0 ? own : entries[(at + 1) % entries.length];
    const prev = at < 0 ? own : entries[(at - 1 + entries.length) % entries.length];
    kernel.mutate(m, { kobjNext: next, kobjPrev: prev });
  });
  // mod_tree: a heap-shaped binary tree of the modules' core_layout.mtn.
  const inTree = modules.filter((_, i) => specs[i].tree !== false);
  const rb = (j: number) => (j < inTree.length ? inTree[j] + mtn + tree.nodeOffset : null);
  kernel.placeBytes(pointerBytes(rb(0)), anchors.modTree! + tree.rootOffset);
  inTree.forEach((m, i) => {
    kernel.place(tree.node, { mod: m, left: rb(2 * i + 1), right: rb(2 * i + 2) }, { at: m + mtn });
  });
  return { kernel, anchors, modules };
}

function pointerBytes(at: number | null): Uint8Array {
  const bytes = new Uint8Array(8);
  if (at !== null) {
    new DataView(bytes.buffer).setBigUint64(0, BigInt(at) + 0xffff_8000_0000_0000n, true);
  }
  return bytes;
}

const SPECS: Spec[] = [
  { name: "virtio_net" },
  { name: "loop" },
  { name: "dummy" },
  { name: "crc32_generic" },
];

Deno.test({
  name: "readModuleViews() finds every module in all three views of a 6.1 kernel",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    assert("ok" in types.kset && "ok" in types.tree, "6.1 has the kset and mod_tree");
    const { kernel, anchors, modules } = image(types, SPECS);
    const mem = new CachedMemory(kernel.build());
    const views = await readModuleViews(mem, types, anchors, mem);
    assertEquals(views.views, {
      list: { present: true, count: 4, truncated: false },
      kset: { present: true, count: 4, truncated: false },
      mod_tree: { present: true, count: 4, truncated: false },
    });
    assertEquals<unknown>(
      views.modules.map((m) => [m.name, m.module, m.state, m.seenIn, m.recheck]),
      SPECS.map((
        s,
        i,
      ) => [s.name, space.hex(modules[i]), "live", ["list", "kset", "mod_tree"], undefined]),
    );
    assertEquals(views.modules[1].text, [{
      start: "0xffffffffc0100000",
      end: "0xffffffffc0102000",
    }]);
    assertEquals(views.modules[1].memory, [{
      start: "0xffffffffc0100000",
      end: "0xffffffffc0104000",
    }]);
    assertEquals(hiddenModule.detect(scanOf(views), undefined, SETTINGS), []);
  },
});

Deno.test({
  name: "readModuleViews() re-checks a live module off the list and hidden_module raises it",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const specs = [...SPECS.slice(0, 2), { name: "rootkit", list: false }, SPECS[2]];
    const { kernel, anchors, modules } = image(types, specs);
    const mem = new CachedMemory(kernel.build());
    const views = await readModuleViews(mem, types, anchors, mem);
    const rk = views.modules.find((m) => m.name === "rootkit")!;
    assertEquals(rk.seenIn, ["kset", "mod_tree"]);
    assertEquals(rk.recheck, { state: "live", listLinked: false, ksetLinked: true });
    // Read from its own struct module, as lsmod would show it were it listed.
    assertEquals([rk.base, rk.size, rk.refcount], ["0xffffffffc0200000", 0x4000, 0]);
    assertEquals(views.modules.map((m) => m.name), ["virtio_net", "loop", "dummy", "rootkit"]);
    const findings = hiddenModule.detect(scanOf(views), undefined, SETTINGS);
    assertEquals(findings.map((f) => [f.rule, f.severity, f.subject, f.evidence.address]), [
      ["hidden_module", "critical", "module rootkit", space.hex(modules[2])],
    ]);
    assertEquals(findings[0].evidence.missingFrom, ["list"]);
    assertEquals(findings[0].evidence.seenIn, ["kset", "mod_tree"]);
  },
});

Deno.test({
  name: "a COMING module in the kset but not on the list is a load race: no finding",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const specs = [SPECS[0], { name: "loading", state: 1, list: false, tree: false }];
    const { kernel, anchors } = image(types, specs);
    const mem = new CachedMemory(kernel.build());
    const views = await readModuleViews(mem, types, anchors, mem);
    const m = views.modules.find((m) => m.name === "loading")!;
    assertEquals([m.seenIn, m.recheck?.state], [["kset"], "coming"]);
    assertEquals(hiddenModule.detect(scanOf(views), undefined, SETTINGS), []);
  },
});

Deno.test({
  name: "a module the snapshot's list missed but that is linked when re-read is no finding",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const before = image(types, [SPECS[0], { name: "late", list: false }]);
    const after = image(types, [SPECS[0], { name: "late" }]);
    assertEquals(before.modules, after.modules);
    const snapshot = new CachedMemory(before.kernel.build());
    const live = new CachedMemory(after.kernel.build());
    const views = await readModuleViews(snapshot, types, before.anchors, live);
    const m = views.modules.find((m) => m.name === "late")!;
    assertEquals([m.seenIn, m.recheck], [["kset", "mod_tree"], {
      state: "live",
      listLinked: true,
      ksetLinked: true,
    }]);
    assertEquals(hiddenModule.detect(scanOf(views), undefined, SETTINGS), []);
  },
});

Deno.test({
  name: "a listed live module missing from the kset is raised as high",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const { kernel, anchors } = image(types, [SPECS[0], { name: "nosysfs", kset: false }]);
    const mem = new CachedMemory(kernel.build());
    const views = await readModuleViews(mem, types, anchors, mem);
    const findings = hiddenModule.detect(scanOf(views), undefined, SETTINGS);
    assertEquals(findings.map((f) => [f.severity, f.subject, f.evidence.missingFrom]), [
      ["high", "module nosysfs", ["kset"]],
    ]);
    const allowed = { ...SETTINGS, allow: new Set(["nosysfs"]) };
    assertEquals(hiddenModule.detect(scanOf(views), undefined, allowed), []);
  },
});

Deno.test({
  name: "a listed live module the tree lacks is raised only when the live tree lacks it too",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const specs = [SPECS[0], SPECS[1], { name: "untreed", tree: false }];
    const { kernel, anchors } = image(types, specs);
    const mem = new CachedMemory(kernel.build());
    const views = await readModuleViews(mem, types, anchors, mem);
    const m = views.modules.find((m) => m.name === "untreed")!;
    assertEquals([m.seenIn, m.recheck?.inTree], [["list", "kset"], false]);
    assertEquals(
      hiddenModule.detect(scanOf(views), undefined, SETTINGS).map((f) => [
        f.severity,
        f.evidence.missingFrom,
      ]),
      [["high", ["mod_tree"]]],
    );
    // A walk during another module's rebalance missed it; the live tree holds it.
    const live = new CachedMemory(
      image(types, [SPECS[0], SPECS[1], { name: "untreed" }]).kernel
        .build(),
    );
    const raced = await readModuleViews(mem, types, anchors, live);
    assertEquals(raced.modules.find((m) => m.name === "untreed")!.recheck?.inTree, true);
    assertEquals(hiddenModule.detect(scanOf(raced), undefined, SETTINGS), []);
  },
});

Deno.test({
  name: "readModuleViews() reports a kset that loops and raises nothing from it",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const kset = ok(types.kset);
    const { kernel, anchors, modules } = image(types, SPECS, 0);
    const mkobj = offsetOf(btf61!, "module", "mkobj");
    // The last kobject points back to the second instead of the head.
    kernel.mutate(modules[3] + mkobj + kset.entryOffset, {
      next: modules[1] + mkobj + kset.entryOffset,
    });
    const mem = new CachedMemory(kernel.build());
    const views = await readModuleViews(mem, types, anchors, mem);
    assert(views.views.kset.truncated);
    assert(views.views.kset.reason!.includes("loops back"), views.views.kset.reason);
    assertEquals(hiddenModule.detect(scanOf(views), undefined, SETTINGS), []);
  },
});

Deno.test({
  name: "readModuleViews() stops at a mod_tree cycle and a non-kernel rb pointer",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const tree = ok(types.tree);
    const mtn = offsetOf(btf61!, "module", "core_layout.mtn");
    const a = image(types, SPECS);
    a.kernel.mutate(a.modules[3] + mtn, { left: a.modules[0] + mtn + tree.nodeOffset });
    const mem = new CachedMemory(a.kernel.build());
    const views = await readModuleViews(mem, types, a.anchors, mem);
    assert(views.views.mod_tree.truncated && views.views.mod_tree.reason!.includes("twice"));
    const b = image(types, SPECS);
    b.kernel.mutate(b.modules[1] + mtn, { right: { raw: 0x4141_4141n } });
    const mem2 = new CachedMemory(b.kernel.build());
    const views2 = await readModuleViews(mem2, types, b.anchors, mem2);
    assert(
      views2.views.mod_tree.reason!.includes("41414141 is not a kernel address"),
      views2.views.mod_tree.reason,
    );
  },
});

Deno.test({
  name: "planModuleViews() covers readModuleViews() in both modes with one root",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const specs = [...SPECS, { name: "rootkit", list: false }];
    const { kernel, anchors } = image(types, specs);
    const img = kernel.build();
    const live = new CachedMemory(img);
    const expected = await readModuleViews(live, types, anchors, live);
    const checks = await checkPlan(
      img,
      (b) => {
        planModuleViews(b, types, anchors);
        const plan = b.build();
        assertEquals([plan.roots.length, plan.nodes.length], [1, 6]);
      },
      (mem) => readModuleViews(mem, types, anchors, live),
    );
    for (const check of Object.values(checks)) {
      assertEquals(check.misses, []);
      assertEquals(check.result, expected);
    }
  },
});

const host = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));

function context(
  btf: typeof host,
  symbols: Record<string, number>,
  features: string[],
): ScanContext {
  return {
    btf,
    types: resolveKernelTypes(host),
    space,
    initTask: 0,
    anchor: 0,
    agentPid: 0,
    loaded: [],
    symbols: new Map(Object.entries(symbols)),
    features,
    anchors: new Map(),
  };
}

Deno.test("modulesSource says why a kernel without loadable modules has no modules section", async () => {
  const mem = new CachedMemory(new SyntheticKernel(resolveKernelTypes(host), []).build());
  const section = await modulesSource.read(mem, context(host, {}, []), mem);
  assertEquals(section.supported, false);
  assert(!section.supported && section.reason.includes("module"), JSON.stringify(section));
});

Deno.test({
  name: "modulesSource names the symbol kallsyms does not give",
  ignore,
  async fn() {
    const mem = new CachedMemory(new SyntheticKernel(resolveKernelTypes(host), []).build());
    const section = await modulesSource.read(mem, context(btf61!, {}, ["modules"]), mem);
    assertEquals(section, {
      supported: false,
      reason: 'kallsyms does not give the address of "modules"',
    });
  },
});

Deno.test({
  name: "modulesSource names mod_tree absent when kallsyms lacks it, and still reads the rest",
  ignore,
  async fn() {
    const types = resolveModuleViewTypes(btf61!);
    const { kernel, anchors } = image(types, SPECS);
    const mem = new CachedMemory(kernel.build());
    const ctx = context(btf61!, { modules: anchors.modules, module_kset: anchors.moduleKset! }, [
      "modules",
    ]);
    const section = await modulesSource.read(mem, ctx, mem);
    assert(section.supported);
    assertEquals(section.value.views.mod_tree, {
      present: false,
      count: 0,
      truncated: false,
      reason: 'kallsyms does not give the address of "mod_tree"',
    });
    assertEquals(section.value.modules.map((m) => m.seenIn), SPECS.map(() => ["list", "kset"]));
  },
});

/** The part of a kernel's views it has; the test fails when it lacks it. */
function ok<T>(part: { ok: T } | { reason: string }): T {
  if (!("ok" in part)) throw new Error(part.reason);
  return part.ok;
}

const SETTINGS = { severity: "critical" as const, allow: new Set<string>() };

function scanOf(views: Awaited<ReturnType<typeof readModuleViews>>) {
  return {
    takenAt: 0,
    sections: { modules: { supported: true as const, value: views, truncated: false } },
  };
}
