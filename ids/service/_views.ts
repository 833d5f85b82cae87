/**
 * The views the service takes of one guest, each a {@linkcode Feed}: the process list from a full
 * check (every rule over one scan, its findings handed on, the first and latest scans kept for
 * the rules that compare), the modules, the sockets, and the open files of the processes asked
 * for last. What each view is apart from the connection and the loop that take it.
 *
 * @module
 */

import type {
  FilesAnswer,
  GuestSession,
  Mode,
  ModulesAnswer,
  PrefetchLimits,
  SnapshotStats,
} from "../client/mod.ts";
import { type Finding, runCheck, type Scan } from "../detect/mod.ts";
import type { Process, Socket } from "../linux/mod.ts";
import type { ServiceConfig } from "./config.ts";
import type { GuestConfig } from "./_guest_config.ts";
import type { Feed } from "./_feed.ts";

/** How the service takes every view: one PREFETCH round trip of whole structures. */
export const MODE: Mode = "prefetch";
/** Most processes whose open files one guest keeps a snapshot of. */
const MAX_FILE_SNAPSHOTS = 64;

/**
 * What one scan may bring from a guest by default (its `scanLimits` in ids.json): a guest of
 * about 3,500 processes (a check costs about 17 records and 4 KB per process), and little
 * enough that a lying agent cannot take the memory every other guest needs: the IDS keeps
 * about 300 bytes per record besides its bytes (measured for one-byte records on distinct
 * pages), so a scan holds at most about 20 MB of records plus 32 MB of bytes. Beyond, the walk
 * stops and the rest is read page by page (counted round trips, never a wrong answer).
 */
export const SCAN_LIMITS: PrefetchLimits = { maxObjects: 1 << 16, maxBytes: 32 << 20 };

/** One guest's views, their snapshots and the scans its checks compare with. */
export class GuestViews {
  /**
   * The process list comes from a full check: every rule over one scan (one round trip), whose
   * findings go to the alert store, and whose processes section (every process any of the
   * kernel's views holds) is the list.
   */
  readonly processes: Feed<Process[]> = {
    view: "processes",
    label: "processes",
    take: (session) => this.#check(session),
  };
  /** The first scan since the guest's kernel and boot were last seen, and the latest. */
  #first?: Scan;
  #previous?: Scan;
  readonly modules: Feed<ModulesAnswer>;
  readonly sockets: Feed<Socket[]>;
  /** By pid, the least recently read first. */
  readonly #files = new Map<number, Feed<FilesAnswer>>();
  /** Events said once per guest (what its kernel cannot be checked for). */
  readonly #said = new Set<string>();

  constructor(
    readonly config: GuestConfig,
    readonly rules: ServiceConfig["rules"],
    /** Receives the findings of every scan (the alert store). */
    readonly onFindings: (findings: Finding[], scanAt: number) => void,
    /** Says an event of the guest (an error when `error`). */
    readonly event: (message: string, error?: boolean) => void,
  ) {
    this.modules = {
      view: "modules",
      label: "modules",
      maxAgeMs: config.refreshMs,
      take: async (session) => {
        const { answer, stats } = await session.modules(MODE);
        return { value: answer, stats };
      },
    };
    this.sockets = {
      view: "sockets",
      label: "sockets",
      maxAgeMs: config.refreshMs,
      take: async (session) => {
        const { sockets, stats } = await session.sockets(MODE);
        return { value: sockets, stats };
      },
    };
  }

  /**
   * The view of `pid`'s open files. Past {@linkcode MAX_FILE_SNAPSHOTS} pids, those read least
   * recently (and not being fetched) are forgotten.
   */
  files(pid: number): Feed<FilesAnswer> {
    let feed = this.#files.get(pid);
    if (feed) {
      this.#files.delete(pid);
    } else {
      feed = {
        view: "files",
        label: `files of pid ${pid}`,
        maxAgeMs: this.config.refreshMs,
        take: async (session) => {
          const { answer, stats } = await session.files(pid, MODE);
          return { value: answer, stats };
        },
      };
    }
    this.#files.set(pid, feed);
    for (const [old, idle] of this.#files) {
      if (this.#files.size <= MAX_FILE_SNAPSHOTS) break;
      if (!idle.pending) this.#files.delete(old);
    }
    return feed;
  }

  /** Every view the guest keeps. */
  all(): Feed<unknown>[] {
    return [this.processes, this.modules, this.sockets, ...this.#files.values()];
  }

  /** Forgets every snapshot and scan: they describe another kernel or boot. */
  forget(): void {
    for (const feed of this.all()) feed.snapshot = undefined;
    this.#files.clear();
    this.#first = this.#previous = undefined;
  }

  async #check(session: GuestSession): Promise<{ value: Process[]; stats: SnapshotStats }> {
    const result = await runCheck(session, MODE, {
      limits: this.config.scanLimits ?? SCAN_LIMITS,
      rules: this.rules,
      previous: this.#previous,
      first: this.#first,
    });
    this.#first ??= result.scan;
    this.#previous = result.scan;
    try {
      this.onFindings(result.findings, result.scan.takenAt);
    } catch (error) {
      this.event(`cannot store the findings of a scan: ${(error as Error).message}`, true);
    }
    for (const [name, s] of Object.entries(result.stats.sections)) {
      if (!s.supported) this.#once(`section ${name} not checked: ${s.reason}`);
    }
    const section = result.scan.sections.processes;
    if (section?.supported) return { value: section.value.processes, stats: result.stats };
    // A kernel whose pid structures the IDS cannot read still has its task list.
    const { processes, stats } = await session.processes(MODE);
    return { value: processes, stats };
  }

  #once(message: string): void {
    if (this.#said.has(message)) return;
    this.#said.add(message);
    this.event(message);
  }
}
