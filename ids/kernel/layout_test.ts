import { assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import {
  firstPtr,
  hexInt,
  hexRaw,
  LayoutError,
  peekStruct,
  ptr,
  raw,
  resolveLayout,
  sint,
  str,
  uint,
} from "./layout.ts";
import { AddressSpace, BadPointer, CachedMemory, MemoryCache } from "../memory/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

// The real task_struct of this machine's kernel: comm is char[16] (TASK_COMM_LEN).
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const layout = resolveLayout(btf, "task_struct", { comm: str("comm") });

/** Decodes `comm` holding `bytes` (the rest 0xaa, garbage past a NUL). */
function decodeComm(bytes: number[] | Uint8Array): string {
  const buffer = new Uint8Array(layout.end - layout.start).fill(0xaa);
  buffer.set(bytes, layout.fields[0].offset - layout.start);
  return layout.decode(new DataView(buffer.buffer), 0, space).comm;
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

Deno.test("each field kind decodes its bytes at its offset, little-endian", () => {
  // struct cred of this kernel: ids are u32, the capability sets 8 bytes.
  const cred = resolveLayout(btf, "cred", {
    uid: uint("uid.val"),
    usage: sint("usage.counter"),
    caps: hexInt("cap_effective"),
    capBytes: raw("cap_effective"),
    parent: ptr("user"),
  });
  const bytes = new Uint8Array(cred.end - cred.start);
  const at = (name: string) => cred.fields.find((f) => f.name === name)!.offset - cred.start;
  const put = (name: string, values: number[]) => bytes.set(values, at(name));
  put("uid", [0xe8, 0x03, 0, 0]); // 1000
  // -2 in all the bytes of usage (an atomic_t before 6.8, an atomic_long_t since).
  const usageSize = cred.fields.find((f) => f.name === "usage")!.size;
  put("usage", [0xfe, ...Array(usageSize - 1).fill(0xff)]);
  put("caps", [0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0]);
  put("parent", [0x00, 0x10, 0x00, 0x00, 0x80, 0x88, 0xff, 0xff]);
  const decoded = cred.decode(new DataView(bytes.buffer), 0, space);
  assertEquals(decoded.uid, 1000);
  assertEquals(decoded.usage, -2);
  assertEquals(decoded.caps, "0x000001ffffffffff");
  assertEquals([...decoded.capBytes], [0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0]);
  assertEquals(decoded.parent, space.toKAddr(0xffff888000001000n));
  bytes[at("capBytes")] = 0;
  assertEquals(decoded.capBytes[0], 0xff, "raw bytes are a copy");

  put("parent", [0x00, 0x10, 0, 0, 0, 0, 0, 0]);
  const user = cred.decode(new DataView(bytes.buffer), 0, space).parent;
  assertEquals(user instanceof BadPointer, true, "a user address is not a kernel pointer");
});

Deno.test("firstPtr decodes an array's first pointer; hexRaw its bytes in memory order", () => {
  // struct pid's tasks: one hlist_head (a pointer) per pid type.
  const pid = resolveLayout(btf, "pid", { first: firstPtr("tasks"), bytes: hexRaw("tasks") });
  const tasks = pid.fields[0];
  const bytes = new Uint8Array(pid.end - pid.start);
  bytes.set([0x40, 0x22, 0x11, 0x00, 0x81, 0x88, 0xff, 0xff, 0xab], tasks.offset - pid.start);
  const decoded = pid.decode(new DataView(bytes.buffer), 0, space);
  assertEquals(decoded.first, space.toKAddr(0xffff888100112240n));
  assertEquals(decoded.bytes.slice(0, 18), "402211008188ffffab");
  assertEquals(decoded.bytes.length, tasks.size * 2, "every byte of the array");
});

Deno.test("a layout refuses a field whose size its kind cannot decode", () => {
  assertThrows(() => resolveLayout(btf, "cred", { caps: ptr("uid") }), LayoutError);
  assertThrows(() => resolveLayout(btf, "task_struct", { comm: uint("comm") }), LayoutError);
  assertThrows(() => resolveLayout(btf, "task_struct", { pid: firstPtr("pid") }), LayoutError);
});

Deno.test("peekStruct() gathers fields close together as one range, else field by field", () => {
  // An aux's id and refcnt are within a few bytes, its name a kilobyte on.
  const aux = resolveLayout(btf, "bpf_prog_aux", {
    refcnt: sint("refcnt.counter"),
    id: uint("id"),
    name: str("name"),
  });
  assertEquals(aux.gather.length, 2);
  assertEquals(aux.ranges.length, 3);
  const at = 0xffff_8880_0010_0000n;
  const field = (name: string) => aux.fields.find((f) => f.name === name)!;
  const image = (parts: { off: number; len: number }[]) => {
    const cache = new MemoryCache();
    const bytes = new Uint8Array(aux.end).fill(0);
    new DataView(bytes.buffer).setUint32(field("id").offset, 42, true);
    bytes.set(new TextEncoder().encode("walk"), field("name").offset);
    for (const p of parts) {
      cache.insert(space.toKAddr(at + BigInt(p.off))!, bytes.slice(p.off, p.off + p.len));
    }
    return new CachedMemory(cache, space);
  };
  const asCopied = aux.gather.map((r) => ({ off: aux.start + r.off, len: r.len }));
  const fieldByField = aux.fields.map((f) => ({ off: f.offset, len: f.size }));
  for (const parts of [asCopied, fieldByField]) {
    const got = peekStruct(image(parts), space.toKAddr(at)!, aux);
    assertEquals([got?.id, got?.name], [42, "walk"]);
  }
  // A field missing is missing either way.
  assertEquals(peekStruct(image(fieldByField.slice(1)), space.toKAddr(at)!, aux), undefined);
});
