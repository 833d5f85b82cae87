import { assert, assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { decodePlan, encodePlan } from "../../protocol/mod.ts";
import { PlanBuilder } from "../kernel/mod.ts";
import { checkPlan, interpretPlan } from "../kernel/testing/mod.ts";
import { CachedMemory } from "../memory/mod.ts";
import { listBpfPrograms, planBpfPrograms } from "./bpf_programs.ts";
import {
  core,
  image,
  KALLSYMS_ONLY,
  KPROBE,
  NOWHERE,
  PROG_FOPS,
  SOCKET_FILTER,
  summary,
  types,
} from "./_bpf_fixtures.ts";
import { findProgramFops } from "./_bpf_program.ts";

Deno.test("listBpfPrograms() walks bpf_kallsyms from the agent's own programs, dropping the head and trampolines", async () => {
  const { kernel, maps } = image();
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[0],
  );
  assertEquals(summary(list), KALLSYMS_ONLY);
  assertEquals(list.views.kallsyms, { supported: true, truncated: false, entries: 6, dropped: 2 });
  assertEquals(list.views.prog_idr.supported, false);
  assertEquals(list.subprograms, 1);
  assertEquals(list.programs[0].maps[0], {
    id: 11,
    name: "events",
    type: "ringbuf",
    map: list.programs[0].maps[0].map,
  });
  assertEquals(list.programs[0].maps[1].type, "hash");
  assertEquals(list.programs.map((p) => [p.jited, p.loadTime, p.missingFrom]), [
    [true, 3e9, []],
    [true, 4e9, []],
    [true, 7e9, []],
    [true, 9e9, []],
  ]);
  assert(maps.events > 0);
});

Deno.test("listBpfPrograms() reads only what its plan prefetched, in both copy modes", async () => {
  const { kernel } = image();
  const check = await checkPlan(
    kernel.build(),
    (b) => planBpfPrograms(b, core, types, kernel.tasks[0]),
    (mem) => listBpfPrograms(mem, core, types, kernel.tasks[0]),
  );
  for (const mode of [check.whole, check.selective]) {
    assertEquals(mode.misses, []);
    assertEquals(summary(mode.result), KALLSYMS_ONLY);
  }
  // The BPF objects are copied field by field in both modes; only the agent's task is whole.
  assert(check.selective.bytes < check.whole.bytes);
});

Deno.test("with the program files' f_op, only the agent's program files are read as programs", async () => {
  // One of the agent's files holds what the walk cannot read (NOWHERE): read as a candidate
  // program, it is a miss that costs round trips; with program files told by their f_op, it is
  // never read.
  const { kernel } = image({ unreadableFile: true });
  const agent = kernel.tasks[0];
  const fops = await findProgramFops(new CachedMemory(kernel.build()), core, types, agent, 64);
  assertEquals(fops, PROG_FOPS);
  const read = (programFops?: number) =>
    checkPlan(
      kernel.build(),
      (b) => planBpfPrograms(b, core, types, agent, { programFops }),
      (mem) => listBpfPrograms(mem, core, types, agent, { programFops }),
    );
  const told = await read(fops);
  for (const mode of [told.whole, told.selective]) {
    assertEquals(mode.misses, []);
    assertEquals(summary(mode.result), KALLSYMS_ONLY);
  }
  const guessed = await read(undefined);
  assert(
    guessed.selective.misses.some((m) => m.addr >= NOWHERE && m.addr < NOWHERE + 4096),
    `the unreadable candidate is read on demand: ${JSON.stringify(guessed.selective.misses)}`,
  );
  assertEquals(summary(guessed.selective.result), KALLSYMS_ONLY);
});

Deno.test("planBpfPrograms() with a start tag goes around bpf_kallsyms once, from that program", async () => {
  const { kernel } = image();
  const cache = kernel.build();
  const walk = (startTag?: string) => {
    const b = new PlanBuilder("selective");
    planBpfPrograms(b, core, types, kernel.tasks[0], { startTag });
    return interpretPlan(decodePlan(encodePlan(b.build())), cache);
  };
  const fromEvery = walk();
  // The second of the agent's two programs: the read must start where the plan did.
  const fromOne = walk("1111111111111111");
  assert(fromOne.steps < fromEvery.steps, `${fromOne.steps} steps, not < ${fromEvery.steps}`);
  assertEquals(fromOne.objects, fromEvery.objects);
  const check = await checkPlan(
    cache,
    (b) => planBpfPrograms(b, core, types, kernel.tasks[0], { startTag: "1111111111111111" }),
    (mem) => listBpfPrograms(mem, core, types, kernel.tasks[0], { startTag: "1111111111111111" }),
  );
  for (const mode of [check.whole, check.selective]) {
    assertEquals(mode.misses, []);
    assertEquals(summary(mode.result), KALLSYMS_ONLY);
  }
  assertThrows(() => walk("not a tag"), RangeError, "16 hex digits");
});

Deno.test("listBpfPrograms() reads only what its plan prefetched, with prog_idr too", async () => {
  const { kernel, bpf, p } = image();
  const hidden = bpf.program({ id: 12, name: "hidden", tag: "3333333333333333", type: KPROBE });
  const progIdr = bpf.idr(
    new Map([[3, p.walk.prog], [4, p.trigger.prog], [7, p.filter.prog], [12, hidden.prog]]),
  );
  const cache = kernel.build();
  const confirm = new CachedMemory(cache);
  const check = await checkPlan(
    cache,
    (b) => planBpfPrograms(b, core, types, kernel.tasks[0], { progIdr }),
    (mem) => listBpfPrograms(mem, core, types, kernel.tasks[0], { progIdr, confirm }),
  );
  for (const mode of [check.whole, check.selective]) {
    assertEquals(mode.misses, []);
    assertEquals(
      mode.result.programs.map((p) => [p.id, p.seenIn.join(","), p.missingFrom.join(",")]),
      [
        [3, "prog_idr,kallsyms", ""],
        [4, "prog_idr,kallsyms", ""],
        [7, "prog_idr,kallsyms", ""],
        [9, "kallsyms", "prog_idr"],
        [12, "prog_idr", "kallsyms"],
      ],
    );
  }
});

Deno.test("listBpfPrograms() stops a bpf_kallsyms list that loops, as truncated", async () => {
  const { kernel, p } = image();
  // filter -> trampoline -> sub -> filter: a ring that never returns to the agent's program.
  kernel.mutate(p.sub.aux, { ksymNext: p.filter.lnode });
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[0],
  );
  assertEquals(list.views.kallsyms.truncated, true);
  assert(list.views.kallsyms.reason?.includes("loops"), list.views.kallsyms.reason);
  assertEquals(summary(list).map((r) => r[0]), [3, 7]);
});

Deno.test("listBpfPrograms() bounds the bpf_kallsyms walk", async () => {
  const { kernel } = image();
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[0],
    {
      maxPrograms: 2,
    },
  );
  assertEquals(list.views.kallsyms.truncated, true);
  assert(list.views.kallsyms.reason?.includes("more than 2 entries"), list.views.kallsyms.reason);
});

Deno.test("listBpfPrograms() says the list is unreachable when the agent holds no program", async () => {
  const { kernel } = image();
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[1],
  );
  assertEquals(list.programs, []);
  assertEquals(list.views.kallsyms.supported, false);
  assert(list.views.kallsyms.reason?.includes("no BPF program in the agent's fd table"));
});

Deno.test("listBpfPrograms() cross-checks prog_idr and bpf_kallsyms and confirms what one view lacks", async () => {
  const { kernel, bpf, p, head, trampoline } = image();
  // id 12 is JITed but unlinked from the list (hidden); id 13 is not JITed (on no list, by
  // design); id 9 is on the list but not in the IDR (hidden); id 14 is on the list, out of the
  // IDR and has refcount 0 (being freed: a race).
  const hidden = bpf.program({ id: 12, name: "hidden", tag: "3333333333333333", type: KPROBE });
  const interp = bpf.program({
    id: 13,
    name: "interp",
    tag: "4444444444444444",
    type: SOCKET_FILTER,
    jited: false,
  });
  const dying = bpf.program({
    id: 14,
    name: "dying",
    tag: "5555555555555555",
    type: KPROBE,
    refcnt: 0,
  });
  bpf.link([
    head,
    p.walk.lnode,
    p.filter.lnode,
    trampoline,
    p.sub.lnode,
    p.trigger.lnode,
    p.fentry.lnode,
    dying.lnode,
  ]);
  const progIdr = bpf.idr(
    new Map([[3, p.walk.prog], [4, p.trigger.prog], [7, p.filter.prog], [12, hidden.prog], [
      13,
      interp.prog,
    ]]),
  );
  const memory = new CachedMemory(kernel.build());
  const list = await listBpfPrograms(memory, core, types, kernel.tasks[0], {
    progIdr,
    confirm: memory,
  });
  assertEquals(
    list.programs.map((p) => [p.id, p.seenIn.join(","), p.missingFrom.join(","), p.jited]),
    [
      [3, "prog_idr,kallsyms", "", true],
      [4, "prog_idr,kallsyms", "", true],
      [7, "prog_idr,kallsyms", "", true],
      [9, "kallsyms", "prog_idr", true],
      [12, "prog_idr", "kallsyms", true],
      [13, "prog_idr", "", false],
    ],
  );
  assertEquals(list.races, 1);
  assert(list.confirmReads > 0);
  assertEquals(list.views.prog_idr, { supported: true, truncated: false, entries: 5, dropped: 0 });
});

Deno.test("listBpfPrograms() takes a program the live guest shows linked meanwhile for a race", async () => {
  const build = (linked: boolean) => {
    const { kernel, bpf, p, head, trampoline } = image();
    const late = bpf.program({ id: 20, name: "late", tag: "6666666666666666", type: KPROBE });
    const ring = [
      head,
      p.walk.lnode,
      p.filter.lnode,
      trampoline,
      p.sub.lnode,
      p.trigger.lnode,
      p.fentry.lnode,
    ];
    bpf.link(linked ? [...ring, late.lnode] : ring);
    const progIdr = bpf.idr(
      new Map([[3, p.walk.prog], [4, p.trigger.prog], [7, p.filter.prog], [9, p.fentry.prog], [
        20,
        late.prog,
      ]]),
    );
    return { memory: new CachedMemory(kernel.build()), progIdr, task: kernel.tasks[0] };
  };
  const snapshot = build(false);
  const live = build(true);
  const list = await listBpfPrograms(snapshot.memory, core, types, snapshot.task, {
    progIdr: snapshot.progIdr,
    confirm: live.memory,
  });
  assertEquals(list.programs.map((p) => p.id), [3, 4, 7, 9]);
  assertEquals(list.races, 1);
});

Deno.test("listBpfPrograms() refuses a map count beyond the kernel's limit and a bad list link", async () => {
  const { kernel, p } = image();
  kernel.mutate(p.filter.aux, { usedMapCnt: 1000 });
  kernel.mutate(p.sub.aux, { ksymNext: { raw: 0x1234n } });
  const list = await listBpfPrograms(
    new CachedMemory(kernel.build()),
    core,
    types,
    kernel.tasks[0],
  );
  const filter = list.programs.find((x) => x.id === 7)!;
  assertEquals([filter.maps, filter.error], [[], "used_map_cnt 1000 is more than 64"]);
  assertEquals(list.views.kallsyms.truncated, true);
  assert(
    list.views.kallsyms.reason?.includes("0x000001234 is not a kernel address"),
    list.views.kallsyms.reason,
  );
  assertEquals(list.programs.map((x) => x.id), [3, 7]);
});

Deno.test("listBpfPrograms() bounds the re-reads, leaving the rest unconfirmed and not missing", async () => {
  const { kernel, bpf, p } = image();
  const progIdr = bpf.idr(new Map([[3, p.walk.prog], [4, p.trigger.prog]]));
  const memory = new CachedMemory(kernel.build());
  const list = await listBpfPrograms(memory, core, types, kernel.tasks[0], {
    progIdr,
    confirm: memory,
    maxConfirms: 1,
  });
  assertEquals(list.programs.map((x) => [x.id, x.missingFrom.join(",")]), [
    [3, ""],
    [4, ""],
    [7, "prog_idr"],
    [9, ""],
  ]);
  assertEquals(list.unconfirmed, 1);
});

Deno.test("listBpfPrograms() compares no views when one is truncated", async () => {
  const { kernel, bpf, p } = image();
  kernel.mutate(p.trigger.aux, { ksymNext: p.filter.lnode });
  const progIdr = bpf.idr(new Map([[3, p.walk.prog], [4, p.trigger.prog], [9, p.fentry.prog]]));
  const memory = new CachedMemory(kernel.build());
  const list = await listBpfPrograms(memory, core, types, kernel.tasks[0], {
    progIdr,
    confirm: memory,
  });
  assertEquals(list.views.kallsyms.truncated, true);
  assertEquals(list.programs.map((x) => [x.id, x.seenIn.join(","), x.missingFrom.join(",")]), [
    [3, "prog_idr,kallsyms", ""],
    [4, "prog_idr,kallsyms", ""],
    [7, "kallsyms", ""],
    [9, "prog_idr", ""],
  ]);
  assertEquals(list.confirmReads, 0);
});
