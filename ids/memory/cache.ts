/**
 * The IDS's copy of guest memory for one snapshot: extents of bytes at kernel addresses,
 * indexed by page, so that a lookup costs a map access and a binary search.
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
 *
 * Each page's extents are kept sorted by address, so a lookup is a binary search; pages where
 * extents overlap (rare: a page fetched on demand over objects a prefetch copied) are marked
 * and searched for the newest extent instead.
 */
export class MemoryCache {
  #pages = new Map<number, Extent[]>();
  #maxBytes: number;
  #seq = 0;
  #overlapped = new Set<number>();
  /** Pages with extents appended since their last lookup. */
  #dirty = new Set<number>();
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
      if (!list) {
        this.#pages.set(page, [extent]);
      } else {
        list.push(extent);
        this.#dirty.add(page);
      }
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
    const bytes = this.#lookup(addr, len);
    if (bytes) this.#stats.hits++;
    else this.#stats.misses++;
    return bytes;
  }

  /**
   * Copies the cached bytes of `ranges` (offsets from `addr`) into `out` at the same offsets,
   * and returns it; undefined when a byte of a range is missing. Bytes of `out` outside the
   * ranges are left as they were. The way to read the fields of a structure copied selectively.
   */
  gather(
    addr: KAddr,
    out: Uint8Array,
    ranges: readonly { off: number; len: number }[],
  ): Uint8Array | undefined {
    for (const r of ranges) {
      const bytes = this.#lookup(addr + r.off, r.len);
      if (!bytes) {
        this.#stats.misses++;
        return undefined;
      }
      out.set(bytes, r.off);
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

  #lookup(addr: KAddr, len: number): Uint8Array | undefined {
    const end = addr + len;
    const first = this.#covering(addr);
    if (!first) return undefined;
    let stop = this.#servedUntil(first, addr, Math.min(first.end, end));
    if (stop === end) return first.bytes.subarray(addr - first.start, end - first.start);
    const parts: [Extent, number, number][] = [[first, addr, stop]];
    while (stop < end) {
      const extent = this.#covering(stop);
      if (!extent) return undefined;
      const next = this.#servedUntil(extent, stop, Math.min(extent.end, end));
      parts.push([extent, stop, next]);
      stop = next;
    }
    const out = new Uint8Array(len);
    for (const [e, from, to] of parts) {
      out.set(e.bytes.subarray(from - e.start, to - e.start), from - addr);
    }
    return out;
  }

  /**
   * Where `extent`, the newest holding the byte at `at`, stops serving before `limit`: at the
   * start of the first newer extent that overlaps [at, limit).
   */
  #servedUntil(extent: Extent, at: KAddr, limit: KAddr): KAddr {
    let stop = limit;
    const last = Math.floor((limit - 1) / PAGE_SIZE);
    for (let page = Math.floor(at / PAGE_SIZE); page <= last; page++) {
      if (!this.#overlapped.has(page)) continue;
      for (const e of this.#list(page)!) {
        if (e.seq > extent.seq && e.start < stop && e.end > at) stop = Math.max(at + 1, e.start);
      }
    }
    return stop;
  }

  /**
   * A page's extents sorted by address (then age). Extents appended since the last lookup are
   * sorted in then, and the page is marked as overlapped if neighbours overlap.
   */
  #list(page: number): Extent[] | undefined {
    const list = this.#pages.get(page);
    if (!list || !this.#dirty.delete(page)) return list;
    list.sort((a, b) => a.start - b.start || a.seq - b.seq);
    for (let i = 1; i < list.length && !this.#overlapped.has(page); i++) {
      if (list[i].start < list[i - 1].end) this.#overlapped.add(page);
    }
    return list;
  }

  /** The newest extent holding the byte at `addr`. */
  #covering(addr: KAddr): Extent | undefined {
    const page = Math.floor(addr / PAGE_SIZE);
    const list = this.#list(page);
    if (!list) return undefined;
    if (!this.#overlapped.has(page)) {
      const e = list[upperBound(list, addr) - 1];
      return e && addr < e.end ? e : undefined;
    }
    let best: Extent | undefined;
    for (const e of list) {
      if (e.start <= addr && addr < e.end && (!best || e.seq > best.seq)) best = e;
    }
    return best;
  }
}

/** The index of the first extent in `list` (sorted by start) that starts after `addr`. */
function upperBound(list: Extent[], addr: KAddr): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid].start <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
