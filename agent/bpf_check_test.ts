/**
 * The check of a BPF object before load, over hand-built ELF objects, clang-built ones and the
 * project's own walk.bpf.o. Helper numbers are the kernel's (include/uapi/linux/bpf.h,
 * `__BPF_FUNC_MAPPER`), written out here.
 */

import {
  assert,
  assertEquals,
  assertThrows,
  BPF_PRELUDE,
  buildElf,
  compileBpf,
  EXIT,
  helper,
  insn,
  join,
  MOV0,
} from "../tests/support/mod.ts";
import { checkObject } from "./bpf_check.ts";
import { ObjectRefused } from "./object_refused.ts";
import { WALK_OBJECT } from "./walker_object.ts";

/** The helpers that must be refused, by their number in the kernel's UAPI header. */
const REFUSED_HELPERS: [number, string][] = [
  [12, "bpf_tail_call"],
  [36, "bpf_probe_write_user"],
  [58, "bpf_override_return"],
  [109, "bpf_send_signal"],
  [117, "bpf_send_signal_thread"],
  [166, "bpf_sys_bpf"],
  [168, "bpf_sys_close"],
];
/** Helpers a reader uses: probe_read_kernel, ringbuf_output, get_current_task, loop. */
const READING_HELPERS = [113, 130, 35, 181];

const program = (...code: Uint8Array[]) => join(...code, MOV0, EXIT);
const refused = (elf: Uint8Array, says: string) => {
  const error = assertThrows(() => checkObject(elf), ObjectRefused);
  assert(error.message.includes(says), `"${error.message}" lacks "${says}"`);
};

Deno.test("checkObject() passes the project's walk.bpf.o: four uprobes, reading helpers only", async () => {
  const checked = checkObject(await Deno.readFile(WALK_OBJECT));
  const programs = checked.sections.flatMap((s) => s.programs).sort();
  assertEquals(programs, ["read_memory", "report_anchor", "walk_plan", "walk_tasks"]);
  assertEquals(new Set(checked.sections.map((s) => s.kind)), new Set(["uprobe"]));
  for (const id of [113, 130, 181]) assert(checked.helpers.includes(id), `helper ${id}`);
  for (const [id] of REFUSED_HELPERS) assert(!checked.helpers.includes(id), `helper ${id}`);
});

Deno.test("checkObject() refuses each helper that writes, signals, overrides or jumps, by name", () => {
  for (const [id, name] of REFUSED_HELPERS) {
    refused(
      buildElf([{ name: "uprobe", bytes: program(helper(id)) }]),
      `calls helper ${name} (${id})`,
    );
    // In a subprogram too: .text is scanned like a program.
    refused(
      buildElf([
        { name: "uprobe", bytes: program(insn(0x85, 0, 1, 0, 1)) },
        { name: ".text", bytes: program(helper(id)) },
      ]),
      `section ".text", instruction 0 calls helper ${name}`,
    );
  }
  const reader = checkObject(buildElf([
    { name: "uprobe", bytes: program(...READING_HELPERS.map(helper)) },
  ]));
  assertEquals(reader.helpers, [...READING_HELPERS].sort((a, b) => a - b));
});

Deno.test("checkObject() refuses helper numbers no kernel defines, kfuncs and other calls", () => {
  refused(
    buildElf([{ name: "uprobe", bytes: program(helper(212)) }]),
    "calls helper 212, which no kernel defines",
  );
  refused(buildElf([{ name: "uprobe", bytes: program(helper(0)) }]), "calls helper 0");
  refused(buildElf([{ name: "uprobe", bytes: program(helper(-1)) }]), "calls helper -1");
  refused(
    buildElf([{ name: "uprobe", bytes: program(insn(0x85, 0, 2, 0, 1234)) }]),
    "calls the kernel function of BTF id 1234 (a kfunc)",
  );
  refused(
    buildElf([{
      name: "uprobe",
      bytes: program(insn(0x85, 0, 1, 0, -1)),
      externCalls: [{ offset: 0, symbol: "bpf_task_release" }],
    }]),
    'calls kernel function "bpf_task_release" (a kfunc',
  );
  refused(buildElf([{ name: "uprobe", bytes: program(insn(0x8d, 1)) }]), "a call of form 0x8d");
  refused(buildElf([{ name: "uprobe", bytes: program(insn(0x85, 0, 3)) }]), "source register 3");
  // A call to a subprogram of the object passes.
  checkObject(buildElf([{ name: "uprobe", bytes: program(insn(0x85, 0, 1, 0, 1)) }]));
});

Deno.test("checkObject() passes uprobes and uretprobes only, and names what else a section is", () => {
  const kinds = (name: string) =>
    checkObject(buildElf([{ name, bytes: program() }])).sections.map((s) => [s.section, s.kind]);
  assertEquals(kinds("uprobe"), [["uprobe", "uprobe"]]);
  assertEquals(kinds("uprobe/libc.so.6:getppid"), [["uprobe/libc.so.6:getppid", "uprobe"]]);
  assertEquals(kinds("uretprobe"), [["uretprobe", "uretprobe"]]);
  const refusedKinds: [string, string][] = [
    ["kprobe/do_sys_open", "a kprobe"],
    ["kretprobe/do_sys_open", "a kprobe"],
    ["ksyscall/getppid", "a kprobe"],
    ["uprobe.s/libc.so.6:getppid", "a sleepable uprobe"],
    ["tracepoint/syscalls/sys_enter_getppid", "a tracepoint program"],
    ["raw_tp/sys_enter", "a tracepoint program"],
    ["fentry/do_sys_open", "a tracing program"],
    ["lsm/file_open", "an LSM program"],
    ["perf_event", "a perf_event program"],
    ["xdp", "a network program"],
    ["tc", "a network program"],
    ["cgroup/skb", "a cgroup program"],
    ["struct_ops/ssthresh", "a struct_ops program"],
    ["syscall", "a syscall program"],
    ["uprobe2", "a program of a type the agent does not know"],
  ];
  for (const [section, says] of refusedKinds) {
    refused(buildElf([{ name: section, bytes: program() }]), `section "${section}" is ${says}`);
  }
  // A refused section is refused even beside allowed ones, and with no helper at all.
  refused(
    buildElf([{ name: "uprobe", bytes: program() }, { name: "xdp", bytes: program() }]),
    'section "xdp"',
  );
  refused(
    buildElf([{ name: "license", flags: 2, bytes: new Uint8Array(4) }]),
    "no program section",
  );
});

Deno.test("checkObject() refuses malformed objects with the field named, never reading past them", () => {
  const good = buildElf([{ name: "uprobe", bytes: program() }]);
  refused(new TextEncoder().encode("#!/bin/sh\necho not an object\n".repeat(4)), "not an ELF file");
  refused(good.slice(0, 40), "not an ELF file");
  const patched = (at: number, bytes: number[]) => {
    const copy = good.slice();
    copy.set(bytes, at);
    return copy;
  };
  refused(patched(4, [1]), "not a 64-bit little-endian ELF");
  refused(patched(18, [62, 0]), "its machine is 62, not BPF (247)");
  refused(patched(16, [2, 0]), "not a relocatable object");
  refused(patched(0x3c, [0, 0]), "it has 0 sections");
  refused(good.slice(0, good.length - 64), "the section headers");
  const view = new DataView(good.buffer);
  const shoff = Number(view.getBigUint64(0x28, true));
  // Section 1 (uprobe): its size past the file's end, then its offset.
  const header = shoff + 64;
  const big = good.slice();
  new DataView(big.buffer).setBigUint64(header + 32, 1n << 40n, true);
  refused(big, "section 1's size");
  const past = good.slice();
  new DataView(past.buffer).setBigUint64(header + 24, BigInt(good.length - 8), true);
  refused(past, "section 1 (16 bytes at");
  // Every section on the same bytes: more bytes in sections than in the file.
  const overlapping = good.slice();
  const ov = new DataView(overlapping.buffer);
  const count = ov.getUint16(0x3c, true);
  for (let i = 1; i < count; i++) {
    ov.setBigUint64(shoff + 64 * i + 24, 0n, true);
    ov.setBigUint64(shoff + 64 * i + 32, BigInt(good.length), true);
  }
  refused(overlapping, "more than its");
  // A name not terminated inside its string table.
  const unterminated = good.slice();
  const strndx = view.getUint16(0x3e, true);
  const strAt = Number(view.getBigUint64(shoff + 64 * strndx + 24, true));
  const strSize = Number(view.getBigUint64(shoff + 64 * strndx + 32, true));
  unterminated.fill(0x41, strAt, strAt + strSize);
  refused(unterminated, "name is not terminated");
  refused(buildElf([{ name: "uprobe", bytes: new Uint8Array(12) }]), "not whole instructions");
});

Deno.test("checkObject() refuses clang-built programs that signal or write user memory", async () => {
  const signal = await compileBpf(`${BPF_PRELUDE}
SEC("uprobe") int kill_caller(void *ctx) { bpf_send_signal(9); return 0; }`);
  refused(signal, "calls helper bpf_send_signal (109): it sends a signal to a process");
  const write = await compileBpf(`${BPF_PRELUDE}
SEC("uprobe") int scribble(void *ctx) {
  __u64 zero = 0;
  bpf_probe_write_user((void *)0x10000, &zero, sizeof(zero));
  return 0;
}`);
  refused(write, "calls helper bpf_probe_write_user (36)");
  const kprobe = await compileBpf(`${BPF_PRELUDE}
SEC("kprobe/do_sys_openat2") int opens(void *ctx) { return 0; }`);
  refused(kprobe, 'section "kprobe/do_sys_openat2" is a kprobe');
  const ok = await compileBpf(`${BPF_PRELUDE}
SEC("uretprobe") int after(void *ctx) { return bpf_get_current_pid_tgid() == 1; }`);
  assertEquals(checkObject(ok).sections.map((s) => [s.programs, s.kind]), [[
    ["after"],
    "uretprobe",
  ]]);
});
