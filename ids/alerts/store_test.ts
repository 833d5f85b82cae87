import { assert, assertEquals, assertThrows } from "../../tests/support/mod.ts";
import type { Finding, Severity } from "../detect/mod.ts";
import { LIMITS } from "./_bounds.ts";
import { AlertStore, OVERFLOW_RULE } from "./store.ts";
import type { AlertStoreOptions } from "./types.ts";

/** A private store whose clock stands at 0, so that the small scan times here are never pruned. */
function memoryStore(options: AlertStoreOptions = {}): AlertStore {
  return AlertStore.open(":memory:", { clock: () => 0, ...options });
}

function finding(subject: string, severity: Severity = "high", rule = "hidden_process"): Finding {
  return { rule, severity, subject, message: `${subject} is hidden`, evidence: { subject } };
}

async function tempDb(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ebpfmon-alerts-" });
  return `${dir}/alerts.db`;
}

Deno.test("AlertStore.apply() opens, updates, resolves after resolveAfter and reopens", () => {
  using store = memoryStore({ resolveAfter: 2 });
  const opened = store.apply("vm1", [finding("pid 7")], 1000);
  assertEquals(opened.map((c) => [c.id, c.kind, c.alert.subject, c.alert.state]), [
    [1, "opened", "pid 7", "open"],
  ]);
  assertEquals(store.apply("vm1", [finding("pid 7")], 2000), [], "an update is not an event");
  const [alert] = store.list();
  assertEquals(
    [alert.state, alert.firstSeen, alert.lastSeen, alert.count, alert.missing],
    ["open", 1000, 2000, 2, 0],
  );
  assertEquals(store.apply("vm1", [], 3000), [], "absent once of two: still open");
  assertEquals(store.list()[0].missing, 1);
  const resolved = store.apply("vm1", [], 4000);
  assertEquals(resolved.map((c) => [c.id, c.kind, c.alert.id, c.alert.resolvedAt]), [
    [2, "resolved", alert.id, 4000],
  ]);
  const back = store.apply("vm1", [finding("pid 7")], 5000);
  assertEquals(back.map((c) => [c.id, c.kind, c.alert.previousId, c.alert.count]), [
    [3, "reopened", alert.id, 1],
  ]);
  assert(back[0].alert.id !== alert.id, "a reopened finding is a new alert");
  assertEquals(store.list({ state: "open" }).map((a) => a.id), [back[0].alert.id]);
  assertEquals(store.list({ state: "resolved" }).map((a) => a.id), [alert.id]);
  assertEquals(store.eventsAfter(0).map((c) => c.kind), ["opened", "resolved", "reopened"]);
  assertEquals(store.eventsAfter(1).map((c) => c.id), [2, 3]);
  assertEquals(store.lastEventId(), 3);
  assertEquals(store.lastScan("vm1"), { at: 5000, scans: 5 });
});

Deno.test("AlertStore.apply() records a severity change, and a return within resolveAfter", () => {
  using store = memoryStore({ resolveAfter: 3 });
  store.apply("vm1", [finding("pid 7", "medium")], 1);
  const changed = store.apply("vm1", [finding("pid 7", "critical")], 2);
  assertEquals(changed.map((c) => [c.kind, c.previousSeverity, c.alert.severity]), [
    ["severity_changed", "medium", "critical"],
  ]);
  store.apply("vm1", [], 3);
  store.apply("vm1", [], 4);
  assertEquals(store.apply("vm1", [finding("pid 7", "critical")], 5), []);
  const [alert] = store.list();
  assertEquals([alert.state, alert.count, alert.missing], ["open", 3, 0]);
});

Deno.test("AlertStore.apply() keeps vms apart and merges duplicate findings of one scan", () => {
  using store = memoryStore();
  store.apply("vm1", [finding("pid 1"), finding("pid 1", "critical")], 10);
  store.apply("vm2", [finding("pid 1", "low")], 10);
  assertEquals(store.list({ vm: "vm1" }).map((a) => [a.count, a.severity]), [[1, "critical"]]);
  assertEquals(store.list({ vm: "vm2" }).map((a) => [a.count, a.severity]), [[1, "low"]]);
  // A scan of vm2 without the finding does not touch vm1's alert.
  store.apply("vm2", [], 20);
  assertEquals(store.list({ vm: "vm1" })[0].missing, 0);
  assertEquals(store.list({ vm: "vm2" })[0].missing, 1);
});

Deno.test("AlertStore.list() filters by vm, rule, minimum severity, state, since and limit", () => {
  using store = memoryStore({ resolveAfter: 1 });
  store.apply("vm1", [finding("a", "low"), finding("b", "high", "hidden_module")], 100);
  store.apply("vm2", [finding("c", "critical")], 200);
  store.apply("vm1", [finding("b", "high", "hidden_module")], 300);
  const subjects = (query: Parameters<AlertStore["list"]>[0]) =>
    store.list(query).map((a) => a.subject);
  assertEquals(subjects({}), ["b", "c", "a"]);
  assertEquals(subjects({ vm: "vm1" }), ["b", "a"]);
  assertEquals(subjects({ rule: "hidden_module" }), ["b"]);
  assertEquals(subjects({ minSeverity: "high" }), ["b", "c"]);
  assertEquals(subjects({ minSeverity: "info" }), ["b", "c", "a"]);
  assertEquals(subjects({ state: "resolved" }), ["a"]);
  assertEquals(subjects({ state: "open" }), ["b", "c"]);
  assertEquals(subjects({ since: 200 }), ["b", "c"]);
  assertEquals(subjects({ limit: 1 }), ["b"]);
  assertThrows(() => store.list({ limit: 0 }), RangeError, "limit");
  assertThrows(() => store.list({ limit: 1001 }), RangeError, "limit");
});

Deno.test("AlertStore.apply() bounds what the guest controls", () => {
  using store = memoryStore();
  const long = "x".repeat(10_000);
  store.apply("vm1", [
    {
      rule: "hidden_process",
      severity: "high",
      subject: "pid 1\0evil\u001b[2J",
      message: long,
      evidence: { blob: long },
    },
    { rule: "hidden_module", severity: "high", subject: long, message: "m", evidence: { n: 1 } },
    { rule: "hidden_module", severity: "low", subject: "bad\ud800", message: "m", evidence: {} },
  ], 1);
  const alerts = store.list({ limit: 10 });
  const process = alerts.find((a) => a.rule === "hidden_process")!;
  assertEquals(process.subject, "pid 1\uFFFDevil\u001b[2J");
  assertEquals(process.message.length, LIMITS.message);
  assert(process.message.endsWith("…"));
  assertEquals(process.evidence, { truncated: true, length: 10_011 });
  const subjects = alerts.filter((a) => a.rule === "hidden_module").map((a) => a.subject);
  assertEquals(subjects.sort(), ["bad\uFFFD", "x".repeat(LIMITS.subject - 1) + "…"]);
  // The cut subject is the key: the same finding updates its alert.
  store.apply("vm1", [{
    rule: "hidden_module",
    severity: "high",
    subject: long,
    message: "m",
    evidence: {},
  }], 2);
  assertEquals(store.list({ rule: "hidden_module", state: "open" }).map((a) => a.count), [2, 1]);
});

Deno.test("AlertStore.apply() refuses a finding of unknown severity and applies nothing", () => {
  using store = memoryStore();
  const bad = { ...finding("pid 2"), severity: "severe" as Severity };
  assertThrows(() => store.apply("vm1", [finding("pid 1"), bad], 1), TypeError, '"severe"');
  assertEquals(store.list(), []);
  assertEquals(store.lastScan("vm1"), undefined);
});

Deno.test("AlertStore.apply() caps open alerts per vm with one alert_overflow", () => {
  using store = memoryStore({ maxOpen: 3, resolveAfter: 1 });
  const five = ["a", "b", "c", "d", "e"].map((s) => finding(s));
  const changes = store.apply("vm1", five, 1);
  assertEquals(changes.map((c) => c.alert.subject), ["a", "b", "c", "open alerts"]);
  const overflow = store.list({ rule: OVERFLOW_RULE });
  assertEquals(overflow.map((a) => [a.severity, a.evidence]), [["high", {
    limit: 3,
    dropped: 2,
  }]]);
  // Another vm has its own room.
  assertEquals(store.apply("vm2", five.slice(0, 3), 1).length, 3);
  // Room freed by a resolved alert is used again, and the overflow resolves once gone.
  const next = store.apply("vm1", five.slice(1, 4), 2);
  assertEquals(next.map((c) => [c.kind, c.alert.subject]), [
    ["resolved", "a"],
    ["opened", "d"],
    ["resolved", "open alerts"],
  ]);
  assertEquals(store.list({ vm: "vm1", state: "open" }).length, 3);
});

Deno.test("AlertStore.prune() deletes resolved alerts and events past the retention", () => {
  let now = 0;
  using store = memoryStore({
    resolveAfter: 1,
    retentionDays: 1,
    clock: () => now,
  });
  store.apply("vm1", [finding("old"), finding("kept")], 0);
  store.apply("vm1", [finding("kept")], 1000);
  now = 86_400_000 + 1001;
  store.prune();
  assertEquals(store.list().map((a) => [a.subject, a.state]), [["kept", "open"]]);
  assertEquals(store.eventsAfter(0), [], "the events of the first day are gone");
  store.apply("vm1", [finding("new")], now);
  assertEquals(store.eventsAfter(0).map((c) => [c.kind, c.alert.subject]), [
    ["resolved", "kept"],
    ["opened", "new"],
  ]);
});

Deno.test("AlertStore.prune() keeps at most maxEvents events and maxResolved resolved alerts", () => {
  using store = memoryStore({ resolveAfter: 1, maxEvents: 5, maxResolved: 2 });
  for (let i = 0; i < 6; i++) store.apply("vm1", [finding(`pid ${i}`)], i);
  store.prune();
  assertEquals(store.eventsAfter(0).map((c) => c.id), [7, 8, 9, 10, 11]);
  assertEquals(store.list({ state: "resolved" }).map((a) => a.subject), ["pid 4", "pid 3"]);
  assertEquals(store.list({ state: "open" }).map((a) => a.subject), ["pid 5"]);
});

Deno.test("AlertStore.open() keeps alerts across reopening and refuses a newer schema", async () => {
  const path = await tempDb();
  {
    using store = AlertStore.open(path);
    store.apply("vm1", [finding("pid 9")], 5);
  }
  {
    using store = AlertStore.open(path);
    assertEquals(store.list().map((a) => [a.subject, a.count]), [["pid 9", 1]]);
    store.apply("vm1", [finding("pid 9")], 6);
    assertEquals(store.list()[0].count, 2);
    assertEquals(store.integrityCheck(), "ok");
  }
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(path);
  db.exec("PRAGMA user_version = 99");
  db.close();
  assertThrows(() => AlertStore.open(path), Error, "schema version 99 is newer than 1");
});

Deno.test("AlertStore lets another connection read while it writes (WAL)", async () => {
  const path = await tempDb();
  using writer = AlertStore.open(path);
  writer.apply("vm1", [finding("pid 1")], 1);
  using reader = AlertStore.open(path);
  assertEquals(reader.list().length, 1);
  writer.apply("vm1", [finding("pid 1"), finding("pid 2")], 2);
  assertEquals(reader.list().map((a) => a.subject), ["pid 2", "pid 1"]);
});

Deno.test("AlertStore refuses use after close(), which is idempotent", () => {
  const store = memoryStore();
  store.close();
  store.close();
  assertThrows(() => store.list(), Error, "closed");
});
