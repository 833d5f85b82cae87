import client from "prom-client";
import { assertEquals } from "../../tests/support/mod.ts";
import type { Finding, Severity } from "../detect/mod.ts";
import { AlertService } from "./service.ts";
import type { AlertChange } from "./types.ts";

function finding(subject: string, severity: Severity = "high", rule = "hidden_process"): Finding {
  return { rule, severity, subject, message: `${subject} hides`, evidence: {} };
}

async function openGauge(registry: client.Registry): Promise<string[]> {
  const metric = await registry.getSingleMetric("ebpfmon_alerts_open")!.get();
  return metric.values
    .map((v) => `${v.labels.vm} ${v.labels.rule} ${v.labels.severity} ${v.value}`)
    .sort();
}

Deno.test("AlertService.apply() sets ebpfmon_alerts_open from the store", async () => {
  const registry = new client.Registry();
  await using alerts = AlertService.open(":memory:", {
    registry,
    resolveAfter: 1,
    clock: () => 0,
  });
  assertEquals(await openGauge(registry), []);
  alerts.apply("vm1", [finding("a"), finding("b"), finding("m", "critical", "hidden_module")], 1);
  alerts.apply("vm2", [finding("c", "low")], 1);
  assertEquals(await openGauge(registry), [
    "vm1 hidden_module critical 1",
    "vm1 hidden_process high 2",
    "vm2 hidden_process low 1",
  ]);
  alerts.apply("vm1", [finding("a")], 2);
  assertEquals(await openGauge(registry), [
    "vm1 hidden_process high 1",
    "vm2 hidden_process low 1",
  ]);
  const text = await registry.metrics();
  assertEquals(
    text.includes('ebpfmon_alerts_open{vm="vm1",rule="hidden_process",severity="high"} 1'),
    true,
    text,
  );
});

Deno.test("AlertService.open() sets the gauge from what the store already holds", async () => {
  const path = `${await Deno.makeTempDir({ prefix: "ebpfmon-alerts-" })}/alerts.db`;
  {
    await using alerts = AlertService.open(path);
    alerts.apply("vm1", [finding("a"), finding("b")], Date.now());
  }
  const registry = new client.Registry();
  await using _alerts = AlertService.open(path, { registry });
  assertEquals(await openGauge(registry), ["vm1 hidden_process high 2"]);
});

Deno.test("AlertService.subscribe() gets each stored change until unsubscribed", async () => {
  const log: string[] = [];
  await using alerts = AlertService.open(":memory:", {
    resolveAfter: 1,
    clock: () => 0,
    log: (line) => log.push(line),
  });
  const seen: AlertChange[] = [];
  const unsubscribe = alerts.subscribe((change) => seen.push(change));
  alerts.subscribe(() => {
    throw new Error("a failing subscriber");
  });
  const changes = alerts.apply("vm1", [finding("a")], 1);
  assertEquals(seen, changes);
  assertEquals(log, ["alert subscriber failed: a failing subscriber"]);
  unsubscribe();
  alerts.apply("vm1", [], 2);
  assertEquals(seen.map((c) => c.kind), ["opened"]);
  assertEquals(alerts.eventsAfter(0).map((c) => c.kind), ["opened", "resolved"]);
});
