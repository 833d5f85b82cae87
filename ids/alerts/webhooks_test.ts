import { createHmac } from "node:crypto";
import client from "prom-client";
import { assert, assertEquals } from "../../tests/support/mod.ts";
import type { Severity } from "../detect/mod.ts";
import type { AlertChange } from "./types.ts";
import { Webhooks } from "./webhooks.ts";

const SECRET = "0123456789abcdef-webhook-secret";

function change(id: number, severity: Severity = "high"): AlertChange {
  return {
    id,
    kind: "opened",
    at: 1_700_000_000_000 + id,
    alert: {
      id,
      vm: "vm1",
      rule: "hidden_process",
      subject: `pid ${id}`,
      state: "open",
      severity,
      message: `pid ${id} is in the pid IDR but not in the task list`,
      evidence: { pid: id },
      firstSeen: 1_700_000_000_000,
      lastSeen: 1_700_000_000_000,
      count: 1,
      missing: 0,
    },
  };
}

interface Received {
  body: string;
  event: string | null;
  signature: string | null;
  contentType: string | null;
}

/** A loopback webhook receiver answering with the statuses of `answers`, then 200. */
function receiver(answers: number[] = []) {
  const received: Received[] = [];
  const waiters: (() => void)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    received.push({
      body: await request.text(),
      event: request.headers.get("X-Ebpfmon-Event"),
      signature: request.headers.get("X-Ebpfmon-Signature"),
      contentType: request.headers.get("Content-Type"),
    });
    waiters.splice(0).forEach((wake) => wake());
    return new Response(null, { status: answers.shift() ?? 200 });
  });
  const url = `http://127.0.0.1:${server.addr.port}/hook?token=abc`;
  /** Resolves once `count` requests have arrived. */
  const requests = async (count: number) => {
    while (received.length < count) await new Promise<void>((wake) => waiters.push(wake));
    return received;
  };
  return { url, received, requests, server };
}

async function counter(registry: client.Registry, outcome: string): Promise<number> {
  const metric = await registry.getSingleMetric("ebpfmon_webhook_changes_total")!.get();
  return metric.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

Deno.test("Webhooks POST each change as JSON signed with HMAC-SHA256 of the body", async () => {
  const hook = receiver();
  await using webhooks = new Webhooks([{ url: hook.url, minSeverity: "info", secret: SECRET }], {
    log: () => {},
  });
  webhooks.send(change(41));
  webhooks.send(change(42, "low"));
  const [first, second] = await hook.requests(2);
  for (const [request, id] of [[first, 41], [second, 42]] as const) {
    assertEquals(request.event, String(id));
    assertEquals(request.contentType, "application/json");
    const expected = createHmac("sha256", SECRET).update(request.body).digest("hex");
    assertEquals(request.signature, `sha256=${expected}`);
    assertEquals(JSON.parse(request.body), change(id, id === 41 ? "high" : "low"));
  }
  await hook.server.shutdown();
});

Deno.test("Webhooks send only changes at or above the webhook's minimum severity", async () => {
  const hook = receiver();
  await using webhooks = new Webhooks([{ url: hook.url, minSeverity: "high", secret: SECRET }], {
    log: () => {},
  });
  webhooks.send(change(1, "medium"));
  webhooks.send(change(2, "critical"));
  webhooks.send(change(3, "info"));
  webhooks.send(change(4, "high"));
  const requests = await hook.requests(2);
  assertEquals(requests.map((r) => r.event), ["2", "4"]);
  await hook.server.shutdown();
});

Deno.test("Webhooks retry a 500 and deliver on the next 200, in order", async () => {
  const hook = receiver([500, 503]);
  const registry = new client.Registry();
  await using webhooks = new Webhooks(
    [{ url: hook.url, minSeverity: "info", secret: SECRET }],
    { registry, minBackoffMs: 5, log: () => {} },
  );
  webhooks.send(change(7));
  webhooks.send(change(8));
  const requests = await hook.requests(4);
  assertEquals(requests.map((r) => r.event), ["7", "7", "7", "8"]);
  // The counter moves after the answer is read: wait for the last delivery to be counted.
  while (await counter(registry, "delivered") < 2) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assertEquals(await counter(registry, "failed"), 0);
  await hook.server.shutdown();
});

Deno.test("Webhooks give up on a 4xx at once and after maxAttempts on errors", async () => {
  const hook = receiver([404, 500, 500]);
  const registry = new client.Registry();
  const log: string[] = [];
  await using webhooks = new Webhooks(
    [{ url: hook.url, minSeverity: "info", secret: SECRET }],
    { registry, minBackoffMs: 1, maxAttempts: 2, log: (line) => log.push(line) },
  );
  webhooks.send(change(1));
  webhooks.send(change(2));
  webhooks.send(change(3));
  const requests = await hook.requests(4);
  assertEquals(requests.map((r) => r.event), ["1", "2", "2", "3"]);
  while (await counter(registry, "delivered") < 1) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assertEquals(await counter(registry, "failed"), 2);
  assertEquals(log, [
    "webhook 0 (http://127.0.0.1:" + new URL(hook.url).port +
    "): gave up on event 1 after 1 attempt(s)",
    "webhook 0 (http://127.0.0.1:" + new URL(hook.url).port +
    "): gave up on event 2 after 2 attempt(s)",
  ]);
  await hook.server.shutdown();
});

Deno.test("a webhook that never answers blocks nothing and its queue stays bounded", async () => {
  // Accepts connections and never answers them.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  const url = `http://127.0.0.1:${listener.addr.port}/`;
  const registry = new client.Registry();
  const log: string[] = [];
  const webhooks = new Webhooks([{ url, minSeverity: "info", secret: SECRET }], {
    registry,
    queueSize: 5,
    timeoutMs: 60_000,
    log: (line) => log.push(line),
  });
  for (let id = 1; id <= 100; id++) webhooks.send(change(id));
  // send() returned for every change while the first POST hangs: one in flight, 5 queued.
  assertEquals(webhooks.queued(), [5]);
  assertEquals(await counter(registry, "dropped"), 94);
  assertEquals(log.length, 1, "drops are logged, not once per drop");
  assert(log[0].includes("queue full"), log[0]);
  assertEquals(log[0].includes("token"), false, "the URL's query is not logged");
  // close() aborts the hanging POST and returns.
  await webhooks.close();
  assertEquals(webhooks.queued(), [0]);
  listener.close();
  await accepting.catch(() => {});
  held.forEach((conn) => conn.close());
});

Deno.test("a dead webhook URL is retried with backoff until close() stops it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const registry = new client.Registry();
  const webhooks = new Webhooks(
    [{ url: `http://127.0.0.1:${port}/`, minSeverity: "info", secret: SECRET }],
    { registry, minBackoffMs: 1, maxBackoffMs: 4, maxAttempts: 1000, log: () => {} },
  );
  webhooks.send(change(1));
  const attempts = async () =>
    (await registry.getSingleMetric("ebpfmon_webhook_attempts_total")!.get()).values[0]?.value ??
      0;
  while (await attempts() < 3) await new Promise((resolve) => setTimeout(resolve, 5));
  await webhooks.close();
  const after = await attempts();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertEquals(await attempts(), after, "no attempt after close()");
  assertEquals(await counter(registry, "delivered"), 0);
});
