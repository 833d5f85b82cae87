/**
 * Binary frames between the IDS and the agent: their types, fields and limits.
 *
 * Every frame is `u32 length | u8 type | u32 request id | payload`, little-endian, where `length`
 * counts the bytes after itself. A request from the IDS (GET_BTF, SYMBOLS, READ, PREFETCH, HOLD,
 * RELEASE) is answered by zero or more DATA, BTF, SYMBOLS or HELD frames with the same request id,
 * then exactly one END or ERROR. Request ids are chosen by the IDS; the agent answers requests in
 * order.
 *
 * HOLD asks the agent to freeze the cgroups its operator allowed it to hold (the monitored
 * workload) for at most `maxMs`, so that a snapshot of many requests sees memory that does not
 * change under it; RELEASE thaws them. Both are answered by one HELD frame, then END.
 *
 * LOAD carries a BPF object (ELF bytes, at most `LIMITS.maxObject`) for the agent to check, load
 * and attach as this connection's walker; it is answered by one LOADED frame (every program's
 * name, type, tag and instruction count, and the anchor the new walker reported), then END, or
 * by LOG frames (the end of libbpf's and the verifier's log) and ERROR. UNLOAD drops every object
 * the connection loaded (END's `objects` says how many); closing the connection does the same.
 *
 * A PREFETCH may ask for a delta (`delta`): the agent then remembers, for this connection, a
 * digest of every record it sent, and when the IDS says it holds that answer (`delta.base`, the
 * generation END gave it), sends a record that has not changed since as a reference into it (a
 * carried run, `data_records.ts`) instead of its bytes.
 *
 * Frames are built by `frame_encoder.ts`, read by `frame_decoder.ts` and `frame_parser.ts`, and
 * DATA payloads are records (`data_records.ts`).
 *
 * @module
 */

/** The protocol version this build speaks. */
export const PROTOCOL_VERSION = 4;

/** Hard limits every peer enforces. */
export const LIMITS = {
  /** Largest frame (type, id and payload) accepted from the wire. */
  maxFrame: 16 << 20,
  /** Largest DATA or BTF frame the agent builds. */
  dataFrame: 1 << 20,
  /**
   * Largest frame the IDS accepts from an agent: a DATA or BTF frame of `dataFrame` bytes and
   * its chunk header, with room to spare (every other answer is smaller).
   */
  maxAnswerFrame: (1 << 20) + 4096,
  /**
   * Largest kernel BTF a HELLO may announce (a real vmlinux BTF is 5-7 MB): the IDS allocates
   * the BTF once its size is known, so the size is checked first.
   */
  maxBtf: 64 << 20,
  /** Largest READ length. */
  maxRead: 1 << 20,
  /** Most records one PREFETCH may return. */
  maxRecords: 1 << 20,
  /** Most payload bytes one PREFETCH may return. */
  maxPrefetchBytes: 256 << 20,
  /** Longest string field. */
  maxString: 4096,
  /** Most names one SYMBOLS request may ask for. */
  maxSymbols: 64,
  /** Longest hold a HOLD may ask for, in milliseconds; an agent may grant less. */
  maxHoldMs: 10_000,
  /** Largest BPF object (ELF bytes) a LOAD may carry. */
  maxObject: 4 << 20,
  /** Most programs one LOADED frame may list. */
  maxPrograms: 64,
  /** Most bytes of load log (libbpf's and the verifier's) the agent sends for a refused LOAD. */
  maxLoadLog: 64 << 10,
} as const;

/**
 * The first address of the guest kernel's half of the address space (x86-64, 4-level paging):
 * a READ must lie at or above it, and so must every record an agent sends.
 */
export const KERNEL_HALF = 0xffff_8000_0000_0000n;

/**
 * The first address of the kernel half with 5-level paging (LA57): the bound of
 * {@linkcode KERNEL_HALF} for an agent whose HELLO lists {@linkcode FEATURE_LA57}.
 */
export const KERNEL_HALF_LA57 = 0xff00_0000_0000_0000n;

/**
 * The feature an agent lists in HELLO when its guest kernel uses 5-level paging (the `la57`
 * flag of /proc/cpuinfo, which the kernel clears when it runs with 4 levels).
 */
export const FEATURE_LA57 = "la57";

/** The first address of the kernel half of a guest with these HELLO `features`. */
export function kernelHalfOf(features: readonly string[]): bigint {
  return features.includes(FEATURE_LA57) ? KERNEL_HALF_LA57 : KERNEL_HALF;
}

export const FrameType = {
  HELLO: 0x01,
  GET_BTF: 0x02,
  READ: 0x03,
  PREFETCH: 0x04,
  SYMBOLS: 0x05,
  HOLD: 0x06,
  RELEASE: 0x07,
  LOAD: 0x08,
  UNLOAD: 0x09,
  DATA: 0x10,
  BTF: 0x11,
  END: 0x12,
  ERROR: 0x13,
  HELD: 0x14,
  LOADED: 0x15,
  LOG: 0x16,
} as const;
export type FrameType = typeof FrameType[keyof typeof FrameType];

/** The name of each frame type code. */
export const FRAME_TYPE_NAMES: ReadonlyMap<number, string> = new Map<number, string>(
  Object.entries(FrameType).map(([name, code]) => [code, name]),
);

/** Codes carried by ERROR frames. */
export const ErrorCode = {
  BAD_FRAME: 1,
  UNKNOWN_TYPE: 2,
  TOO_LARGE: 3,
  BAD_VERSION: 4,
  FAULT: 5,
  UNSUPPORTED: 6,
  INTERNAL: 7,
  NOT_READY: 8,
  /** The agent's policy refuses it (a LOAD of a program type or helper it does not load). */
  REFUSED: 9,
} as const;
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** What a PREFETCH walks: the built-in task walk, or the plan it carries. */
export const PrefetchTarget = {
  TASKS: 1,
  PLAN: 2,
} as const;
export type PrefetchTarget = typeof PrefetchTarget[keyof typeof PrefetchTarget];

/** Why a walk stopped. Anything but COMPLETE means the answer is truncated. */
export const StopReason = {
  COMPLETE: 0,
  MAX_OBJECTS: 1,
  MAX_BYTES: 2,
  RING_FULL: 3,
  FAULT: 4,
  NO_ROOT: 5,
  /** The walker's work stack filled up. */
  STACK_FULL: 6,
  /** The walker used every step bpf_loop allows. */
  STEPS: 7,
} as const;
export type StopReason = typeof StopReason[keyof typeof StopReason];

/** Where a hold stands, as a HELD frame tells it. */
export const HoldState = {
  /** RELEASE found no hold of this connection. */
  NONE: 0,
  /** HOLD: the cgroups are frozen now. */
  HOLDING: 1,
  /** RELEASE: this release thawed them. */
  RELEASED: 2,
  /** RELEASE: the hold's cap thawed them before the release came. */
  EXPIRED: 3,
} as const;
export type HoldState = typeof HoldState[keyof typeof HoldState];

/** A HELD frame's fields: how a hold went, as the agent measured it. */
export interface HoldAnswer {
  state: HoldState;
  /** The longest the hold may last, in milliseconds: the asked `maxMs` or the agent's own cap. */
  capMs: number;
  /** Nanoseconds from asking the kernel to freeze until every task of the cgroups was frozen. */
  freezeNs: number;
  /**
   * Nanoseconds the workload has been held: from the freeze until now (HOLDING) or until the
   * thaw (RELEASED, EXPIRED); 0 for NONE.
   */
  heldNs: number;
}

/** What the agent tells the IDS about itself and its guest in its HELLO. */
export interface AgentInfo {
  kernelRelease: string;
  /** SHA-256 of the guest's /sys/kernel/btf/vmlinux. */
  btfHash: Uint8Array;
  btfSize: number;
  bootId: string;
  /**
   * Address of a task_struct in the guest (the agent's own): where walks begin. 0 when the agent
   * has no default walker to ask; LOADED then carries it.
   */
  anchor: bigint;
  agentPid: number;
  /**
   * The programs of the object the agent loaded at start (its default walker), as
   * `name:tag` words, or "none" when it started without one (the IDS then loads its own).
   */
  programs: string;
  /**
   * What the guest kernel offers: "modules" when it has loadable modules (/proc/modules),
   * {@linkcode FEATURE_LA57} when it uses 5-level paging; and what the agent's protocol does
   * beyond its first version: {@linkcode FEATURE_PACKED_PLANS} (PREFETCH plans packed).
   */
  features: string[];
}

/** One program of a loaded object, as LOADED describes it. */
export interface LoadedProgram {
  /** The program's name (its function's name in the object). */
  name: string;
  /** Its ELF section, e.g. "uprobe". */
  section: string;
  /** The kernel program type, as libbpf names it (e.g. "kprobe", which uprobes are). */
  type: string;
  /** The kernel's tag of the loaded program: 16 hex digits (bpftool's "tag"). */
  tag: string;
  /** Instructions loaded, as libbpf counts them after relocation. */
  instructions: number;
}

/** What a LOADED frame says about the object the agent loaded. */
export interface LoadAnswer {
  /** The address of the agent's own task_struct, as the new walker reported it. */
  anchor: bigint;
  programs: LoadedProgram[];
}

/** Statistics closing a READ or PREFETCH. */
export interface EndStats {
  objects: number;
  bytes: number;
  /** Objects that could not be read and were skipped. */
  faults: number;
  /** Edges not followed because they lead deeper than the plan allows. */
  pruned: number;
  /** Nanoseconds spent in the guest kernel's programs. */
  guestNs: number;
  /** Nanoseconds from request to END in the agent. */
  agentNs: number;
  stop: StopReason;
  /** Address where the walk began (init_task for the task walk), 0 when none. */
  root: bigint;
  /**
   * A PREFETCH that asked for a delta: the generation under which the agent remembers this
   * answer (the next request's `delta.base`); 0 (or absent) when it remembers none.
   */
  generation?: number;
  /** Records sent as carried runs, by reference to the base (0 or absent: none). */
  carried?: number;
}

/** END's stats of an answer that walked nothing (a hold, an unload, a read served whole). */
export const EMPTY_END_STATS: Readonly<EndStats> = {
  objects: 0,
  bytes: 0,
  faults: 0,
  pruned: 0,
  guestNs: 0,
  agentNs: 0,
  stop: StopReason.COMPLETE,
  root: 0n,
};

export type Frame =
  | { type: typeof FrameType.HELLO; id: number; version: number; agent?: AgentInfo }
  | { type: typeof FrameType.GET_BTF; id: number }
  | { type: typeof FrameType.READ; id: number; addr: bigint; len: number }
  | {
    type: typeof FrameType.PREFETCH;
    id: number;
    target: PrefetchTarget;
    maxObjects: number;
    maxBytes: number;
    /** PLAN: the encoded plan (protocol/plan.ts); empty for TASKS. */
    plan: Uint8Array;
    /**
     * Asks for a delta against the answer of generation `base` (0: none held; the answer is
     * then whole, and remembered for the next one).
     */
    delta?: { base: number };
  }
  | { type: typeof FrameType.SYMBOLS; id: number; names: string[] }
  | { type: typeof FrameType.SYMBOLS; id: number; symbols: [string, bigint][] }
  /** The reverse question: which symbol starts at each of these addresses. */
  | { type: typeof FrameType.SYMBOLS; id: number; addresses: bigint[] }
  /** Its answer: a name for each address that has one ("name" or "name [module]"). */
  | { type: typeof FrameType.SYMBOLS; id: number; at: [bigint, string][] }
  /** Hold the allowed cgroups still for at most `maxMs` (1..LIMITS.maxHoldMs). */
  | { type: typeof FrameType.HOLD; id: number; maxMs: number }
  | { type: typeof FrameType.RELEASE; id: number }
  | { type: typeof FrameType.HELD; id: number; hold: HoldAnswer }
  /** A BPF object to check, load and attach (1..LIMITS.maxObject bytes of ELF). */
  | { type: typeof FrameType.LOAD; id: number; object: Uint8Array }
  | { type: typeof FrameType.UNLOAD; id: number }
  | { type: typeof FrameType.LOADED; id: number; loaded: LoadAnswer }
  /** Text of the log of a refused LOAD (at most LIMITS.maxLoadLog bytes, any encoding). */
  | { type: typeof FrameType.LOG; id: number; text: Uint8Array }
  | { type: typeof FrameType.DATA; id: number; payload: Uint8Array }
  | { type: typeof FrameType.BTF; id: number; offset: number; total: number; bytes: Uint8Array }
  | { type: typeof FrameType.END; id: number; stats: EndStats }
  | { type: typeof FrameType.ERROR; id: number; code: number; message: string };

/** A frame that cannot be accepted. `fatal` means the stream can no longer be trusted. */
export class FrameError extends Error {
  /** The request id of the bad frame, when known. */
  readonly id: number;
  readonly code: ErrorCode;
  readonly fatal: boolean;
  constructor(message: string, code: ErrorCode, id = 0, fatal = false) {
    super(message);
    this.name = "FrameError";
    this.code = code;
    this.id = id;
    this.fatal = fatal;
  }
}

/** The size of a frame header: u32 length, u8 type, u32 id. */
export const FRAME_HEADER = 9;

/** A raw frame: type, id and an unparsed payload. */
export interface RawFrame {
  type: number;
  id: number;
  payload: Uint8Array;
}

/** A human-readable name of a frame type code. */
export function frameTypeName(type: number): string {
  return FRAME_TYPE_NAMES.get(type) ?? `0x${type.toString(16)}`;
}
