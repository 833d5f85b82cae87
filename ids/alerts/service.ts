/**
 * The alert layer as the monitor runs it: the store, and after each stored scan its changes
 * sent to the webhooks and the live subscribers (the SSE stream), and the open-alert gauge set.
 *
 * @module
 */

import client from "prom-client";
import type { Finding } from "../detect/mod.ts";
import { AlertStore } from "./store.ts";
import type { Alert, AlertChange, AlertQuery, AlertStoreOptions } from "./types.ts";
import { type WebhookConfig, type WebhookOptions, Webhooks } from "./webhooks.ts";

/** Options of {@linkcode AlertService.open}. */
export interface AlertServiceOptions extends AlertStoreOptions {
  /** @default none */
  webhooks?: readonly WebhookConfig[];
  /** Delivery settings of the webhooks. */
  delivery?: Omit<WebhookOptions, "registry" | "log">;
  /** Where the metrics are registered. @default a registry of its own */
  registry?: client.Registry;
  /** @default stderr */
  log?: (line: string) => void;
}

/** Receives each change once it is stored. */
export type AlertListener = (change: AlertChange) => void;

/** The store with its outlets. Close it to close the store and stop the webhooks. */
export class AlertService implements AsyncDisposable {
  readonly #store: AlertStore;
  readonly #webhooks: Webhooks;
  readonly #listeners = new Set<AlertListener>();
  readonly #open: client.Gauge<"vm" | "rule" | "severity">;
  readonly #log: (line: string) => void;
  #closed = false;

  private constructor(store: AlertStore, options: AlertServiceOptions) {
    this.#store = store;
    this.#log = options.log ?? ((line: string) => console.error(`ebpfmon-ids: ${line}`));
    const registry = options.registry ?? new client.Registry();
    this.#webhooks = new Webhooks(options.webhooks ?? [], {
      ...options.delivery,
      registry,
      log: this.#log,
    });
    this.#open = new client.Gauge({
      name: "ebpfmon_alerts_open",
      help: "Open alerts by guest, rule and severity",
      labelNames: ["vm", "rule", "severity"] as const,
      registers: [registry],
    });
    this.#updateGauge();
  }

  /**
   * Opens the store at `path` (created when missing) with its webhooks.
   * @throws {Error} when the store cannot be opened (see {@linkcode AlertStore.open})
   */
  static open(path: string, options: AlertServiceOptions = {}): AlertService {
    const store = AlertStore.open(path, options);
    try {
      return new AlertService(store, options);
    } catch (error) {
      store.close();
      throw error;
    }
  }

  /**
   * Stores one scan's findings of `vm` (see {@linkcode AlertStore.apply}), then hands the
   * changes to the webhooks' queues and the subscribers, without waiting for either.
   * @throws {TypeError} for a finding of unknown severity; {@linkcode Error} when SQLite fails
   * (nothing of the scan is stored then).
   */
  apply(vm: string, findings: readonly Finding[], scanAt: number): AlertChange[] {
    return this.#publish(this.#store.apply(vm, findings, scanAt));
  }

  /**
   * Opens or updates a health alert of `vm` (see {@linkcode AlertStore.raise}), then hands the
   * changes on as {@linkcode apply} does.
   * @throws {TypeError} for a rule that is not a health rule; {@linkcode Error} when SQLite fails
   */
  raise(vm: string, finding: Finding, at: number): AlertChange[] {
    return this.#publish(this.#store.raise(vm, finding, at));
  }

  /**
   * Resolves the open health alerts of `rule` of `vm` (see {@linkcode AlertStore.resolve}), then
   * hands the changes on as {@linkcode apply} does.
   * @throws {TypeError} for a rule that is not a health rule; {@linkcode Error} when SQLite fails
   */
  resolve(vm: string, rule: string, at: number): AlertChange[] {
    return this.#publish(this.#store.resolve(vm, rule, at));
  }

  #publish(changes: AlertChange[]): AlertChange[] {
    if (changes.length === 0) return changes;
    this.#updateGauge();
    for (const change of changes) {
      this.#webhooks.send(change);
      for (const listener of this.#listeners) {
        try {
          listener(change);
        } catch (error) {
          this.#log(`alert subscriber failed: ${(error as Error).message}`);
        }
      }
    }
    return changes;
  }

  #updateGauge(): void {
    this.#open.reset();
    for (const { vm, rule, severity, count } of this.#store.openCounts()) {
      this.#open.set({ vm, rule, severity }, count);
    }
  }

  /** @see {@linkcode AlertStore.list} */
  list(query: AlertQuery = {}): Alert[] {
    return this.#store.list(query);
  }

  /** @see {@linkcode AlertStore.eventsAfter} */
  eventsAfter(id: number, limit?: number): AlertChange[] {
    return this.#store.eventsAfter(id, limit);
  }

  /** Calls `listener` with every change stored from now on; returns the unsubscribe. */
  subscribe(listener: AlertListener): () => void {
    const entry: AlertListener = (change) => listener(change);
    this.#listeners.add(entry);
    return () => this.#listeners.delete(entry);
  }

  /** The store, for reads the service does not wrap. */
  get store(): AlertStore {
    return this.#store;
  }

  /** Stops the webhooks, drops the subscribers and closes the store. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await this.#webhooks.close();
    this.#store.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
