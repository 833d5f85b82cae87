import { assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { CondKind } from "../../protocol/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { PlanBuilder } from "./plan.ts";
import { ptr, resolveLayout, str, uint } from "./layout.ts";

// Offsets come from this machine's real kernel BTF.
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const file = resolveLayout(btf, "file", {
  inode: ptr("f_inode"),
  privateData: ptr("private_data"),
  flags: uint("f_flags"),
});
const offset = (member: string) => btf.field("file", member).offset;

Deno.test("PlanBuilder: `minus` is a DIFF condition of two 8-byte fields", () => {
  const b = new PlanBuilder("selective");
  const from = b.node(file, { fieldsOnly: true });
  const to = b.node(file, { fieldsOnly: true });
  b.ptr(from, "inode", to, 0, {
    when: { field: "inode", minus: { field: "privateData", equals: -8n } },
  });
  assertEquals(b.build().nodes[from.index].edges[0].cond, {
    kind: CondKind.DIFF,
    off: offset("f_inode"),
    size: 8,
    mask: BigInt(offset("private_data")),
    value: (1n << 64n) - 8n,
  });
  assertThrows(
    () =>
      b.ptr(from, "inode", to, 0, {
        when: { field: "flags", minus: { field: "inode", equals: 0n } },
      }),
    TypeError,
    'Condition "flags" minus "inode" needs two 8-byte fields',
  );
});

Deno.test("PlanBuilder: a `span` node copies its fields as one range, in both modes", () => {
  // An aux's id and name are a kilobyte apart.
  const aux = resolveLayout(btf, "bpf_prog_aux", { id: uint("id"), name: str("name") });
  for (const mode of ["whole", "selective"] as const) {
    const b = new PlanBuilder(mode);
    const split = b.node(aux, { fieldsOnly: true });
    const span = b.node(aux, { fieldsOnly: true, span: true });
    const { nodes } = b.build();
    assertEquals(nodes[split.index].ranges.length, 2);
    assertEquals(nodes[span.index].ranges, [{ off: aux.start, len: aux.end - aux.start }]);
  }
});
