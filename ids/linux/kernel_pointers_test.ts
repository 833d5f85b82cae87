import { assert, assertEquals } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { AddressSpace, CachedMemory, type KAddr } from "../memory/mod.ts";
import { hookedPointer, type ScanContext } from "../detect/mod.ts";
import {
  type KernelPointers,
  planKernelPointers,
  pointersSource,
  readKernelPointers,
} from "./kernel_pointers.ts";
import { resolvePointerTypes } from "./_pointer_tables.ts";
import type { ModuleViews, ViewedModule } from "./module_views.ts";
import { SyntheticKernel, testContext } from "./testing/mod.ts";
import { guestBtf } from "./_guest_btf.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from the Debian 6.1 guest kernel's real BTF; the memory image is synthetic.
const guest = await guestBtf();
const ignore = !("btf" in guest);
if (ignore) console.warn(`kernel_pointers_test: 6.1 tests skipped: ${guest.reason}`);
const btf61 = "btf" in guest ? guest.btf : undefined;
const host = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));

/** x86-64 addresses as KAddrs. */
const k = (addr: bigint): KAddr => Number(addr - 0xffff_8000_0000_0000n);
const STEXT = k(0xffff_ffff_8100_0000n);
const ETEXT = k(0xffff_ffff_8220_0000n);
/** A function of core text. */
const fn = (i: number) => STEXT + 0x1000 + i * 0x40;
/** Linux 6.1's __NR_syscalls on x86-64 (the last is 450, set_mempolicy_home_node). */
const NR_SYSCALLS_61 = 451;

const SINITTEXT = k(0xffff_ffff_8300_0000n);
/** early_idt_handler_array: 9 bytes a vector (EARLY_IDT_HANDLER_SIZE), in init text. */
const early = (vector: number) => SINITTEXT + 0x100 + vector * 9;

const SYMBOLS = {
  _stext: STEXT,
  _etext: ETEXT,
  _sinittext: SINITTEXT,
  _einittext: SINITTEXT + 0x8_0000,
  __entry_text_start: STEXT + 0x10,
  __entry_text_end: STEXT + 0x1a00,
  sys_call_table: k(0xffff_ffff_8240_0200n),
  ia32_sys_call_table: k(0xffff_ffff_8240_1200n),
  idt_table: k(0xffff_ffff_8340_0000n),
  tcp4_seq_ops: k(0xffff_ffff_8250_0000n),
  udp_seq_ops: k(0xffff_ffff_8250_0100n),
  tcp6_seq_ops: k(0xffff_ffff_c000_8000n), // in the ipv6 module's data
  udp6_seq_ops: k(0xffff_ffff_8250_0200n),
  proc_root: k(0xffff_ffff_8280_0000n),
};

const IPV6_TEXT = k(0xffff_ffff_c000_0000n);
const RK_TEXT = k(0xffff_ffff_c010_0000n);
const HIDDEN_TEXT = k(0xffff_ffff_c020_0000n);

interface Hooks {
  syscalls?: Record<number, KAddr | bigint>;
  idt?: Record<number, KAddr>;
  seq?: Record<string, Record<string, KAddr>>;
  fops?: Record<string, KAddr>;
}

/** The gate of vector `handler`, as the SDM lays it out: 16 bytes, offset split 16/16/32. */
function gate(view: DataView, at: number, handler: bigint) {
  view.setUint16(at, Number(handler & 0xffffn), true);
  view.setUint16(at + 2, 0x10, true); // __KERNEL_CS
  view.setUint16(at + 4, 0x8e00, true); // present, DPL 0, interrupt gate
  view.setUint16(at + 6, Number((handler >> 16n) & 0xffffn), true);
  view.setUint32(at + 8, Number(handler >> 32n), true);
}

function image(hooks: Hooks = {}) {
  const btf = btf61!;
  const types = resolvePointerTypes(btf);
  const kernel = new SyntheticKernel(resolveKernelTypes(btf), []);
  for (const table of ["sys_call_table", "ia32_sys_call_table"] as const) {
    const bytes = new Uint8Array(NR_SYSCALLS_61 * 8);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < NR_SYSCALLS_61; i++) {
      const v = table === "sys_call_table" ? hooks.syscalls?.[i] ?? fn(i) : fn(i);
      view.setBigUint64(i * 8, typeof v === "bigint" ? v : space.fromKAddr(v), true);
    }
    kernel.placeBytes(bytes, SYMBOLS[table]);
  }
  const idt = new Uint8Array(256 * 16);
  const idtView = new DataView(idt.buffer);
  for (let v = 0; v < 256; v++) {
    if (v === 2) continue; // a zero gate
    // Reserved exception vectors keep their boot-time handlers, as on a booted Debian 6.1.
    const own = v >= 20 && v < 32 && v !== 29 ? early(v) : STEXT + 0x20 + v * 8;
    gate(idtView, v * 16, space.fromKAddr(hooks.idt?.[v] ?? own));
  }
  kernel.placeBytes(idt, SYMBOLS.idt_table);
  if (!("ok" in types.seqOps) || !("ok" in types.procRoot)) throw new Error("6.1 has them");
  if (!("ok" in types.fileOps) || !("ok" in types.inodeOps)) throw new Error("6.1 has them");
  const seq = types.seqOps.ok;
  for (const table of ["tcp4_seq_ops", "udp_seq_ops", "tcp6_seq_ops", "udp6_seq_ops"] as const) {
    const own = table === "tcp6_seq_ops" ? (i: number) => IPV6_TEXT + (i - 100) * 0x40 : fn;
    const values = Object.fromEntries(
      ["start", "next", "stop", "show"].map((m, i) => [m, hooks.seq?.[table]?.[m] ?? own(100 + i)]),
    );
    kernel.place(seq, values, { at: SYMBOLS[table] });
  }
  const fops = kernel.place(types.fileOps.ok, {
    read: fn(200),
    llseek: fn(201),
    iterate_shared: fn(202),
    ...hooks.fops,
  });
  // Rodata follows it, as in the kernel image: the plan copies as much as a file_operations.
  const iops = kernel.placeBytes(new Uint8Array(types.fileOps.ok.size));
  kernel.place(types.inodeOps.ok, { lookup: fn(210), getattr: fn(211) }, { at: iops });
  kernel.place(types.procRoot.ok, { dirOps: fops, iops }, { at: SYMBOLS.proc_root });
  return { kernel, fops, iops };
}

function context(btf = btf61!, symbols: Record<string, number> = SYMBOLS): ScanContext {
  return testContext(btf, host, symbols, ["modules"]);
}

const hexOf = (at: KAddr) => "0x" + space.fromKAddr(at).toString(16);

function module(name: string, text: KAddr, seenIn: ViewedModule["seenIn"]): ViewedModule {
  return {
    name,
    module: hexOf(text + 0x9000),
    base: hexOf(text),
    size: 0xa000,
    refcount: 0,
    taints: "0x0000000000003000",
    taintFlags: "OE",
    state: "live",
    text: [{ start: hexOf(text), end: hexOf(text + 0x4000) }],
    memory: [{ start: hexOf(text), end: hexOf(text + 0xa000) }],
    seenIn,
  };
}

const MODULES: ModuleViews = {
  modules: [
    module("ipv6", IPV6_TEXT, ["list", "kset", "mod_tree"]),
    module("rk", RK_TEXT, ["list", "kset", "mod_tree"]),
    module("ghost", HIDDEN_TEXT, ["kset", "mod_tree"]),
  ],
  views: {
    list: { present: true, count: 2, truncated: false },
    kset: { present: true, count: 3, truncated: false },
    mod_tree: { present: true, count: 3, truncated: false },
  },
  unconfirmed: 0,
};

const SETTINGS = { severity: "critical" as const, allow: new Set<string>() };

function detect(pointers: KernelPointers, settings = SETTINGS) {
  return hookedPointer.detect(
    {
      takenAt: 0,
      sections: {
        pointers: { supported: true, value: pointers, truncated: false },
        modules: { supported: true, value: MODULES, truncated: false },
      },
    },
    undefined,
    settings,
  );
}

Deno.test({
  name: "resolvePointerTypes() finds 6.1's system call count and the gate layout in BTF",
  ignore,
  fn() {
    const types = resolvePointerTypes(btf61!);
    assertEquals(types.syscalls, { ok: NR_SYSCALLS_61 });
    assertEquals(types.gate, { ok: { size: 16, low: 0, middle: 6, high: 8 } });
    assert("ok" in types.seqOps);
    assertEquals(types.seqOps.ok.fields.map((f) => f.name).sort(), [
      "next",
      "show",
      "start",
      "stop",
    ]);
  },
});

Deno.test({
  name: "readKernelPointers() finds nothing outside core text on a clean kernel",
  ignore,
  async fn() {
    const { kernel, fops } = image();
    const section = await readKernelPointers(new CachedMemory(kernel.build()), context());
    assert(section.supported);
    const v = section.value;
    assertEquals(v.absent, []);
    assertEquals(
      v.tables.map((t) => [t.table, t.slots, t.set]),
      [
        ["sys_call_table", 451, 451],
        ["ia32_sys_call_table", 451, 451],
        ["idt_table", 256, 255],
        ["tcp4_seq_ops", 4, 4],
        ["udp_seq_ops", 4, 4],
        ["tcp6_seq_ops", 4, 4],
        ["udp6_seq_ops", 4, 4],
        ["proc_root.proc_dir_ops", v.tables[7].slots, 3],
        ["proc_root.proc_iops", v.tables[8].slots, 2],
      ],
    );
    assertEquals(v.tables[7].address, hexOf(fops));
    assertEquals(v.tables[2].boot, 11);
    // tcp6_seq_ops lives in ipv6 and points into ipv6's text: outside core, not a hook.
    assertEquals(v.outside.map((e) => `${e.table}.${e.slot}`), [
      "tcp6_seq_ops.start",
      "tcp6_seq_ops.stop",
      "tcp6_seq_ops.next",
      "tcp6_seq_ops.show",
    ]);
    assertEquals(detect(v), []);
  },
});

Deno.test({
  name: "hooked_pointer names each rewritten entry with its owner",
  ignore,
  async fn() {
    const { kernel } = image({
      syscalls: { 59: HIDDEN_TEXT + 0x10, 62: RK_TEXT + 0x20, 217: 0x0000_7fff_1234_0000n },
      // Vector 0x80 into a module; vector 40 into init text, which only reserved exception
      // vectors may still point to.
      idt: { 0x80: RK_TEXT + 0x30, 40: early(20) },
      seq: { tcp4_seq_ops: { show: RK_TEXT + 0x40 } },
      fops: { iterate_shared: k(0xffff_8880_0100_0000n) },
    });
    const section = await readKernelPointers(new CachedMemory(kernel.build()), context());
    assert(section.supported);
    const findings = detect(section.value);
    assertEquals(
      findings.map((f) => [f.subject, f.severity, f.evidence.value, f.evidence.owner]),
      [
        ["sys_call_table[59]", "critical", "0xffffffffc0200010", {
          kind: "hidden-module",
          name: "ghost",
        }],
        ["sys_call_table[62]", "critical", "0xffffffffc0100020", { kind: "module", name: "rk" }],
        ["sys_call_table[217]", "critical", "0x00007fff12340000", { kind: "none" }],
        ["idt_table[40]", "critical", "0xffffffff830001b4", { kind: "none" }],
        ["idt_table[128]", "critical", "0xffffffffc0100030", { kind: "module", name: "rk" }],
        ["tcp4_seq_ops.show", "critical", "0xffffffffc0100040", { kind: "module", name: "rk" }],
        ["proc_root.proc_dir_ops.iterate_shared", "critical", "0xffff888001000000", {
          kind: "none",
        }],
      ],
    );
    const allowed = detect(section.value, { ...SETTINGS, allow: new Set(["rk"]) });
    assertEquals(allowed.map((f) => f.subject), [
      "sys_call_table[59]",
      "sys_call_table[217]",
      "idt_table[40]",
      "proc_root.proc_dir_ops.iterate_shared",
    ]);
  },
});

Deno.test({
  name: "planKernelPointers() covers readKernelPointers() in both modes with one root",
  ignore,
  async fn() {
    const { kernel } = image({ syscalls: { 1: RK_TEXT } });
    const img = kernel.build();
    const expected = await readKernelPointers(new CachedMemory(img), context());
    const checks = await checkPlan(
      img,
      (b) => {
        planKernelPointers(b, context());
        const plan = b.build();
        assertEquals([plan.roots.length, plan.nodes.length], [1, 2]);
      },
      (mem) => readKernelPointers(mem, context()),
    );
    for (const check of Object.values(checks)) {
      assertEquals(check.misses, []);
      assertEquals(check.result, expected);
    }
  },
});

Deno.test({
  name: "readKernelPointers() lists a table it cannot read with the error and goes on",
  ignore,
  async fn() {
    const { kernel } = image();
    kernel.remove(SYMBOLS.idt_table);
    const section = await readKernelPointers(new CachedMemory(kernel.build()), context());
    assert(section.supported && section.truncated);
    const idt = section.value.tables.find((t) => t.table === "idt_table")!;
    assert(idt.error?.includes("Cannot read"), idt.error);
    assertEquals(section.value.tables.find((t) => t.table === "udp_seq_ops")?.set, 4);
  },
});

Deno.test({
  name: "readKernelPointers() names the tables whose symbols kallsyms lacks",
  ignore,
  async fn() {
    const { kernel } = image();
    const { ia32_sys_call_table: _, tcp6_seq_ops: __, ...symbols } = SYMBOLS;
    const section = await readKernelPointers(
      new CachedMemory(kernel.build()),
      context(btf61!, symbols),
    );
    assert(section.supported);
    assertEquals(section.value.absent, [
      {
        table: "ia32_sys_call_table",
        reason: 'kallsyms does not give the address of "ia32_sys_call_table"',
      },
      { table: "tcp6_seq_ops", reason: 'kallsyms does not give the address of "tcp6_seq_ops"' },
    ]);
  },
});

Deno.test("pointersSource on a kernel with text symbols only says which symbol is missing", async () => {
  const mem = new CachedMemory(new SyntheticKernel(resolveKernelTypes(host), []).build());
  const none = await pointersSource.read(mem, context(host, {}), mem);
  assertEquals(none, {
    supported: false,
    reason: 'kallsyms does not give the address of "_stext"',
  });
  const text = await pointersSource.read(
    mem,
    context(host, { _stext: STEXT, _etext: ETEXT, __entry_text_start: STEXT + 0x10 }),
    mem,
  );
  assert(!text.supported);
  assert(
    text.reason.startsWith(
      "no table can be read: sys_call_table: kallsyms does not give the " +
        'address of "sys_call_table"',
    ),
    text.reason,
  );
});
