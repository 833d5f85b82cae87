import { assert, assertEquals, assertRejects } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { AddressSpace, CachedMemory } from "../memory/mod.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { findInitTask, listProcesses, planTasks } from "./processes.ts";
import { stateLetter } from "./_process_fields.ts";
import { SyntheticKernel, type TaskSpec } from "./testing/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from this machine's real kernel BTF; the memory image is synthetic.
const types = resolveKernelTypes(parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux")));

const TASKS: TaskSpec[] = [
  { pid: 1, comm: "init" },
  { pid: 2, comm: "kthreadd", kthread: true, state: 0x402 },
  { pid: 100, comm: "sshd", parent: 0, uid: 0 },
  { pid: 200, comm: "bash", parent: 2, uid: 1000, gid: 1000 },
];

Deno.test("listProcesses() rebuilds every task of a synthetic image, with parents and creds", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  const mem = new CachedMemory(kernel.build());
  assertEquals(await findInitTask(mem, types, kernel.tasks[3]), kernel.initTask);
  const list = await listProcesses(mem, types, kernel.initTask);
  assertEquals(list.truncated, false);
  assertEquals(list.initTask, space.hex(kernel.initTask));
  assertEquals(
    list.processes.map((p) => [p.pid, p.ppid, p.comm, p.uid, p.gid, p.kthread, p.state]),
    [
      [1, 0, "init", 0, 0, false, "S"],
      [2, 0, "kthreadd", 0, 0, true, "I"],
      [100, 1, "sshd", 0, 0, false, "S"],
      [200, 100, "bash", 1000, 1000, false, "S"],
    ],
  );
  assertEquals(list.processes[3].cred, space.hex(kernel.creds[3]));
});

Deno.test("listProcesses() reads capability sets and finds processes on init_task's cred", async () => {
  const kernel = new SyntheticKernel(types, [
    { pid: 1, comm: "init", caps: 0x1ff_ffff_ffffn },
    { pid: 2, comm: "kthreadd", kthread: true, initCred: true },
    { pid: 300, comm: "nginx", uid: 33, caps: 1n << 10n },
  ]);
  const list = await listProcesses(new CachedMemory(kernel.build()), types, kernel.initTask);
  assertEquals(
    list.processes.map((
      p,
    ) => [p.pid, p.capEffective, p.capPermitted, p.capInheritable, p.initCred]),
    [
      [1, "0x000001ffffffffff", "0x000001ffffffffff", "0x0000000000000000", false],
      [2, "0x000001ffffffffff", "0x000001ffffffffff", "0x0000000000000000", true],
      [300, "0x0000000000000400", "0x0000000000000400", "0x0000000000000000", false],
    ],
  );
  assertEquals(list.processes[1].cred, space.hex(kernel.initCred));
});

Deno.test("listProcesses() reports a tasks list that loops without reaching init_task", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  kernel.mutate(kernel.tasks[3], { tasksNext: kernel.entry(kernel.tasks[1]) });
  const list = await listProcesses(new CachedMemory(kernel.build()), types, kernel.initTask);
  assert(list.truncated);
  assert(list.reason!.includes("loops"), list.reason);
  assertEquals(list.processes.map((p) => p.pid), [1, 2, 100, 200]);
});

Deno.test("listProcesses() stops at a non-kernel tasks.next and says where", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  kernel.mutate(kernel.tasks[1], { tasksNext: { raw: 0x00007fff_dead_b000n } });
  const list = await listProcesses(new CachedMemory(kernel.build()), types, kernel.initTask);
  assert(list.truncated);
  assert(
    list.reason!.includes("0x7fffdeadb000") && list.reason!.includes("not a kernel address"),
    list.reason,
  );
  assertEquals(list.processes.map((p) => p.pid), [1, 2]);
});

Deno.test("listProcesses() stops at a task missing from memory, reported as truncated", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  kernel.remove(kernel.tasks[2]);
  const list = await listProcesses(new CachedMemory(kernel.build()), types, kernel.initTask);
  assert(list.truncated);
  assert(list.reason!.includes("Cannot read"), list.reason);
  assertEquals(list.processes.map((p) => p.pid), [1, 2]);
});

Deno.test("listProcesses() lists a process with a bad cred pointer with an error and goes on", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  kernel.mutate(kernel.tasks[2], { realCred: { raw: 0x1234n } });
  const list = await listProcesses(new CachedMemory(kernel.build()), types, kernel.initTask);
  assertEquals(list.truncated, false);
  const sshd = list.processes.find((p) => p.pid === 100)!;
  assert(sshd.error?.includes("real_cred"), sshd.error);
  assertEquals(sshd.uid, -1);
  assertEquals(sshd.capEffective, undefined);
  assertEquals(sshd.initCred, false);
  assertEquals(list.processes.length, 4);
});

Deno.test("listProcesses() bounds the walk by maxTasks", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  const list = await listProcesses(new CachedMemory(kernel.build()), types, kernel.initTask, {
    maxTasks: 2,
  });
  assert(list.truncated);
  assertEquals(list.processes.length, 2);
});

Deno.test("findInitTask() refuses a real_parent chain that loops before init_task", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  kernel.mutate(kernel.tasks[0], { realParent: kernel.tasks[3] });
  await assertRejects(
    () => findInitTask(new CachedMemory(kernel.build()), types, kernel.tasks[3]),
    Error,
    "loops",
  );
});

Deno.test("stateLetter() follows the kernel's task_state_index", () => {
  assertEquals(stateLetter(0, 0), "R");
  assertEquals(stateLetter(1, 0), "S");
  assertEquals(stateLetter(2, 0), "D");
  assertEquals(stateLetter(4, 0), "T");
  assertEquals(stateLetter(8, 0), "t");
  assertEquals(stateLetter(0, 16), "X");
  assertEquals(stateLetter(0, 32), "Z");
  assertEquals(stateLetter(0x402, 0), "I");
});

/** A 5-level guest's space: its direct map, vmalloc and vmemmap below the 4-level half. */
const LA57 = AddressSpace.fiveLevel([
  { name: "page_offset_base", value: 0xff35c69180000000n },
  { name: "vmalloc_base", value: 0xff667dd8c0000000n },
  { name: "vmemmap_base", value: 0xff9f09b940000000n },
]);

Deno.test("the same kernel types read a 4-level and a 5-level image side by side", async () => {
  const four = new SyntheticKernel(types, TASKS);
  const five = new SyntheticKernel(types, TASKS, { space: LA57 });
  const fourMem = new CachedMemory(four.build());
  const fiveMem = new CachedMemory(five.build(), LA57);
  const [a, b] = await Promise.all([
    listProcesses(fourMem, types, four.initTask),
    listProcesses(fiveMem, types, five.initTask),
  ]);
  const rows = (list: typeof a) => list.processes.map((p) => [p.pid, p.ppid, p.comm, p.uid]);
  assertEquals(rows(b), rows(a));
  assertEquals([a.truncated, b.truncated], [false, false]);
  // Each image's addresses are its guest's: the direct map of 4 or of 5 levels.
  assertEquals(a.processes[0].task, "0xffff888800100000");
  assertEquals(b.processes[0].task, "0xff35c69900100000");
  assertEquals(LA57.parseKAddr(b.processes[3].cred), five.creds[3]);
  assertEquals(await findInitTask(fiveMem, types, five.tasks[3]), five.initTask);
});

Deno.test("a 5-level image read as 4-level stops at the first pointer below the 4-level half", async () => {
  const five = new SyntheticKernel(types, TASKS, { space: LA57 });
  const list = await listProcesses(new CachedMemory(five.build()), types, five.initTask);
  assert(list.truncated);
  assertEquals(
    list.reason,
    `Cannot follow tasks.next of task ${space.hex(five.initTask)}: ` +
      `${LA57.hex(five.entry(five.tasks[0]))} is not a kernel address`,
  );
  assertEquals(list.processes, []);
});

Deno.test("a task placed at a window's end is refused with the window named, not read elsewhere", async () => {
  const five = new SyntheticKernel(types, TASKS, { space: LA57 });
  // The list entry in the window's last 8 bytes: the task's fields after it are beyond.
  five.mutate(five.tasks[1], { tasksNext: { raw: BigInt(LA57.windows[1].end) - 8n } });
  const list = await listProcesses(new CachedMemory(five.build(), LA57), types, five.initTask);
  assert(list.truncated);
  assertEquals(list.processes.map((p) => p.pid), [1, 2]);
  assert(list.reason?.includes("the end of the guest's page_offset_base window"), list.reason);
});

Deno.test("the plan of the task walk covers every read of a 5-level image", async () => {
  const five = new SyntheticKernel(types, TASKS, { space: LA57 });
  const check = await checkPlan(
    five.build(),
    (b) => planTasks(b, types, five.initTask),
    (mem) => listProcesses(mem, types, five.initTask),
    LA57,
  );
  for (const mode of ["whole", "selective"] as const) {
    assertEquals(check[mode].misses, [], mode);
    assertEquals(check[mode].result.processes.map((p) => p.pid), [1, 2, 100, 200], mode);
    assertEquals(check[mode].result.processes[2].task, LA57.hex(five.tasks[2]), mode);
  }
});
