/**
 * The guest routes over the monitor: the guests' status, the process list and one process with
 * their filters, how fresh an answer is (`max_age_ms`, `allow_stale`, refresh) and what a down
 * agent makes of it, the stats; and the errors any route answers.
 *
 * @module
 */

import { assert, assertEquals } from "../../tests/support/mod.ts";
import type { Process } from "../linux/mod.ts";
import type { VmStats } from "../service/mod.ts";
import { assertError, AUTH, FakeMonitor, fakeProcess, TOKEN } from "./testing/mod.ts";
import { type ApiOptions, createApi } from "./mod.ts";

const WEB: Process[] = [
  fakeProcess(1, 0, 0, "systemd"),
  fakeProcess(2, 0, 0, "kthreadd"),
  fakeProcess(30, 2, 0, "kworker/0:1"),
  fakeProcess(400, 1, 0, "sshd"),
  fakeProcess(1200, 400, 1000, "bash"),
  fakeProcess(1300, 1200, 1000, "vim"),
  fakeProcess(1400, 1, 0, "bashbug"),
];

function setup(options: Partial<ApiOptions> = {}) {
  const monitor = new FakeMonitor()
    .addVm("web-1", WEB)
    .addVm("db-1", [fakeProcess(1, 0, 0, "init"), fakeProcess(77, 1, 999, "postgres")]);
  const app = createApi({ monitor, token: TOKEN, clock: monitor.clock, ...options });
  const get = (path: string, init: RequestInit = {}) =>
    app.request(path, { ...init, headers: { ...AUTH, ...init.headers } });
  return { monitor, app, get };
}

async function pids(response: Response): Promise<number[]> {
  assertEquals(response.status, 200);
  const body = await response.json();
  return body.processes.map((process: Process) => process.pid);
}

Deno.test("GET /v1/vms lists every guest, with snapshot ages at the time of the request", async () => {
  const { get, monitor } = setup();
  await monitor.refresh("web-1");
  monitor.now += 2500;
  const response = await get("/v1/vms");
  assertEquals(response.status, 200);
  const { vms } = await response.json();
  assertEquals(vms.map((vm: { name: string }) => vm.name), ["web-1", "db-1"]);
  assertEquals(vms[0].lastSnapshotAt, monitor.now - 2500);
  assertEquals(vms[0].lastSnapshotAgeMs, 2500);
  assertEquals(vms[1].lastSnapshotAgeMs, undefined, "no age without a snapshot");
  assertEquals(vms[1].state, "up");
});

Deno.test("GET /v1/vms/{vm} answers one guest's status", async () => {
  const { get, monitor } = setup();
  await monitor.refresh("db-1");
  monitor.now += 40;
  const status = await (await get("/v1/vms/db-1")).json();
  assertEquals(status.name, "db-1");
  assertEquals(status.agent, "10.0.0.2:8046");
  assertEquals(status.lastSnapshotAgeMs, 40);
});

Deno.test("an unknown guest is a 404 unknown_vm on every /v1/vms/{vm} route", async () => {
  const { get } = setup();
  const paths = [
    "",
    "/processes",
    "/processes/1",
    "/processes/1/files",
    "/modules",
    "/sockets",
    "/stats",
  ];
  for (const path of paths) {
    await assertError(await get(`/v1/vms/nope${path}`), 404, { code: "unknown_vm" });
  }
  await assertError(await get("/v1/vms/nope/refresh", { method: "POST" }), 404, {
    code: "unknown_vm",
  });
});

Deno.test("GET /v1/vms/{vm}/processes answers the snapshot, its age in a header", async () => {
  const { get, monitor } = setup();
  const first = await get("/v1/vms/web-1/processes");
  assertEquals(first.status, 200);
  assertEquals(first.headers.get("Content-Type"), "application/json");
  assertEquals(first.headers.get("X-Snapshot-Age-Ms"), "0");
  const body = await first.json();
  assertEquals(body.vm, "web-1");
  assertEquals(body.processes, WEB);
  assertEquals(body.snapshot.takenAt, monitor.now);
  assertEquals(body.snapshot.mode, "prefetch");
  assertEquals(body.snapshot.stale, false);
  assertEquals(body.snapshot.stats.roundTrips, 1);
  monitor.now += 1234;
  const second = await get("/v1/vms/web-1/processes");
  assertEquals(second.headers.get("X-Snapshot-Age-Ms"), "1234");
  assertEquals(await second.json(), body, "the body carries nothing that changes per request");
  assertEquals(monitor.fetchCount("web-1"), 1);
});

Deno.test("GET /v1/vms/{vm}/processes filters by pid, ppid, uid and comm together", async () => {
  const { get } = setup();
  const at = (query: string) => get(`/v1/vms/web-1/processes?${query}`);
  assertEquals(await pids(await at("pid=400")), [400]);
  assertEquals(await pids(await at("pid=0")), []);
  assertEquals(await pids(await at("ppid=1")), [400, 1400]);
  assertEquals(await pids(await at("uid=1000")), [1200, 1300]);
  assertEquals(await pids(await at("comm=bash")), [1200, 1400], "a substring matches");
  assertEquals(await pids(await at("comm=Bash")), [], "case matters");
  assertEquals(await pids(await at("comm=kworker%2F0")), [30]);
  assertEquals(await pids(await at("comm=bash&uid=0")), [1400]);
  assertEquals(await pids(await at("ppid=1&uid=0&comm=sh")), [400, 1400]);
  assertEquals(await pids(await at("ppid=1200&pid=1300")), [1300]);
  assertEquals(await pids(await at("ppid=1&pid=1300")), []);
});

Deno.test("a filtered answer describes the same snapshot as the unfiltered one", async () => {
  const { get, monitor } = setup();
  await get("/v1/vms/web-1/processes");
  monitor.now += 50;
  const response = await get("/v1/vms/web-1/processes?uid=1000");
  assertEquals(response.headers.get("X-Snapshot-Age-Ms"), "50");
  const body = await response.json();
  assertEquals(body.vm, "web-1");
  assertEquals(body.snapshot.takenAt, monitor.now - 50);
  assertEquals(body.snapshot.stale, false);
});

Deno.test("max_age_ms serves the cached snapshot while it is young enough, else refreshes", async () => {
  const { get, monitor } = setup();
  await get("/v1/vms/web-1/processes");
  const first = monitor.now;
  monitor.setProcesses("web-1", [...WEB, fakeProcess(2000, 1, 0, "cron")]);
  monitor.now += 900;
  const cached = await (await get("/v1/vms/web-1/processes?max_age_ms=1000")).json();
  assertEquals(cached.snapshot.takenAt, first);
  assertEquals(cached.processes.length, WEB.length);
  assertEquals(monitor.fetchCount("web-1"), 1);

  monitor.now += 200;
  const response = await get("/v1/vms/web-1/processes?max_age_ms=1000");
  assertEquals(response.headers.get("X-Snapshot-Age-Ms"), "0");
  const refreshed = await response.json();
  assertEquals(refreshed.snapshot.takenAt, monitor.now);
  assertEquals(refreshed.processes.length, WEB.length + 1);
  assertEquals(monitor.fetchCount("web-1"), 2);
});

Deno.test("max_age_ms=0 refreshes on every request", async () => {
  const { get, monitor } = setup();
  await get("/v1/vms/web-1/processes?max_age_ms=0");
  monitor.now += 1;
  await get("/v1/vms/web-1/processes?max_age_ms=0&comm=sh");
  assertEquals(monitor.fetchCount("web-1"), 2);
});

Deno.test("the unfiltered body is serialized once per snapshot and then reused", async () => {
  const { get, monitor } = setup();
  const snapshot = await monitor.refresh("web-1");
  assertEquals(await pids(await get("/v1/vms/web-1/processes")), WEB.map((p) => p.pid));
  // A snapshot never changes; changing it shows whether the body is built again.
  snapshot.value.push(fakeProcess(9999, 1, 0, "probe"));
  assertEquals(await pids(await get("/v1/vms/web-1/processes")), WEB.map((p) => p.pid));
  assertEquals(await pids(await get("/v1/vms/web-1/processes?pid=9999")), [9999]);

  monitor.now += 10;
  await monitor.refresh("web-1");
  assertEquals((await pids(await get("/v1/vms/web-1/processes"))).length, WEB.length);
  assertEquals(monitor.fetchCount("web-1"), 2, "a new snapshot gets a body of its own");
});

Deno.test("bad query parameters are a 422 bad_parameter naming the parameter", async () => {
  const { get, monitor } = setup();
  const cases: [string, string, string][] = [
    ["pid=-1", "pid", 'Invalid query parameter "pid": expected a non-negative integer'],
    ["pid=abc", "pid", 'Invalid query parameter "pid": expected a non-negative integer'],
    ["pid=1.5", "pid", 'Invalid query parameter "pid": expected a non-negative integer'],
    ["pid=", "pid", 'Invalid query parameter "pid": expected a non-negative integer'],
    ["pid=1&pid=2", "pid", 'Invalid query parameter "pid": expected a non-negative integer'],
    ["ppid=0x10", "ppid", 'Invalid query parameter "ppid": expected a non-negative integer'],
    ["uid=1e3", "uid", 'Invalid query parameter "uid": expected a non-negative integer'],
    [
      "max_age_ms=x",
      "max_age_ms",
      'Invalid query parameter "max_age_ms": expected a non-negative integer',
    ],
    [
      "allow_stale=maybe",
      "allow_stale",
      'Invalid query parameter "allow_stale": expected "true" or "false"',
    ],
  ];
  for (const [query, name, message] of cases) {
    await assertError(await get(`/v1/vms/web-1/processes?${query}`), 422, {
      code: "bad_parameter",
      name,
      message,
    });
  }
  await assertError(await get("/v1/vms/web-1/processes/abc"), 422, {
    code: "bad_parameter",
    name: "pid",
    message: 'Invalid path parameter "pid": expected a non-negative integer',
  });
  await assertError(await get("/v1/vms/web-1/processes/1?allow_stale=yes"), 422, {
    name: "allow_stale",
  });
  assertEquals(monitor.fetchCount("web-1"), 0, "no invalid request reached the monitor");
});

Deno.test("GET /v1/vms/{vm}/processes/{pid} answers one process, or 404 unknown_pid", async () => {
  const { get, monitor } = setup();
  const response = await get("/v1/vms/web-1/processes/1300");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("X-Snapshot-Age-Ms"), "0");
  const body = await response.json();
  assertEquals(body.vm, "web-1");
  assertEquals(body.process, WEB[5]);
  assertEquals(body.snapshot.takenAt, monitor.now);
  const error = await assertError(await get("/v1/vms/web-1/processes/31337"), 404, {
    code: "unknown_pid",
  });
  assert(String(error.message).includes("31337"));
});

Deno.test("an unreachable agent is a 503 agent_unreachable with the last snapshot's age", async () => {
  const { get, monitor } = setup();
  await monitor.refresh("db-1");
  monitor.setDown("db-1", true);
  monitor.now += 7000;
  for (const path of ["/processes", "/processes?max_age_ms=10", "/processes/1"]) {
    await assertError(await get(`/v1/vms/db-1${path}`), 503, {
      code: "agent_unreachable",
      lastSnapshotAgeMs: 7000,
    });
  }
  await assertError(await get("/v1/vms/db-1/refresh", { method: "POST" }), 503, {
    code: "agent_unreachable",
    lastSnapshotAgeMs: 7000,
  });
});

Deno.test("an unreachable agent without any snapshot is a 503 without an age", async () => {
  const { get, monitor } = setup();
  monitor.setDown("web-1", true);
  const error = await assertError(await get("/v1/vms/web-1/processes?allow_stale=true"), 503, {
    code: "agent_unreachable",
  });
  assertEquals("lastSnapshotAgeMs" in error, false);
});

Deno.test("allow_stale=true serves the last snapshot, marked stale, when the agent is down", async () => {
  const { get, monitor } = setup();
  await monitor.refresh("db-1");
  const takenAt = monitor.now;
  monitor.setDown("db-1", true);
  monitor.now += 7000;
  const response = await get("/v1/vms/db-1/processes?allow_stale=true");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("X-Snapshot-Age-Ms"), "7000");
  const body = await response.json();
  assertEquals(body.snapshot, { ...body.snapshot, takenAt, stale: true });
  assertEquals(body.processes.length, 2);
  assertEquals(await pids(await get("/v1/vms/db-1/processes?allow_stale=true&uid=999")), [77]);
  const one = await (await get("/v1/vms/db-1/processes/77?allow_stale=true")).json();
  assertEquals(one.snapshot.stale, true);
  assertEquals(one.process.comm, "postgres");

  monitor.setDown("db-1", false);
  const fresh = await (await get("/v1/vms/db-1/processes?allow_stale=true")).json();
  assertEquals(fresh.snapshot.takenAt, takenAt, "the agent is back: the snapshot is current");
  assertEquals(fresh.snapshot.stale, false, "the body built for a stale answer is not reused");
});

Deno.test("allow_stale=false still fails when the agent is down", async () => {
  const { get, monitor } = setup();
  await monitor.refresh("db-1");
  monitor.setDown("db-1", true);
  await assertError(await get("/v1/vms/db-1/processes?allow_stale=false"), 503, {
    code: "agent_unreachable",
  });
});

Deno.test("POST /v1/vms/{vm}/refresh takes a new snapshot and answers its size", async () => {
  const { get, monitor } = setup();
  await get("/v1/vms/web-1/processes");
  monitor.now += 60_000;
  const response = await get("/v1/vms/web-1/refresh", { method: "POST" });
  assertEquals(response.status, 200);
  const body = await response.json();
  assertEquals(body.vm, "web-1");
  assertEquals(body.count, WEB.length);
  assertEquals(body.snapshot.takenAt, monitor.now);
  assertEquals(body.snapshot.stale, false);
  assertEquals(monitor.fetchCount("web-1"), 2);
  assertEquals((await get("/v1/vms/web-1/refresh")).status, 404, "GET is not a refresh");
});

Deno.test("GET /v1/vms/{vm}/stats adds percentiles of recent fetch times", async () => {
  const { get, monitor } = setup();
  const empty = await (await get("/v1/vms/web-1/stats")).json();
  assertEquals(empty.fetches, 0);
  assertEquals(empty.latencyMs, { p50: null, p90: null, p99: null });

  for (const ms of [7, 3, 9, 1, 5, 2, 10, 4, 8, 6]) {
    monitor.fetchMs = ms;
    await monitor.refresh("web-1");
  }
  const response = await get("/v1/vms/web-1/stats");
  assertEquals(response.status, 200);
  const stats = await response.json();
  assertEquals(stats.fetches, 10);
  assertEquals(stats.failures, 0);
  assertEquals(stats.recent.length, 10);
  assertEquals(stats.cacheHitRatio, 1);
  assertEquals(stats.latencyMs, { p50: 5, p90: 9, p99: 10 });
});

Deno.test("an unexpected failure is a 500 internal that hides the error from the client", async () => {
  class BrokenMonitor extends FakeMonitor {
    override stats(): VmStats {
      throw new Error("database at /var/lib/secret is corrupt");
    }
  }
  const reported: unknown[] = [];
  const monitor = new BrokenMonitor().addVm("web-1", WEB);
  const app = createApi({ monitor, token: TOKEN, onError: (error) => reported.push(error) });
  const response = await app.request("/v1/vms/web-1/stats", { headers: AUTH });
  const error = await assertError(response, 500, { code: "internal" });
  assertEquals(String(error.message).includes("secret"), false);
  assertEquals(Object.keys(error).sort(), ["code", "message"]);
  assertEquals(reported.length, 1);
  assertEquals((reported[0] as Error).message, "database at /var/lib/secret is corrupt");
});

Deno.test("an unknown route is a 404 not_found", async () => {
  const { app, get } = setup();
  await assertError(await app.request("/nope"), 404, { code: "not_found" });
  await assertError(await get("/v1/nope"), 404, { code: "not_found" });
  await assertError(await get("/v1/vms", { method: "DELETE" }), 404, { code: "not_found" });
  await assertError(await get("/v1/vms/web-1/processes/1/extra"), 404, { code: "not_found" });
});
