/**
 * The alert store's SQLite schema and how its rows read back as alerts.
 *
 * @module
 */

import { SEVERITIES } from "../detect/mod.ts";
import type { Alert, AlertState } from "./types.ts";

/**
 * The schema version this code writes (SQLite's `user_version`); an older one is migrated, a
 * newer one refused.
 */
export const SCHEMA_VERSION = 1;

/** The tables: alerts (one row per episode), their change events, and each vm's last scan. */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  vm TEXT NOT NULL,
  rule TEXT NOT NULL,
  subject TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
  severity INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 4),
  message TEXT NOT NULL,
  evidence TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  count INTEGER NOT NULL,
  missing INTEGER NOT NULL,
  resolved_at INTEGER,
  previous_id INTEGER
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open_key ON alerts (vm, rule, subject)
  WHERE state = 'open';
CREATE INDEX IF NOT EXISTS alerts_key ON alerts (vm, rule, subject, id);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_last_seen ON alerts (last_seen);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  alert_id INTEGER NOT NULL,
  at INTEGER NOT NULL,
  change TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS scans (
  vm TEXT PRIMARY KEY,
  last_at INTEGER NOT NULL,
  scans INTEGER NOT NULL
) STRICT;
`;

/** A row of `alerts`, as SQLite returns it. */
export interface AlertRow {
  id: number;
  vm: string;
  rule: string;
  subject: string;
  state: string;
  severity: number;
  message: string;
  evidence: string;
  first_seen: number;
  last_seen: number;
  count: number;
  missing: number;
  resolved_at: number | null;
  previous_id: number | null;
}

/** The alert a row of `alerts` holds. */
export function alertOf(row: AlertRow): Alert {
  const alert: Alert = {
    id: row.id,
    vm: row.vm,
    rule: row.rule,
    subject: row.subject,
    state: row.state as AlertState,
    severity: SEVERITIES[row.severity],
    message: row.message,
    evidence: JSON.parse(row.evidence),
    firstSeen: row.first_seen,
    lastSeen: row.last_seen,
    count: row.count,
    missing: row.missing,
  };
  if (row.resolved_at !== null) alert.resolvedAt = row.resolved_at;
  if (row.previous_id !== null) alert.previousId = row.previous_id;
  return alert;
}
