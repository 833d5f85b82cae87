/**
 * The shapes of the alert layer: an alert, a change to one (an event of the log), and the filters
 * of a listing.
 *
 * @module
 */

import type { Severity } from "../detect/mod.ts";

/** Lifecycle state of an alert. */
export const ALERT_STATES = ["open", "resolved"] as const;
export type AlertState = typeof ALERT_STATES[number];

/** One alert: one episode of a finding. */
export interface Alert {
  id: number;
  vm: string;
  rule: string;
  subject: string;
  state: AlertState;
  severity: Severity;
  message: string;
  evidence: Record<string, unknown>;
  /** Scan time (epoch ms) of the first scan that found it. */
  firstSeen: number;
  /** Scan time of the last scan that found it. */
  lastSeen: number;
  /** Scans that found it. */
  count: number;
  /** Consecutive scans it has been absent from; 0 while present. */
  missing: number;
  /** Scan time at which it was resolved. */
  resolvedAt?: number;
  /** The resolved alert of the same finding that this one reopens. */
  previousId?: number;
}

/** What a change did to an alert. */
export const CHANGE_KINDS = ["opened", "reopened", "severity_changed", "resolved"] as const;
export type AlertChangeKind = typeof CHANGE_KINDS[number];

/** One event of the log: a change to an alert, and the alert after it. */
export interface AlertChange {
  /** The event id: increasing, never reused. */
  id: number;
  kind: AlertChangeKind;
  /** Scan time of the change. */
  at: number;
  alert: Alert;
  /** The severity before a `severity_changed`. */
  previousSeverity?: Severity;
}

/** Filters of {@linkcode AlertStore.list}. */
export interface AlertQuery {
  vm?: string;
  rule?: string;
  /** Only alerts at or above this severity. */
  minSeverity?: Severity;
  state?: AlertState;
  /** Only alerts last seen at or after this time (epoch ms). */
  since?: number;
  /**
   * At most this many, the most recently seen first.
   * @default {100}
   */
  limit?: number;
}

/** Options of {@linkcode AlertStore.open}. */
export interface AlertStoreOptions {
  /**
   * Consecutive scans without its finding after which an open alert is resolved.
   * @default {3}
   */
  resolveAfter?: number;
  /**
   * Resolved alerts and events older than this many days are deleted.
   * @default {30}
   */
  retentionDays?: number;
  /**
   * Open alerts per vm; beyond it one `alert_overflow` alert counts the rest.
   * @default {10000}
   */
  maxOpen?: number;
  /** @default {50000} */
  maxResolved?: number;
  /** @default {50000} */
  maxEvents?: number;
  /**
   * The current time in epoch ms, for the retention.
   * @default {Date.now}
   */
  clock?: () => number;
}
