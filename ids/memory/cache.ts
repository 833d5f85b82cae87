/**
 * The IDS's copy of guest memory for one snapshot: extents of bytes at kernel addresses,
 * indexed by page, so that a lookup costs a map access and a binary search.
 *
 * @module
 */

import type { KAddr } from "./address.ts";

/** Page granularity of the index (and of on-demand fetches). */
export const PAGE_SIZE = 4096;

/** Cached bytes that start at a known address: the byte at `addr` is `view`'s at `base + addr - start`. */
export interface Span {
  readonly start: KAddr;
  readonly view: DataView;
  readonly base: number;
}

/** The extents that hold bytes of one page. */
interface Page {
  extents: Extent[];
  /** An extent came out of order since the last lookup: sort before searching. */
  dirty: boolean;
  /** Of the extents kept in order, the one that reaches furthest. */
  reach: Extent;
  /** Extents of different ages overlap here: search for the newest. */
  overlapped: boolean;
}

interface Extent extends Span {
  end: KAddr;
  /** All of `view`'s buffer, for copying bytes out without a view per copy. */
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
 * must not modify them afterwards. Where extents overlap, the most recent insert wins, except
 * within a batch (the records of one prefetch), whose copies are equal in age.
 *
 * Each page's extents are kept sorted by address, so a lookup is a binary search; pages where
 * extents of different ages overlap (rare: a page fetched on demand over objects a prefetch
 * copied) are marked and searched for the newest extent instead.
 */
export class MemoryCache {
  #pages = new PageIndex();
  #maxBytes: number;
  #seq = 0;
  /**
   * Whether a page holds extents of different ages: until one does, no lookup looks for newer
   * extents. Set on insert, not when a page is sorted, so that a lookup also sees newer extents
   * on pages no lookup has sorted yet.
   */
  #overlaps = false;
  #view?: DataView;
  #bytes?: Uint8Array;
  /** The page the last lookup found, and its number. */
  #last?: Page;
  #lastPage = -1;
  /** The extent {@linkcode span} last served. */
  #near?: Extent;
  #stats: CacheStats = { hits: 0, misses: 0, bytes: 0, extents: 0, refusedBytes: 0 };

  constructor(options: CacheOptions = {}) {
    this.#maxBytes = options.maxBytes ?? 1 << 30;
  }

  /** A copy of the counters. */
  get stats(): CacheStats {
    return { ...this.#stats };
  }

  /**
   * A new batch: extents inserted with it are copies of one moment (one prefetch), equal in age,
   * so where they overlap neither wins and one wholly inside another adds nothing.
   */
  batch(): number {
    return this.#seq++;
  }

  /**
   * Keeps `bytes` as the memory at `addr`, newer than everything inserted before, or, with
   * `batch` (from {@linkcode batch}), as old as the rest of that batch. Returns false when the
   * cache is full.
   */
  insert(addr: KAddr, bytes: Uint8Array, batch?: number): boolean {
    return this.insertFrom(addr, bytes, 0, bytes.length, batch);
  }

  /**
   * {@linkcode insert} of the `len` bytes of `source` from `start`, without a view of them: the
   * records of a received frame go in this way.
   */
  insertFrom(
    addr: KAddr,
    source: Uint8Array,
    start: number,
    len: number,
    batch?: number,
  ): boolean {
    if (len === 0) return true;
    if (this.#stats.bytes + len > this.#maxBytes) {
      this.#stats.refusedBytes += len;
      return false;
    }
    // The records of one frame share its buffer, and so one view.
    if (this.#view?.buffer !== source.buffer) {
      this.#view = new DataView(source.buffer);
      this.#bytes = new Uint8Array(source.buffer);
    }
    const extent: Extent = {
      start: addr,
      end: addr + len,
      view: this.#view,
      bytes: this.#bytes!,
      base: source.byteOffset + start,
      seq: batch ?? this.#seq++,
    };
    const last = Math.floor((extent.end - 1) / PAGE_SIZE);
    for (let n = Math.floor(addr / PAGE_SIZE); n <= last; n++) {
      const page = this.#pages.get(n);
      if (!page) {
        this.#pages.set(n, { extents: [extent], dirty: false, reach: extent, overlapped: false });
      } else {
        // Extents of two ages on a page may overlap: lookups must then look (#page tells).
        if (page.extents[0].seq !== extent.seq) this.#overlaps = true;
        this.#append(page, extent);
      }
    }
    this.#stats.bytes += len;
    this.#stats.extents++;
    return true;
  }

  /**
   * Adds `extent` to `page`: one that comes in order (after the last by start, as #page sorts)
   * is kept as #page would keep it, so the page stays sorted; any other makes the page dirty.
   */
  #append(page: Page, extent: Extent): void {
    const list = page.extents;
    const last = list[list.length - 1];
    const inOrder = !page.dirty &&
      (extent.start > last.start || (extent.start === last.start && extent.end <= last.end));
    if (!inOrder) {
      list.push(extent);
      page.dirty = true;
      return;
    }
    const reach = page.reach;
    if (extent.start < reach.end) {
      if (extent.seq !== reach.seq) page.overlapped = this.#overlaps = true;
      // Wholly inside an extent of its own batch: it holds the same bytes.
      else if (extent.end <= reach.end) return;
    }
    list.push(extent);
    if (extent.end > reach.end) page.reach = extent;
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
   * The one extent that holds all of [addr, addr + len), for reading in place without a copy or
   * a view object per read; undefined when none does alone (the range may still be cached in
   * parts: {@linkcode get} assembles those).
   */
  span(addr: KAddr, len: number): Span | undefined {
    // A struct's layouts are read one after another from the one extent that holds it; without
    // overlaps, no other extent can serve any of its bytes.
    const near = this.#near;
    if (near && !this.#overlaps && addr >= near.start && addr + len <= near.end) {
      this.#stats.hits++;
      return near;
    }
    const extent = this.#covering(addr);
    if (!extent || extent.end < addr + len) return undefined;
    if (this.#servedUntil(extent, addr, addr + len) !== addr + len) return undefined;
    this.#stats.hits++;
    this.#near = extent;
    return extent;
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
      const at = addr + r.off;
      // A range one extent serves is copied from it directly; others are assembled.
      const e = this.#covering(at);
      if (e && at + r.len <= e.end && this.#servedUntil(e, at, at + r.len) === at + r.len) {
        const from = e.base + at - e.start;
        if (r.len > 32) out.set(e.bytes.subarray(from, from + r.len), r.off);
        else for (let i = 0; i < r.len; i++) out[r.off + i] = e.bytes[from + i];
        continue;
      }
      const bytes = this.#lookup(at, r.len);
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
    if (stop === end) return bytesOf(first, addr, end);
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
      out.set(bytesOf(e, from, to), from - addr);
    }
    return out;
  }

  /**
   * Where `extent`, the newest holding the byte at `at`, stops serving before `limit`: at the
   * start of the first newer extent that overlaps [at, limit).
   */
  #servedUntil(extent: Extent, at: KAddr, limit: KAddr): KAddr {
    if (!this.#overlaps) return limit;
    let stop = limit;
    const last = Math.floor((limit - 1) / PAGE_SIZE);
    for (let n = Math.floor(at / PAGE_SIZE); n <= last; n++) {
      const page = this.#page(n);
      if (!page?.overlapped) continue;
      for (const e of page.extents) {
        if (e.seq > extent.seq && e.start < stop && e.end > at) stop = Math.max(at + 1, e.start);
      }
    }
    return stop;
  }

  /** Page `n` (sorted), for lookups that search it whole. */
  #page(n: number): Page | undefined {
    const page = this.#at(n);
    if (page?.dirty) this.#sort(page);
    return page;
  }

  /** Page `n` as it is; lookups cluster (a struct's fields, the structs of one slab page). */
  #at(n: number): Page | undefined {
    if (n === this.#lastPage) return this.#last;
    const page = this.#pages.get(n);
    if (page) {
      this.#lastPage = n;
      this.#last = page;
    }
    return page;
  }

  /**
   * Sorts by address the extents of `page` that came out of order since the last lookup (those
   * in order were kept in order as they came): one wholly inside an extent of its own batch is
   * dropped (it holds the same bytes), and the page is marked as overlapped when extents of
   * different ages overlap. Without such overlaps, the ends of the kept extents rise with their
   * starts, so a binary search finds the one extent that can hold an address.
   */
  #sort(page: Page): void {
    page.dirty = false;
    const list = page.extents;
    list.sort((a, b) => a.start - b.start || b.end - a.end || a.seq - b.seq);
    let kept = 0;
    let reach: Extent | undefined;
    for (const e of list) {
      if (reach && e.start < reach.end) {
        if (e.seq !== reach.seq) page.overlapped = this.#overlaps = true;
        else if (e.end <= reach.end) continue;
      }
      list[kept++] = e;
      if (!reach || e.end > reach.end) reach = e;
    }
    list.length = kept;
    page.reach = reach!;
  }

  /** The newest extent holding the byte at `addr`. */
  #covering(addr: KAddr): Extent | undefined {
    const page = this.#at(Math.floor(addr / PAGE_SIZE));
    if (!page) return undefined;
    const list = page.extents;
    if (page.dirty) {
      // Extents of one age (no page holds two yet) on a page of a few that came out of order:
      // searched as they are, not sorted first. Any extent holding the byte serves it, and the
      // one that reaches furthest serves the most, as the sorted page's would.
      if (!this.#overlaps && list.length <= SCAN_EXTENTS) {
        let best: Extent | undefined;
        for (const e of list) {
          if (e.start <= addr && addr < e.end && (!best || e.end > best.end)) best = e;
        }
        return best;
      }
      this.#sort(page);
    }
    if (!page.overlapped) {
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

/**
 * Pages by number. A page number of the kernel half needs 35 bits, more than V8's small
 * integers hold, and a map keyed by such numbers hashes heap numbers on every lookup; so pages
 * are kept by their number's high and low halves, in maps keyed by small integers, and the
 * last high half's map is kept at hand (lookups cluster).
 */
class PageIndex {
  #groups = new Map<number, Map<number, Page>>();
  #lastHigh = -1;
  #last?: Map<number, Page>;

  #group(n: number, create: boolean): Map<number, Page> | undefined {
    const high = Math.floor(n / GROUP_PAGES);
    if (high === this.#lastHigh) return this.#last;
    let group = this.#groups.get(high);
    if (!group) {
      if (!create) return undefined;
      this.#groups.set(high, group = new Map());
    }
    this.#lastHigh = high;
    return this.#last = group;
  }

  get(n: number): Page | undefined {
    return this.#group(n, false)?.get(n % GROUP_PAGES);
  }

  set(n: number, page: Page): void {
    this.#group(n, true)!.set(n % GROUP_PAGES, page);
  }
}

/** Most extents of a page searched one by one rather than sorted (see #covering). */
const SCAN_EXTENTS = 8;

/** Pages per group of {@linkcode PageIndex}: 2^20 pages, 4 GiB of addresses. */
const GROUP_PAGES = 2 ** 20;

/**
 * The bytes [from, to) of `extent`, a view into what it was inserted from. An extent keeps no
 * array of its own: the IDS keeps hundreds of thousands of them.
 */
function bytesOf(extent: Extent, from: KAddr, to: KAddr): Uint8Array {
  return new Uint8Array(extent.view.buffer, extent.base + from - extent.start, to - from);
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
