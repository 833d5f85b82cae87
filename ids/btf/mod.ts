/**
 * The BTF parser: reads a guest kernel's raw BTF (`/sys/kernel/btf/vmlinux`), which comes from
 * a possibly compromised guest and is checked as hostile input, and answers what the IDS needs
 * to rebuild kernel objects from raw memory: types by name, sizes, and member offsets.
 *
 * ```ts
 * import { parseBtf } from "./mod.ts";
 *
 * const btf = parseBtf(await Deno.readFile("/sys/kernel/btf/vmlinux"));
 * const next = btf.field("task_struct", "tasks.next"); // { offset, size, ... }
 * ```
 *
 * Malformed BTF and failed lookups throw {@linkcode BtfError}. {@linkcode BtfBuilder} makes
 * synthetic BTF for tests.
 *
 * @module
 */

export { Btf } from "./btf.ts";
export { BtfError } from "./btf_error.ts";
export { BtfBuilder, type BtfHeaderOverrides, type BtfMemberSpec } from "./builder.ts";
export { parseBtf } from "./parse.ts";
export type * from "./types.ts";
