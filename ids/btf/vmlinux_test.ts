/**
 * This kernel's real BTF, checked against `bpftool btf dump ... format raw`. Not privileged:
 * /sys/kernel/btf/vmlinux is world-readable. Skipped with the reason printed where the file or
 * bpftool is missing, failed instead when EBPFMON_REQUIRE_PRIVILEGED=1 (as in CI).
 */

import { assert, assertEquals, REQUIRE_PRIVILEGED } from "../../tests/support/mod.ts";
import { type Btf, parseBtf } from "./mod.ts";

const VMLINUX = "/sys/kernel/btf/vmlinux";
/** Structs checked member by member; the last five hold anonymous structs and unions. */
const STRUCTS = [
  "task_struct",
  "list_head",
  "module",
  "cred",
  "mm_struct",
  "sk_buff",
  "page",
  "inode",
];

/** One type as bpftool prints it. */
interface Dumped {
  kind: string;
  name: string;
  attrs: Record<string, number>;
  members: { name: string; typeId: number; bitOffset: number; bitfieldSize: number }[];
}

async function dumpVmlinux(): Promise<Map<number, Dumped> | string> {
  try {
    await Deno.stat(VMLINUX);
  } catch (error) {
    return `${VMLINUX} is not readable (${(error as Error).message})`;
  }
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("bpftool", {
      args: ["btf", "dump", "file", VMLINUX, "format", "raw"],
      stderr: "piped",
    }).output();
  } catch (error) {
    return `bpftool cannot run (${(error as Error).message})`;
  }
  if (!output.success) return `bpftool failed: ${new TextDecoder().decode(output.stderr)}`;
  const types = new Map<number, Dumped>();
  let current: Dumped | undefined;
  for (const line of new TextDecoder().decode(output.stdout).split("\n")) {
    const type = /^\[(\d+)\] (\S+) '(.*)'(.*)$/.exec(line);
    if (type) {
      const attrs: Record<string, number> = {};
      for (const [, key, value] of type[4].matchAll(/(\w+)=(-?\d+)/g)) attrs[key] = Number(value);
      current = { kind: type[2], name: type[3] === "(anon)" ? "" : type[3], attrs, members: [] };
      types.set(Number(type[1]), current);
      continue;
    }
    const member = /^\t'(.*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?$/
      .exec(line);
    if (member && (current?.kind === "STRUCT" || current?.kind === "UNION")) {
      current.members.push({
        name: member[1] === "(anon)" ? "" : member[1],
        typeId: Number(member[2]),
        bitOffset: Number(member[3]),
        bitfieldSize: Number(member[4] ?? 0),
      });
    }
  }
  return types;
}

const dump = await dumpVmlinux();
const skip = typeof dump === "string" ? dump : undefined;
if (skip !== undefined) {
  console.warn(`vmlinux_test: ${REQUIRE_PRIVILEGED ? "failing" : "skipped"}: ${skip}`);
}
const dumped = typeof dump === "string" ? new Map<number, Dumped>() : dump;
const btf = skip === undefined ? parseBtf(await Deno.readFile(VMLINUX)) : undefined;

function vmlinuxTest(name: string, fn: (btf: Btf) => void): void {
  Deno.test({
    name,
    ignore: skip !== undefined && !REQUIRE_PRIVILEGED,
    fn() {
      if (btf === undefined) throw new Error(`Cannot check this kernel's BTF: ${skip}`);
      fn(btf);
    },
  });
}

/** bpftool's view of `id` with modifiers skipped. */
function dumpResolve(id: number): number {
  while (["TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"].includes(dumped.get(id)!.kind)) {
    id = dumped.get(id)!.attrs.type_id;
  }
  return id;
}

/** The size of `id` computed from bpftool's dump alone. */
function dumpSize(id: number): number {
  const t = dumped.get(dumpResolve(id))!;
  if (t.kind === "PTR") return 8;
  if (t.kind === "ARRAY") return t.attrs.nr_elems * dumpSize(t.attrs.type_id);
  return t.attrs.size;
}

/** Every member reachable by name in struct `id`, through anonymous members, as C sees them. */
function dumpFields(
  id: number,
  base = 0,
): Map<string, { bitOffset: number; typeId: number; bitfieldSize: number }> {
  const out = new Map();
  for (const m of dumped.get(dumpResolve(id))!.members) {
    if (m.name) out.set(m.name, { ...m, bitOffset: base + m.bitOffset });
    else for (const [name, inner] of dumpFields(m.typeId, base + m.bitOffset)) out.set(name, inner);
  }
  return out;
}

vmlinuxTest("parseBtf() reads every type of this kernel's BTF as bpftool does", (btf) => {
  assertEquals(btf.typeCount, Math.max(...dumped.keys()));
  for (const [id, want] of dumped) {
    const got = btf.type(id);
    assertEquals([got.kind, got.name], [want.kind, want.name], `type ${id}`);
    if ("size" in got && want.attrs.size !== undefined) assertEquals(got.size, want.attrs.size);
    if ("typeId" in got && want.attrs.type_id !== undefined) {
      assertEquals(got.typeId, want.attrs.type_id, `type ${id}`);
    }
    if (got.kind === "ARRAY") assertEquals(got.count, want.attrs.nr_elems);
    if (got.kind === "STRUCT" || got.kind === "UNION") {
      assertEquals(got.members, want.members, `members of type ${id}`);
      assertEquals(btf.sizeof(id), want.attrs.size);
    }
  }
});

vmlinuxTest("Btf.find() finds the structs by name that bpftool lists", (btf) => {
  for (const name of STRUCTS) {
    const want = [...dumped].filter(([, t]) => t.kind === "STRUCT" && t.name === name);
    assertEquals(btf.find(name, "STRUCT"), want.map(([id]) => id), name);
    assertEquals(want.length, 1, `one struct ${name}`);
  }
});

vmlinuxTest("Btf.field() places every member of the kernel structs where bpftool does", (btf) => {
  for (const name of STRUCTS) {
    const id = btf.find(name, "STRUCT")[0];
    const fields = dumpFields(id);
    assert(fields.size > 0, name);
    for (const [path, want] of fields) {
      const got = btf.field(name, path);
      assertEquals(got.typeId, want.typeId, `${name}.${path}`);
      assertEquals(
        [got.bitOffset, got.bitSize],
        [want.bitOffset, want.bitfieldSize],
        `${name}.${path}`,
      );
      if (want.bitfieldSize === 0) {
        assertEquals(
          [got.offset, got.size],
          [want.bitOffset / 8, dumpSize(want.typeId)],
          `${name}.${path}`,
        );
      }
      // One level further into members held by value.
      const inner = dumped.get(dumpResolve(want.typeId))!;
      if (inner.kind !== "STRUCT" && inner.kind !== "UNION") continue;
      for (const [innerPath, innerWant] of dumpFields(want.typeId)) {
        const nested = btf.field(name, `${path}.${innerPath}`);
        assertEquals(
          nested.bitOffset,
          want.bitOffset + innerWant.bitOffset,
          `${name}.${path}.${innerPath}`,
        );
      }
    }
  }
});

vmlinuxTest("Btf.field() adds nested offsets for tasks.next and uid.val", (btf) => {
  assertEquals(
    btf.field("task_struct", "tasks.next").offset,
    btf.field("task_struct", "tasks").offset,
  );
  assertEquals(
    btf.field("task_struct", "tasks.prev").offset,
    btf.field("task_struct", "tasks").offset + 8,
  );
  assertEquals(btf.field("cred", "uid.val").offset, btf.field("cred", "uid").offset);
  assertEquals(btf.field("cred", "uid.val").size, 4);
});

vmlinuxTest("Btf.resolve() follows kuid_t's typedef chain as bpftool shows it", (btf) => {
  const [kuidT] = btf.find("kuid_t", "TYPEDEF");
  assertEquals(btf.resolve(kuidT), dumpResolve(kuidT));
  assertEquals(btf.kind(btf.resolve(kuidT)), "STRUCT");
  assertEquals(btf.sizeof(kuidT), 4);
});
