/**
 * What the agent checks in a BPF object before it hands it to libbpf: pure code over the ELF
 * bytes (the object, never guest memory), which may come from a peer and are hostile: every
 * offset, size and count is checked against the file before it is used (`_elf.ts` reads it).
 *
 * - **Program types.** Every executable section but `.text` (which holds subprograms) is a
 *   program section, and libbpf derives the program's type from its name. Only `uprobe` and
 *   `uretprobe` (with or without `/target`) pass: the agent attaches every program to its own
 *   trigger (a uprobe on libc's `getppid`, filtered to its own pid), so those are the only programs
 *   it can fire. Any other section is refused with the kind of program it would be (a `kprobe`
 *   needs kprobes and fires on every caller, `xdp` runs on packets, `lsm` decides permissions...),
 *   and so are sleepable uprobes (`uprobe.s`), which may block the agent's thread.
 * - **Helpers.** Every 8-byte slot of every executable section (subprograms and callbacks
 *   included) is read as an instruction. A `call` (opcode 0x85) with source register 0 calls the
 *   helper whose number is its immediate (include/uapi/linux/bpf.h, `__BPF_FUNC_MAPPER`); the
 *   helpers that write memory that is not the program's own, send signals, change a return value,
 *   jump to another program or act on the BPF system itself are refused by name, as is a number past
 *   the last helper the kernel defines (211: the list is frozen; new kernel functions are kfuncs).
 * - **Other calls.** A call with source register 1 (to a subprogram of the object) passes; a call
 *   that a relocation binds to a symbol the object does not define is a call of a kernel function
 *   (a kfunc, which libbpf resolves against the kernel's BTF) and is refused with its name, as is a
 *   call with source register 2 (a kfunc by BTF id) and any other call form.
 *
 * What it cannot rule out is said in the README ("Loading the IDS's programs").
 *
 * @module
 */

import { CALL, ElfFile, SHT_RELA } from "./_elf.ts";
import { ObjectRefused } from "./object_refused.ts";

/** One program section that passed, as the check saw it. */
export interface CheckedSection {
  /** The section's name, e.g. "uprobe". */
  section: string;
  /** "uprobe" or "uretprobe": how the agent attaches its programs. */
  kind: "uprobe" | "uretprobe";
  /** The programs (function symbols) the section holds. */
  programs: string[];
  /** Instructions (8-byte slots) in the section. */
  instructions: number;
}

/** What {@linkcode checkObject} found in an object it accepts. */
export interface CheckedObject {
  sections: CheckedSection[];
  /** The helper numbers called anywhere in the object, sorted. */
  helpers: number[];
}

/** The last helper number the kernel defines (`cgrp_storage_delete`, since Linux 6.2). */
export const LAST_HELPER = 211;

/**
 * The helpers refused, by number (include/uapi/linux/bpf.h), with what makes each one unsafe for
 * an agent that must only read.
 */
export const FORBIDDEN_HELPERS: ReadonlyMap<number, { name: string; why: string }> = new Map([
  [9, { name: "bpf_skb_store_bytes", why: "it writes packet data" }],
  [10, { name: "bpf_l3_csum_replace", why: "it writes packet data" }],
  [11, { name: "bpf_l4_csum_replace", why: "it writes packet data" }],
  [12, {
    name: "bpf_tail_call",
    why: "it jumps to whatever program a program array holds when it runs, which no check of " +
      "this object sees",
  }],
  [36, { name: "bpf_probe_write_user", why: "it writes the memory of a user process" }],
  [49, { name: "bpf_setsockopt", why: "it changes a socket's options" }],
  [58, { name: "bpf_override_return", why: "it overrides the return value of a kernel function" }],
  [74, { name: "bpf_lwt_seg6_store_bytes", why: "it writes packet data" }],
  [104, { name: "bpf_sysctl_set_new_value", why: "it changes the value written to a sysctl" }],
  [109, { name: "bpf_send_signal", why: "it sends a signal to a process" }],
  [117, { name: "bpf_send_signal_thread", why: "it sends a signal to a thread" }],
  [143, { name: "bpf_store_hdr_opt", why: "it writes TCP header options" }],
  [166, { name: "bpf_sys_bpf", why: "it runs bpf() system calls from the kernel" }],
  [168, { name: "bpf_sys_close", why: "it closes file descriptors" }],
  [187, { name: "bpf_set_retval", why: "it changes the return value seen by a system call" }],
  [190, { name: "bpf_xdp_store_bytes", why: "it writes packet data" }],
]);

/** A call's source register: a subprogram of the object (1), a kfunc by BTF id (2). */
const PSEUDO_CALL = 1;
const PSEUDO_KFUNC_CALL = 2;

/** Program section prefixes libbpf knows, with what the agent says of each kind. */
const REFUSED_KINDS: [RegExp, string][] = [
  [/^u(ret)?probe\.s(\/|$)/, "a sleepable uprobe, which may block the agent's thread"],
  [/^usdt(\/|$)/, "a USDT probe, which fires at a probe point the agent does not call"],
  [
    /^k(ret)?(probe|syscall)(\.multi)?(\/|$)/,
    "a kprobe, which needs kprobes and fires on every caller, not on the agent's trigger",
  ],
  [
    /^(tp|tracepoint|raw_tp|raw_tracepoint)(\.w)?(\/|$)/,
    "a tracepoint program, which fires on every task",
  ],
  [
    /^(fentry|fexit|fmod_ret|freplace|tp_btf)(\.s)?(\/|$)/,
    "a tracing program attached to kernel functions",
  ],
  [/^lsm(\.s|_cgroup)?(\/|$)/, "an LSM program, which decides permissions"],
  [/^iter(\.s)?(\/|$)/, "a BPF iterator"],
  [/^perf_event$/, "a perf_event program, which fires on a perf event the agent does not open"],
  [
    /^(xdp|tc|classifier|action|socket|sk_|sockops|flow_dissector|lwt_|netfilter)/,
    "a network program",
  ],
  [/^cgroup/, "a cgroup program"],
  [/^struct_ops/, "a struct_ops program, which replaces kernel operations"],
  [/^syscall$/, "a syscall program, which runs bpf() system calls"],
];

/**
 * Checks a BPF object: its program types and every call of its instructions (see the module's
 * documentation).
 * @throws {ObjectRefused} naming what is refused, or what is malformed.
 */
export function checkObject(elf: Uint8Array): CheckedObject {
  const file = new ElfFile(elf);
  const sections: CheckedSection[] = [];
  const helpers = new Set<number>();
  for (const sh of file.sections) {
    const shown = printableName(sh.name);
    if (sh.type === SHT_RELA && file.isCode(sh.info)) {
      throw new ObjectRefused(
        `Cannot load the object: section "${shown}" holds relocations with addends (RELA) for code, which libbpf does not apply`,
      );
    }
    if (!file.isCode(sh.index)) continue;
    let kind: CheckedSection["kind"] | undefined;
    if (sh.name !== ".text") kind = programKind(sh.name);
    if (sh.size % 8 !== 0) {
      throw new ObjectRefused(
        `Cannot load the object: section "${shown}" is ${sh.size} bytes, not whole instructions`,
      );
    }
    const calls = file.externalCalls(sh.index);
    const bytes = file.bytes(sh.offset, sh.size);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const slots = Math.floor(sh.size / 8);
    for (let i = 0; i < slots; i++) {
      const code = bytes[i * 8];
      const at = `section "${shown}", instruction ${i}`;
      if ((code & 0xf0) === 0x80 && ((code & 7) === 5 || (code & 7) === 6) && code !== CALL) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} is a call of form 0x${
            code.toString(16)
          }, which the check cannot follow`,
        );
      }
      if (code !== CALL) continue;
      const src = bytes[i * 8 + 1] >> 4;
      const imm = view.getInt32(i * 8 + 4, true);
      const target = calls.get(i * 8);
      if (target !== undefined) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} calls kernel function "${
            printableName(target)
          }" (a kfunc, resolved against the kernel at load), and the agent calls none`,
        );
      }
      if (src === PSEUDO_CALL) continue;
      if (src === PSEUDO_KFUNC_CALL) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} calls the kernel function of BTF id ${imm} (a kfunc), and the agent calls none`,
        );
      }
      if (src !== 0) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} is a call with source register ${src}, which the check cannot follow`,
        );
      }
      const forbidden = FORBIDDEN_HELPERS.get(imm);
      if (forbidden) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} calls helper ${forbidden.name} (${imm}): ${forbidden.why}`,
        );
      }
      if (imm < 1 || imm > LAST_HELPER) {
        throw new ObjectRefused(
          `Cannot load the object: ${at} calls helper ${imm}, which no kernel defines (the last is ${LAST_HELPER})`,
        );
      }
      helpers.add(imm);
    }
    if (kind) {
      sections.push({
        section: sh.name,
        kind,
        programs: file.functions(sh.index),
        instructions: slots,
      });
    }
  }
  if (sections.length === 0) {
    throw new ObjectRefused("Cannot load the object: it holds no program section");
  }
  return { sections, helpers: [...helpers].sort((a, b) => a - b) };
}

/** The attach kind of an allowed program section, or an {@linkcode ObjectRefused}. */
export function programKind(section: string): "uprobe" | "uretprobe" {
  const allowed = /^(uprobe|uretprobe)(\/.*)?$/.exec(section);
  if (allowed) return allowed[1] as "uprobe" | "uretprobe";
  const known = REFUSED_KINDS.find(([pattern]) => pattern.test(section));
  const what = known ? known[1] : "a program of a type the agent does not know";
  throw new ObjectRefused(
    `Cannot load the object: section "${
      printableName(section)
    }" is ${what}; the agent loads only uprobe and uretprobe programs, which its trigger fires`,
  );
}

/** A section name as a message shows it: control characters escaped, at most 80 characters. */
function printableName(name: string): string {
  // deno-lint-ignore no-control-regex
  const shown = name.replace(/[\x00-\x1f\x7f\\"]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
  return shown.length > 80 ? `${shown.slice(0, 80)}...` : shown;
}
