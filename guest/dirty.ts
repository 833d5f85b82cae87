/**
 * The guest's memory-dirtying workload (guest/dirty.c, at {@linkcode GUEST_DIRTY}), started,
 * read and stopped through the guest's console. It checks its own memory as it rewrites it, and
 * all of it when stopped: its errors are pages a migration lost or copied stale.
 *
 * @module
 */

import { GUEST_DIRTY } from "./build.ts";
import type { GuestVm } from "./boot.ts";

/** The workload's counters, as it last wrote them. */
export interface DirtyStatus {
  /** Whole passes over its region. */
  passes: number;
  pages: number;
  /** Words that did not hold what the workload last wrote there. */
  errors: number;
  writtenMB: number;
  elapsedS: number;
  /** Written after its final check of every word. */
  final: boolean;
  /** `page:expected:found` of the first error, or "-". */
  firstError: string;
}

const STATUS = "/tmp/ebpfmon-dirty.status";
const PID = "/tmp/ebpfmon-dirty.pid";

/** Parses the workload's status line; undefined when it is not one. */
export function parseDirtyStatus(line: string): DirtyStatus | undefined {
  const m =
    /^passes=(\d+) pages=(\d+) errors=(\d+) written_mb=([\d.]+) elapsed_s=([\d.]+) final=([01]) first_error=(\S+)$/
      .exec(line.trim());
  if (!m) return undefined;
  return {
    passes: Number(m[1]),
    pages: Number(m[2]),
    errors: Number(m[3]),
    writtenMB: Number(m[4]),
    elapsedS: Number(m[5]),
    final: m[6] === "1",
    firstError: m[7],
  };
}

/** The workload running in a guest. */
export class DirtyWorkload {
  private constructor(readonly vm: GuestVm, readonly mib: number, readonly rateMBps: number) {}

  /**
   * Starts the workload on `mib` MiB at most `rateMBps` MB/s (0: as fast as it can), and
   * resolves once it has written its first status.
   */
  static async start(vm: GuestVm, mib: number, rateMBps = 0): Promise<DirtyWorkload> {
    if (!Number.isInteger(mib) || mib < 1 || mib > 1024) {
      throw new RangeError(`The dirtying workload takes 1-1024 MiB, not ${mib}`);
    }
    if (!Number.isFinite(rateMBps) || rateMBps < 0) {
      throw new RangeError(`The dirty rate must be 0 or more MB/s, not ${rateMBps}`);
    }
    const started = await vm.run(
      `rm -f ${STATUS}; ${GUEST_DIRTY} ${mib} ${rateMBps} ${STATUS} </dev/null >/dev/null 2>&1 & ` +
        `echo $! >${PID}`,
    );
    if (started.status !== 0) {
      throw new Error(`Cannot start the workload: ${started.output.join("\n")}`);
    }
    const workload = new DirtyWorkload(vm, mib, rateMBps);
    for (let tries = 0; !(await workload.status()); tries++) {
      if (tries >= 100) throw new Error("The dirtying workload wrote no status within 20 s");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return workload;
  }

  /** Its last status; undefined before it wrote one. */
  async status(): Promise<DirtyStatus | undefined> {
    const { output } = await this.vm.run(`cat ${STATUS} 2>/dev/null`);
    return parseDirtyStatus(output[0] ?? "");
  }

  /** Stops it (it checks all of its memory first) and returns its final status. */
  async stop(): Promise<DirtyStatus> {
    // Its exit leaves a zombie for /init to reap: wait for its final status instead.
    await this.vm.run(
      `kill $(cat ${PID}); n=0; while ! grep -q final=1 ${STATUS} && [ $n -lt 900 ]; do ` +
        "sleep 0.1; n=$((n + 1)); done",
      { timeoutMs: 120_000 },
    );
    const status = await this.status();
    if (!status?.final) throw new Error("The dirtying workload stopped without its final check");
    return status;
  }
}
