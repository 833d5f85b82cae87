import { assert, assertEquals } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { CachedMemory } from "../memory/mod.ts";
import { modulesSource } from "./module_views.ts";
import { resolveModuleViewTypes } from "./_module_view_types.ts";
import { SyntheticKernel, testContext } from "./testing/mod.ts";
import { btf61, ignore, image, SPECS } from "./_module_views_image.ts";

const host = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));

function context(btf: typeof host, symbols: Record<string, number>, features: string[]) {
  return testContext(btf, host, symbols, features);
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
