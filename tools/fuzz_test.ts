import fc from "fast-check";
import { assert, assertEquals, assertRejects } from "../tests/support/mod.ts";
import { fuzz, fuzzTarget, selectTargets } from "./fuzz.ts";
import { type FuzzTarget, mutate } from "./fuzz/mod.ts";

Deno.test("fuzzTarget() runs every decoder of peer input without a crash or a hang", async () => {
  const targets = selectTargets();
  assertEquals(
    targets.map((t) => t.name),
    ["agent-frames", "ids-frames", "plan", "bpf-object", "btf", "processes", "api"],
  );
  for (const target of targets) {
    const r = await fuzzTarget(target, { runs: 300, seed: 20261201, hangMs: 5000 });
    assertEquals([r.inputs, r.crashes, r.hangs, r.failure], [300, 0, 0, undefined], r.name);
  }
});

Deno.test("deno task fuzz runs decoders in Workers, prints a row each and exits 0", async () => {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./fuzz.ts", import.meta.url).href, "--runs", "200", "--seed", "5"]
      .concat(["--only", "btf,plan", "--quiet"]),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assertEquals(code, 0, out);
  const rows = out.split("\n").filter((line) => /^(btf|plan) /.test(line));
  assertEquals(rows.map((row) => row.split(/\s+/).slice(0, 4)), [
    ["btf", "200", "0", "0"],
    ["plan", "200", "0", "0"],
  ]);
  assert(out.includes("seed 5"), out);
});

/** A decoder that documents RangeError and breaks on inputs above 1000 with a TypeError. */
const brittle: FuzzTarget<number> = {
  name: "brittle",
  description: "a decoder with a bug",
  arbitrary: fc.integer({ min: 0, max: 5000 }),
  run(n) {
    if (n > 1000) throw new TypeError("oops");
    if (n % 7 === 0) throw new RangeError("Cannot decode: a multiple of 7");
  },
  expected: (error) => error instanceof RangeError,
};

Deno.test("fuzzTarget() reports an undocumented error as a crash, with its shrunk input", async () => {
  const report = await fuzzTarget(brittle, { runs: 1000, seed: 7 });
  assertEquals([report.crashes, report.hangs, report.seed], [1, 0, 7]);
  assert(report.inputs < 1000);
  assert(report.failure?.includes("counterexample: [1001]"), report.failure);
  assert(report.failure?.includes("TypeError: oops"), report.failure);
});

Deno.test("fuzzTarget() accepts the documented errors", async () => {
  const report = await fuzzTarget({ ...brittle, arbitrary: fc.integer({ min: 0, max: 1000 }) }, {
    runs: 500,
    seed: 1,
  });
  assertEquals([report.inputs, report.crashes, report.hangs], [500, 0, 0]);
});

Deno.test("fuzzTarget() reports an input that runs past the bound as a hang", async () => {
  const slow: FuzzTarget<number> = {
    name: "slow",
    description: "a decoder that spins on large inputs",
    arbitrary: fc.integer({ min: 0, max: 100 }),
    run(n) {
      const until = performance.now() + (n > 90 ? 50 : 0);
      while (performance.now() < until) { /* spin */ }
    },
    expected: () => false,
  };
  const report = await fuzzTarget(slow, { runs: 200, seed: 3, hangMs: 20 });
  assertEquals([report.crashes, report.hangs], [0, 1]);
  assert(report.failure?.includes("more than the 20 ms allowed"), report.failure);
});

Deno.test("selectTargets() refuses an unknown decoder, naming it", () => {
  let message = "";
  try {
    selectTargets(["frames"]);
  } catch (error) {
    message = (error as Error).message;
  }
  assert(message.startsWith('Cannot fuzz "frames": no such decoder'), message);
  assertEquals(selectTargets(["btf", "plan"]).map((t) => t.name), ["btf", "plan"]);
});

Deno.test("mutate() flips, rewrites, cuts, inserts and repeats at wrapped positions", () => {
  const bytes = new Uint8Array([1, 2, 3, 4, 5, 6]);
  assertEquals([...mutate(bytes, [{ kind: "flip", at: 8, xor: 0xff }])], [1, 0xfd, 3, 4, 5, 6]);
  assertEquals([...mutate(bytes, [{ kind: "u32", at: 1, value: 0x0a0b0c0d }])], [
    1,
    0x0d,
    0x0c,
    0x0b,
    0x0a,
    6,
  ]);
  assertEquals([...mutate(bytes, [{ kind: "truncate", at: 2 }])], [1, 2]);
  assertEquals([...mutate(bytes, [{ kind: "insert", at: 6, bytes: new Uint8Array([9]) }])], [
    1,
    2,
    3,
    4,
    5,
    6,
    9,
  ]);
  assertEquals([...mutate(bytes, [{ kind: "repeat", at: 4, len: 5 }])], [1, 2, 3, 4, 5, 6, 5, 6]);
  assertEquals([...bytes], [1, 2, 3, 4, 5, 6]);
});

Deno.test("fuzz() rejects an unknown decoder before starting a Worker", async () => {
  await assertRejects(() => fuzz({ only: ["nothing"], runs: 1 }), RangeError, '"nothing"');
});
