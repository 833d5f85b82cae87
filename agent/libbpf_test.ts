import { assert, assertEquals, assertThrows, privilegedTest } from "../tests/support/mod.ts";
import { BpfObject, LibbpfError } from "./libbpf.ts";
import { Walker } from "./walker.ts";

Deno.test("BpfObject.open() refuses bytes that are not a BPF ELF object, with libbpf's errno", () => {
  const error = assertThrows(
    () => BpfObject.open(new TextEncoder().encode("not an ELF object"), "garbage"),
    LibbpfError,
    'Cannot open BPF object "garbage"',
  );
  assert(error.errno > 0, `errno ${error.errno}`);
});

privilegedTest("BpfObject.load() throws the verifier's log when it rejects a program", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const source = new URL("./testdata/rejected.bpf.c", import.meta.url).pathname;
    const object = `${dir}/rejected.bpf.o`;
    const built = await new Deno.Command("clang", {
      args: ["-g", "-O2", "-target", "bpf", "-c", source, "-o", object],
    }).output();
    assert(built.success, new TextDecoder().decode(built.stderr));
    using obj = BpfObject.open(await Deno.readFile(object), "rejected");
    const error = assertThrows(() => obj.load(), LibbpfError, 'Cannot load "rejected"');
    assertEquals(error.errno, 13); // EACCES: the verifier said no
    assert(error.log.includes("invalid access to map value"), error.log);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

privilegedTest("Walker reads kernel memory, walks the tasks, and closes idempotently", async () => {
  const walker = await Walker.open({ ringBytes: 1 << 20 });
  try {
    const anchor = walker.anchor();
    assert(anchor >= 0xffff_8000_0000_0000n, `anchor 0x${anchor.toString(16)}`);

    const read = walker.read(anchor, 64);
    assertEquals([read.stop, read.objects, read.bytes], [0, 1, 64]);
    const records: [bigint, number][] = [];
    walker.drain((addr, bytes) => records.push([addr, bytes.length]) > 0);
    assertEquals(records, [[anchor, 64]]);

    const user = walker.read(0x1000n, 8);
    assert(user.stop !== 0 && user.error < 0, "a user address is not read");

    const walk = walker.walkTasks({ maxObjects: 1 << 20, maxBytes: 1 << 20 });
    assert(walk.root >= 0xffff_8000_0000_0000n, "init_task found");
    let seen = 0;
    walker.drain(() => ++seen > 0);
    assertEquals(seen, walk.objects);
    assert(walk.stop === 0 || walk.stop === 2 || walk.stop === 3, `stop ${walk.stop}`);

    const few = walker.walkTasks({ maxObjects: 3, maxBytes: 1 << 20 });
    assertEquals([few.objects, few.stop], [3, 1]);
  } finally {
    walker.close();
    walker.close();
  }
  assertThrows(() => walker.anchor(), TypeError, "closed");
});

/**
 * The verifier's work to accept each of the walker's programs: a LOAD runs it on the agent's
 * thread (0.36 s here for the plan walker's 128k instructions), and every window, loop and branch
 * of bpf/plan_walk.h multiplies it. A change that needs more raises this budget knowingly.
 */
const VERIFIER_BUDGET: Record<string, number> = {
  read_memory: 2_000,
  report_anchor: 1_000,
  walk_tasks: 10_000,
  walk_plan: 160_000,
};

privilegedTest("the walker's programs stay within the verifier's budget at load", async () => {
  using walker = await Walker.open({ ringBytes: 1 << 20 });
  assertEquals(walker.programs.map((p) => p.name).sort(), Object.keys(VERIFIER_BUDGET).sort());
  for (const p of walker.programs) {
    assert(p.instructions > 0, `${p.name}: no instructions`);
    // fdinfo says since Linux 5.16; an older kernel's agent loads without telling.
    if (p.verifiedInstructions === undefined) continue;
    assert(
      p.verifiedInstructions >= p.instructions / 4 &&
        p.verifiedInstructions <= VERIFIER_BUDGET[p.name],
      `${p.name}: the verifier processed ${p.verifiedInstructions} instructions (budget ${
        VERIFIER_BUDGET[p.name]
      })`,
    );
  }
});
