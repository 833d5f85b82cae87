import { assertEquals, assertThrows } from "../../../tests/support/mod.ts";
import { MAX_EVENT_CHARS, type SseEvent, sseParser } from "@console/sse.js";
import { alertPids, processTree } from "@console/tree.js";
import { alertOrder, stateSince } from "@console/status.js";

function parse(chunks: string[]): SseEvent[] {
  const events: SseEvent[] = [];
  const feed = sseParser((event) => events.push(event));
  for (const chunk of chunks) feed(chunk);
  return events;
}

Deno.test("sseParser() reads events split anywhere, with every line ending", () => {
  const stream = 'id: 7\nevent: alert\ndata: {"a":1}\n\n: heartbeat\n\nid: 8\r\nevent: alert\r\n' +
    "data: x\r\ndata:y\r\n\r\nretry: 5\rdata: z\r\r";
  const expected = [
    { type: "alert", data: '{"a":1}', id: "7" },
    { type: "alert", data: "x\ny", id: "8" },
    { type: "message", data: "z", id: "8" },
  ];
  assertEquals(parse([stream]).map((e) => ({ ...e })), expected);
  for (let cut = 1; cut < stream.length; cut++) {
    const events = parse([stream.slice(0, cut), stream.slice(cut)]);
    assertEquals(events.map((e) => ({ ...e })), expected, `cut at ${cut}`);
  }
  assertEquals(parse([...stream]).map((e) => ({ ...e })), expected);
});

Deno.test("sseParser() dispatches nothing for an event without data, and refuses huge ones", () => {
  assertEquals(parse(["event: alert\n\nid: 3\n\n"]), []);
  const feed = sseParser(() => {});
  assertThrows(() => feed("data: " + "x".repeat(MAX_EVENT_CHARS + 1)), RangeError);
  const lines = sseParser(() => {});
  const half = "data: " + "x".repeat(MAX_EVENT_CHARS / 2) + "\n";
  lines(half);
  assertThrows(() => lines(half), RangeError);
});

const p = (pid: number, ppid: number) => ({ pid, ppid });
const order = (rows: ReturnType<typeof processTree>) =>
  rows.map((row) => `${"  ".repeat(row.depth)}${row.process.pid}/${row.children}`);

Deno.test("processTree() puts each parent before its children, siblings by pid", () => {
  const rows = processTree([p(30, 2), p(1, 0), p(2, 0), p(400, 1), p(12, 1), p(500, 400)]);
  assertEquals(order(rows), ["1/2", "  12/0", "  400/1", "    500/0", "2/1", "  30/0"]);
});

Deno.test("processTree() shows every process once when parent links lie", () => {
  // 7 and 8 are each other's parent; 9 is its own; 10's parent is not there; 1 appears twice.
  const rows = processTree([p(1, 0), p(8, 7), p(7, 8), p(9, 9), p(10, 99), p(11, 8), p(1, 5)]);
  assertEquals(order(rows), ["1/0", "9/0", "10/0", "7/1", "  8/1", "    11/0"]);
});

Deno.test("processTree() walks a chain of 50,000 without recursion", () => {
  const chain = Array.from({ length: 50_000 }, (_, i) => p(i + 1, i));
  const rows = processTree(chain);
  assertEquals(rows.length, 50_000);
  assertEquals(rows.at(-1)!.depth, 49_999);
});

Deno.test("alertPids() reads the subject, the evidence's pid, pids and socket owners", () => {
  assertEquals(alertPids({ subject: "pid 12", evidence: { pid: 12 } }), [12]);
  assertEquals(
    alertPids({
      subject: "tcp 0.0.0.0:22",
      evidence: { owners: [{ pid: 5, fd: 3 }, { pid: "6" }] },
    }),
    [5],
  );
  assertEquals(alertPids({ subject: "cred ffff", evidence: { pids: [3, 4, "x"] } }), [3, 4]);
  assertEquals(alertPids({ subject: "module rk", evidence: {} }), []);
});

Deno.test("stateSince() reads the guest's events", () => {
  const events = [
    { at: 100, message: "connected", kind: "connected" },
    { at: 200, message: "connection lost" },
    { at: 300, message: "same agent", kind: "migrated" },
    { at: 400, message: "refused" },
    { at: 450, message: "cannot resolve" },
  ];
  assertEquals(stateSince({ state: "up", events: events.slice(0, 3) }), 300);
  assertEquals(stateSince({ state: "down", events }), 400);
  assertEquals(stateSince({ state: "down", events: [], lastError: { at: 50 } }), 50);
  assertEquals(stateSince({ state: "connecting", events: [] }), undefined);
  assertEquals(stateSince({ state: "up", events: [] }), undefined);
});

Deno.test("alertOrder() puts open alerts first, the most recently opened first", () => {
  const a = (id: number, state: string, firstSeen: number) => ({
    id,
    state,
    firstSeen,
    severity: "low",
  });
  const sorted = [a(1, "resolved", 900), a(2, "open", 100), a(3, "open", 500), a(4, "resolved", 50)]
    .sort(alertOrder);
  assertEquals(sorted.map((alert) => alert.id), [3, 2, 1, 4]);
});
