/**
 * Webhooks: each alert change at or above a webhook's minimum severity is POSTed to it as JSON
 * (the {@linkcode AlertChange}), signed with `X-Ebpfmon-Signature: sha256=<hex HMAC-SHA256 of the
 * body under the webhook's secret>` and numbered with `X-Ebpfmon-Event: <event id>`.
 *
 * Delivery never holds up monitoring: {@linkcode Webhooks.send} only queues. Each webhook has its
 * own bounded queue and delivers one POST at a time, in event order, each with a timeout; a
 * network error, a timeout, 408, 425, 429 or a 5xx is retried with exponential backoff, up to
 * `maxAttempts`; any other answer that is not 2xx (a redirect included) is given up at once. When
 * the queue is full the oldest change is dropped, counted in
 * `ebpfmon_webhook_changes_total{outcome="dropped"}` and logged. The queue lives in memory: changes
 * not yet delivered when the service stops are not sent after a restart (the event log in the
 * store keeps them, and the SSE stream resumes from it).
 *
 * @module
 */

import client from "prom-client";
import { type Severity, severityRank } from "../detect/mod.ts";
import { hexBytes } from "../memory/mod.ts";
import type { AlertChange } from "./types.ts";

/** One webhook of the configuration. */
export interface WebhookConfig {
  url: string;
  /** Changes of alerts below this severity are not sent. */
  minSeverity: Severity;
  /** The HMAC key of the signature header. */
  secret: string;
}

/** Options of {@linkcode Webhooks}. */
export interface WebhookOptions {
  /** Where the metrics are registered. @default a registry of its own */
  registry?: client.Registry;
  /** Where drops and give-ups are logged. @default stderr */
  log?: (line: string) => void;
  /** Changes waiting per webhook. @default {1000} */
  queueSize?: number;
  /** Attempts per change, the first included. @default {8} */
  maxAttempts?: number;
  /** Wait before the first retry; doubled after each. @default {500} */
  minBackoffMs?: number;
  /** Longest wait between attempts. @default {30000} */
  maxBackoffMs?: number;
  /** Time allowed for one POST, answer included. @default {5000} */
  timeoutMs?: number;
}

/** How often, at most, one webhook logs its drops. */
const DROP_LOG_MS = 10_000;

interface Pending {
  id: number;
  body: string;
}

type Outcome = "delivered" | "retry" | "failed";

/** Where a webhook is, for logs: its origin, without credentials, path or query. */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(invalid URL)";
  }
}

interface Metrics {
  changes: client.Counter<"webhook" | "outcome">;
  attempts: client.Counter<"webhook">;
  queued: client.Gauge<"webhook">;
}

class Webhook {
  readonly #queue: Pending[] = [];
  readonly #key: Promise<CryptoKey>;
  readonly #label: string;
  readonly #origin: string;
  #pump?: Promise<void>;
  #running = false;
  #closed = false;
  #inFlight?: AbortController;
  #wake?: () => void;
  #timer?: ReturnType<typeof setTimeout>;
  #droppedSinceLog = 0;
  #lastDropLog = -Infinity;

  constructor(
    readonly config: WebhookConfig,
    index: number,
    readonly options: Required<Omit<WebhookOptions, "registry" | "log">>,
    readonly metrics: Metrics,
    readonly log: (line: string) => void,
  ) {
    this.#label = String(index);
    this.#origin = originOf(config.url);
    this.#key = crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(config.secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    metrics.queued.set({ webhook: this.#label }, 0);
  }

  get queued(): number {
    return this.#queue.length;
  }

  send(change: AlertChange): void {
    if (this.#closed) return;
    if (severityRank(change.alert.severity) < severityRank(this.config.minSeverity)) return;
    if (this.#queue.length >= this.options.queueSize) {
      this.#queue.shift();
      this.#dropped();
    }
    this.#queue.push({ id: change.id, body: JSON.stringify(change) });
    this.metrics.queued.set({ webhook: this.#label }, this.#queue.length);
    if (!this.#running) {
      this.#running = true;
      this.#pump = this.#run();
    }
  }

  #dropped(): void {
    this.metrics.changes.inc({ webhook: this.#label, outcome: "dropped" });
    this.#droppedSinceLog++;
    const now = Date.now();
    if (now - this.#lastDropLog >= DROP_LOG_MS) {
      this.log(
        `webhook ${this.#label} (${this.#origin}): queue full, dropped the oldest ` +
          `${this.#droppedSinceLog} change(s)`,
      );
      this.#lastDropLog = now;
      this.#droppedSinceLog = 0;
    }
  }

  /** Delivers until the queue is empty; `#running` is cleared in the same turn it finds it so. */
  async #run(): Promise<void> {
    try {
      for (let item = this.#queue.shift(); item && !this.#closed; item = this.#queue.shift()) {
        this.metrics.queued.set({ webhook: this.#label }, this.#queue.length);
        await this.#deliver(item);
      }
    } finally {
      this.#running = false;
    }
  }

  async #deliver(item: Pending): Promise<void> {
    let backoff = this.options.minBackoffMs;
    for (let attempt = 1; !this.#closed; attempt++) {
      const outcome = await this.#post(item);
      if (outcome === "delivered") {
        this.metrics.changes.inc({ webhook: this.#label, outcome });
        return;
      }
      if (outcome === "failed" || attempt >= this.options.maxAttempts) {
        this.metrics.changes.inc({ webhook: this.#label, outcome: "failed" });
        this.log(
          `webhook ${this.#label} (${this.#origin}): gave up on event ${item.id} after ` +
            `${attempt} attempt(s)`,
        );
        return;
      }
      await this.#sleep(backoff);
      backoff = Math.min(backoff * 2, this.options.maxBackoffMs);
    }
  }

  async #post(item: Pending): Promise<Outcome> {
    this.metrics.attempts.inc({ webhook: this.#label });
    const controller = new AbortController();
    this.#inFlight = controller;
    const timer = setTimeout(() => controller.abort(), this.options.timeoutMs);
    try {
      const signature = await crypto.subtle.sign(
        "HMAC",
        await this.#key,
        new TextEncoder().encode(item.body),
      );
      const response = await fetch(this.config.url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "User-Agent": "ebpfmon-ids",
          "X-Ebpfmon-Event": String(item.id),
          "X-Ebpfmon-Signature": `sha256=${hexBytes(new Uint8Array(signature))}`,
        },
        body: item.body,
        redirect: "manual",
        signal: controller.signal,
      });
      await response.body?.cancel();
      if (response.ok) return "delivered";
      const status = response.status;
      return status === 408 || status === 425 || status === 429 || status >= 500
        ? "retry"
        : "failed";
    } catch {
      return "retry";
    } finally {
      clearTimeout(timer);
      this.#inFlight = undefined;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#timer = setTimeout(resolve, ms);
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#queue.length = 0;
    this.metrics.queued.set({ webhook: this.#label }, 0);
    clearTimeout(this.#timer);
    this.#wake?.();
    this.#inFlight?.abort();
    await this.#pump;
  }
}

/** Every configured webhook. Close it to stop retries and abort the POSTs under way. */
export class Webhooks implements AsyncDisposable {
  readonly #hooks: Webhook[];

  constructor(configs: readonly WebhookConfig[], options: WebhookOptions = {}) {
    const registry = options.registry ?? new client.Registry();
    const metrics: Metrics = {
      changes: new client.Counter({
        name: "ebpfmon_webhook_changes_total",
        help: "Alert changes per webhook (index in the configuration) by outcome: delivered, " +
          "failed (given up) or dropped (queue full)",
        labelNames: ["webhook", "outcome"] as const,
        registers: [registry],
      }),
      attempts: new client.Counter({
        name: "ebpfmon_webhook_attempts_total",
        help: "POSTs tried per webhook, retries included",
        labelNames: ["webhook"] as const,
        registers: [registry],
      }),
      queued: new client.Gauge({
        name: "ebpfmon_webhook_queue_length",
        help: "Alert changes waiting per webhook",
        labelNames: ["webhook"] as const,
        registers: [registry],
      }),
    };
    const settings = {
      queueSize: options.queueSize ?? 1000,
      maxAttempts: options.maxAttempts ?? 8,
      minBackoffMs: options.minBackoffMs ?? 500,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      timeoutMs: options.timeoutMs ?? 5_000,
    };
    for (const [name, value] of Object.entries(settings)) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`Cannot set up webhooks: "${name}" must be an integer >= 1`);
      }
    }
    const log = options.log ?? ((line: string) => console.error(`ebpfmon-ids: ${line}`));
    this.#hooks = configs.map((config, i) => new Webhook(config, i, settings, metrics, log));
  }

  /** Queues `change` for every webhook whose minimum severity it reaches. Never blocks or throws. */
  send(change: AlertChange): void {
    for (const hook of this.#hooks) hook.send(change);
  }

  /** Changes waiting, per webhook in configuration order (the one being sent not included). */
  queued(): number[] {
    return this.#hooks.map((hook) => hook.queued);
  }

  /** Drops what is queued, stops retries and aborts the POSTs under way. Idempotent. */
  async close(): Promise<void> {
    await Promise.all(this.#hooks.map((hook) => hook.close()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
