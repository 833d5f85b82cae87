import { assert, assertEquals, assertRejects } from "../../tests/support/mod.ts";
import { MemoryCache, PAGE_SIZE } from "./cache.ts";
import { CachedMemory, type GuestMemory, GuestReadError, RemoteMemory } from "./guest_memory.ts";

const BASE = 0x0888_0000_0000;

/** A guest with `pages` readable pages from BASE; byte i of the region holds i & 0xff. */
function guestBytes(addr: number, len: number): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => (addr - BASE + i) & 0xff);
}

function imageCache(pages: number): MemoryCache {
  const cache = new MemoryCache();
  cache.insert(BASE, guestBytes(BASE, pages * PAGE_SIZE));
  return cache;
}

/** A remote guest of `pages` readable pages, counting fetches. */
function remote(pages: number, readable = (_addr: number, _len: number) => true) {
  const fetches: [number, number][] = [];
  const memory = new RemoteMemory(new MemoryCache(), (addr, len) => {
    fetches.push([addr, len]);
    if (addr < BASE || addr + len > BASE + pages * PAGE_SIZE || !readable(addr, len)) {
      return Promise.reject(new Error("EFAULT"));
    }
    return Promise.resolve(guestBytes(addr, len));
  });
  return { memory, fetches };
}

// One conformance suite for every GuestMemory: the same reads give the same bytes.
const implementations: [string, () => GuestMemory][] = [
  ["CachedMemory", () => new CachedMemory(imageCache(4))],
  ["RemoteMemory", () => remote(4).memory],
];
for (const [name, make] of implementations) {
  Deno.test(`${name}.read() returns the guest's bytes, within and across pages`, async () => {
    const memory = make();
    for (const [addr, len] of [[BASE, 8], [BASE + PAGE_SIZE - 3, 6], [BASE + 5, 3 * PAGE_SIZE]]) {
      assertEquals([...await memory.read(addr, len)], [...guestBytes(addr, len)]);
    }
  });
  Deno.test(`${name}.read() rejects a bad length and unreadable memory with GuestReadError`, async () => {
    const memory = make();
    await assertRejects(() => memory.read(BASE, 0), GuestReadError, "length");
    await assertRejects(() => memory.read(BASE, 2 ** 21), GuestReadError, "length");
    await assertRejects(() => memory.read(BASE + 10 * PAGE_SIZE, 8), GuestReadError);
  });
  Deno.test(`${name}.peek() agrees with read() once the bytes are at hand`, async () => {
    const memory = make();
    const bytes = await memory.read(BASE + 100, 16);
    assertEquals([...memory.peek(BASE + 100, 16)!], [...bytes]);
  });
}

Deno.test("RemoteMemory fetches each missing page once, one page per round trip", async () => {
  const { memory, fetches } = remote(4);
  await memory.read(BASE + 10, 8);
  await memory.read(BASE + 20, 8);
  await memory.read(BASE + PAGE_SIZE - 4, 8);
  assertEquals(fetches, [[BASE, PAGE_SIZE], [BASE + PAGE_SIZE, PAGE_SIZE]]);
  assertEquals(memory.stats, { misses: 2, fetches: 2 });
});

Deno.test("RemoteMemory falls back to the exact range when a whole page cannot be read", async () => {
  const { memory, fetches } = remote(4, (_addr, len) => len < PAGE_SIZE);
  assertEquals([...await memory.read(BASE + 50, 4)], [...guestBytes(BASE + 50, 4)]);
  assertEquals(fetches, [[BASE, PAGE_SIZE], [BASE + 50, 4]]);
});

Deno.test("RemoteMemory fetches only the pages a partly cached range lacks", async () => {
  const { memory, fetches } = remote(4);
  memory.cache.insert(BASE, guestBytes(BASE, PAGE_SIZE + 100));
  const bytes = await memory.read(BASE + PAGE_SIZE - 10, 200);
  assertEquals([...bytes], [...guestBytes(BASE + PAGE_SIZE - 10, 200)]);
  assertEquals(fetches, [[BASE + PAGE_SIZE, PAGE_SIZE]]);
  assert(memory.peek(BASE + PAGE_SIZE, PAGE_SIZE));
});
