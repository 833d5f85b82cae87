import { assert, assertEquals } from "../../tests/support/mod.ts";
import type { Socket } from "../linux/mod.ts";
import {
  assertError,
  AUTH,
  fakeFile,
  fakeModule,
  FakeMonitor,
  fakeProcess,
  fakeSocket,
  TOKEN,
} from "./testing/mod.ts";
import { createApi } from "./mod.ts";

const SOCKETS: Socket[] = [
  fakeSocket("tcp", "LISTEN", 22, 0, [400]),
  fakeSocket("tcp", "ESTABLISHED", 22, 51000, [400, 1200]),
  fakeSocket("tcp", "TIME_WAIT", 443, 52000),
  fakeSocket("udp", "UNCONN", 53, 0, [77]),
  fakeSocket("udp", "ESTABLISHED", 40000, 53, [1200]),
];

const FILES = [fakeFile(0, "/dev/null"), fakeFile(3, "/var/log/auth.log")];

function setup() {
  const monitor = new FakeMonitor()
    .addVm("web-1", [
      fakeProcess(1, 0, 0, "systemd"),
      fakeProcess(77, 1, 101, "named"),
      fakeProcess(400, 1, 0, "sshd"),
      fakeProcess(1200, 400, 1000, "bash"),
    ]);
  monitor.setModules("web-1", {
    supported: true,
    modules: [fakeModule("ext4"), fakeModule("rootkit", "OE")],
  });
  monitor.setSockets("web-1", SOCKETS);
  monitor.setFiles("web-1", 400, FILES);
  const app = createApi({ monitor, token: TOKEN, clock: monitor.clock });
  const get = (path: string) => app.request(path, { headers: AUTH });
  return { monitor, get };
}

/** The local and remote ports of the sockets answered. */
async function ports(response: Response): Promise<string[]> {
  assertEquals(response.status, 200);
  const body = await response.json();
  return body.sockets.map((socket: Socket) => `${socket.localPort}-${socket.remotePort}`);
}

Deno.test("GET /v1/vms/{vm}/modules answers the modules, its snapshot and its age", async () => {
  const { get, monitor } = setup();
  const response = await get("/v1/vms/web-1/modules");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("X-Snapshot-Age-Ms"), "0");
  const body = await response.json();
  assertEquals(body.vm, "web-1");
  assertEquals(body.supported, true);
  assertEquals("reason" in body, false);
  assertEquals(body.modules, [fakeModule("ext4"), fakeModule("rootkit", "OE")]);
  assertEquals(body.snapshot.takenAt, monitor.now);
  assertEquals(body.snapshot.mode, "prefetch");
  assertEquals(body.snapshot.stale, false);
});

Deno.test("GET /v1/vms/{vm}/modules on a kernel without modules says so, with the reason", async () => {
  const { get, monitor } = setup();
  const reason = "not supported by this kernel: it has no loadable modules (no /proc/modules)";
  monitor.setModules("web-1", { supported: false, reason, modules: [] });
  const response = await get("/v1/vms/web-1/modules");
  assertEquals(response.status, 200);
  const body = await response.json();
  assertEquals([body.supported, body.reason, body.modules], [false, reason, []]);
});

Deno.test("GET /v1/vms/{vm}/sockets answers every socket with its owners", async () => {
  const { get } = setup();
  const response = await get("/v1/vms/web-1/sockets");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("X-Snapshot-Age-Ms"), "0");
  const body = await response.json();
  assertEquals(body.vm, "web-1");
  assertEquals(body.sockets, SOCKETS);
  assertEquals(body.snapshot.stale, false);
});

Deno.test("GET /v1/vms/{vm}/sockets filters by protocol, state, port and owner together", async () => {
  const { get } = setup();
  const at = (query: string) => get(`/v1/vms/web-1/sockets?${query}`);
  assertEquals(await ports(await at("protocol=udp")), ["53-0", "40000-53"]);
  assertEquals(await ports(await at("protocol=tcp&state=LISTEN")), ["22-0"]);
  assertEquals(await ports(await at("state=listen")), [], "the state is matched exactly");
  assertEquals(await ports(await at("state=ESTABLISHED&protocol=udp")), ["40000-53"]);
  assertEquals(await ports(await at("port=53")), ["53-0", "40000-53"], "local or remote port");
  assertEquals(await ports(await at("port=52000")), ["443-52000"]);
  assertEquals(await ports(await at("pid=1200")), ["22-51000", "40000-53"]);
  assertEquals(await ports(await at("pid=1")), []);
  assertEquals(await ports(await at("port=22&pid=400&state=ESTABLISHED")), ["22-51000"]);
  assertEquals(await ports(await at("protocol=udp&port=22")), []);
});

Deno.test("GET /v1/vms/{vm}/processes/{pid}/files answers the process's open files", async () => {
  const { get, monitor } = setup();
  const response = await get("/v1/vms/web-1/processes/400/files");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("X-Snapshot-Age-Ms"), "0");
  const body = await response.json();
  assertEquals(body.vm, "web-1");
  assertEquals(body.pid, 400);
  assertEquals(body.task, fakeProcess(400, 1, 0, "sshd").task);
  assertEquals(body.files, FILES);
  assertEquals(body.snapshot.takenAt, monitor.now);
  const none = await (await get("/v1/vms/web-1/processes/1/files")).json();
  assertEquals(none.files, [], "a process without open files");
});

Deno.test("open files of an unknown pid are a 404 unknown_pid naming the pid and the guest", async () => {
  const { get } = setup();
  const error = await assertError(await get("/v1/vms/web-1/processes/31337/files"), 404, {
    code: "unknown_pid",
  });
  assertEquals(error.message, 'No process 31337 in VM "web-1"');
});

Deno.test("bad parameters of the view routes are a 422 bad_parameter naming the parameter", async () => {
  const { get, monitor } = setup();
  const cases: [string, string, string][] = [
    ["sockets?protocol=icmp", "protocol", 'expected "tcp" or "udp"'],
    ["sockets?protocol=TCP", "protocol", 'expected "tcp" or "udp"'],
    ["sockets?port=0", "port", "expected a port number (1-65535)"],
    ["sockets?port=65536", "port", "expected a port number (1-65535)"],
    ["sockets?port=http", "port", "expected a port number (1-65535)"],
    ["sockets?port=22&port=80", "port", "expected a port number (1-65535)"],
    ["sockets?pid=-1", "pid", "expected a non-negative integer"],
    ["sockets?state=LISTEN&state=CLOSE", "state", "expected a string"],
    ["sockets?max_age_ms=soon", "max_age_ms", "expected a non-negative integer"],
    ["modules?max_age_ms=-5", "max_age_ms", "expected a non-negative integer"],
    ["modules?allow_stale=1", "allow_stale", 'expected "true" or "false"'],
    ["processes/1/files?allow_stale=yes", "allow_stale", 'expected "true" or "false"'],
  ];
  for (const [path, name, expected] of cases) {
    await assertError(await get(`/v1/vms/web-1/${path}`), 422, {
      code: "bad_parameter",
      name,
      message: `Invalid query parameter "${name}": ${expected}`,
    });
  }
  await assertError(await get("/v1/vms/web-1/processes/sshd/files"), 422, {
    code: "bad_parameter",
    name: "pid",
    message: 'Invalid path parameter "pid": expected a non-negative integer',
  });
  assertEquals(monitor.fetchCount("web-1"), 0, "no invalid request reached the monitor");
});

Deno.test("the views are served from their snapshot within max_age_ms, by default refreshMs", async () => {
  const { get, monitor } = setup();
  const views = ["sockets", "modules", "processes/400/files"];
  for (const view of views) await get(`/v1/vms/web-1/${view}`);
  const takenAt = monitor.now;
  monitor.setSockets("web-1", []);
  monitor.now += 1000;
  for (const view of views) {
    const response = await get(`/v1/vms/web-1/${view}`);
    assertEquals(response.headers.get("X-Snapshot-Age-Ms"), "1000", view);
    assertEquals((await response.json()).snapshot.takenAt, takenAt, view);
  }
  assertEquals(await ports(await get("/v1/vms/web-1/sockets")), SOCKETS.map(portsOf));
  assertEquals(monitor.fetchCount("web-1"), 3);

  monitor.now += 1;
  assertEquals(await ports(await get("/v1/vms/web-1/sockets")), [], "older than refreshMs");
  monitor.setSockets("web-1", SOCKETS);
  monitor.now += 3000;
  const young = await get("/v1/vms/web-1/sockets?max_age_ms=5000");
  assertEquals(young.headers.get("X-Snapshot-Age-Ms"), "3000");
  assertEquals(await ports(young), []);
  const old = await get("/v1/vms/web-1/sockets?max_age_ms=2999");
  assertEquals(old.headers.get("X-Snapshot-Age-Ms"), "0");
  assertEquals(await ports(old), SOCKETS.map(portsOf));
  assertEquals(monitor.fetchCount("web-1", "sockets"), 3);
  assertEquals(monitor.fetchCount("web-1", "modules"), 1);
});

Deno.test("open files are kept per process", async () => {
  const { get, monitor } = setup();
  await get("/v1/vms/web-1/processes/400/files");
  await get("/v1/vms/web-1/processes/1200/files");
  await get("/v1/vms/web-1/processes/400/files");
  assertEquals(monitor.fetchCount("web-1", "files"), 2);
});

Deno.test("a view of a guest whose agent is down is a 503, or its last snapshot with allow_stale", async () => {
  const { get, monitor } = setup();
  for (const view of ["sockets", "modules", "processes/400/files"]) {
    await get(`/v1/vms/web-1/${view}`);
    const takenAt = monitor.now;
    monitor.setDown("web-1", true);
    monitor.now += 7000;
    await assertError(await get(`/v1/vms/web-1/${view}`), 503, {
      code: "agent_unreachable",
      lastSnapshotAgeMs: 7000,
    });
    await assertError(await get(`/v1/vms/web-1/${view}?allow_stale=false`), 503, {
      code: "agent_unreachable",
    });
    const stale = await get(`/v1/vms/web-1/${view}?allow_stale=true`);
    assertEquals(stale.status, 200, view);
    assertEquals(stale.headers.get("X-Snapshot-Age-Ms"), "7000");
    const body = await stale.json();
    assertEquals([body.snapshot.takenAt, body.snapshot.stale], [takenAt, true], view);
    monitor.setDown("web-1", false);
  }
  const sockets = await (await get("/v1/vms/web-1/sockets?allow_stale=true")).json();
  assertEquals(sockets.snapshot.stale, false, "the agent is back: a new snapshot");
});

Deno.test("a view never taken, of a guest whose agent is down, is a 503 even with allow_stale", async () => {
  const { get, monitor } = setup();
  monitor.setDown("web-1", true);
  for (const view of ["sockets", "modules", "processes/400/files", "processes/31337/files"]) {
    const error = await assertError(await get(`/v1/vms/web-1/${view}?allow_stale=true`), 503, {
      code: "agent_unreachable",
    });
    assertEquals("lastSnapshotAgeMs" in error, false, view);
  }
});

Deno.test("GET /v1/vms/{vm}/stats tells which view each fetch took", async () => {
  const { get } = setup();
  for (const view of ["processes", "sockets", "modules", "processes/1/files"]) {
    await get(`/v1/vms/web-1/${view}`);
  }
  const stats = await (await get("/v1/vms/web-1/stats")).json();
  assertEquals(
    stats.recent.map((record: { view: string }) => record.view),
    ["processes", "sockets", "modules", "files"],
  );
  assert(stats.recent.every((record: { ok: boolean }) => record.ok));
});

function portsOf(socket: Socket): string {
  return `${socket.localPort}-${socket.remotePort}`;
}

/** Processes of a host and of a container (a cgroup and pid namespace of its own). */
function containers() {
  const host = { ...fakeProcess(1, 0, 0, "systemd"), pidNs: 4026531836, cgroup: "/init.scope" };
  const nginx = {
    ...fakeProcess(500, 1, 33, "nginx"),
    pidNs: 4026532300,
    nsPid: 1,
    cgroup: "/system.slice/docker-abc.scope",
    threads: 2,
    threadList: [
      { tid: 500, tgid: 500, comm: "nginx", state: "S", task: "0xffff888000000500" },
      { tid: 501, tgid: 500, comm: "nginx-w", state: "S", task: "0xffff888000000501" },
    ],
  };
  const lookalike = { ...fakeProcess(600, 1, 0, "sh"), cgroup: "/system.slice/docker-abcd.scope" };
  const monitor = new FakeMonitor().addVm("web-1", [host, nginx, lookalike]);
  const sockets = [{ ...SOCKETS[0], netNs: 4026531840 }, { ...SOCKETS[1], netNs: 4026532301 }];
  monitor.setSockets("web-1", sockets);
  const app = createApi({ monitor, token: TOKEN, clock: monitor.clock });
  return { get: (path: string) => app.request(path, { headers: AUTH }), nginx, sockets };
}

const pidsOf = async (response: Response) => {
  assertEquals(response.status, 200);
  return (await response.json()).processes.map((p: { pid: number }) => p.pid);
};

Deno.test("GET /v1/vms/{vm}/processes filters by cgroup (and below) and pid namespace", async () => {
  const { get } = containers();
  const base = "/v1/vms/web-1/processes";
  assertEquals(await pidsOf(await get(`${base}?cgroup=/system.slice/docker-abc.scope`)), [500]);
  assertEquals(await pidsOf(await get(`${base}?cgroup=/system.slice/docker-abc.scope/`)), [500]);
  assertEquals(await pidsOf(await get(`${base}?cgroup=/system.slice`)), [500, 600]);
  assertEquals(await pidsOf(await get(`${base}?cgroup=/`)), [1, 500, 600]);
  assertEquals(await pidsOf(await get(`${base}?pidns=4026532300`)), [500]);
  assertEquals(await pidsOf(await get(`${base}?pidns=pid:[4026532300]&comm=sh`)), []);
});

Deno.test("GET /v1/vms/{vm}/processes lists threads only with threads=true", async () => {
  const { get, nginx } = containers();
  for (const query of ["", "?pid=500"]) {
    const plain = await (await get(`/v1/vms/web-1/processes${query}`)).json();
    const p = plain.processes.find((p: { pid: number }) => p.pid === 500);
    assertEquals([p.threads, "threadList" in p], [2, false], `threads absent (${query})`);
    const sep = query ? "&" : "?";
    const full = await (await get(`/v1/vms/web-1/processes${query}${sep}threads=true`)).json();
    const q = full.processes.find((p: { pid: number }) => p.pid === 500);
    assertEquals(q.threadList, nginx.threadList, `threads listed (${query})`);
  }
  const one = await (await get("/v1/vms/web-1/processes/500")).json();
  assertEquals("threadList" in one.process, false);
});

Deno.test("GET /v1/vms/{vm}/sockets filters by network namespace", async () => {
  const { get, sockets } = containers();
  const body = await (await get("/v1/vms/web-1/sockets?netns=4026532301")).json();
  assertEquals(body.sockets, [sockets[1]]);
});

Deno.test("bad container parameters are a 422 bad_parameter naming the parameter", async () => {
  const { get } = containers();
  const cases: [string, string, string][] = [
    ["processes?cgroup=system.slice", "cgroup", "not an absolute path"],
    ["processes?cgroup=/a/../b", "cgroup", "empty, . or .. component"],
    ["processes?cgroup=/a//b", "cgroup", "empty, . or .. component"],
    [`processes?cgroup=/${"a".repeat(4100)}`, "cgroup", "longer than 4095"],
    ["processes?cgroup=/a%0Ab", "cgroup", "control character"],
    ["processes?pidns=0", "pidns", "expected a namespace id"],
    ["processes?pidns=4294967296", "pidns", "expected a namespace id"],
    ["processes?pidns=net:[x]", "pidns", "expected a namespace id"],
    ["processes?threads=yes", "threads", 'expected "true" or "false"'],
    ["sockets?netns=-1", "netns", "expected a namespace id"],
  ];
  for (const [query, name, message] of cases) {
    const error = await assertError(await get(`/v1/vms/web-1/${query}`), 422, {
      code: "bad_parameter",
      name,
    });
    assert(String(error.message).includes(message), `${query}: ${error.message}`);
  }
});
