import { assertEquals } from "../../tests/assert.ts";
import { hex, parseKAddr, toKAddr } from "./address.ts";

Deno.test("parseKAddr() reads back what hex() writes, and nothing else", () => {
  for (
    const addr of [0xffff800000000000n, 0xffff888100a3c000n, 0xffffffffc0000000n, (1n << 64n) - 8n]
  ) {
    const k = toKAddr(addr)!;
    assertEquals(hex(k), "0x" + addr.toString(16));
    assertEquals(parseKAddr(hex(k)), k);
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
    ]
  ) {
    assertEquals(parseKAddr(text), undefined, JSON.stringify(text));
  }
});
