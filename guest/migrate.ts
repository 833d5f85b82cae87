/**
 * Live migration of the test guest between two QEMUs on this machine, through their QMP
 * sockets: the target waits (`-incoming defer`, then `migrate-incoming`), the source sends
 * (`migrate`), and `query-migrate` is polled until the migration completes, fails, or is given
 * up (`migrate_cancel`: the guest goes on running on the source). vCPU throttling is QEMU's
 * auto-converge: the guest's vCPUs are slowed, from `cpu-throttle-initial` percent up by
 * `cpu-throttle-increment`, while pre-copy cannot keep up with the pages they dirty.
 *
 * @module
 */

import type { Qmp } from "./qmp.ts";

/** Options of a migration ({@linkcode migrateQemu}, `GuestVm.migrate`). */
export interface MigrateOptions {
  /** vCPU throttling during pre-copy: QEMU's auto-converge. @default "off" */
  throttle?: "off" | "auto";
  /** Throttle first applied, percent. @default 20 */
  throttleInitial?: number;
  /** Throttle added each time pre-copy still falls behind, percent. @default 10 */
  throttleIncrement?: number;
  /** Migration bandwidth, MiB/s (QEMU's default is 128). @default 128 */
  bandwidthMiBps?: number;
  /** Give up (cancel) when not complete after this long. @default 45000 */
  timeoutMs?: number;
}

/** What one migration did, from QEMU's `query-migrate`. */
export interface Migration {
  completed: boolean;
  /** QEMU's last status: completed, failed, cancelled, ... */
  status: string;
  /** Why it did not complete. */
  reason?: string;
  /** From `migrate` to completion (or to giving up), as QEMU counts it. */
  totalMs: number;
  /** How long the guest was stopped for the last copy and the switch. */
  downtimeMs?: number;
  /** Bytes of guest memory sent. */
  transferredBytes: number;
  /** Highest rate at which the guest dirtied pages while it was copied, MB/s. */
  dirtyMBps: number;
  /** Highest vCPU throttle QEMU applied, percent (0 without throttling). */
  throttlePct: number;
  /** Passes over the dirty bitmap. */
  dirtySyncs: number;
  /** Milliseconds from completion until the agent's port was forwarded again (GuestVm). */
  forwardMs?: number;
}

/** The parts of QEMU's `query-migrate` answer used here. */
interface MigrationInfo {
  status?: string;
  "total-time"?: number;
  downtime?: number;
  "cpu-throttle-percentage"?: number;
  "error-desc"?: string;
  ram?: {
    transferred?: number;
    "dirty-pages-rate"?: number;
    "page-size"?: number;
    "dirty-sync-count"?: number;
  };
}

const POLL_MS = 100;

/** Checks that `value`, when given, is a number in [min, max]; returns it or `fallback`. */
function bounded(
  name: string,
  value: number | undefined,
  min: number,
  max: number,
  fallback: number,
) {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new RangeError(`${name} must be between ${min} and ${max}, not ${value}`);
  }
  return value;
}

/**
 * Migrates the guest of `source` to `target` (started with `-incoming defer`) through `uri`
 * (e.g. `unix:/run/migrate.sock`), and resolves once QEMU says it completed, failed, or was
 * cancelled after `timeoutMs`.
 * @throws {RangeError} for an option out of range.
 * @throws {QmpError} when either QEMU refuses a command.
 */
export async function migrateQemu(
  source: Qmp,
  target: Qmp,
  options: MigrateOptions & { uri: string },
): Promise<Migration> {
  const initial = bounded("throttleInitial", options.throttleInitial, 1, 99, 20);
  const increment = bounded("throttleIncrement", options.throttleIncrement, 1, 99, 10);
  const bandwidth = bounded("bandwidthMiBps", options.bandwidthMiBps, 1, 100_000, 128);
  const timeoutMs = bounded("timeoutMs", options.timeoutMs, 1_000, 3_600_000, 45_000);
  await source.execute("migrate-set-capabilities", {
    capabilities: [{ capability: "auto-converge", state: options.throttle === "auto" }],
  });
  await source.execute("migrate-set-parameters", {
    "max-bandwidth": Math.round(bandwidth * 2 ** 20),
    "cpu-throttle-initial": initial,
    "cpu-throttle-increment": increment,
  });
  await target.execute("migrate-incoming", { uri: options.uri });
  await source.execute("migrate", { uri: options.uri });
  const started = performance.now();
  let dirtyMBps = 0;
  let throttlePct = 0;
  // QEMU resets its counters when a migration is cancelled: keep the highest seen.
  let transferred = 0;
  let cancelled = false;
  for (;;) {
    const info = await source.execute<MigrationInfo>("query-migrate");
    const pageSize = info.ram?.["page-size"] ?? 4096;
    dirtyMBps = Math.max(dirtyMBps, (info.ram?.["dirty-pages-rate"] ?? 0) * pageSize / 1e6);
    throttlePct = Math.max(throttlePct, info["cpu-throttle-percentage"] ?? 0);
    transferred = Math.max(transferred, info.ram?.transferred ?? 0);
    const status = info.status ?? "none";
    if (["completed", "failed", "cancelled"].includes(status)) {
      const completed = status === "completed";
      return {
        completed,
        status,
        ...(completed ? {} : {
          reason: cancelled
            ? `did not converge within ${timeoutMs / 1000} s`
            : info["error-desc"] ?? `QEMU says ${status}`,
        }),
        totalMs: info["total-time"] ?? performance.now() - started,
        ...(info.downtime === undefined ? {} : { downtimeMs: info.downtime }),
        transferredBytes: transferred,
        dirtyMBps,
        throttlePct,
        dirtySyncs: info.ram?.["dirty-sync-count"] ?? 0,
      };
    }
    if (!cancelled && performance.now() - started > timeoutMs) {
      await source.execute("migrate_cancel");
      cancelled = true;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
