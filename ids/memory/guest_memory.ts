/**
 * The one interface every view reads guest memory through, and its two implementations:
 * {@linkcode RemoteMemory} (a cache in front of an agent) and {@linkcode CachedMemory} (a cache
 * alone, for memory images). A view cannot tell where the bytes came from.
 *
 * @module
 */

import { AddressSpace, type KAddr } from "./address.ts";
import { MemoryCache, PAGE_SIZE, type Span } from "./cache.ts";

/** Guest kernel memory as views see it. */
export interface GuestMemory {
  /** How the guest's addresses are numbered: to read pointers, and to write addresses out. */
  readonly space: AddressSpace;
  /** The bytes if they are at hand (no I/O), else undefined. */
  peek(addr: KAddr, len: number): Uint8Array | undefined;
  /**
   * The bytes in place, if one cached extent holds them all (no I/O, no copy), else undefined:
   * the fast path of struct reads.
   */
  peekSpan(addr: KAddr, len: number): Span | undefined;
  /**
   * Copies `ranges` (offsets from `addr`) into `out` at the same offsets if they are all at hand
   * (no I/O) and returns `out`; else undefined.
   */
  peekRanges(
    addr: KAddr,
    out: Uint8Array,
    ranges: readonly { off: number; len: number }[],
  ): Uint8Array | undefined;
  /**
   * The bytes, fetched if needed.
   * @throws {GuestReadError} when the guest cannot provide them.
   */
  read(addr: KAddr, len: number): Promise<Uint8Array>;
  /**
   * The same memory read anew from now on, without what this one holds, for a second look at
   * live memory later; absent where memory does not change (a snapshot).
   */
  again?(): GuestMemory;
}

/** Options of {@linkcode GuestReadError}. */
export interface GuestReadErrorOptions extends ErrorOptions {
  /** The guest's addresses, to name the one that failed. @default 4-level */
  space?: AddressSpace;
}

/** Guest memory that could not be read. */
export class GuestReadError extends Error {
  constructor(
    readonly addr: KAddr,
    readonly len: number,
    reason: string,
    options: GuestReadErrorOptions = {},
  ) {
    const at = (options.space ?? AddressSpace.FOUR_LEVEL).hex(addr);
    super(
      `Cannot read ${len} bytes of guest memory at ${at}: ${reason}`,
      "cause" in options ? { cause: options.cause } : undefined,
    );
    this.name = "GuestReadError";
  }
}

/** Longest single read a view may ask for. */
export const MAX_VIEW_READ = 1 << 20;

/**
 * Refuses a read of a bad length, or one not inside one window of `space` (it would run from
 * one region of the guest into the numbers of another).
 */
function checkRead(space: AddressSpace, addr: KAddr, len: number): void {
  if (!Number.isInteger(len) || len <= 0 || len > MAX_VIEW_READ) {
    throw new GuestReadError(addr, len, `length must be 1..${MAX_VIEW_READ}`, { space });
  }
  const problem = space.problem(addr, len);
  if (problem) throw new GuestReadError(addr, len, problem, { space });
}

/** A memory image: whatever the cache holds, and nothing else. */
export class CachedMemory implements GuestMemory {
  /** @param space the guest's addresses @default {@linkcode AddressSpace.FOUR_LEVEL} */
  constructor(readonly cache: MemoryCache, readonly space = AddressSpace.FOUR_LEVEL) {}
  peek(addr: KAddr, len: number): Uint8Array | undefined {
    return this.cache.get(addr, len);
  }
  peekSpan(addr: KAddr, len: number): Span | undefined {
    return this.cache.span(addr, len);
  }
  peekRanges(addr: KAddr, out: Uint8Array, ranges: readonly { off: number; len: number }[]) {
    return this.cache.gather(addr, out, ranges);
  }
  read(addr: KAddr, len: number): Promise<Uint8Array> {
    try {
      checkRead(this.space, addr, len);
    } catch (error) {
      return Promise.reject(error);
    }
    const bytes = this.cache.get(addr, len);
    return bytes ? Promise.resolve(bytes) : Promise.reject(
      new GuestReadError(addr, len, "not in the memory image", { space: this.space }),
    );
  }
}

/** Fetches guest memory: `(addr, len) => bytes`, one round trip per call. */
export type Fetch = (addr: KAddr, len: number) => Promise<Uint8Array>;

/** Counters of a {@linkcode RemoteMemory}. */
export interface RemoteStats {
  /** Reads that needed the agent. */
  misses: number;
  /** Fetches sent to the agent (each a round trip). */
  fetches: number;
}

/**
 * A cache in front of an agent. A miss fetches each missing page with its own round trip
 * (the page-by-page baseline); a page the guest cannot read whole is fetched as the exact
 * missing range instead.
 */
export class RemoteMemory implements GuestMemory {
  #stats: RemoteStats = { misses: 0, fetches: 0 };
  /** @param space the guest's addresses @default {@linkcode AddressSpace.FOUR_LEVEL} */
  constructor(
    readonly cache: MemoryCache,
    readonly fetch: Fetch,
    readonly space = AddressSpace.FOUR_LEVEL,
  ) {}

  again(): RemoteMemory {
    return new RemoteMemory(new MemoryCache(), this.fetch, this.space);
  }

  get stats(): RemoteStats {
    return { ...this.#stats };
  }

  peek(addr: KAddr, len: number): Uint8Array | undefined {
    return this.cache.get(addr, len);
  }

  peekSpan(addr: KAddr, len: number): Span | undefined {
    return this.cache.span(addr, len);
  }

  peekRanges(addr: KAddr, out: Uint8Array, ranges: readonly { off: number; len: number }[]) {
    return this.cache.gather(addr, out, ranges);
  }

  async read(addr: KAddr, len: number): Promise<Uint8Array> {
    checkRead(this.space, addr, len);
    const cached = this.cache.get(addr, len);
    if (cached) return cached;
    this.#stats.misses++;
    const end = addr + len;
    const out = new Uint8Array(len);
    for (let at = this.#fill(out, addr, addr, end); at !== undefined;) {
      const page = at - (at % PAGE_SIZE);
      let bytes: Uint8Array;
      let start: KAddr;
      try {
        this.#stats.fetches++;
        bytes = await this.fetch(page, PAGE_SIZE);
        start = page;
      } catch {
        const from = at;
        const stop = Math.min(end, page + PAGE_SIZE);
        this.#stats.fetches++;
        bytes = await this.fetch(from, stop - from).catch((error) => {
          throw new GuestReadError(from, stop - from, (error as Error).message, {
            cause: error,
            space: this.space,
          });
        });
        start = from;
      }
      this.cache.insert(start, bytes);
      const from = Math.max(addr, start);
      const to = Math.min(end, start + bytes.length);
      out.set(bytes.subarray(from - start, to - start), from - addr);
      at = this.#fill(out, addr, to, end);
    }
    return out;
  }

  /** Fills `out` (bytes from `addr`) from the cache from `at` on; returns the first address still missing. */
  #fill(out: Uint8Array, addr: KAddr, at: KAddr, end: KAddr): KAddr | undefined {
    if (at >= end) return undefined;
    const missing = this.cache.firstMissing(at, end - at) ?? end;
    if (missing > at) out.set(this.cache.get(at, missing - at)!, at - addr);
    return missing < end ? missing : undefined;
  }
}
