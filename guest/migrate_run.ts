/**
 * `deno task migrate`: live-migrates the test guest while the IDS service monitors it, and
 * measures what the migration costs and what monitoring sees of it.
 *
 * It boots the guest, starts `ebpfmon-ids serve` on it, then for each dirty size, throttle and
 * run: starts the guest's dirtying workload (guest/dirty.c), migrates the guest to a new QEMU on
 * this machine and back, and stops the workload, which checks all of its memory. Each migration
 * reports QEMU's total time, downtime, bytes sent, the guest's dirty rate and the highest vCPU
 * throttle, whether it converged, the monitoring gap the service reported (its `migrated` event)
 * and whether the service kept the guest's identity (no reboot, restart or new-kernel event).
 * Results go to `bench/results/migrate-TIME.{json,md,svg}`.
 *
 *     deno task migrate [--kernel 6.1] [--throttle off,auto] [--dirty-mb 64] [--dirty-rate 0]
 *       [--bandwidth 128] [--runs 3] [--timeout-s 45] [--throttle-initial 20]
 *       [--throttle-increment 10] [--json FILE]
 *
 * `--kernel` picks the guest kernel (guest/kernel.ts: 6.1, the default, or 6.12).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { spawnReady } from "../agent/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import { machine } from "../bench/mod.ts";
import { buildGuest } from "./build.ts";
import { DEFAULT_KERNEL } from "./kernel.ts";
import { GuestVm } from "./boot.ts";
import { DirtyWorkload } from "./dirty.ts";
import type { MigrateOptions, Migration } from "./migrate.ts";
import { renderMigrationChart, renderMigrationTable } from "./migrate_report.ts";

/** One migration of a run, with what the service saw of it. */
export interface MigrationRecord extends Migration {
  dirtyMiB: number;
  throttle: "off" | "auto";
  run: number;
  direction: "there" | "back";
  /** The service's monitoring gap (its `migrated` event), ms; undefined when it saw none. */
  gapMs?: number;
  /** The service saw neither a reboot, a new kernel nor another agent. */
  identityKept: boolean;
  /** Errors the workload found in its memory over the run (there and back). */
  workloadErrors: number;
}

/** A running `ebpfmon-ids serve` and its API. */
export interface Service extends AsyncDisposable {
  get(path: string): Promise<Record<string, unknown>>;
}

/** Starts the service on the guest `vm` (named `debian`), refreshing every `refreshMs`. */
export async function serveGuest(vm: GuestVm, state: string, refreshMs = 500): Promise<Service> {
  const config = `${state}/ids.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      listen: "127.0.0.1:0",
      stateDir: state,
      guests: [{ name: "debian", agent: vm.address, refreshMs }],
    }),
  );
  const serve = await spawnReady({
    main: new URL("../ids/main.ts", import.meta.url),
    permissions: IDS_PERMISSIONS,
    args: ["serve", "--config", config],
    ready: /API on (\S+) \(token in (\S+)\)/,
  });
  const [, url, tokenFile] = serve.ready;
  const token = (await Deno.readTextFile(tokenFile)).trim();
  return {
    async get(path) {
      const res = await fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
      return await res.json();
    },
    [Symbol.asyncDispose]: () => serve[Symbol.asyncDispose](),
  };
}

interface Event {
  at: number;
  kind?: string;
  gapMs?: number;
}

/** The guest's events since `since` (epoch ms). */
async function eventsSince(service: Service, since: number): Promise<Event[]> {
  const vm = await service.get("/v1/vms/debian");
  return (vm.events as Event[]).filter((e) => e.at >= since);
}

/**
 * Migrates `vm` while `service` monitors it, and waits (at most `waitMs`) for the service's
 * `migrated` event: its gap, and whether any event said the guest is another one.
 */
export async function migrateMonitored(
  vm: GuestVm,
  service: Service,
  options: MigrateOptions,
  waitMs = 30_000,
): Promise<{ migration: Migration; gapMs?: number; identityKept: boolean }> {
  const since = Date.now();
  const migration = await vm.migrate(options);
  let events: Event[] = [];
  for (const deadline = Date.now() + waitMs; migration.completed && Date.now() < deadline;) {
    events = await eventsSince(service, since);
    if (events.some((e) => e.kind === "migrated")) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const moved = events.find((e) => e.kind === "migrated");
  const other = ["rebooted", "kernel-changed", "agent-restarted"];
  return {
    migration,
    ...(moved?.gapMs === undefined ? {} : { gapMs: moved.gapMs }),
    identityKept: !events.some((e) => other.includes(e.kind ?? "")),
  };
}

function positive(name: string, text: string, max: number, zero = false): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < (zero ? 0 : 1e-9) || n > max) {
    throw new RangeError(
      `--${name} must be a number ${zero ? "0" : "above 0"}-${max}, not "${text}"`,
    );
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      kernel: { type: "string", default: DEFAULT_KERNEL },
      throttle: { type: "string", default: "off,auto" },
      "dirty-mb": { type: "string", default: "64" },
      "dirty-rate": { type: "string", default: "0" },
      bandwidth: { type: "string", default: "128" },
      runs: { type: "string", default: "3" },
      "timeout-s": { type: "string", default: "45" },
      "throttle-initial": { type: "string", default: "20" },
      "throttle-increment": { type: "string", default: "10" },
      json: { type: "string" },
    },
  });
  const throttles = values.throttle.split(",").map((t) => {
    if (t !== "off" && t !== "auto") {
      throw new RangeError(`--throttle takes off or auto, not "${t}"`);
    }
    return t;
  });
  const sizes = values["dirty-mb"].split(",").map((s) => Math.round(positive("dirty-mb", s, 1024)));
  const rate = positive("dirty-rate", values["dirty-rate"], 1e6, true);
  const runs = Math.round(positive("runs", values.runs, 100));
  const options: MigrateOptions = {
    bandwidthMiBps: positive("bandwidth", values.bandwidth, 100_000),
    timeoutMs: positive("timeout-s", values["timeout-s"], 3600) * 1000,
    throttleInitial: positive("throttle-initial", values["throttle-initial"], 99),
    throttleIncrement: positive("throttle-increment", values["throttle-increment"], 99),
  };
  const startedAt = new Date();
  const log = (line: string) => console.error(`migrate: ${line}`);
  const image = await buildGuest({ kernel: values.kernel, log });
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-migrate-" });
  log("booting the guest");
  await using vm = await GuestVm.boot(image, { stateDir: state });
  await using service = await serveGuest(vm, state);
  for (let i = 0; !(await service.get("/v1/vms/debian")).lastSnapshotAt; i++) {
    if (i > 600) throw new Error("The service took no snapshot of the guest within 60 s");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const records: MigrationRecord[] = [];
  for (const dirtyMiB of sizes) {
    for (let run = 1; run <= runs; run++) {
      for (const throttle of throttles) {
        const workload = await DirtyWorkload.start(vm, dirtyMiB, rate);
        await new Promise((resolve) => setTimeout(resolve, 2000));
        const moved: Omit<MigrationRecord, "workloadErrors">[] = [];
        for (const direction of ["there", "back"] as const) {
          const one = await migrateMonitored(vm, service, { ...options, throttle });
          moved.push({
            ...one.migration,
            gapMs: one.gapMs,
            identityKept: one.identityKept,
            dirtyMiB,
            throttle,
            run,
            direction,
          });
          const m = one.migration;
          log(
            `${dirtyMiB} MiB, throttle ${throttle}, run ${run}, ${direction}: ${m.status} in ` +
              `${(m.totalMs / 1000).toFixed(1)} s, downtime ${m.downtimeMs ?? "-"} ms, ` +
              `throttle ${m.throttlePct}%, gap ${one.gapMs ?? "-"} ms`,
          );
        }
        const final = await workload.stop();
        records.push(...moved.map((m) => ({ ...m, workloadErrors: final.errors })));
        if (final.errors) {
          log(`the workload found ${final.errors} errors (first ${final.firstError})`);
        }
      }
    }
  }
  const version = await new Deno.Command("qemu-system-x86_64", { args: ["--version"] }).output();
  const results = {
    startedAt: startedAt.toISOString(),
    kernel: image.release,
    machine: machine(),
    qemu: new TextDecoder().decode(version.stdout).split("\n")[0],
    settings: { throttles, sizes, rate, runs, ...options },
    records,
  };
  const base = values.json ??
    new URL(
      `../bench/results/migrate-${startedAt.toISOString().replaceAll(":", "-")}.json`,
      import.meta.url,
    ).pathname;
  await Deno.writeTextFile(base, JSON.stringify(results, null, 1) + "\n");
  const table = renderMigrationTable(records);
  await Deno.writeTextFile(base.replace(/\.json$/, ".md"), table);
  await Deno.writeTextFile(base.replace(/\.json$/, ".svg"), renderMigrationChart(records));
  console.log(table);
  log(`wrote ${base} and its .md and .svg`);
}

if (import.meta.main) await main();
