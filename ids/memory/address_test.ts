import { assert, assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { AddressSpace, BadPointer, BadPointerError, follow, type RegionBase } from "./address.ts";

const FOUR = AddressSpace.FOUR_LEVEL;

/** The bases of a 5-level guest booted in QEMU (Debian 12's 6.1, KASLR). */
const BASES: RegionBase[] = [
  { name: "page_offset_base", value: 0xff35c69180000000n },
  { name: "vmalloc_base", value: 0xff667dd8c0000000n },
  { name: "vmemmap_base", value: 0xff9f09b940000000n },
];
const LA57 = AddressSpace.fiveLevel(BASES);

/** The pointer `value` as 8 little-endian bytes. */
function pointerBytes(value: bigint): DataView {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, value, true);
  return view;
}

Deno.test("parseKAddr() reads back what hex() writes, and nothing else", () => {
  for (
    const addr of [0xffff800000000000n, 0xffff888100a3c000n, 0xffffffffc0000000n, (1n << 64n) - 8n]
  ) {
    const k = FOUR.toKAddr(addr)!;
    assertEquals(FOUR.hex(k), "0x" + addr.toString(16));
    assertEquals(FOUR.parseKAddr(FOUR.hex(k)), k);
  }
  for (
    const text of [
      "",
      "0x",
      "ffff888100a3c000",
      "0xFFFF888100A3C000",
      "0x7fff888100a3c000",
      "0xffff888100a3c000 ",
      "0x1ffff888100a3c000",
      "0xff35c69180000000",
    ]
  ) {
    assertEquals(FOUR.parseKAddr(text), undefined, JSON.stringify(text));
  }
});

Deno.test("AddressSpace.FOUR_LEVEL numbers the 4-level kernel half from 0, as offsets", () => {
  assertEquals(FOUR.paging, "4-level");
  assertEquals(FOUR.kernelHalf, 0xffff800000000000n);
  assertEquals(FOUR.toKAddr(0xffff800000000000n), 0);
  assertEquals(FOUR.toKAddr(0xffff888000001000n), 0x0880_0000_1000);
  assertEquals(FOUR.toKAddr((1n << 64n) - 1n), 2 ** 47 - 1);
  assertEquals(FOUR.fromKAddr(0x0880_0000_1000), 0xffff888000001000n);
  for (const outside of [0n, 0x7fff_ffff_ffff_f000n, 0xff35c69180000000n, 0xffff7fffffffffffn]) {
    assertEquals(FOUR.toKAddr(outside), undefined, outside.toString(16));
  }
  assertEquals(FOUR.windows, [
    { name: "kernel half", start: "0xffff800000000000", end: "0x10000000000000000" },
  ]);
});

Deno.test("a 5-level space keeps window 0 as the 4-level half and opens one window per base", () => {
  assertEquals(LA57.paging, "5-level");
  assertEquals(LA57.kernelHalf, 0xff00000000000000n);
  assertEquals(LA57.windows, [
    { name: "kernel half", start: "0xffff800000000000", end: "0x10000000000000000" },
    {
      name: "page_offset_base",
      base: "0xff35c69180000000",
      start: "0xff35c69100000000",
      end: "0xff36469100000000",
    },
    {
      name: "vmalloc_base",
      base: "0xff667dd8c0000000",
      start: "0xff667dd800000000",
      end: "0xff66fdd800000000",
    },
    {
      name: "vmemmap_base",
      base: "0xff9f09b940000000",
      start: "0xff9f09b900000000",
      end: "0xff9f89b900000000",
    },
  ]);
  // The kernel image numbers alike in both spaces: symbols mean the same everywhere.
  for (const addr of [0xffffffffa4600000n, 0xffff800000000000n, (1n << 64n) - 1n]) {
    assertEquals(LA57.toKAddr(addr), FOUR.toKAddr(addr));
  }
  // The direct map is window 1, at 2^48; the other bases follow, each at its own 2^48.
  assertEquals(LA57.toKAddr(0xff35c691847a8000n), 2 ** 48 + 0x847a8000);
  assertEquals(LA57.toKAddr(0xff667dd8c0001000n), 2 * 2 ** 48 + 0xc000_1000);
  assertEquals(LA57.toKAddr(0xff9f09b940000040n), 3 * 2 ** 48 + 0x4000_0040);
  for (
    const addr of [
      0xff35c691847a8000n,
      0xff35c69100000000n,
      0xff364690fffffff8n,
      0xff667dd8c0001000n,
      0xff9f09b940000040n,
      0xffffffffa4600000n,
    ]
  ) {
    const k = LA57.toKAddr(addr)!;
    assert(k !== undefined && Number.isSafeInteger(k), addr.toString(16));
    assertEquals(LA57.fromKAddr(k), addr);
    assertEquals(LA57.hex(k), "0x" + addr.toString(16));
    assertEquals(LA57.parseKAddr(LA57.hex(k)), k);
  }
});

Deno.test("a 5-level space refuses what is in none of its windows, and 4-level numbers too", () => {
  for (
    const addr of [
      0xff00000000000000n, // the hypervisor's guard hole
      0xff35c690fffffff8n, // below the direct map's window
      0xff36469100000000n, // one past its 2^47 bytes
      0xfeffffffffffffffn, // not canonical with 5 levels
      0x00007fff00000000n, // user space
    ]
  ) {
    assertEquals(LA57.toKAddr(addr), undefined, addr.toString(16));
    const p = LA57.pointerAt(pointerBytes(addr), 0);
    assert(p instanceof BadPointer, addr.toString(16));
  }
  const hole = LA57.pointerAt(pointerBytes(0xff00000000001000n), 0) as BadPointer;
  assertEquals(hole.problem, "is in no region of the guest's 5-level address space");
  const user = LA57.pointerAt(pointerBytes(0x00007fff00000000n), 0) as BadPointer;
  assertEquals(user.problem, "is not a kernel address");
  // A 4-level guest's pointer into the direct map of a 5-level one is no kernel address.
  const lower = FOUR.pointerAt(pointerBytes(0xff35c691847a8000n), 0);
  assertEquals(lower, new BadPointer("0xff35c691847a8000"));
  assertEquals(LA57.pointerAt(pointerBytes(0n), 0), null);
});

Deno.test("a read or a pointer that runs off a window's end reaches no other window", () => {
  const end = LA57.toKAddr(0xff364690fffffff8n)!;
  assert(LA57.contains(end, 8));
  assertEquals(LA57.contains(end, 9), false);
  assertEquals(
    LA57.problem(end, 9),
    "it runs past the end of the guest's page_offset_base window (its end is 0xff36469100000000)",
  );
  assertEquals(LA57.problem(end + 8, 8)?.startsWith("it is past the end of the guest's"), true);
  assertEquals(
    LA57.problem(4 * 2 ** 48, 8),
    "it is no address of the guest's 5-level address space",
  );
  // What follows a window's last number up to the next window decodes to no address.
  for (const off of [8, 64, 2 ** 40, 2 ** 47 - 9]) {
    assertEquals(LA57.contains(end + off, 1), false, `+${off}`);
    assertThrows(() => LA57.fromKAddr(end + off), RangeError, "is past the end of the guest's");
  }
  // container_of off a window's start lands in the gap below it, not in the window before.
  const start = LA57.toKAddr(0xff667dd800000000n)!;
  assertEquals(LA57.contains(start - 8, 8), false);
  assertEquals(LA57.contains(-8, 8), false);
  assertEquals(FOUR.contains(2 ** 47 - 8, 9), false);
  assertEquals(FOUR.contains(2 ** 48, 1), false);
  // Off the end, hex() still names the address meant: the window's start plus the offset.
  assertEquals(LA57.hex(end + 16), "0xff36469100000008");
});

Deno.test("a window stops where the next one starts", () => {
  const close = AddressSpace.fiveLevel([
    { name: "page_offset_base", value: 0xff11000000000000n },
    { name: "vmalloc_base", value: 0xff11100000000000n },
  ]);
  assertEquals(close.windows[1], {
    name: "page_offset_base",
    base: "0xff11000000000000",
    start: "0xff11000000000000",
    end: "0xff11100000000000",
  });
  const last = close.toKAddr(0xff110ffffffffff8n)!;
  assertEquals(close.contains(last, 8), true);
  assertEquals(close.contains(last, 16), false);
  assertEquals(close.toKAddr(0xff11100000000000n), 2 * 2 ** 48);
  // A base in the 4-level half needs no window of its own: window 0 holds it.
  const high = AddressSpace.fiveLevel([
    BASES[0],
    { name: "vmemmap_base", value: 0xffffd40000000000n },
  ]);
  assertEquals(high.windows.map((w) => w.name), ["kernel half", "page_offset_base"]);
});

Deno.test("AddressSpace.fiveLevel() refuses the bases no 5-level kernel has, naming them", () => {
  const refused: [RegionBase[], string][] = [
    [
      [{ name: "page_offset_base", value: 0xffff888000000000n }],
      "page_offset_base 0xffff888000000000 is in the 4-level kernel half",
    ],
    [
      [{ name: "page_offset_base", value: 0xfe00000000000000n }],
      "page_offset_base 0xfe00000000000000 is not in the 5-level kernel half",
    ],
    [[{ name: "page_offset_base", value: 1n << 64n }], "is not in the 5-level kernel half"],
    [
      [{ name: "page_offset_base", value: 0xff11000000001000n }],
      "page_offset_base 0xff11000000001000 is not aligned to 1 GiB",
    ],
    [
      [BASES[0], { name: "vmalloc_base", value: 0xff35c691c0000000n }],
      "vmalloc_base 0xff35c691c0000000 is in the same 4 GiB as page_offset_base",
    ],
    [[], "0 bases, expected 1..3"],
    [[...BASES, BASES[0]], "4 bases, expected 1..3"],
  ];
  for (const [bases, says] of refused) {
    assertThrows(() => AddressSpace.fiveLevel(bases), RangeError, says);
  }
});

Deno.test("two guests' spaces number the same address apart, each by its own bases", () => {
  const other = AddressSpace.fiveLevel([
    { name: "page_offset_base", value: 0xff20a61600000000n },
    { name: "vmalloc_base", value: 0xff57864400000000n },
    { name: "vmemmap_base", value: 0xff92740dc0000000n },
  ]);
  const task = 0xff35c691847a8000n;
  const k = LA57.toKAddr(task)!;
  // The other guest has no memory there: its numbers of that KAddr are its own region's.
  assertEquals(other.toKAddr(task), undefined);
  assertEquals(other.fromKAddr(k), 0xff20a616847a8000n);
  assertEquals(FOUR.contains(k, 1), false);
});

Deno.test("follow() names where a bad pointer was read, and its holder with a space", () => {
  assertEquals(follow(0x1000, "next"), 0x1000);
  assertThrows(
    () => follow(null, "next of task"),
    BadPointerError,
    "Cannot follow next of task: it is NULL",
  );
  const holder = LA57.toKAddr(0xff35c691847a8000n)!;
  assertThrows(
    () =>
      LA57.follow(new BadPointer("0xff00000000001000", "is in no region"), "next of task", holder),
    BadPointerError,
    "Cannot follow next of task 0xff35c691847a8000: 0xff00000000001000 is in no region",
  );
});
