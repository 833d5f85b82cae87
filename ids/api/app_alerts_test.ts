import { assert, assertEquals } from "../../tests/support/mod.ts";
import type { Finding, Severity } from "../detect/mod.ts";
import type { AlertChange } from "../service/mod.ts";
import { assertError, AUTH, FakeMonitor, fakeProcess, TOKEN } from "./testing/mod.ts";
import { type ApiOptions, createApi } from "./mod.ts";

const T0 = 1_700_000_000_000;

function finding(subject: string, severity: Severity = "high", rule = "hidden_process"): Finding {
  return { rule, severity, subject, message: `${subject} hides`, evidence: { subject } };
}

function setup(options: Partial<ApiOptions> = {}) {
  const monitor = new FakeMonitor()
    .addVm("web-1", [fakeProcess(1, 0, 0, "init")])
    .addVm("db-1", [fakeProcess(1, 0, 0, "init")]);
  monitor.now = T0;
  const app = createApi({ monitor, token: TOKEN, clock: monitor.clock, ...options });
  const get = (path: string, init: RequestInit = {}) =>
    app.request(path, { ...init, headers: { ...AUTH, ...init.headers } });
  return { monitor, app, get };
}

/** Three scans: web-1 opens pid 7 (high) and module rk (critical), db-1 opens pid 9 (low). */
function scans(monitor: FakeMonitor): void {
  monitor.applyFindings("web-1", [finding("pid 7")]);
  monitor.now = T0 + 60_000;
  monitor.applyFindings("web-1", [
    finding("pid 7"),
    finding("module rk", "critical", "hidden_module"),
  ]);
  monitor.now = T0 + 120_000;
  monitor.applyFindings("db-1", [finding("pid 9", "low")]);
}

async function subjects(response: Response): Promise<string[]> {
  assertEquals(response.status, 200);
  const body = await response.json();
  return body.alerts.map((alert: { subject: string }) => alert.subject);
}

Deno.test("GET /v1/alerts lists every guest's alerts, filtered, most recently seen first", async () => {
  const { monitor, get } = setup();
  using _ = monitor;
  scans(monitor);
  assertEquals(await subjects(await get("/v1/alerts")), ["pid 9", "module rk", "pid 7"]);
  assertEquals(await subjects(await get("/v1/alerts?vm=web-1")), ["module rk", "pid 7"]);
  assertEquals(await subjects(await get("/v1/alerts?rule=hidden_module")), ["module rk"]);
  assertEquals(await subjects(await get("/v1/alerts?severity=high")), ["module rk", "pid 7"]);
  assertEquals(await subjects(await get("/v1/alerts?state=resolved")), []);
  assertEquals(await subjects(await get(`/v1/alerts?since=${T0 + 60_000}`)), [
    "pid 9",
    "module rk",
    "pid 7",
  ]);
  const iso = new Date(T0 + 120_000).toISOString();
  assertEquals(await subjects(await get(`/v1/alerts?since=${iso}`)), ["pid 9"]);
  assertEquals(await subjects(await get("/v1/alerts?limit=1")), ["pid 9"]);
  assertEquals(await subjects(await get("/v1/alerts?vm=gone-vm")), []);
  monitor.raiseHealth("db-1", finding("db-1", "high", "agent_unreachable"));
  assertEquals(await subjects(await get("/v1/alerts?rule=agent_unreachable")), ["db-1"]);
  assertEquals(await subjects(await get("/v1/alerts?rule=agent_misbehaving")), []);

  const body = await (await get("/v1/alerts?rule=hidden_module")).json();
  assertEquals(body.alerts, [{
    id: 2,
    vm: "web-1",
    rule: "hidden_module",
    subject: "module rk",
    state: "open",
    severity: "critical",
    message: "module rk hides",
    evidence: { subject: "module rk" },
    firstSeen: T0 + 60_000,
    lastSeen: T0 + 60_000,
    count: 1,
    missing: 0,
  }]);
});

Deno.test("GET /v1/alerts answers 422 naming a bad parameter", async () => {
  const { monitor, get } = setup();
  using _ = monitor;
  for (
    const [query, name] of [
      ["severity=loud", "severity"],
      ["state=closed", "state"],
      ["since=yesterday", "since"],
      ["since=-5", "since"],
      ["limit=0", "limit"],
      ["limit=1001", "limit"],
      ["limit=ten", "limit"],
      ["rule=hidden_proces", "rule"],
      ["vm=..%2Fetc", "vm"],
    ]
  ) {
    const error = await assertError(await get(`/v1/alerts?${query}`), 422, {
      code: "bad_parameter",
      name,
    });
    assert(String(error.message).includes(`"${name}"`), String(error.message));
  }
});

Deno.test("GET /v1/vms/{vm}/alerts lists one guest's alerts, 404 for an unknown guest", async () => {
  const { monitor, get } = setup();
  using _ = monitor;
  scans(monitor);
  monitor.now = T0 + 180_000;
  monitor.applyFindings("db-1", []);
  monitor.now = T0 + 240_000;
  monitor.applyFindings("db-1", []);
  assertEquals(await subjects(await get("/v1/vms/db-1/alerts?state=resolved")), ["pid 9"]);
  assertEquals(await subjects(await get("/v1/vms/db-1/alerts?state=open")), []);
  assertEquals(await subjects(await get("/v1/vms/web-1/alerts?severity=critical")), [
    "module rk",
  ]);
  await assertError(await get("/v1/vms/nope/alerts"), 404, { code: "unknown_vm" });
  await assertError(await get("/v1/vms/web-1/alerts?state=x"), 422, {
    code: "bad_parameter",
    name: "state",
  });
});

Deno.test("the alert routes need the token and are in /openapi.json", async () => {
  const { monitor, app } = setup();
  using _ = monitor;
  for (const path of ["/v1/alerts", "/v1/vms/web-1/alerts", "/v1/alerts/stream"]) {
    await assertError(await app.request(path), 401, { code: "unauthorized" });
  }
  const document = await (await app.request("/openapi.json")).json();
  for (const path of ["/v1/alerts", "/v1/vms/{vm}/alerts", "/v1/alerts/stream"]) {
    assert(document.paths[path]?.get, `${path} missing from the OpenAPI document`);
  }
  const stream = document.paths["/v1/alerts/stream"].get;
  assert(stream.responses[200].content["text/event-stream"]);
  assertEquals(
    stream.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`).sort(),
    ["header:last-event-id", "query:last_event_id"],
  );
  assert(document.components.schemas.AlertChange, "the AlertChange schema is documented");
});

interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
}

/** Reads server-sent events from `body` as they come. */
function sseReader(body: ReadableStream<Uint8Array>) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const queue: SseEvent[] = [];
  return {
    /** The next event (comments included); undefined at the end of the stream. */
    async next(): Promise<SseEvent | undefined> {
      while (queue.length === 0) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: SseEvent = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) event.comment = line.slice(1).trim();
            else {
              const colon = line.indexOf(":");
              const field = line.slice(0, colon) as keyof SseEvent;
              event[field] = line.slice(colon + 1).replace(/^ /, "");
            }
          }
          queue.push(event);
          continue;
        }
        const { done, value } = await reader.read();
        if (done) return undefined;
        buffer += value;
      }
      return queue.shift();
    },
    /** The next alert event, skipping comments. */
    async alert(): Promise<AlertChange | undefined> {
      for (let event = await this.next(); event; event = await this.next()) {
        if (event.event === "alert") {
          const change = JSON.parse(event.data!) as AlertChange;
          assertEquals(event.id, String(change.id));
          return change;
        }
      }
      return undefined;
    },
    cancel: () => reader.cancel(),
  };
}

Deno.test("GET /v1/alerts/stream replays after Last-Event-ID, then streams live", async () => {
  const { monitor, get } = setup();
  using _ = monitor;
  scans(monitor); // events 1 (pid 7), 2 (module rk), 3 (pid 9)
  const response = await get("/v1/alerts/stream", { headers: { "Last-Event-ID": "1" } });
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("Content-Type"), "text/event-stream");
  const sse = sseReader(response.body!);
  assertEquals((await sse.alert())?.id, 2);
  assertEquals((await sse.alert())?.id, 3);
  monitor.now = T0 + 300_000;
  monitor.applyFindings("db-1", [finding("pid 9", "critical")]);
  const live = await sse.alert();
  assertEquals([live?.id, live?.kind, live?.previousSeverity], [4, "severity_changed", "low"]);
  await sse.cancel();
  // The cancelled connection unsubscribes.
  while (monitor.subscribers > 0) await new Promise((resolve) => setTimeout(resolve, 1));
});

Deno.test("GET /v1/alerts/stream without Last-Event-ID starts with the next change", async () => {
  const { monitor, get } = setup();
  using _ = monitor;
  scans(monitor);
  const response = await get("/v1/alerts/stream?last_event_id=");
  await assertError(response, 422, { code: "bad_parameter", name: "last_event_id" });
  const bad = await get("/v1/alerts/stream", { headers: { "Last-Event-ID": "x1" } });
  await assertError(bad, 422, { code: "bad_parameter", name: "last-event-id" });

  const sse = sseReader((await get("/v1/alerts/stream")).body!);
  while (monitor.subscribers === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  monitor.applyFindings("web-1", [finding("pid 8")]);
  assertEquals((await sse.alert())?.alert.subject, "pid 8");
  await sse.cancel();
});

Deno.test("GET /v1/alerts/stream?last_event_id= resumes as the header does", async () => {
  const { monitor, get } = setup();
  using _ = monitor;
  scans(monitor);
  const sse = sseReader((await get("/v1/alerts/stream?last_event_id=2")).body!);
  assertEquals((await sse.alert())?.id, 3);
  await sse.cancel();
});

Deno.test("GET /v1/alerts/stream with a Last-Event-ID beyond the log still streams live", async () => {
  const { monitor, get } = setup();
  using _ = monitor;
  scans(monitor);
  // A client of a store since replaced: its id is ahead of every stored event.
  const sse = sseReader(
    (await get("/v1/alerts/stream", { headers: { "Last-Event-ID": "999" } })).body!,
  );
  while (monitor.subscribers === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  monitor.applyFindings("web-1", [finding("pid 7"), finding("pid 8")]);
  const change = await sse.alert();
  assertEquals([change?.id, change?.kind, change?.alert.subject], [4, "opened", "pid 8"]);
  await sse.cancel();
});

Deno.test("GET /v1/alerts/stream sends heartbeat comments", async () => {
  const { monitor, get } = setup({ alertStream: { heartbeatMs: 5 } });
  using _ = monitor;
  const sse = sseReader((await get("/v1/alerts/stream")).body!);
  assertEquals((await sse.next())?.comment, "heartbeat");
  await sse.cancel();
});

Deno.test("GET /v1/alerts/stream drops a client that does not read", async () => {
  const { monitor, get } = setup({ alertStream: { maxPending: 10 } });
  using _ = monitor;
  const response = await get("/v1/alerts/stream");
  while (monitor.subscribers === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  // Nobody reads the body; 100 changes arrive.
  for (let i = 0; i < 100; i++) {
    monitor.now = T0 + i;
    monitor.applyFindings("web-1", [finding(`pid ${1000 + i}`)]);
  }
  assertEquals(monitor.subscribers, 0, "the connection was dropped, not buffered");
  // What the client gets when it reads at last: a few events, then the end of the stream.
  const sse = sseReader(response.body!);
  let received = 0;
  while (await sse.alert()) received++;
  assert(received <= 11, `${received} events were buffered`);
});

Deno.test("GET /v1/alerts/stream drops a client whose write stalls, without new changes", async () => {
  const { monitor, get } = setup({ alertStream: { heartbeatMs: 2, stallMs: 20 } });
  using _ = monitor;
  const response = await get("/v1/alerts/stream");
  while (monitor.subscribers === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  // Nobody reads: the heartbeats back up until one write has waited longer than stallMs.
  while (monitor.subscribers > 0) await new Promise((resolve) => setTimeout(resolve, 2));
  await response.body!.cancel();
});

Deno.test("a served alert stream resumed from Last-Event-ID gets exactly the later events", async () => {
  const { monitor, app } = setup();
  using _ = monitor;
  for (let i = 0; i < 1200; i++) {
    monitor.now = T0 + i;
    monitor.applyFindings("web-1", i % 2 ? [] : [finding(`pid ${i}`)]);
  }
  const stored = monitor.alertsAfter(0, 1000).concat(monitor.alertsAfter(1000, 1000));
  assertEquals(stored.length, 1199, "600 opened, 599 resolved");
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/v1/alerts/stream`, {
    headers: { ...AUTH, "Last-Event-ID": "150" },
  });
  const sse = sseReader(response.body!);
  try {
    assertEquals(response.status, 200);
    const ids: number[] = [];
    while (ids.length < 1199 - 150) ids.push((await sse.alert())!.id);
    assertEquals(ids, stored.slice(150).map((change) => change.id));
    monitor.now = T0 + 5000;
    monitor.applyFindings("web-1", [finding("pid 1")]);
    const live = [await sse.alert(), await sse.alert()];
    assertEquals(live.map((change) => [change?.id, change?.kind, change?.alert.subject]), [
      [1200, "resolved", "pid 1198"],
      [1201, "opened", "pid 1"],
    ]);
  } finally {
    await sse.cancel();
    await server.shutdown();
  }
});

Deno.test("GET /v1/alerts/stream ends when the service stops (its signal aborts)", async () => {
  const stopping = new AbortController();
  const { monitor, get } = setup({ alertStream: { signal: stopping.signal } });
  using _ = monitor;
  const sse = sseReader((await get("/v1/alerts/stream")).body!);
  while (monitor.subscribers === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  stopping.abort();
  // The stream ends: nothing more comes, and the connection is unsubscribed.
  assertEquals(await sse.next(), undefined);
  while (monitor.subscribers > 0) await new Promise((resolve) => setTimeout(resolve, 1));
  // A stream opened after the stop ends at once.
  assertEquals(await sseReader((await get("/v1/alerts/stream")).body!).next(), undefined);
});
