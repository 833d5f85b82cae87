/**
 * The IDS's copy of guest memory for one snapshot: extents of bytes at kernel addresses,
 * indexed by page, so that a lookup costs a map access and a scan of the few extents that
 * touch that page.
 *
 * @module
 */

import type { KAddr } from "./address.ts";

/** Page granularity of the index (and of on-demand fetches). */
export const PAGE_SIZE = 4096;

interface Extent {
  start: KAddr;
  end: KAddr;
  bytes: Uint8Array;
  /** Insertion order: a newer extent wins where extents overlap. */
  seq: number;
}

/** Counters of a {@linkcode MemoryCache}. */
export interface CacheStats {
  /** Lookups served entirely from the cache. */
  hits: number;
  /** Lookups that found at least one byte missing. */
  misses: number;
  /** Bytes held. */
  bytes: number;
  /** Extents held. */
  extents: number;
  /** Bytes refused because the cache was full. */
  refusedBytes: number;
}

/** Options of {@linkcode MemoryCache}. */
export interface CacheOptions {
  /** Most bytes held; inserts beyond are refused and counted. @default 1 GiB */
  maxBytes?: number;
}

/**
 * Extents of guest memory. Inserted byte arrays are kept by reference, not copied: the caller
 * must not modify them afterwards. Where extents overlap, the most recent insert wins.
 */
export class MemoryCache {
  #pages = new Map<number, Extent[]>();
  #maxBytes: number;
  #seq = 0;
  #stats: CacheStats = { hits: 0, misses: 0, bytes: 0, extents: 0, refusedBytes: 0 };

  constructor(options: CacheOptions = {}) {
    this.#maxBytes = options.maxBytes ?? 1 << 30;
  }

  /** A copy of the counters. */
  get stats(): CacheStats {
    return { ...this.#stats };
  }

  /** Keeps `bytes` as the memory at `addr`; returns false when the cache is full. */
  insert(addr: KAddr, bytes: Uint8Array): boolean {
    if (bytes.length === 0) return true;
    if (this.#stats.bytes + bytes.length > this.#maxBytes) {
      this.#stats.refusedBytes += bytes.length;
      return false;
    }
    const extent = { start: addr, end: addr + bytes.length, bytes, seq: this.#seq++ };
    const last = Math.floor((extent.end - 1) / PAGE_SIZE);
    for (let page = Math.floor(addr / PAGE_SIZE); page <= last; page++) {
      const list = this.#pages.get(page);
      if (list) list.push(extent);
      else this.#pages.set(page, [extent]);
    }
    this.#stats.bytes += bytes.length;
    this.#stats.extents++;
    return true;
  }

  /**
   * The bytes at [addr, addr + len) when all of them are cached: a view into one extent when
   * one serves the whole range, else a copy assembled from several. Undefined when any byte is
   * missing.
   */
  get(addr: KAddr, len: number): Uint8Array | undefined {
    const end = addr + len;
    let out: Uint8Array | undefined;
    for (let at = addr; at < end;) {
      const extent = this.#covering(at);
      if (!extent) {
        this.#stats.misses++;
        return undefined;
      }
      const stop = this.#servedUntil(extent, at, Math.min(extent.end, end));
      const part = extent.bytes.subarray(at - extent.start, stop - extent.start);
      if (at === addr && stop === end) {
        this.#stats.hits++;
        return part;
      }
      out ??= new Uint8Array(len);
      out.set(part, at - addr);
      at = stop;
    }
    this.#stats.hits++;
    return out;
  }

  /** The first address in [addr, addr + len) that is not cached, or undefined when all are. */
  firstMissing(addr: KAddr, len: number): KAddr | undefined {
    let at = addr;
    while (at < addr + len) {
      const extent = this.#covering(at);
      if (!extent) return at;
      at = extent.end;
    }
    return undefined;
  }

  /**
   * Where `extent`, the newest holding the byte at `at`, stops serving before `limit`: at the
   * start of the first newer extent that overlaps [at, limit).
   */
  #servedUntil(extent: Extent, at: KAddr, limit: KAddr): KAddr {
    let stop = limit;
    const last = Math.floor((limit - 1) / PAGE_SIZE);
    for (let page = Math.floor(at / PAGE_SIZE); page <= last; page++) {
      for (const e of this.#pages.get(page) ?? []) {
        if (e.seq > extent.seq && e.start < stop && e.end > at) stop = Math.max(at + 1, e.start);
      }
    }
    return stop;
  }

  /** The newest extent holding the byte at `addr`. */
  #covering(addr: KAddr): Extent | undefined {
    const list = this.#pages.get(Math.floor(addr / PAGE_SIZE));
    if (!list) return undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      const e = list[i];
      if (e.start <= addr && addr < e.end) return e;
    }
    return undefined;
  }
}
