import { assert, assertEquals } from "../../tests/support/mod.ts";
import { parseBtf } from "../btf/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { CachedMemory, type GuestMemory } from "../memory/mod.ts";
import { listProcesses, planTasks, type Process } from "./processes.ts";
import { listThreads } from "./threads.ts";
import { MAX_CGROUP_DEPTH } from "./namespaces.ts";
import { NAME_BYTES, resolveNamespaceTypes } from "./namespace_types.ts";
import { INIT_NET_NS, INIT_PID_NS, SyntheticKernel, type TaskSpec } from "./testing/mod.ts";
import { guestBtf } from "./_guest_btf.ts";

// Offsets come from this machine's real kernel BTF; the memory images are synthetic.
const types = resolveKernelTypes(parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux")));
const cg = types.ns.cgroup.supported ? types.ns.cgroup : undefined!;

const CONTAINER_PID_NS = 4026532300;
const CONTAINER_NET_NS = 4026532301;
const TASKS: TaskSpec[] = [
  { pid: 1, comm: "init", cgroup: "/init.scope" },
  { pid: 2, comm: "kthreadd", kthread: true },
  {
    pid: 100,
    comm: "dockerd",
    parent: 0,
    cgroup: "/system.slice/docker.service",
    threads: [{ tid: 101, comm: "dockerd" }, { tid: 102, comm: "gc-worker" }],
  },
  {
    pid: 300,
    comm: "nginx",
    parent: 2,
    cgroup: "/system.slice/docker-abc.scope",
    pidNs: { inum: CONTAINER_PID_NS, nr: 1 },
    netNs: CONTAINER_NET_NS,
    threads: [{ tid: 301, comm: "nginx-w\u00e9" }],
  },
];

/** What each process must show: a literal table. */
const EXPECTED = [
  [1, 1, INIT_PID_NS, 1, INIT_NET_NS, "/init.scope"],
  [2, 1, INIT_PID_NS, 2, INIT_NET_NS, "/"],
  [100, 3, INIT_PID_NS, 100, INIT_NET_NS, "/system.slice/docker.service"],
  [300, 2, CONTAINER_PID_NS, 1, CONTAINER_NET_NS, "/system.slice/docker-abc.scope"],
];

const fields = (processes: Process[]) =>
  processes.map((p) => [p.pid, p.threads, p.pidNs, p.nsPid, p.netNs, p.cgroup]);

const threadRows = (processes: Process[]) =>
  processes.map((p) => [p.pid, (p.threadList ?? []).map((t) => `${t.tid}/${t.tgid}/${t.comm}`)]);

const THREADS = [
  [1, ["1/1/init"]],
  [2, ["2/2/kthreadd"]],
  [100, ["100/100/dockerd", "101/100/dockerd", "102/100/gc-worker"]],
  [300, ["300/300/nginx", "301/300/nginx-w\u00e9"]],
];

async function read(kernel: SyntheticKernel, threads = false) {
  const mem = new CachedMemory(kernel.build());
  const list = await listProcesses(mem, types, kernel.initTask);
  const problems = threads ? await listThreads(mem, types, list.processes) : [];
  return { list, problems };
}

Deno.test("listProcesses() reads each process's pid and network namespaces, cgroup, threads", async () => {
  const { list, problems } = await read(new SyntheticKernel(types, TASKS), true);
  assertEquals(list.truncated, false);
  assertEquals(list.cgroups, { supported: true });
  assertEquals(list.processes.map((p) => p.error), [undefined, undefined, undefined, undefined]);
  assertEquals(fields(list.processes), EXPECTED);
  assertEquals(problems, []);
  assertEquals(threadRows(list.processes), THREADS);
});

Deno.test("planTasks() covers the namespaces, cgroups and threads in both modes", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  const image = kernel.build();
  const view = async (mem: GuestMemory) => {
    const list = await listProcesses(mem, types, kernel.initTask);
    await listThreads(mem, types, list.processes);
    return list;
  };
  const expected = await view(new CachedMemory(image));
  const checks = await checkPlan(image, (b) => planTasks(b, types, kernel.initTask).thread(), view);
  for (const [mode, check] of Object.entries(checks)) {
    assertEquals(check.misses, [], `${mode} read past its plan`);
    assertEquals(check.result, expected, mode);
  }
});

Deno.test("a pid nested deeper than the plan copies is read on demand, one too deep refused", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  const pid = kernel.ns.pids.get(kernel.tasks[0])!;
  // Level 6: numbers[6] is past what the plan copies; a memory image has it.
  const deep = pid + types.ns.numbersOffset + 6 * types.ns.upid.size;
  kernel.place(types.ns.upid, { nr: 7, ns: kernel.ns.initPidNs }, { at: deep });
  kernel.mutate(pid, { level: 6 });
  kernel.mutate(kernel.ns.pids.get(kernel.tasks[1])!, { level: 33 });
  const { list } = await read(kernel);
  assertEquals([list.processes[0].nsPid, list.processes[0].pidNs], [7, INIT_PID_NS]);
  const kthreadd = list.processes[1];
  assertEquals(kthreadd.pidNs, undefined);
  assert(kthreadd.error?.includes("level 33, more than 32"), kthreadd.error);
  assertEquals(fields(list.processes.slice(2)), EXPECTED.slice(2));
});

Deno.test("a kernfs parent chain that loops is an error of those processes only", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  const slice = kernel.ns.kernfsNode("/system.slice");
  kernel.mutate(slice, { parent: kernel.ns.kernfsNode("/system.slice/docker.service") });
  const { list } = await read(kernel);
  for (const p of list.processes.slice(2)) {
    assertEquals(p.cgroup, undefined);
    assert(p.error?.includes("kernfs parents of") && p.error.includes("loop"), p.error);
  }
  assertEquals(fields(list.processes.slice(0, 2)), EXPECTED.slice(0, 2));
  assertEquals(list.processes[3].pidNs, CONTAINER_PID_NS, "its other fields are read");
});

Deno.test("a chain deeper than the bound is refused", async () => {
  const path = Array.from({ length: MAX_CGROUP_DEPTH + 1 }, (_, i) => `/d${i}`).join("");
  const kernel = new SyntheticKernel(types, [{ pid: 1, comm: "init", cgroup: path }]);
  const { list } = await read(kernel);
  assert(
    list.processes[0].error?.includes(`more than ${MAX_CGROUP_DEPTH}`),
    list.processes[0].error,
  );
  const deepest = path.slice(path.indexOf("/", 1));
  const ok = new SyntheticKernel(types, [{ pid: 1, comm: "init", cgroup: deepest }]);
  assertEquals((await read(ok)).list.processes[0].cgroup, deepest);
});

Deno.test("an over-long, empty, slashed or unreadable kernfs name is an error", async () => {
  const cases: [string, (k: SyntheticKernel, at: number) => void][] = [
    [`longer than ${NAME_BYTES - 1} bytes`, (k, at) => {
      k.mutate(at, { name: k.placeBytes(new Uint8Array(NAME_BYTES).fill(0x41)) });
    }],
    ["is empty", (k, at) => k.mutate(at, { name: k.placeBytes(new Uint8Array(NAME_BYTES)) })],
    ['holds a "/"', (k, at) => {
      const name = new Uint8Array(NAME_BYTES);
      name.set(new TextEncoder().encode("a/b"));
      k.mutate(at, { name: k.placeBytes(name) });
    }],
    ["not a kernel address", (k, at) => k.mutate(at, { name: { raw: 0x7fff_0000_1000n } })],
    ["Cannot read", (k, at) => k.mutate(at, { name: 0x0888_7000_0000 })],
  ];
  for (const [message, corrupt] of cases) {
    const kernel = new SyntheticKernel(types, TASKS);
    corrupt(kernel, kernel.ns.kernfsNode("/init.scope"));
    const { list } = await read(kernel);
    const init = list.processes[0];
    assertEquals(init.cgroup, undefined, message);
    assert(init.error?.includes(message), `${message}: ${init.error}`);
    assertEquals(fields(list.processes.slice(1)), EXPECTED.slice(1), message);
  }
});

Deno.test("a name ending near a page's end is read without the next page", async () => {
  const kernel = new SyntheticKernel(types, [{ pid: 1, comm: "init", cgroup: "/edge" }]);
  const name = new TextEncoder().encode("edge\0");
  const at = 0x0888_6000_0000 - name.length; // the page after it is not in the image
  kernel.placeBytes(name, at);
  kernel.mutate(kernel.ns.kernfsNode("/edge"), { name: at });
  const { list } = await read(kernel);
  assertEquals([list.processes[0].cgroup, list.processes[0].error], ["/edge", undefined]);
});

Deno.test("a guest without a mounted cgroup v2 hierarchy says so and shows no cgroup", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  kernel.mutate(kernel.ns.kernfsRoot, { supersNext: kernel.ns.kernfsRoot + cg.supersOffset });
  const { list } = await read(kernel);
  assertEquals(list.cgroups?.supported, false);
  assert(list.cgroups?.reason?.includes("no cgroup v2 hierarchy is mounted"), list.cgroups?.reason);
  assertEquals(
    list.processes.map((p) => [p.cgroup, p.error]),
    TASKS.map(() => [undefined, undefined]),
  );
  assertEquals(list.processes.map((p) => p.pidNs), EXPECTED.map((e) => e[2] as number));
});

Deno.test("an exited task has no network namespace; a bad nsproxy is an error", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  kernel.mutate(kernel.tasks[0], { nsproxy: null });
  kernel.mutate(kernel.tasks[1], { nsproxy: { raw: 0x4141_4141n } });
  const { list } = await read(kernel);
  assertEquals([list.processes[0].netNs, list.processes[0].error], [undefined, undefined]);
  assert(list.processes[1].error?.includes("nsproxy of task"), list.processes[1].error);
  assertEquals(list.processes[1].cgroup, "/");
});

Deno.test("listThreads() stops a thread list that loops or runs too long, and says so", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  const [extra] = kernel.ns.threads.get(kernel.tasks[2])!;
  // 101's next is itself: the list never comes back to its head.
  kernel.mutate(extra, { threadNext: extra + types.threadNodeOffset });
  const { list, problems } = await read(kernel, true);
  assertEquals(problems.length, 1);
  assert(problems[0].includes("threads of pid 100") && problems[0].includes("loops"), problems[0]);
  assertEquals(threadRows(list.processes)[2], [100, ["100/100/dockerd", "101/100/dockerd"]]);
  assertEquals(threadRows(list.processes)[3], THREADS[3]);
  const mem = new CachedMemory(new SyntheticKernel(types, TASKS).build());
  const bounded = await listProcesses(mem, types, kernel.initTask);
  const limited = await listThreads(mem, types, bounded.processes, { maxPerProcess: 2 });
  assert(limited[0].includes("more than 2 threads"), limited[0]);
});

Deno.test("a thread of another thread group is listed with an error", async () => {
  const kernel = new SyntheticKernel(types, TASKS);
  const [extra] = kernel.ns.threads.get(kernel.tasks[3])!;
  kernel.mutate(extra, { tgid: 999 });
  const { list } = await read(kernel, true);
  const rogue = list.processes[3].threadList![1];
  assertEquals(rogue.tid, 301);
  assert(rogue.error?.includes("999"), rogue.error);
});

Deno.test("the Debian 6.1 kernel's kernfs_node parent resolves", async (t) => {
  const guest = await guestBtf();
  if ("reason" in guest) {
    t.step({ name: guest.reason, ignore: true, fn() {} });
    return;
  }
  const ns = resolveNamespaceTypes(guest.btf);
  assert(ns.cgroup.supported);
  if (!ns.cgroup.supported) return;
  assertEquals(ns.cgroup.kernfsNode.fields.map((f) => f.member), ["parent", "name"]);
  assertEquals(cg.kernfsNode.fields.map((f) => f.member), ["__parent", "name"]);
});
