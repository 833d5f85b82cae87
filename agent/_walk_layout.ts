/**
 * The walker's side of `bpf/walk.h`, offset for offset: the operations, the request, result and
 * plan of the shared `.bss`, the `.rodata` configuration and the ring's record header. It stands
 * apart so that a change to walk.h has one file to follow it here.
 *
 * @module
 */

import { PLAN_SIZE } from "../protocol/mod.ts";

/** EBPFMON_OP_*: what a request asks of the programs. */
export const OP_READ = 1;
export const OP_WALK_TASKS = 2;
export const OP_ANCHOR = 3;
export const OP_PLAN = 4;
export const OP_RESUME = 5;
/** StopReason.RING_FULL: the one stop a walk resumes from. */
export const STOP_RING_FULL = 3;

/**
 * Mirrors `struct ebpfmon_shared` in bpf/walk.h: request at 0 (48 bytes), result at 48
 * (72 bytes), plan at 120.
 */
export const REQ = {
  seq: 0,
  op: 8,
  tid: 12,
  addr: 16,
  len: 24,
  maxObjects: 32,
  maxBytes: 40,
} as const;
export const RES = {
  seq: 48,
  objects: 56,
  bytes: 64,
  walkNs: 72,
  root: 80,
  faults: 88,
  error: 96,
  stop: 104,
  pruned: 112,
} as const;
export const PLAN_AT = 120;
/** Mirrors `struct ebpfmon_config` in bpf/walk.h, the object's `.rodata`. */
export const CONFIG = { agentTgid: 0, seenMask: 4, kernelMin: 8 } as const;
export const CONFIG_SIZE = 16;
export const SHARED_SIZE = PLAN_AT + PLAN_SIZE;
/**
 * Mirrors `struct ebpfmon_record`, a record in the ring: u64 address, u32 length, u32 padding,
 * then the bytes (the wire's DATA records have no padding: protocol/data_records.ts).
 */
export const RING_RECORD_HEADER = 16;
/**
 * Mirrors EBPFMON_READ_CHUNK and EBPFMON_READ_MAX_CHUNKS: the longest read one run of the BPF
 * program can do. The agent serves READs of at most `LIMITS.maxRead` (protocol/frames.ts), less.
 */
export const WALKER_READ_MAX = 1024 * 4096;
