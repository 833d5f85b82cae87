import { assertEquals, assertThrows } from "../tests/support/mod.ts";
import { CondKind, decodePlan, EdgeKind, encodePlan, type Plan, PlanError } from "./mod.ts";

/** A task list walked as processes (node 1), then as threads covered by them (node 3). */
function plan(coveredBy?: number): Plan {
  const list = (target: number) => ({
    kind: EdgeKind.LIST,
    target,
    off: 0x10,
    delta: 0x10,
    max: 9,
  });
  return {
    roots: [{ addr: 0xffff_8880_0000_1000n, node: 0 }, { addr: 0xffff_8880_0000_1000n, node: 2 }],
    nodes: [
      { dedupe: false, ranges: [], edges: [list(1)] },
      { dedupe: true, ranges: [{ off: 0, len: 64 }], edges: [] },
      { dedupe: false, ranges: [], edges: [list(3)] },
      { dedupe: true, coveredBy, ranges: [{ off: 8, len: 4 }], edges: [] },
    ],
    maxDepth: 4,
  };
}

Deno.test("a plan's covering node survives encoding", () => {
  assertEquals(decodePlan(encodePlan(plan(1))), plan(1));
  const plain = decodePlan(encodePlan(plan()));
  assertEquals(plain.nodes[3].coveredBy, undefined);
  assertEquals(plain.nodes.map((n) => n.ranges), plan().nodes.map((n) => n.ranges));
});

Deno.test("a plan whose covering node is itself, missing or not deduped is refused", () => {
  for (const by of [3, 4, 0, 1.5, -1]) {
    assertThrows(() => encodePlan(plan(by)), PlanError, "covered by node");
  }
  // The same refusal from the bytes: node 3 says it is covered by node 9 (4 + 12 holds 1 + 9).
  const bytes = encodePlan(plan(1));
  const at = 16 + 16 * 16 + 3 * (16 + 8 * 8 + 8 * 48 + 24) + 12;
  new DataView(bytes.buffer).setUint32(at, 10, true);
  assertThrows(() => decodePlan(bytes), PlanError, "covered by node 9");
});

Deno.test("a node's guard survives encoding, in each kind; a bad one is refused", () => {
  for (
    const guard of [
      { kind: CondKind.EQ, off: 4, size: 4 as const, mask: 0xffn, value: 1n },
      { kind: CondKind.NE, off: 8, size: 1 as const, mask: 0xffn, value: 1n },
      { kind: CondKind.IN_SET, off: 0, size: 8 as const, mask: 0b101n },
      { kind: CondKind.DIFF, off: 32, size: 8 as const, mask: 24n, value: 0x80n },
    ]
  ) {
    const p = plan(1);
    p.nodes[3].guard = guard;
    assertEquals(decodePlan(encodePlan(p)).nodes[3].guard, guard);
  }
  const p = plan(1);
  p.nodes[3].guard = { kind: CondKind.EQ, off: 4, size: 3 as never, mask: 1n, value: 1n };
  assertThrows(() => encodePlan(p), PlanError, "node 3 guard size 3");
  p.nodes[3].guard = { kind: CondKind.DIFF, off: 32, size: 4, mask: 24n, value: 0n };
  assertThrows(() => encodePlan(p), PlanError, "a difference is of 8-byte fields");
  p.nodes[3].guard = { kind: CondKind.DIFF, off: 32, size: 8, mask: 1n << 32n, value: 0n };
  assertThrows(() => encodePlan(p), PlanError, "other offset 4294967296");
});
