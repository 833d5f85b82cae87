/**
 * The BPF objects the IDS loaded through the agent (LOAD), each owned by the connection that
 * loaded it: a connection's walker is the last object it loaded, UNLOAD drops them all, and so
 * does the connection's end. A connection may hold at most `maxPerConnection` objects and the
 * agent at most `maxTotal` in all, since each walker holds its ring buffer and dedupe table in
 * kernel memory (about 8 MiB at the default sizes).
 *
 * Every object is checked before libbpf sees it (`agent/bpf_check.ts`, in {@linkcode Walker.open});
 * what is refused, and why, is an ERROR frame (with the end of libbpf's and the verifier's log in
 * LOG frames before it), never a crash.
 *
 * @module
 */

import { encodeFrame, ErrorCode, FrameType, LIMITS, StopReason } from "../protocol/mod.ts";
import { ObjectRefused } from "./object_refused.ts";
import { errorFrame } from "./_closing_frames.ts";
import { LibbpfError } from "./libbpf.ts";
import { describePrograms, Walker } from "./walker.ts";

/** Default of {@linkcode LoadedObjectsOptions.maxPerConnection}. */
export const DEFAULT_MAX_OBJECTS_PER_CONNECTION = 4;
/** Default of {@linkcode LoadedObjectsOptions.maxTotal}. */
export const DEFAULT_MAX_OBJECTS = 8;

/** Options of {@linkcode LoadedObjects}. */
export interface LoadedObjectsOptions {
  /** Objects one connection may hold at once. @default 4 */
  maxPerConnection?: number;
  /** Objects all connections may hold at once. @default 8 */
  maxTotal?: number;
  /** The ring buffer of each loaded walker, in bytes. @default 2 MiB (`DEFAULT_RING_BYTES`) */
  ringBytes?: number;
  /** Where a line per load, refusal and unload goes (rate-limited by the caller). */
  log?: (line: string) => void;
}

/** Who loaded an object: a connection, named by its remote address in the log. */
export interface Owner {
  readonly remote: string;
}

/** The objects loaded by each connection. */
export class LoadedObjects {
  #byOwner = new Map<Owner, Walker[]>();
  #total = 0;
  #maxPerConnection: number;
  #maxTotal: number;
  #ringBytes: number | undefined;
  #log: (line: string) => void;

  constructor(options: LoadedObjectsOptions = {}) {
    this.#maxPerConnection = options.maxPerConnection ?? DEFAULT_MAX_OBJECTS_PER_CONNECTION;
    this.#maxTotal = options.maxTotal ?? DEFAULT_MAX_OBJECTS;
    this.#ringBytes = options.ringBytes;
    this.#log = options.log ?? (() => {});
  }

  /** Objects loaded now, by every connection. */
  get total(): number {
    return this.#total;
  }

  /** The walker `owner` loaded last, if it loaded one. */
  walkerOf(owner: Owner): Walker | undefined {
    return this.#byOwner.get(owner)?.at(-1);
  }

  /**
   * Checks, loads and attaches `elf` for `owner`, and answers the LOAD `id` with the frames to
   * send: LOADED then END, or LOG frames then ERROR.
   */
  async load(owner: Owner, id: number, elf: Uint8Array): Promise<Uint8Array[]> {
    const mine = this.#byOwner.get(owner) ?? [];
    const cap = mine.length >= this.#maxPerConnection
      ? `this connection holds ${mine.length} objects, the most one may (UNLOAD first)`
      : this.#total >= this.#maxTotal
      ? `the agent holds ${this.#total} objects, the most it loads at once`
      : undefined;
    if (cap) {
      this.#log(`refused a LOAD of ${owner.remote}: ${cap}`);
      return [errorFrame(id, ErrorCode.TOO_LARGE, `Cannot load the object: ${cap}`)];
    }
    const started = performance.now();
    let walker: Walker;
    try {
      walker = await Walker.open({ object: elf, ringBytes: this.#ringBytes });
    } catch (error) {
      return this.#refused(owner, id, error);
    }
    let anchor: bigint;
    try {
      anchor = walker.anchor();
    } catch (error) {
      walker.close();
      return this.#refused(owner, id, error);
    }
    mine.push(walker);
    this.#byOwner.set(owner, mine);
    this.#total++;
    const programs = walker.programs.map((p) => ({
      name: p.name,
      section: p.section,
      type: p.typeName,
      tag: p.tag,
      instructions: p.instructions,
    }));
    this.#log(
      `loaded an object of ${elf.length} bytes for ${owner.remote}: ${describePrograms(programs)}`,
    );
    return [
      encodeFrame({ type: FrameType.LOADED, id, loaded: { anchor, programs } }),
      encodeFrame({
        type: FrameType.END,
        id,
        stats: {
          objects: programs.length,
          bytes: elf.length,
          faults: 0,
          pruned: 0,
          guestNs: 0,
          agentNs: Math.round((performance.now() - started) * 1e6),
          stop: StopReason.COMPLETE,
          root: anchor,
        },
      }),
    ];
  }

  /**
   * Unloads every object of `owner`, the kernel's work off the agent's thread (detaching a
   * walker's uprobes takes about 0.4 s); returns how many.
   */
  async unload(owner: Owner): Promise<number> {
    const mine = this.#byOwner.get(owner);
    if (!mine) return 0;
    this.#byOwner.delete(owner);
    this.#total -= mine.length;
    for (const walker of mine) await walker.closeAsync();
    this.#log(`unloaded ${mine.length} object(s) of ${owner.remote}`);
    return mine.length;
  }

  /** Unloads everything. */
  async close(): Promise<void> {
    for (const owner of [...this.#byOwner.keys()]) await this.unload(owner);
  }

  #refused(owner: Owner, id: number, error: unknown): Uint8Array[] {
    if (!(error instanceof Error)) throw error;
    const code = error instanceof ObjectRefused ? ErrorCode.REFUSED : ErrorCode.FAULT;
    // A LibbpfError's message holds its log after the first line; the log goes in LOG frames.
    const reason = error instanceof LibbpfError
      ? error.message.slice(0, error.message.length - error.log.length).trimEnd()
      : error.message;
    this.#log(`refused a LOAD of ${owner.remote}: ${reason.split("\n")[0]}`);
    const frames: Uint8Array[] = [];
    if (error instanceof LibbpfError && error.log) {
      const log = new TextEncoder().encode(error.log);
      const text = log.subarray(Math.max(0, log.length - LIMITS.maxLoadLog));
      frames.push(encodeFrame({ type: FrameType.LOG, id, text }));
    }
    frames.push(errorFrame(id, code, reason));
    return frames;
  }
}
