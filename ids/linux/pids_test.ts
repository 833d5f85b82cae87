import { assert, assertEquals } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { readXarray } from "../kernel/mod.ts";
import { AddressSpace, CachedMemory, type GuestMemory, type KAddr } from "../memory/mod.ts";
import { type PidTypes, readProcessViews, resolvePidTypes } from "./pids.ts";
import { SyntheticKernel, type TaskSpec } from "./testing/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from this machine's real kernel BTF; the memory images are synthetic.
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const types = resolveKernelTypes(btf);
const pidTypes: PidTypes = resolvePidTypes(btf);
const LIST_POISON1 = { raw: 0xdead_0000_0000_0100n };

const TASKS: TaskSpec[] = [
  { pid: 1, comm: "init" },
  { pid: 2, comm: "kthreadd", kthread: true },
  { pid: 100, comm: "sshd", parent: 0 },
  { pid: 200, comm: "bash", parent: 2, uid: 1000 },
  { pid: 4000, comm: "sleep", parent: 3, uid: 65534 },
];

function u64(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return bytes;
}

/** Places an xarray of `entries` (index -> address) and returns its xa_head value. */
function placeXarray(k: SyntheticKernel, entries: Map<number, KAddr>): bigint {
  const slots = pidTypes.xarray.slotCount;
  const node = (shift: number, values: (bigint | undefined)[]): bigint => {
    const slotsAt = pidTypes.xarray.node.fields.find((f) => f.name === "slots")!.offset;
    const bytes = new Uint8Array(pidTypes.xarray.node.size);
    bytes[pidTypes.xarray.node.fields.find((f) => f.name === "shift")!.offset] = shift;
    values.forEach((v, i) => v !== undefined && bytes.set(u64(v), slotsAt + i * 8));
    return space.fromKAddr(k.placeBytes(bytes)) + 2n;
  };
  const leaves = new Map<number, (bigint | undefined)[]>();
  for (const [index, at] of entries) {
    const leaf = leaves.get(Math.floor(index / slots)) ?? new Array(slots);
    leaf[index % slots] = space.fromKAddr(at);
    leaves.set(Math.floor(index / slots), leaf);
  }
  const top = new Array<bigint | undefined>(slots);
  for (const [i, leaf] of leaves) top[i] = node(0, leaf);
  return node(6, top);
}

interface Image {
  kernel: SyntheticKernel;
  pidNamespace: KAddr;
}

/**
 * A kernel whose tasks are on the task list (with prev links), their parents' children lists,
 * their own thread lists, and the pid IDR. `unlink` takes task i off the task list as
 * list_del does (neighbours joined, its own links poisoned); `unlinkChild` off its parent's
 * children list; `unhash` out of the IDR.
 */
function image(
  specs: TaskSpec[],
  options: {
    unlink?: number[];
    /** Unlinked as list_del_init leaves it: both links at itself. */
    selfLinked?: boolean;
    unlinkChild?: number[];
    unhash?: number[];
    exiting?: number[];
  } = {},
): Image {
  const k = new SyntheticKernel(types, specs);
  const all = [k.initTask, ...k.tasks];
  const onList = all.filter((_, i) => !options.unlink?.includes(i - 1));
  onList.forEach((at, i) => {
    k.mutate(at, {
      tasksNext: onList[(i + 1) % onList.length] + types.tasksOffset,
      tasksPrev: onList[(i + onList.length - 1) % onList.length] + types.tasksOffset,
    });
  });
  for (const i of options.unlink ?? []) {
    const self = k.tasks[i] + types.tasksOffset;
    k.mutate(
      k.tasks[i],
      options.selfLinked
        ? { tasksNext: self, tasksPrev: self }
        : { tasksNext: LIST_POISON1, tasksPrev: { raw: 0xdead_0000_0000_0122n } },
    );
  }
  const parentOf = (i: number) => specs[i].parent === undefined ? 0 : specs[i].parent! + 1;
  all.forEach((parent, p) => {
    const kids = k.tasks.filter((_, i) => parentOf(i) === p && !options.unlinkChild?.includes(i));
    const head = parent + types.childrenOffset;
    const ring = [head, ...kids.map((c) => c + types.siblingOffset)];
    k.mutate(parent, { childrenNext: ring[1 % ring.length] });
    k.placeBytes(u64(space.fromKAddr(ring[ring.length - 1])), head + 8);
    kids.forEach((c, i) => {
      k.mutate(c, { siblingNext: ring[(i + 2) % ring.length], siblingPrev: ring[i] });
    });
  });
  for (const i of options.unlinkChild ?? []) {
    k.mutate(k.tasks[i], { siblingNext: LIST_POISON1, siblingPrev: LIST_POISON1 });
  }
  const pidNamespace = k.place(pidTypes.pidns, { xaHead: null });
  const pids = new Map<number, KAddr>();
  all.forEach((at, i) => {
    const signal = k.place(types.signal, { threadHeadNext: at + types.threadNodeOffset });
    const pid = k.place(pidTypes.pid, { level: 0 }, { prefix: 0 });
    k.placeBytes(
      u64(space.fromKAddr(at + types.pidLinksOffset)),
      pid + pidTypes.pid.fields[1].offset,
    );
    k.place(pidTypes.upid, { nr: i === 0 ? 0 : specs[i - 1].pid, ns: pidNamespace }, {
      at: pid + pidTypes.numbersOffset,
    });
    k.mutate(at, {
      groupLeader: at,
      signal,
      threadNext: signal + types.threadHeadOffset,
      threadPid: pid,
      tgid: i === 0 ? 0 : specs[i - 1].pid,
      ...(options.exiting?.includes(i - 1) ? { flags: 0x4 } : {}),
    });
    if (i > 0 && !options.unhash?.includes(i - 1)) pids.set(specs[i - 1].pid, pid);
  });
  k.mutate(pidNamespace, { xaHead: { raw: placeXarray(k, pids) } });
  return { kernel: k, pidNamespace };
}

async function views(snapshot: Image, live: Image = snapshot) {
  const mem = new CachedMemory(snapshot.kernel.build());
  const confirm = new CachedMemory(live === snapshot ? mem.cache : live.kernel.build());
  return await readProcessViews(
    mem,
    types,
    pidTypes,
    snapshot.kernel.initTask,
    snapshot.pidNamespace,
    confirm,
  );
}

Deno.test("readXarray() finds every entry of a two-level xarray, in index order", async () => {
  const k = new SyntheticKernel(types, []);
  const entries = new Map([[1, 0x0888_0001_0000], [63, 0x0888_0002_0000], [64, 0x0888_0003_0000], [
    4000,
    0x0888_0004_0000,
  ]]);
  const head = placeXarray(k, entries);
  const at = k.placeBytes(u64(head));
  const found = await readXarray(new CachedMemory(k.build()), pidTypes.xarray, at);
  assertEquals(found.truncated, false);
  assertEquals(found.entries.map((e) => [e.index, e.value]), [...entries]);
});

Deno.test("readXarray() stops at a node reached twice and says so", async () => {
  const k = new SyntheticKernel(types, []);
  const bytes = new Uint8Array(pidTypes.xarray.node.size);
  const nodeAt = k.placeBytes(bytes);
  const slotsAt = pidTypes.xarray.node.fields.find((f) => f.name === "slots")!.offset;
  bytes[pidTypes.xarray.node.fields[0].offset] = 6;
  bytes.set(u64(space.fromKAddr(nodeAt) + 2n), slotsAt); // its own child: a cycle
  const at = k.placeBytes(u64(space.fromKAddr(nodeAt) + 2n));
  const found = await readXarray(new CachedMemory(k.build()), pidTypes.xarray, at);
  assert(found.truncated, "a cut walk is reported");
  assert(/shift|twice/.test(found.reason ?? ""), found.reason);
});

Deno.test("readProcessViews() finds every process in all three views of a clean image", async () => {
  const result = await views(image(TASKS));
  assertEquals(result.hidden, []);
  assertEquals(
    result.processes.map((p) => [p.pid, p.seenIn?.join(" ")]),
    TASKS.map((t) => [t.pid, "tasks pid_idr children"]),
  );
  for (const view of ["tasks", "pid_idr", "children"] as const) {
    const { count, truncated } = result.views[view];
    assertEquals({ count, truncated }, { count: 5, truncated: false }, view);
  }
});

Deno.test("readProcessViews() reports a process unlinked from the task list, confirmed live", async () => {
  const hidden = image(TASKS, { unlink: [3] });
  const result = await views(hidden);
  assertEquals(result.hidden.map((h) => [h.pid, h.comm, h.uid, h.seenIn, h.missingFrom]), [
    [200, "bash", 1000, ["pid_idr", "children"], ["tasks"]],
  ]);
  assertEquals(result.hidden[0].task, space.hex(hidden.kernel.tasks[3]));
  assert(result.processes.some((p) => p.pid === 200), "ps still lists it, from the other views");
});

Deno.test("readProcessViews() clears a process that was linked after the walk (a fork)", async () => {
  const result = await views(image(TASKS, { unlink: [4] }), image(TASKS));
  assertEquals(result.hidden, []);
  assertEquals(result.cleared, 1);
});

Deno.test("readProcessViews() clears a process that exits during the scan", async () => {
  const result = await views(
    image(TASKS, { unlink: [4] }),
    image(TASKS, { unlink: [4], exiting: [4] }),
  );
  assertEquals(result.hidden, []);
  assertEquals(result.cleared, 1);
});

Deno.test("readProcessViews() reports a process missing from the pid IDR and from its parent's children", async () => {
  const idr = await views(image(TASKS, { unhash: [2] }));
  assertEquals(idr.hidden.map((h) => [h.pid, h.missingFrom]), [[100, ["pid_idr"]]]);
  const tree = await views(image(TASKS, { unlinkChild: [1] }));
  assertEquals(tree.hidden.map((h) => [h.pid, h.missingFrom]), [[2, ["children"]]]);
});

Deno.test("readProcessViews() clears a task whose memory a fork reused during the scan", async () => {
  // Live, the task's memory holds another process (a new pid), not yet in the pid IDR.
  const reused = TASKS.map((t, i) => i === 3 ? { ...t, pid: 300 } : t);
  const result = await views(image(TASKS, { unhash: [3] }), image(reused, { unhash: [3] }));
  assertEquals(result.hidden, []);
  assertEquals(result.cleared, 1);
});

Deno.test("readProcessViews() clears a task that left every view by the re-check (freed)", async () => {
  // In the snapshot only the task list still held it; live, it is off that list too, its memory
  // not yet reused: its fields still read as they were.
  const gone = { unhash: [3], unlinkChild: [3] };
  const result = await views(image(TASKS, gone), image(TASKS, { ...gone, unlink: [3] }));
  assertEquals(result.hidden, []);
  // It, and its child, which the children lists reach only through it.
  assertEquals(result.cleared, 2);
  // Still on the task list live: hidden from the other two.
  const hidden = await views(image(TASKS, gone));
  assertEquals(hidden.hidden.map((h) => [h.pid, h.missingFrom]), [[200, ["pid_idr", "children"]]]);
});

Deno.test("readProcessViews() reports a task unlinked with list_del_init (linked to itself)", async () => {
  const result = await views(image(TASKS, { unlink: [3], selfLinked: true }));
  assertEquals(result.hidden.map((h) => [h.pid, h.missingFrom]), [[200, ["tasks"]]]);
});

/** Live memory as a second look later finds it: `now` first, `later` once read again. */
function changing(now: Image, later: Image): GuestMemory {
  const memory = new CachedMemory(now.kernel.build());
  return Object.assign(memory, { again: () => new CachedMemory(later.kernel.build()) });
}

Deno.test("readProcessViews() looks twice: a task a fork links between the two looks is cleared", async () => {
  const snapshot = image(TASKS, { unlink: [3] });
  const views = (live: GuestMemory) =>
    readProcessViews(
      new CachedMemory(snapshot.kernel.build()),
      types,
      pidTypes,
      snapshot.kernel.initTask,
      snapshot.pidNamespace,
      live,
      { settleMs: 0 },
    );
  const linked = await views(changing(image(TASKS, { unlink: [3] }), image(TASKS)));
  assertEquals([linked.hidden, linked.cleared], [[], 1]);
  // Still unlinked at the second look: hidden.
  const hidden = await views(
    changing(image(TASKS, { unlink: [3] }), image(TASKS, { unlink: [3] })),
  );
  assertEquals(hidden.hidden.map((h) => [h.pid, h.missingFrom]), [[200, ["tasks"]]]);
});

Deno.test("readProcessViews() keeps a shared cred the live guest confirms, and clears one it does not", async () => {
  // Two processes of their own thread groups on one cred (init_task's, handed over).
  const sharing = TASKS.map((t, i) => i === 2 || i === 4 ? { ...t, initCred: true } : t);
  const snapshot = image(sharing);
  const kept = await views(snapshot);
  const cred = kept.processes.find((p) => p.pid === 100)!.cred;
  assertEquals(kept.processes.find((p) => p.pid === 4000)!.cred, cred);
  assertEquals([kept.sharedCreds, kept.credsCleared], [[cred], 0]);
  // Live, one of them is exiting: the cred was its until then, not a theft.
  const gone = await views(snapshot, image(sharing, { exiting: [4] }));
  assertEquals([gone.sharedCreds, gone.credsCleared], [[], 1]);
  // Distinct creds: nothing to confirm.
  assertEquals((await views(image(TASKS))).sharedCreds, []);
});
