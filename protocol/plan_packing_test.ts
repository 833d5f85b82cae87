import { assert, assertEquals, assertThrows } from "../tests/support/mod.ts";
import fc from "fast-check";
import { EdgeKind, encodePlan, PLAN_SIZE, PlanError } from "./mod.ts";
import { packPlan, unpackPlan } from "./plan_packing.ts";

/** A plan's bytes of `count` nodes, each copying a range and listing the next. */
function planBytes(count: number): Uint8Array {
  return encodePlan({
    roots: [{ addr: 0xffff_8880_0123_4000n, node: 0 }],
    nodes: Array.from({ length: count }, (_, n) => ({
      dedupe: n % 2 === 1,
      ranges: [{ off: 8 * n, len: 64 + n }],
      edges: n + 1 < count
        ? [{ kind: EdgeKind.LIST, target: n + 1, off: 0x10, delta: 0x10, max: 1000 }]
        : [],
    })),
    maxDepth: count,
  });
}

Deno.test("packPlan() leaves the unused slots of a plan out, and unpackPlan() gives it back", () => {
  for (const count of [1, 12, 40, 64]) {
    const bytes = planBytes(count);
    const packed = packPlan(bytes);
    assert(packed.length < bytes.length / 4, `${count} nodes: ${packed.length} bytes packed`);
    assertEquals(unpackPlan(packed), bytes);
  }
});

Deno.test("unpackPlan() gives back any bytes packPlan() packed; bytes that do not pack go whole", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(PLAN_SIZE - 1), fc.uint8Array({ minLength: 1, maxLength: 300 })), {
        maxLength: 60,
      }),
      (writes) => {
        const bytes = new Uint8Array(PLAN_SIZE);
        for (const [at, data] of writes) bytes.set(data.subarray(0, PLAN_SIZE - at), at);
        const packed = packPlan(bytes);
        assert(packed.length <= PLAN_SIZE);
        assertEquals(unpackPlan(packed), bytes);
      },
    ),
  );
  const noise = Uint8Array.from({ length: PLAN_SIZE }, (_, i) => (i * 131 + 7) % 255 + 1);
  assert(packPlan(noise) === noise, "a plan without zeros is sent as it is");
});

Deno.test("unpackPlan() refuses a packing that overruns, ends early or has bytes past its end", () => {
  const packed = packPlan(planBytes(3));
  const runPast = new Uint8Array(4);
  new DataView(runPast.buffer).setUint16(0, 0xffff, true);
  const cases: [Uint8Array, string][] = [
    [packed.subarray(0, packed.length - 1), "unwritten"],
    [packed.subarray(0, 4), "left"],
    [new Uint8Array(0), "unwritten"],
    [new Uint8Array([...packed, 0, 0, 0, 0]), "after the plan's end"],
    [new Uint8Array([...runPast, ...runPast]), "writes past"],
  ];
  for (const [wire, message] of cases) assertThrows(() => unpackPlan(wire), PlanError, message);
  assertThrows(() => packPlan(new Uint8Array(10)), PlanError, "expected");
});

Deno.test("unpackPlan() of any bytes gives a plan of PLAN_SIZE bytes or a PlanError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), (wire) => {
      try {
        assertEquals(unpackPlan(wire).length, PLAN_SIZE);
      } catch (error) {
        assert(error instanceof PlanError, String(error));
      }
    }),
  );
});
