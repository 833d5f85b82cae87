/**
 * Alerts that survive restarts: the lifecycle of findings, kept in SQLite (`node:sqlite`).
 *
 * An **alert** is keyed by (vm, rule, subject). {@linkcode AlertStore.apply} takes one scan's
 * findings of a guest, in one transaction: a finding without an open alert opens one; a finding
 * with one updates it (last seen, count, severity, message, evidence); an open alert whose finding
 * is absent counts the scans it has been missing from and is resolved after `resolveAfter`
 * consecutive ones. A finding that comes back after its alert was resolved opens a **new** alert
 * row (event `reopened`, `previousId` naming the resolved one), so each row is one episode and
 * the resolved ones keep their history until the retention drops them.
 *
 * Each change appends an **event** (autoincrement id): `opened`, `reopened`, `severity_changed`
 * and `resolved`. Updates that change nothing but the count or the evidence are not events, so
 * the event log grows with changes, not with scans.
 *
 * Durability: the database is in WAL mode with `synchronous=FULL`, so a transaction is in the
 * write-ahead log on disk (fsync) before `apply` returns: an apply that returned survives the
 * process being killed and the machine losing power. (`NORMAL` would survive a killed process
 * but not a power loss.) Readers in other processes (the `alerts` command) read while the
 * service writes.
 *
 * Bounds, since subjects, messages and evidence come from guest memory: strings are made well
 * formed (lone surrogates and NUL, which SQLite's C strings would cut at, become U+FFFD) and cut
 * to {@linkcode LIMITS}; a vm has at most `maxOpen` open alerts, beyond which one alert
 * `alert_overflow` counts the findings not stored; resolved alerts and events older than the
 * retention are deleted, and so are the oldest beyond `maxResolved` and `maxEvents`.
 *
 * **Health alerts** ({@linkcode HEALTH_RULES}: the agent misbehaving or unreachable) are not scan
 * findings: the service raises them with {@linkcode AlertStore.raise} and resolves them with
 * {@linkcode AlertStore.resolve}. A scan never updates or resolves them.
 *
 * One file past 400 lines: the store is one class over one database, whose lifecycle rules run
 * in one transaction per scan and share its prepared statements.
 *
 * @module
 */

import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { type Finding, SEVERITIES, type Severity, severityRank } from "../detect/mod.ts";
import { type Entry, entryOf } from "./_bounds.ts";
import { alertOf, type AlertRow, SCHEMA, SCHEMA_VERSION } from "./_schema.ts";
import type {
  Alert,
  AlertChange,
  AlertChangeKind,
  AlertQuery,
  AlertStoreOptions,
} from "./types.ts";

/** The rule of the alert that counts findings a full vm could not store. */
export const OVERFLOW_RULE = "alert_overflow";
/** The subject of the {@linkcode OVERFLOW_RULE} alert. */
export const OVERFLOW_SUBJECT = "open alerts";

/** The rule of the alert raised while a guest's agent breaks the protocol or its limits. */
export const MISBEHAVING_RULE = "agent_misbehaving";
/** The rule of the alert raised while a guest's agent cannot be reached or used. */
export const UNREACHABLE_RULE = "agent_unreachable";
/** Rules whose alerts the service raises and resolves itself, never a scan. */
export const HEALTH_RULES: readonly string[] = [MISBEHAVING_RULE, UNREACHABLE_RULE];

/** The most alerts one {@linkcode AlertStore.list} answers. */
export const MAX_LIST = 1000;
/** Every how many applies the retention runs. */
const PRUNE_EVERY = 64;
const DAY_MS = 86_400_000;

const keyOf = (rule: string, subject: string) => `${rule}\0${subject}`;

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Cannot open the alert store: "${name}" must be an integer >= 1`);
  }
  return value;
}

/**
 * The alert store of one database file. Not safe to write from two processes at once (the
 * service owns it); reading from others is. Close it when done.
 */
export class AlertStore implements Disposable {
  readonly #db: DatabaseSync;
  readonly #resolveAfter: number;
  readonly #retentionMs: number;
  readonly #maxOpen: number;
  readonly #maxResolved: number;
  readonly #maxEvents: number;
  readonly #clock: () => number;
  readonly #statements = new Map<string, StatementSync>();
  #applies = 0;
  #closed = false;

  private constructor(db: DatabaseSync, options: AlertStoreOptions) {
    this.#db = db;
    this.#resolveAfter = positiveInteger(options.resolveAfter ?? 3, "resolveAfter");
    const days = options.retentionDays ?? 30;
    if (!(days > 0)) {
      throw new RangeError('Cannot open the alert store: "retentionDays" must be > 0');
    }
    this.#retentionMs = days * DAY_MS;
    this.#maxOpen = positiveInteger(options.maxOpen ?? 10_000, "maxOpen");
    this.#maxResolved = positiveInteger(options.maxResolved ?? 50_000, "maxResolved");
    this.#maxEvents = positiveInteger(options.maxEvents ?? 50_000, "maxEvents");
    this.#clock = options.clock ?? Date.now;
  }

  /**
   * Opens (creating when missing) the database at `path` (`":memory:"` for a private one) and
   * brings its schema to {@linkcode SCHEMA_VERSION}.
   * @throws {Error} when the file cannot be opened or holds a newer schema.
   */
  static open(path: string, options: AlertStoreOptions = {}): AlertStore {
    const db = new DatabaseSync(path);
    try {
      const store = new AlertStore(db, options);
      db.exec("PRAGMA busy_timeout = 5000");
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      store.#migrate(path);
      return store;
    } catch (error) {
      db.close();
      throw error;
    }
  }

  #migrate(path: string): void {
    const version = () =>
      (this.#db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
    if (version() === SCHEMA_VERSION) return;
    this.#transaction(() => {
      const found = version();
      if (found > SCHEMA_VERSION) {
        throw new Error(
          `Cannot open the alert store "${path}": schema version ${found} is newer than ${SCHEMA_VERSION}`,
        );
      }
      this.#db.exec(SCHEMA);
      this.#db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    });
  }

  #sql(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #transaction<T>(body: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = body();
      this.#db.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /**
   * Applies one scan of `vm` taken at `scanAt` (epoch ms), in one transaction, and returns the
   * changes it made, in event order. When it returns, the changes are on disk.
   * @throws {TypeError} for a finding with an unknown severity (nothing is applied)
   */
  apply(vm: string, findings: readonly Finding[], scanAt: number): AlertChange[] {
    this.#check();
    if (!Number.isSafeInteger(scanAt)) {
      throw new TypeError(`Cannot apply the scan of VM "${vm}": bad scan time ${scanAt}`);
    }
    const entries = new Map<string, Entry>();
    for (const finding of findings) {
      const entry = entryOf(finding);
      entries.set(keyOf(entry.rule, entry.subject), entry);
    }
    const changes = this.#transaction(() => this.#apply(vm, entries, scanAt));
    if (++this.#applies % PRUNE_EVERY === 1) {
      // The scan is stored: a prune that fails (the database busy) is for the next time.
      try {
        this.prune();
      } catch {
        this.#applies = 0;
      }
    }
    return changes;
  }

  /**
   * Opens, or updates, the health alert of `finding` (its rule one of {@linkcode HEALTH_RULES})
   * at `at` (epoch ms), in one transaction, without touching any other alert. A raise that only
   * updates an open alert is not an event, so an agent failing on every retry is one alert.
   * @throws {TypeError} for a rule that is not a health rule, an unknown severity or a bad time
   */
  raise(vm: string, finding: Finding, at: number): AlertChange[] {
    this.#check();
    const entry = this.#healthEntry(vm, finding.rule, at, () => entryOf(finding));
    return this.#transaction(() => {
      const changes: AlertChange[] = [];
      const row = this.#sql(
        "SELECT * FROM alerts WHERE vm = ? AND rule = ? AND subject = ? AND state = 'open'",
      ).get(vm, entry.rule, entry.subject) as unknown as AlertRow | undefined;
      if (row) this.#update(row, entry, at, changes);
      else this.#open(vm, entry, at, changes);
      return changes;
    });
  }

  /**
   * Resolves the open alerts of health rule `rule` of `vm` at `at` (epoch ms), in one
   * transaction; returns the changes (none when nothing was open).
   * @throws {TypeError} for a rule that is not a health rule or a bad time
   */
  resolve(vm: string, rule: string, at: number): AlertChange[] {
    this.#check();
    this.#healthEntry(vm, rule, at, () => undefined);
    return this.#transaction(() => {
      const changes: AlertChange[] = [];
      const rows = this.#sql("SELECT * FROM alerts WHERE vm = ? AND rule = ? AND state = 'open'")
        .all(vm, rule) as unknown as AlertRow[];
      for (const row of rows) {
        this.#sql("UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE id = ?")
          .run(at, row.id);
        this.#event(row.id, "resolved", at, changes);
      }
      return changes;
    });
  }

  #healthEntry<T>(vm: string, rule: string, at: number, make: () => T): T {
    if (!HEALTH_RULES.includes(rule)) {
      throw new TypeError(
        `Cannot raise or resolve alert rule "${rule}" of VM "${vm}": it is not a health rule`,
      );
    }
    if (!Number.isSafeInteger(at)) {
      throw new TypeError(`Cannot raise or resolve "${rule}" of VM "${vm}": bad time ${at}`);
    }
    return make();
  }

  #apply(vm: string, entries: Map<string, Entry>, at: number): AlertChange[] {
    const changes: AlertChange[] = [];
    const open = new Map<string, AlertRow>();
    for (
      const row of this.#sql("SELECT * FROM alerts WHERE vm = ? AND state = 'open'").all(
        vm,
      ) as unknown as AlertRow[]
    ) open.set(keyOf(row.rule, row.subject), row);
    const seen = new Set<string>();
    const fresh: Entry[] = [];
    for (const [key, entry] of entries) {
      const row = open.get(key);
      if (entry.rule === OVERFLOW_RULE || HEALTH_RULES.includes(entry.rule)) continue;
      if (row) {
        seen.add(key);
        this.#update(row, entry, at, changes);
      } else {
        fresh.push(entry);
      }
    }
    const overflowKey = keyOf(OVERFLOW_RULE, OVERFLOW_SUBJECT);
    let remaining = 0;
    for (const [key, row] of open) {
      if (seen.has(key) || key === overflowKey) continue;
      if (HEALTH_RULES.includes(row.rule) || !this.#absent(row, at, changes)) remaining++;
    }
    // Room is what the alerts still open leave, once this scan's resolutions are done.
    let room = this.#maxOpen - seen.size - remaining;
    let dropped = 0;
    for (const entry of fresh) {
      if (room > 0) {
        room--;
        this.#open(vm, entry, at, changes);
      } else {
        dropped++;
      }
    }
    const overflow = open.get(overflowKey);
    if (dropped > 0) {
      const entry: Entry = {
        rule: OVERFLOW_RULE,
        subject: OVERFLOW_SUBJECT,
        severity: severityRank("high"),
        message: `${dropped} findings were not stored: VM "${vm}" has ${this.#maxOpen} open alerts`,
        evidence: JSON.stringify({ limit: this.#maxOpen, dropped }),
      };
      if (overflow) this.#update(overflow, entry, at, changes);
      else this.#open(vm, entry, at, changes);
    } else if (overflow) {
      this.#absent(overflow, at, changes);
    }
    this.#sql(
      `INSERT INTO scans (vm, last_at, scans) VALUES (?, ?, 1)
       ON CONFLICT (vm) DO UPDATE SET last_at = excluded.last_at, scans = scans + 1`,
    ).run(vm, at);
    return changes;
  }

  /** Counts a scan without the alert's finding; true when that resolved it. */
  #absent(row: AlertRow, at: number, changes: AlertChange[]): boolean {
    const missing = row.missing + 1;
    if (missing < this.#resolveAfter) {
      this.#sql("UPDATE alerts SET missing = ? WHERE id = ?").run(missing, row.id);
      return false;
    }
    this.#sql("UPDATE alerts SET state = 'resolved', missing = ?, resolved_at = ? WHERE id = ?")
      .run(missing, at, row.id);
    this.#event(row.id, "resolved", at, changes);
    return true;
  }

  #open(vm: string, entry: Entry, at: number, changes: AlertChange[]): void {
    const previous = this.#sql(
      `SELECT id FROM alerts WHERE vm = ? AND rule = ? AND subject = ? AND state = 'resolved'
       ORDER BY id DESC LIMIT 1`,
    ).get(vm, entry.rule, entry.subject) as { id: number } | undefined;
    const { lastInsertRowid } = this.#sql(
      `INSERT INTO alerts (vm, rule, subject, state, severity, message, evidence, first_seen,
         last_seen, count, missing, previous_id)
       VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, 1, 0, ?)`,
    ).run(
      vm,
      entry.rule,
      entry.subject,
      entry.severity,
      entry.message,
      entry.evidence,
      at,
      at,
      previous?.id ?? null,
    );
    this.#event(Number(lastInsertRowid), previous ? "reopened" : "opened", at, changes);
  }

  #update(row: AlertRow, entry: Entry, at: number, changes: AlertChange[]): void {
    this.#sql(
      `UPDATE alerts SET severity = ?, message = ?, evidence = ?, last_seen = ?,
         count = count + 1, missing = 0 WHERE id = ?`,
    ).run(entry.severity, entry.message, entry.evidence, at, row.id);
    if (entry.severity !== row.severity) {
      this.#event(row.id, "severity_changed", at, changes, SEVERITIES[row.severity]);
    }
  }

  #event(
    alertId: number,
    kind: AlertChangeKind,
    at: number,
    changes: AlertChange[],
    previousSeverity?: Severity,
  ): void {
    const row = this.#sql("SELECT * FROM alerts WHERE id = ?").get(alertId) as unknown as AlertRow;
    const change: Omit<AlertChange, "id"> = { kind, at, alert: alertOf(row) };
    if (previousSeverity) change.previousSeverity = previousSeverity;
    const { lastInsertRowid } = this.#sql(
      "INSERT INTO events (alert_id, at, change) VALUES (?, ?, ?)",
    ).run(alertId, at, JSON.stringify(change));
    changes.push({ id: Number(lastInsertRowid), ...change });
  }

  /**
   * Alerts that pass every filter, the most recently seen first.
   * @throws {RangeError} when `limit` is not an integer in 1..{@linkcode MAX_LIST}
   */
  list(query: AlertQuery = {}): Alert[] {
    this.#check();
    const limit = query.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST) {
      throw new RangeError(`Cannot list alerts: limit must be an integer in 1..${MAX_LIST}`);
    }
    const where: string[] = [];
    const args: SQLInputValue[] = [];
    const filter = (clause: string, value: SQLInputValue | undefined) => {
      if (value === undefined) return;
      where.push(clause);
      args.push(value);
    };
    filter("vm = ?", query.vm);
    filter("rule = ?", query.rule);
    filter("severity >= ?", query.minSeverity && severityRank(query.minSeverity));
    filter("state = ?", query.state);
    filter("last_seen >= ?", query.since);
    const sql = `SELECT * FROM alerts ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY last_seen DESC, id DESC LIMIT ?`;
    return (this.#sql(sql).all(...args, limit) as unknown as AlertRow[]).map(alertOf);
  }

  /** The alert with id `id`, if the store still holds it. */
  get(id: number): Alert | undefined {
    this.#check();
    const row = this.#sql("SELECT * FROM alerts WHERE id = ?").get(id) as AlertRow | undefined;
    return row && alertOf(row);
  }

  /** Events after event id `id` (0: from the oldest kept), oldest first, at most `limit`. */
  eventsAfter(id: number, limit = 500): AlertChange[] {
    this.#check();
    const rows = this.#sql("SELECT id, change FROM events WHERE id > ? ORDER BY id LIMIT ?")
      .all(id, Math.max(1, Math.min(limit, MAX_LIST))) as { id: number; change: string }[];
    return rows.map((row) => ({ id: row.id, ...JSON.parse(row.change) }));
  }

  /** The id of the newest event, 0 when there is none. */
  lastEventId(): number {
    this.#check();
    const row = this.#sql("SELECT MAX(id) AS id FROM events").get() as { id: number | null };
    return row.id ?? 0;
  }

  /** Open alerts by vm, rule and severity. */
  openCounts(): { vm: string; rule: string; severity: Severity; count: number }[] {
    this.#check();
    const rows = this.#sql(
      `SELECT vm, rule, severity, COUNT(*) AS count FROM alerts WHERE state = 'open'
       GROUP BY vm, rule, severity`,
    ).all() as { vm: string; rule: string; severity: number; count: number }[];
    return rows.map((row) => ({ ...row, severity: SEVERITIES[row.severity] }));
  }

  /** The time and number of the scans of `vm` applied so far. */
  lastScan(vm: string): { at: number; scans: number } | undefined {
    this.#check();
    const row = this.#sql("SELECT last_at, scans FROM scans WHERE vm = ?").get(vm) as
      | { last_at: number; scans: number }
      | undefined;
    return row && { at: row.last_at, scans: row.scans };
  }

  /**
   * Deletes resolved alerts and events older than the retention, and the oldest beyond the
   * count limits. {@linkcode apply} runs it now and then.
   */
  prune(): void {
    this.#check();
    const cutoff = this.#clock() - this.#retentionMs;
    this.#transaction(() => {
      this.#sql("DELETE FROM events WHERE at < ?").run(cutoff);
      this.#sql("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?")
        .run(this.#maxEvents);
      this.#sql("DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?").run(cutoff);
      this.#sql(
        `DELETE FROM alerts WHERE state = 'resolved' AND id <= (SELECT id FROM alerts
           WHERE state = 'resolved' ORDER BY id DESC LIMIT 1 OFFSET ?)`,
      ).run(this.#maxResolved);
    });
  }

  /** SQLite's own consistency check: "ok", or what is wrong. */
  integrityCheck(): string {
    this.#check();
    const rows = this.#db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    return rows.map((row) => row.integrity_check).join("; ");
  }

  #check(): void {
    if (this.#closed) throw new Error("Cannot use the alert store: it is closed");
  }

  /** Closes the database. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#statements.clear();
    this.#db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
