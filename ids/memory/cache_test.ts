import { assert, assertEquals } from "../../tests/support/mod.ts";
import fc from "fast-check";
import { MemoryCache, PAGE_SIZE } from "./cache.ts";

const BASE = 0x0888_0000_0000; // a typical direct-map offset from the kernel half

Deno.test("MemoryCache.get() returns a view into the extent that covers the range", () => {
  const cache = new MemoryCache();
  const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
  cache.insert(BASE + 10, bytes);
  const got = cache.get(BASE + 20, 5)!;
  assertEquals([...got], [10, 11, 12, 13, 14]);
  assert(got.buffer === bytes.buffer, "a covered range is not copied");
  assertEquals(cache.stats.hits, 1);
});

Deno.test("MemoryCache.get() assembles a range from adjacent extents across a page boundary", () => {
  const cache = new MemoryCache();
  const start = BASE + PAGE_SIZE - 8;
  cache.insert(start, new Uint8Array(8).fill(1));
  cache.insert(start + 8, new Uint8Array(8).fill(2));
  assertEquals([...cache.get(start + 6, 4)!], [1, 1, 2, 2]);
});

Deno.test("MemoryCache.get() misses when any byte of the range is absent", () => {
  const cache = new MemoryCache();
  cache.insert(BASE, new Uint8Array(8));
  cache.insert(BASE + 9, new Uint8Array(8));
  assertEquals(cache.get(BASE, 12), undefined);
  assertEquals(cache.get(BASE - 1, 2), undefined);
  assertEquals(cache.firstMissing(BASE, 12), BASE + 8);
  assertEquals(cache.firstMissing(BASE, 8), undefined);
  assertEquals(cache.stats.misses, 2);
});

Deno.test("MemoryCache prefers the most recent of overlapping extents", () => {
  const cache = new MemoryCache();
  cache.insert(BASE, new Uint8Array(PAGE_SIZE).fill(7));
  cache.insert(BASE + 100, new Uint8Array(4).fill(9));
  assertEquals([...cache.get(BASE + 100, 4)!], [9, 9, 9, 9]);
  assertEquals([...cache.get(BASE + 99, 1)!], [7]);
});

Deno.test("MemoryCache refuses and counts inserts beyond its byte limit", () => {
  const cache = new MemoryCache({ maxBytes: 16 });
  assert(cache.insert(BASE, new Uint8Array(16)));
  assert(!cache.insert(BASE + 16, new Uint8Array(1)));
  assertEquals(cache.stats.refusedBytes, 1);
  assertEquals(cache.get(BASE + 16, 1), undefined);
});

Deno.test("MemoryCache.get() agrees with a byte-by-byte model for random extents", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(3 * PAGE_SIZE), fc.uint8Array({ minLength: 1, maxLength: 600 }))),
      fc.array(fc.tuple(fc.nat(3 * PAGE_SIZE), fc.integer({ min: 1, max: 700 }))),
      (extents, reads) => {
        const cache = new MemoryCache();
        const model = new Map<number, number>();
        for (const [at, bytes] of extents) {
          cache.insert(BASE + at, bytes);
          bytes.forEach((b, i) => model.set(at + i, b));
        }
        for (const [at, len] of reads) {
          const expected = Array.from({ length: len }, (_, i) => model.get(at + i));
          const got = cache.get(BASE + at, len);
          if (expected.includes(undefined)) assertEquals(got, undefined);
          else assertEquals([...got!], expected);
        }
      },
    ),
  );
});

Deno.test("MemoryCache serves a batch of overlapping copies of one memory, then newer inserts", () => {
  // A prefetch copies the same bytes through several nodes (a whole struct, its fields, the
  // same struct twice): one batch. A later on-demand fetch is newer and wins where it overlaps.
  const memory = Uint8Array.from({ length: 3 * PAGE_SIZE + 700 }, (_, i) => (i * 7 + 3) & 0xff);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(3 * PAGE_SIZE), fc.integer({ min: 1, max: 600 }))),
      fc.array(fc.tuple(fc.nat(3 * PAGE_SIZE), fc.integer({ min: 1, max: 100 })), {
        maxLength: 4,
      }),
      fc.array(fc.tuple(fc.nat(3 * PAGE_SIZE), fc.integer({ min: 1, max: 700 }))),
      (copies, later, reads) => {
        const cache = new MemoryCache();
        const model = new Map<number, number>();
        const batch = cache.batch();
        for (const [at, len] of copies) {
          cache.insert(BASE + at, memory.slice(at, at + len), batch);
          for (let i = at; i < at + len; i++) model.set(i, memory[i]);
        }
        // Half the reads before the newer inserts, so that sorted pages are sorted again.
        const check = ([at, len]: [number, number]) => {
          const expected = Array.from({ length: len }, (_, i) => model.get(at + i));
          const got = cache.get(BASE + at, len);
          if (expected.includes(undefined)) assertEquals(got, undefined);
          else assertEquals([...got!], expected);
        };
        reads.slice(0, reads.length / 2).forEach(check);
        for (const [at, len] of later) {
          const bytes = new Uint8Array(len).fill(0xee);
          cache.insert(BASE + at, bytes);
          for (let i = at; i < at + len; i++) model.set(i, 0xee);
        }
        reads.forEach(check);
      },
    ),
  );
});

Deno.test("MemoryCache.gather() fills exactly the asked ranges, or misses, like the model", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(2 * PAGE_SIZE), fc.uint8Array({ minLength: 1, maxLength: 300 }))),
      fc.nat(2 * PAGE_SIZE),
      fc.array(fc.tuple(fc.nat(600), fc.integer({ min: 1, max: 64 })), {
        minLength: 1,
        maxLength: 6,
      }),
      (extents, at, ranges) => {
        const cache = new MemoryCache();
        const model = new Map<number, number>();
        for (const [start, bytes] of extents) {
          cache.insert(BASE + start, bytes);
          bytes.forEach((b, i) => model.set(start + i, b));
        }
        const asked = ranges.map(([off, len]) => ({ off, len }));
        const got = cache.gather(BASE + at, new Uint8Array(700), asked);
        const complete = asked.every((r) =>
          Array.from({ length: r.len }, (_, i) => model.has(at + r.off + i)).every(Boolean)
        );
        assertEquals(got !== undefined, complete);
        if (!got) return;
        for (const r of asked) {
          for (let i = r.off; i < r.off + r.len; i++) assertEquals(got[i], model.get(at + i));
        }
      },
    ),
  );
});

Deno.test("MemoryCache.insertFrom() refuses and counts records beyond its byte limit", () => {
  const cache = new MemoryCache({ maxBytes: 10 });
  const frame = new Uint8Array(32).fill(5);
  assert(cache.insertFrom(BASE, frame, 0, 10));
  assert(!cache.insertFrom(BASE + 10, frame, 10, 1));
  assertEquals(cache.stats.refusedBytes, 1);
  assertEquals(cache.firstMissing(BASE, 11), BASE + 10);
});

Deno.test("MemoryCache answers like a byte model for batched records of many frames", () => {
  // Records as a prefetch sends them: small and large, overlapping copies of one memory in one
  // batch, hundreds of them from frames, and newer on-demand inserts over them.
  const memory = Uint8Array.from({ length: 40 * PAGE_SIZE }, (_, i) => (i * 13 + 5) & 0xff);
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.nat(36 * PAGE_SIZE),
          fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 4 * PAGE_SIZE })),
        ),
        { minLength: 100, maxLength: 200 },
      ),
      fc.array(fc.tuple(fc.nat(38 * PAGE_SIZE), fc.integer({ min: 1, max: 200 })), {
        maxLength: 5,
      }),
      fc.array(fc.tuple(fc.nat(40 * PAGE_SIZE), fc.integer({ min: 1, max: 2000 })), {
        minLength: 20,
        maxLength: 50,
      }),
      (records, later, reads) => {
        const cache = new MemoryCache();
        const model = new Map<number, number>();
        const batch = cache.batch();
        for (const [at, len] of records) {
          const n = Math.min(len, memory.length - at);
          const frame = new Uint8Array(n + 9);
          frame.set(memory.subarray(at, at + n), 7);
          cache.insertFrom(BASE + at, frame, 7, n, batch);
          for (let i = at; i < at + n; i++) model.set(i, memory[i]);
        }
        // A record of many pages.
        const big = new Uint8Array(300_000).fill(0x5a);
        cache.insertFrom(BASE + 64 * PAGE_SIZE, big, 0, big.length, batch);
        for (let i = 0; i < 300_000; i++) model.set(64 * PAGE_SIZE + i, 0x5a);
        for (const [at, len] of later) {
          cache.insert(BASE + at, new Uint8Array(len).fill(0xee));
          for (let i = at; i < at + len; i++) model.set(i, 0xee);
        }
        const asked = [...reads, [64 * PAGE_SIZE + 299_000, 1000] as [number, number]];
        for (const [at, len] of asked) {
          const expected = Array.from({ length: len }, (_, i) => model.get(at + i));
          const got = cache.get(BASE + at, len);
          const complete = !expected.includes(undefined);
          if (!complete) assertEquals(got, undefined);
          else assertEquals([...got!], expected);
          let missing: number | undefined;
          for (let i = 0; i < len && missing === undefined; i++) {
            if (!model.has(at + i)) missing = BASE + at + i;
          }
          assertEquals(cache.firstMissing(BASE + at, len), missing);
          const span = cache.span(BASE + at, len);
          if (span) {
            for (let i = 0; i < len; i++) {
              assertEquals(span.view.getUint8(span.base + BASE + at + i - span.start), expected[i]);
            }
          }
        }
      },
    ),
    { numRuns: 30 },
  );
});

Deno.test("MemoryCache serves a newer insert on a page no lookup has sorted yet", () => {
  // A batch extent spans pages 0-3; a newer byte lands on page 3; the read starts on page 2.
  const cache = new MemoryCache();
  const batch = cache.batch();
  cache.insert(BASE, new Uint8Array(3 * PAGE_SIZE + 100).fill(1), batch);
  cache.insert(BASE, new Uint8Array(1).fill(1), batch);
  cache.insert(BASE + 3 * PAGE_SIZE, new Uint8Array(1).fill(2));
  const got = cache.get(BASE + 2 * PAGE_SIZE + 10, PAGE_SIZE)!;
  assertEquals(got[PAGE_SIZE - 10], 2);
  assertEquals(got[PAGE_SIZE - 11], 1);
});

Deno.test("MemoryCache answers like a byte model for records in address order, read between", () => {
  // A walk's records often come in address order on a page (the files of one slab page, one
  // object's ranges): kept in order as they come, never sorted. Reads between inserts see a page
  // clean, then appended to.
  const memory = Uint8Array.from({ length: 12 * PAGE_SIZE }, (_, i) => (i * 7 + 3) & 0xff);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(10 * PAGE_SIZE), fc.integer({ min: 1, max: 600 })), {
        minLength: 50,
        maxLength: 150,
      }),
      fc.array(fc.tuple(fc.nat(11 * PAGE_SIZE), fc.integer({ min: 1, max: 500 })), {
        minLength: 10,
        maxLength: 30,
      }),
      fc.boolean(),
      (records, reads, later) => {
        const cache = new MemoryCache();
        const model = new Map<number, number>();
        const batch = cache.batch();
        const check = () => {
          for (const [at, len] of reads) {
            const expected = Array.from({ length: len }, (_, i) => model.get(at + i));
            const got = cache.get(BASE + at, len);
            if (expected.includes(undefined)) assertEquals(got, undefined);
            else assertEquals([...got!], expected);
          }
        };
        const sorted = [...records].sort((a, b) => a[0] - b[0] || b[1] - a[1]);
        for (const [k, [at, len]] of sorted.entries()) {
          const n = Math.min(len, memory.length - at);
          cache.insertFrom(BASE + at, memory, at, n, batch);
          for (let i = at; i < at + n; i++) model.set(i, memory[i]);
          if (k % 20 === 0) check();
        }
        // A newer insert over the batch, in order after its last record or not.
        if (later) {
          const [at] = sorted[sorted.length - 1];
          cache.insert(BASE + at, new Uint8Array(64).fill(0xee));
          for (let i = at; i < at + 64; i++) model.set(i, 0xee);
        }
        check();
      },
    ),
    { numRuns: 40 },
  );
});
