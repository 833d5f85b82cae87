import { assertEquals } from "../../tests/assert.ts";
import { parseBtf } from "../btf/mod.ts";
import { resolveLayout, str } from "./layout.ts";

// The real task_struct of this machine's kernel: comm is char[16] (TASK_COMM_LEN).
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const layout = resolveLayout(btf, "task_struct", { comm: str("comm") });

/** Decodes `comm` holding `bytes` (the rest 0xaa, garbage past a NUL). */
function decodeComm(bytes: number[] | Uint8Array): string {
  const buffer = new Uint8Array(layout.end - layout.start).fill(0xaa);
  buffer.set(bytes, layout.fields[0].offset - layout.start);
  return layout.decode(new DataView(buffer.buffer), 0, 0x1000).comm;
}

const utf8 = (text: string) => [...new TextEncoder().encode(text)];

Deno.test("a str field ends at its NUL, or at its end without one", () => {
  assertEquals(layout.fields[0].size, 16);
  assertEquals(decodeComm([...utf8("bash"), 0]), "bash");
  assertEquals(decodeComm([0]), "");
  assertEquals(decodeComm(utf8("0123456789abcdef")), "0123456789abcdef");
  assertEquals(decodeComm([...utf8("hé"), 0, 0xff]), "hé", "bytes past the NUL are not read");
});

Deno.test("a str field is UTF-8, with \\xNN for invalid bytes and \\\\ for a backslash", () => {
  assertEquals(decodeComm([...utf8("héllo"), 0]), "héllo");
  assertEquals(decodeComm([0x62, 0x61, 0x64, 0xff, 0xfe, 0]), "bad\\xff\\xfe");
  assertEquals(decodeComm([...utf8("a\\b"), 0]), "a\\\\b");
  assertEquals(decodeComm([...utf8("\x1b[31mred"), 0]), "\x1b[31mred");
  assertEquals(decodeComm([...utf8("a\nFAKE"), 0]), "a\nFAKE");
});

Deno.test("a comm the kernel cut at 15 bytes in a character ends with that byte as \\xNN", () => {
  // "ab" and six "é" are 14 bytes; the seventh "é" keeps only its first byte, then the NUL.
  const full = utf8("abééééééé");
  const cut = [...full.slice(0, 15), 0];
  assertEquals(decodeComm(cut), "abéééééé\\xc3");
  // Without a NUL, all 16 bytes: "a", seven "é" and the first byte of an eighth.
  assertEquals(decodeComm(utf8("aéééééééé").slice(0, 16)), "aééééééé\\xc3");
});
