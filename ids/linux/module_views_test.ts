import { assert, assertEquals } from "../../tests/support/mod.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { AddressSpace, CachedMemory } from "../memory/mod.ts";
import { hiddenModule } from "../detect/mod.ts";
import { offsetOf } from "../kernel/mod.ts";
import { planModuleViews, readModuleViews } from "./module_views.ts";
import { resolveModuleViewTypes } from "./_module_view_types.ts";
import { btf61, ignore, image, ok, SPECS } from "./_module_views_image.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from the Debian 6.1 guest kernel's real BTF (core_layout, refcnt, mod_tree with
// CONFIG_MODULES_TREE_LOOKUP); the memory image is synthetic.

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

const SETTINGS = { severity: "critical" as const, allow: new Set<string>() };

function scanOf(views: Awaited<ReturnType<typeof readModuleViews>>) {
  return {
    takenAt: 0,
    sections: { modules: { supported: true as const, value: views, truncated: false } },
  };
}
