import { assertEquals, assertThrows } from "../../tests/support/mod.ts";
import type { Finding } from "../detect/mod.ts";
import { AlertService } from "./service.ts";
import { AlertStore } from "./store.ts";
import type { AlertChange } from "./types.ts";

function memoryStore(): AlertStore {
  return AlertStore.open(":memory:", { clock: () => 0, resolveAfter: 1 });
}

function health(rule: string, subject = "vm1", evidence: Record<string, unknown> = {}): Finding {
  return { rule, severity: "high", subject, message: `${rule} of ${subject}`, evidence };
}

function scanFinding(subject: string): Finding {
  return {
    rule: "hidden_process",
    severity: "high",
    subject,
    message: `${subject} is hidden`,
    evidence: {},
  };
}

Deno.test("AlertStore.raise() opens one health alert and updates it on every raise after", () => {
  using store = memoryStore();
  const opened = store.raise("vm1", health("agent_unreachable", "vm1", { cause: "refused" }), 1);
  assertEquals(opened.map((c) => [c.kind, c.alert.rule, c.alert.subject, c.alert.severity]), [
    ["opened", "agent_unreachable", "vm1", "high"],
  ]);
  for (let at = 2; at <= 50; at++) {
    assertEquals(
      store.raise("vm1", health("agent_unreachable", "vm1", { cause: "timeout" }), at),
      [],
      "a retry that fails again is not an event",
    );
  }
  const [alert] = store.list();
  assertEquals([alert.count, alert.lastSeen, alert.evidence], [50, 50, { cause: "timeout" }]);
  assertEquals(store.eventsAfter(0).length, 1);
});

Deno.test("AlertStore.apply() neither updates nor resolves health alerts", () => {
  using store = memoryStore();
  store.raise("vm1", health("agent_misbehaving"), 1);
  store.apply("vm1", [scanFinding("pid 7")], 2);
  const changes = store.apply("vm1", [], 3);
  assertEquals(changes.map((c) => [c.kind, c.alert.rule]), [["resolved", "hidden_process"]]);
  store.apply("vm1", [health("agent_misbehaving", "vm1", { forged: true })], 4);
  const open = store.list({ state: "open" });
  assertEquals(open.map((a) => [a.rule, a.count, a.evidence]), [["agent_misbehaving", 1, {}]]);
});

Deno.test("AlertStore.resolve() resolves the open alerts of one health rule of one VM", () => {
  using store = memoryStore();
  store.raise("vm1", health("agent_unreachable"), 1);
  store.raise("vm1", health("agent_misbehaving"), 1);
  store.raise("vm2", health("agent_unreachable", "vm2"), 1);
  store.apply("vm1", [scanFinding("pid 7")], 1);
  const resolved = store.resolve("vm1", "agent_unreachable", 5);
  assertEquals(resolved.map((c) => [c.kind, c.alert.vm, c.alert.rule, c.alert.resolvedAt]), [
    ["resolved", "vm1", "agent_unreachable", 5],
  ]);
  assertEquals(store.resolve("vm1", "agent_unreachable", 6), [], "nothing left to resolve");
  assertEquals(
    store.list({ state: "open" }).map((a) => `${a.vm} ${a.rule}`).sort(),
    ["vm1 agent_misbehaving", "vm1 hidden_process", "vm2 agent_unreachable"],
  );
  const back = store.raise("vm1", health("agent_unreachable"), 7);
  assertEquals(back.map((c) => c.kind), ["reopened"]);
});

Deno.test("AlertStore.raise() and resolve() refuse rules that are not health rules", () => {
  using store = memoryStore();
  assertThrows(() => store.raise("vm1", scanFinding("pid 7"), 1), TypeError, "not a health rule");
  assertThrows(() => store.resolve("vm1", "hidden_process", 1), TypeError, "not a health rule");
  assertThrows(() => store.raise("vm1", health("agent_unreachable"), 1.5), TypeError, "bad time");
  assertEquals(store.list(), []);
});

Deno.test("AlertService.raise() and resolve() reach the subscribers once per change", async () => {
  await using alerts = AlertService.open(":memory:", { clock: () => 0, log: () => {} });
  const seen: AlertChange[] = [];
  alerts.subscribe((change) => seen.push(change));
  alerts.raise("vm1", health("agent_unreachable"), 1);
  alerts.raise("vm1", health("agent_unreachable"), 2);
  alerts.resolve("vm1", "agent_unreachable", 3);
  alerts.resolve("vm1", "agent_unreachable", 4);
  assertEquals(seen.map((c) => c.kind), ["opened", "resolved"]);
});
