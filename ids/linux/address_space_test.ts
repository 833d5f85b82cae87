import { assert, assertEquals, assertRejects } from "../../tests/support/mod.ts";
import { AddressSpace, type KAddr } from "../memory/mod.ts";
import {
  AddressSpaceError,
  type AddressSpaceSource,
  learnAddressSpace,
  REGION_BASES,
} from "./address_space.ts";

const FOUR = AddressSpace.FOUR_LEVEL;

/**
 * A guest that keeps `values` (by symbol) at `addresses` of its kernel image, and counts what it
 * is asked.
 */
function guest(
  values: Record<string, bigint>,
  options: { features?: string[]; addresses?: Record<string, bigint>; unreadable?: boolean } = {},
) {
  const addresses = options.addresses ?? {
    vmemmap_base: 0xffffffffa5a13d50n,
    vmalloc_base: 0xffffffffa5a13d58n,
    page_offset_base: 0xffffffffa5a13d60n,
  };
  const asked = { symbols: 0, reads: [] as [bigint, number][] };
  const source: AddressSpaceSource = {
    features: options.features ?? ["modules", "la57"],
    symbols: (names) => {
      asked.symbols++;
      return Promise.resolve(
        new Map<string, KAddr | undefined>(
          names.map((n) => [n, n in addresses ? FOUR.toKAddr(addresses[n]) : undefined]),
        ),
      );
    },
    read: (addr, len) => {
      asked.reads.push([addr, len]);
      if (options.unreadable) return Promise.reject(new Error("kernel read failed (errno -14)"));
      const bytes = new Uint8Array(len);
      const view = new DataView(bytes.buffer);
      for (const [name, at] of Object.entries(addresses)) {
        if (at >= addr && at + 8n <= addr + BigInt(len) && name in values) {
          view.setBigUint64(Number(at - addr), values[name], true);
        }
      }
      return Promise.resolve(bytes);
    },
  };
  return { source, asked };
}

/** The bases of a 5-level guest booted in QEMU. */
const BASES = {
  page_offset_base: 0xff20a61600000000n,
  vmalloc_base: 0xff57864400000000n,
  vmemmap_base: 0xff92740dc0000000n,
};

Deno.test("learnAddressSpace() asks nothing of a guest that does not report 5-level paging", async () => {
  const { source, asked } = guest(BASES, { features: ["modules"] });
  assertEquals(await learnAddressSpace(source), AddressSpace.FOUR_LEVEL);
  assertEquals([asked.symbols, asked.reads.length], [0, 0]);
});

Deno.test("learnAddressSpace() reads the three bases side by side in one READ", async () => {
  const { source, asked } = guest(BASES);
  const space = await learnAddressSpace(source);
  assertEquals(space.paging, "5-level");
  assertEquals(
    space.windows.map((w) => [w.name, w.base]),
    [
      ["kernel half", undefined],
      ["page_offset_base", "0xff20a61600000000"],
      ["vmalloc_base", "0xff57864400000000"],
      ["vmemmap_base", "0xff92740dc0000000"],
    ],
  );
  assertEquals(asked.symbols, 1);
  assertEquals(asked.reads, [[0xffffffffa5a13d50n, 24]]);
  assertEquals(space.toKAddr(0xff20a616047a8000n), 2 ** 48 + 0x047a8000);
});

Deno.test("learnAddressSpace() reads bases apart one by one", async () => {
  const addresses = {
    page_offset_base: 0xffffffffa5a13d60n,
    vmalloc_base: 0xffffffffa5b00000n,
    vmemmap_base: 0xffffffffa5000000n,
  };
  const { source, asked } = guest(BASES, { addresses });
  const space = await learnAddressSpace(source);
  assertEquals(space.windows.length, 4);
  assertEquals(asked.reads, REGION_BASES.map((n) => [addresses[n], 8]));
});

Deno.test("learnAddressSpace() names the base a guest lies about", async () => {
  // A 4-level kernel's direct map, reported by an agent that says its guest has 5 levels.
  const { source } = guest({ ...BASES, page_offset_base: 0xffff888000000000n });
  const error = await assertRejects(() => learnAddressSpace(source), AddressSpaceError);
  assertEquals(
    error.message,
    "Cannot make the guest's 5-level address space: page_offset_base 0xffff888000000000 is in " +
      "the 4-level kernel half, where no 5-level kernel puts its direct map",
  );
  const { source: unaligned } = guest({ ...BASES, vmalloc_base: 0xff57864400001000n });
  await assertRejects(
    () => learnAddressSpace(unaligned),
    AddressSpaceError,
    "vmalloc_base 0xff57864400001000 is not aligned to 1 GiB",
  );
  const { source: unreadable } = guest(BASES, { unreadable: true });
  const failed = await assertRejects(() => learnAddressSpace(unreadable), AddressSpaceError);
  assert(failed.message.includes("cannot read page_offset_base, vmalloc_base, vmemmap_base"));
  assertEquals((failed.cause as Error).message, "kernel read failed (errno -14)");
});

Deno.test("learnAddressSpace() refuses, without calling it a lie, a kallsyms without the bases", async () => {
  const { source } = guest(BASES, { addresses: { page_offset_base: 0xffffffffa5a13d60n } });
  const error = await assertRejects(() => learnAddressSpace(source), Error);
  assert(!(error instanceof AddressSpaceError), error.message);
  assertEquals(
    error.message,
    `Cannot learn the guest's 5-level address space: its kallsyms does not give "vmalloc_base"`,
  );
});
