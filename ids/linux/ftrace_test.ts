import { assert, assertEquals } from "../../tests/support/mod.ts";
import { type Btf, parseBtf } from "../btf/mod.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { offsetOf } from "../kernel/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { AddressSpace, CachedMemory, type KAddr } from "../memory/mod.ts";
import { ftraceHook, type ScanContext } from "../detect/mod.ts";
import {
  type FtraceAnchors,
  type FtraceOps,
  ftraceSource,
  planFtraceOps,
  readFtraceOps,
  resolveFtraceTypes,
} from "./ftrace.ts";
import type { ModuleViews, ViewedModule } from "./module_views.ts";
import { SyntheticKernel, testContext } from "./testing/mod.ts";
import { guestBtf } from "./_guest_btf.ts";

const space = AddressSpace.FOUR_LEVEL;

// Both kernels' layouts: the Debian 6.1 guest's BTF and this machine's (6.18); the memory image
// is synthetic.
const guest = await guestBtf();
if (!("btf" in guest)) console.warn(`ftrace_test: 6.1 tests skipped: ${guest.reason}`);
const host = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const KERNELS: [string, Btf | undefined][] = [
  ["6.1", "btf" in guest ? guest.btf : undefined],
  ["6.18", host],
];

const k = (addr: bigint): KAddr => Number(addr - 0xffff_8000_0000_0000n);
const STEXT = k(0xffff_ffff_8100_0000n);
const ETEXT = k(0xffff_ffff_8220_0000n);
const RK_TEXT = k(0xffff_ffff_c010_0000n);
const GHOST_TEXT = k(0xffff_ffff_c020_0000n);
const ANCHORS: FtraceAnchors = { list: k(0xffff_ffff_8300_0100n), end: k(0xffff_ffff_8300_1000n) };
const CORE = [{ start: space.hex(STEXT), end: space.hex(ETEXT) }];

interface OpsSpec {
  func: KAddr;
  flags?: number;
  /** Buckets of the filter hash, each a chain of ips; none: the empty hash. */
  buckets?: KAddr[][];
  /** The hash's count, when it should lie. */
  count?: number;
  sizeBits?: number;
}

function image(btf: Btf, specs: OpsSpec[]) {
  const t = resolveFtraceTypes(btf);
  const kernel = new SyntheticKernel(resolveKernelTypes(btf), []);
  const localHash = offsetOf(btf, "ftrace_ops", "local_hash");
  kernel.place(t.ops, { func: STEXT + 0x40, next: ANCHORS.end }, { at: ANCHORS.end });
  const empty = kernel.place(t.hash, { sizeBits: 0, buckets: null, count: 0 });
  const ops = specs.map((spec) => {
    const at = kernel.place(t.ops, { func: spec.func, flags: spec.flags ?? 0 });
    let hash = empty;
    if (spec.buckets) {
      // Room for `count` heads: the plan copies that many, and a slab object has neighbours.
      const count = spec.count ?? spec.buckets.flat().length;
      const heads = new Uint8Array(8 * Math.max(spec.buckets.length, count));
      const view = new DataView(heads.buffer);
      spec.buckets.forEach((chain, i) => {
        const entries = chain.map(() => kernel.place(t.entry, {}));
        entries.forEach((e, j) => {
          const next = entries[j + 1];
          kernel.mutate(e, {
            ip: space.fromKAddr(chain[j]),
            next: next === undefined ? null : next + t.hlistOffset,
          });
        });
        if (entries.length) {
          view.setBigUint64(i * 8, space.fromKAddr(entries[0] + t.hlistOffset), true);
        }
      });
      const buckets = kernel.placeBytes(heads);
      hash = kernel.place(t.hash, {
        sizeBits: spec.sizeBits ?? Math.log2(spec.buckets.length),
        buckets,
        count,
      });
    }
    kernel.place(t.opsHash, { filter: hash }, { at: at + localHash });
    kernel.mutate(at, { funcHash: at + localHash });
    return at;
  });
  const links = [...ops, ANCHORS.end];
  ops.forEach((at, i) => kernel.mutate(at, { next: links[i + 1] }));
  const slot = new Uint8Array(8);
  new DataView(slot.buffer).setBigUint64(0, space.fromKAddr(links[0]), true);
  kernel.placeBytes(slot, ANCHORS.list);
  return { kernel, ops, types: t };
}

function module(name: string, text: KAddr, seenIn: ViewedModule["seenIn"]): ViewedModule {
  const h = (at: KAddr) => space.hex(at);
  return {
    name,
    module: h(text + 0x9000),
    base: h(text),
    size: 0xa000,
    refcount: 0,
    taints: "0x0000000000003000",
    taintFlags: "OE",
    state: "live",
    text: [{ start: h(text), end: h(text + 0x4000) }],
    memory: [{ start: h(text), end: h(text + 0xa000) }],
    seenIn,
  };
}

const MODULES: ModuleViews = {
  modules: [
    module("rk", RK_TEXT, ["list", "kset", "mod_tree"]),
    module("ghost", GHOST_TEXT, ["kset"]),
  ],
  views: {
    list: { present: true, count: 1, truncated: false },
    kset: { present: true, count: 2, truncated: false },
    mod_tree: { present: true, count: 1, truncated: false },
  },
  unconfirmed: 0,
};

const SETTINGS = { severity: "high" as const, allow: new Set<string>() };

function detect(value: FtraceOps, settings = SETTINGS) {
  return ftraceHook.detect(
    {
      takenAt: 0,
      sections: {
        ftrace: { supported: true, value, truncated: false },
        modules: { supported: true, value: MODULES, truncated: false },
      },
    },
    undefined,
    settings,
  );
}

const SPECS: OpsSpec[] = [
  { func: STEXT + 0x100 }, // a kernel tracer, every function
  {
    func: RK_TEXT + 0x10,
    flags: 0x1000,
    buckets: [[STEXT + 0x200, STEXT + 0x300], [STEXT + 0x400]],
  },
  { func: GHOST_TEXT + 0x20, buckets: [[STEXT + 0x500]] },
  { func: k(0xffff_8880_0200_1000n) }, // heap memory: no code at all
];

for (const [kernel, btf] of KERNELS) {
  Deno.test({
    name: `readFtraceOps() reads every ops, its callback and its filter (${kernel})`,
    ignore: !btf,
    async fn() {
      const { kernel: img, ops } = image(btf!, SPECS);
      const t = resolveFtraceTypes(btf!);
      const value = await readFtraceOps(new CachedMemory(img.build()), t, ANCHORS, CORE);
      assertEquals(value.truncated, false);
      assertEquals(value.ops.map((o) => [o.ops, o.callback, o.flags, o.filter]), [
        [space.hex(ops[0]), "0xffffffff81000100", 0, { count: 0, ips: [] }],
        [space.hex(ops[1]), "0xffffffffc0100010", 0x1000, {
          count: 3,
          ips: ["0xffffffff81000200", "0xffffffff81000300", "0xffffffff81000400"],
        }],
        [space.hex(ops[2]), "0xffffffffc0200020", 0, { count: 1, ips: ["0xffffffff81000500"] }],
        [space.hex(ops[3]), "0xffff888002001000", 0, { count: 0, ips: [] }],
      ]);
      const findings = detect(value);
      assertEquals(findings.map((f) => [f.subject, f.severity, f.evidence.owner]), [
        [`ftrace ops ${space.hex(ops[1])}`, "high", { kind: "module", name: "rk" }],
        [`ftrace ops ${space.hex(ops[2])}`, "critical", { kind: "hidden-module", name: "ghost" }],
        [`ftrace ops ${space.hex(ops[3])}`, "critical", { kind: "none" }],
      ]);
      assertEquals(findings[0].evidence.filter, value.ops[1].filter.ips);
      assertEquals(findings[0].evidence.count, 3);
      const allowed = detect(value, { ...SETTINGS, allow: new Set(["rk", "ghost"]) });
      assertEquals(allowed.map((f) => f.evidence.ops), [space.hex(ops[2]), space.hex(ops[3])]);
    },
  });

  Deno.test({
    name: `planFtraceOps() covers readFtraceOps() in both modes with one root (${kernel})`,
    ignore: !btf,
    async fn() {
      const { kernel: img, types } = image(btf!, SPECS);
      const image0 = img.build();
      const expected = await readFtraceOps(new CachedMemory(image0), types, ANCHORS, CORE);
      const checks = await checkPlan(
        image0,
        (b) => {
          planFtraceOps(b, types, ANCHORS);
          assertEquals([b.build().roots.length, b.build().nodes.length], [1, 4]);
        },
        (mem) => readFtraceOps(mem, types, ANCHORS, CORE),
      );
      for (const check of Object.values(checks)) {
        assertEquals(check.misses, []);
        assertEquals(check.result, expected);
      }
    },
  });
}

const btf61 = KERNELS[0][1];

Deno.test({
  name: "readFtraceOps() stops at a list that loops and says where",
  ignore: !btf61,
  async fn() {
    const { kernel, ops, types } = image(btf61!, SPECS);
    kernel.mutate(ops[2], { next: ops[0] });
    const value = await readFtraceOps(new CachedMemory(kernel.build()), types, ANCHORS, CORE);
    assert(value.truncated);
    assertEquals(value.reason, `the ftrace ops list loops back to ${space.hex(ops[0])}`);
    assertEquals(value.ops.length, 3);
  },
});

Deno.test({
  name: "readFtraceOps() refuses a hash beyond its bounds or whose count lies",
  ignore: !btf61,
  async fn() {
    const { kernel, types } = image(btf61!, [
      { func: RK_TEXT, buckets: [[STEXT]], sizeBits: 17 },
      { func: RK_TEXT, buckets: [[STEXT, STEXT + 1], []], count: 1 },
      { func: RK_TEXT, buckets: [[STEXT], []], count: 5 },
    ]);
    const value = await readFtraceOps(new CachedMemory(kernel.build()), types, ANCHORS, CORE);
    assertEquals(value.truncated, false);
    assertEquals(value.ops.map((o) => o.filter.error?.replace(/0x[0-9a-f]+/g, "ADDR")), [
      "size_bits 17 of hash ADDR is above 16",
      "hash ADDR holds more entries than its count 1",
      "hash ADDR holds 1 entries, not its count 5",
    ]);
    // Still raised: the callback is what matters.
    assertEquals(detect(value).length, 3);
  },
});

Deno.test({
  name: "readFtraceOps() bounds the list by maxOps",
  ignore: !btf61,
  async fn() {
    const { kernel, types } = image(btf61!, SPECS);
    const value = await readFtraceOps(new CachedMemory(kernel.build()), types, ANCHORS, CORE, {
      maxOps: 2,
    });
    assertEquals([value.truncated, value.reason, value.ops.length], [
      true,
      "more than 2 ftrace ops",
      2,
    ]);
  },
});

function context(btf: Btf, symbols: Record<string, number>): ScanContext {
  return testContext(btf, host, symbols);
}

Deno.test("ftraceSource on a kernel with text symbols only names the missing symbol", async () => {
  const mem = new CachedMemory(new SyntheticKernel(resolveKernelTypes(host), []).build());
  const section = await ftraceSource.read(
    mem,
    context(host, { _stext: STEXT, _etext: ETEXT }),
    mem,
  );
  assertEquals(section, {
    supported: false,
    reason: 'kallsyms does not give the address of "ftrace_ops_list"',
  });
});

Deno.test("ftraceSource reads the section where the symbols are given (6.18 layout)", async () => {
  const { kernel } = image(host, SPECS.slice(0, 2));
  const mem = new CachedMemory(kernel.build());
  const section = await ftraceSource.read(
    mem,
    context(host, {
      _stext: STEXT,
      _etext: ETEXT,
      ftrace_ops_list: ANCHORS.list,
      ftrace_list_end: ANCHORS.end,
    }),
    mem,
  );
  assert(section.supported);
  assertEquals(section.value.ops.map((o) => o.callback), [
    "0xffffffff81000100",
    "0xffffffffc0100010",
  ]);
  assertEquals(section.value.core, CORE);
});
