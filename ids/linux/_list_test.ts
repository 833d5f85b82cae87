import { assertEquals } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { ptr, resolveLayout } from "../kernel/mod.ts";
import { AddressSpace, CachedMemory, type KAddr, MemoryCache } from "../memory/mod.ts";
import { isLinked } from "./_list.ts";

const space = AddressSpace.FOUR_LEVEL;

const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const listHead = resolveLayout(btf, "list_head", { next: ptr("next"), prev: ptr("prev") });
const [P, E, N, X] = [0x1000n, 0x2000n, 0x3000n, 0x4000n].map((a) =>
  space.toKAddr(0xffff888100000000n + a)!
);
const POISON2 = 0xdead000000000122n;

/** An image of list_heads: each address with its `next` and `prev` (64-bit values). */
function image(links: [KAddr, bigint, bigint][]): CachedMemory {
  const cache = new MemoryCache();
  for (const [at, next, prev] of links) {
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    view.setBigUint64(0, next, true);
    view.setBigUint64(8, prev, true);
    cache.insert(at, bytes);
  }
  return new CachedMemory(cache);
}
const a = (at: number) => space.fromKAddr(at);

Deno.test("isLinked() asks whether a walk of the list reaches the entry", async () => {
  // P <-> E <-> N: linked.
  const linked = image([[P, a(E), a(N)], [E, a(N), a(P)], [N, a(P), a(E)]]);
  assertEquals(await isLinked(linked, listHead, E), true);
  // X appended behind E while the links were read: N (the head) already points back to X.
  const appending = image([[P, a(E), a(N)], [E, a(N), a(P)], [N, a(P), a(X)], [X, a(N), a(E)]]);
  assertEquals(await isLinked(appending, listHead, E), true, "a busy list");
  // A hand-made unlink: P now leads to N, E's own links untouched.
  const unlinked = image([[P, a(N), a(N)], [E, a(N), a(P)], [N, a(P), a(P)]]);
  assertEquals(await isLinked(unlinked, listHead, E), false, "unlinked by hand");
  // Only the forward link cut (what hides it from every walk): still not linked.
  const forward = image([[P, a(N), a(N)], [E, a(N), a(P)], [N, a(P), a(E)]]);
  assertEquals(await isLinked(forward, listHead, E), false, "forward link cut");
  // list_del_rcu poisons prev; list_del_init points both at the entry.
  assertEquals(await isLinked(image([[E, a(N), POISON2], [N, a(P), a(P)]]), listHead, E), false);
  assertEquals(await isLinked(image([[E, a(E), a(E)]]), listHead, E), false);
});
