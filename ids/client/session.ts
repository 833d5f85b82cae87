/**
 * One monitored guest: a connected agent, its kernel's types, and snapshots of its views in any
 * of three modes. Every snapshot starts from an empty cache: guest memory changes, so bytes from
 * an earlier snapshot are never served as current.
 *
 * - `on-demand`: the view reads through the cache, and every miss fetches a page (one round
 *   trip each): the page-by-page baseline.
 * - `prefetch`: one PREFETCH round trip carrying the view's plan with whole structures, then the
 *   same view over the cache (the batched prefetch).
 * - `selective`: the same plan, copying only the fields the view reads.
 *
 * A read the prefetch did not cover still works (one round trip) and is counted as a miss.
 *
 * With {@linkcode GuestSession.holdMs} set, each snapshot holds the monitored workload still
 * (`ids/client/hold.ts`), so that lists walked over many round trips do not change under the walk.
 *
 * Here: opening a session, its settings and its views. A snapshot is taken by
 * `_snapshot_taker.ts`; what opening learns of the guest's kernel is `_guest_kernel.ts`'s.
 *
 * @module
 */

import { LIMITS, type LoadedProgram } from "../../protocol/mod.ts";
import type { AgentClient, Meter } from "./client.ts";
import { AgentMisbehaviorError } from "./errors.ts";
import { holding } from "./hold.ts";
import { loadWalker } from "./walker_object.ts";
import { addressSpaceOf, kernelOf, lookUp } from "./_guest_kernel.ts";
import { SnapshotTaker } from "./_snapshot_taker.ts";
import {
  DEFAULT_PREFETCH_LIMITS,
  type Mode,
  type PrefetchLimits,
  type SnapshotStats,
  type View,
} from "./snapshot.ts";
import type { Btf } from "../btf/mod.ts";
import { type AddressSpace, type KAddr, MemoryCache, RemoteMemory } from "../memory/mod.ts";
import {
  type CgroupSupport,
  findInitTask,
  type KernelTypes,
  listFiles,
  listModules,
  listProcesses,
  listSockets,
  listThreads,
  type Module,
  type OpenFile,
  planFiles,
  planModules,
  planSockets,
  planTasks,
  type Process,
  resolveFileTypes,
  resolveModuleTypes,
  resolveSocketTypes,
  type Socket,
  taskAddress,
} from "../linux/mod.ts";

/** The module list, or why the guest cannot have one. */
export interface ModulesAnswer {
  /** False when the guest kernel has no loadable modules, or hides where their list is. */
  supported: boolean;
  reason?: string;
  modules: Module[];
}

/** A process's open files. */
export interface FilesAnswer {
  pid: number;
  /** Address of its task. */
  task: string;
  files: OpenFile[];
}

/** Options of {@linkcode GuestSession.open}. */
export interface SessionOptions {
  /**
   * Kernel symbols already looked up in this guest's kernel and boot, shared by its sessions: a
   * guest that reconnects (its connection broke, it was migrated) is not asked again, which costs
   * it a read of its whole /proc/kallsyms. Only for sessions of one guest, one boot, one kernel.
   * @default a map of its own
   */
  symbols?: Map<string, KAddr | undefined>;
  /**
   * The walker object to load through the agent (LOAD) before anything else, unless the client
   * loaded one already; null loads nothing and uses the agent's default object.
   * @default the IDS's own `bpf/out/walk.bpf.o`
   */
  object?: Uint8Array | null;
}

/** No process has the pid asked for. */
export class NoSuchProcessError extends Error {
  constructor(readonly pid: number) {
    super(`No process with pid ${pid}`);
    this.name = "NoSuchProcessError";
  }
}

/** A guest, ready for snapshots. Closing it closes the client. */
export class GuestSession implements Disposable {
  #lazy = new Map<string, unknown>();
  #holdMs: number | undefined;
  #taker: SnapshotTaker;

  private constructor(
    readonly client: AgentClient,
    readonly btf: Btf,
    readonly types: KernelTypes,
    /** How the guest's addresses are numbered, learned at open (`linux/address_space.ts`). */
    readonly space: AddressSpace,
    /** The agent's own task. */
    readonly anchor: KAddr,
    /** init_task, found once from the anchor. */
    readonly initTask: KAddr,
    /** Kernel symbols looked up so far (see {@linkcode SessionOptions.symbols}). */
    readonly symbolCache: Map<string, KAddr | undefined>,
  ) {
    this.#taker = new SnapshotTaker(client, space, (meter) => this.liveMemory(meter));
  }

  /**
   * Loads the guest's BTF (from `stateDir`'s store when known, else from the agent), resolves
   * the kernel types, learns the guest's address space, and finds init_task from the agent's
   * task (a few round trips, once).
   * @throws {LayoutError} when the guest kernel lacks a field the views need.
   * @throws {AgentMisbehaviorError} (limit "addressSpace") when the guest's word on its paging
   * mode or region bases cannot be used, or its anchor is not an address of that space.
   */
  static async open(
    client: AgentClient,
    stateDir: string,
    options: SessionOptions = {},
  ): Promise<GuestSession> {
    if (options.object !== null) await loadWalker(client, options.object);
    if (client.anchor === 0n && !client.loaded) {
      throw new Error(
        "Cannot use the agent: it reports no anchor (it has no default object: load one)",
      );
    }
    const symbols = options.symbols ?? new Map();
    const space = await addressSpaceOf(client, symbols);
    const anchor = space.toKAddr(client.anchor);
    if (anchor === undefined) {
      throw new AgentMisbehaviorError(
        "addressSpace",
        `Cannot use the agent: its anchor 0x${
          client.anchor.toString(16)
        } is not a kernel address of the guest's ${space.paging} address space`,
        { value: `0x${client.anchor.toString(16)}`, allowed: space.paging },
      );
    }
    const { btf, types } = await kernelOf(client, stateDir);
    const memory = new RemoteMemory(
      new MemoryCache(),
      (addr, len) => client.read(space.fromKAddr(addr), len),
      space,
    );
    const initTask = await findInitTask(memory, types, anchor);
    return new GuestSession(client, btf, types, space, anchor, initTask, symbols);
  }

  /** The programs serving this session, as the agent loaded them for it (none: its default). */
  get programs(): LoadedProgram[] {
    return this.client.loaded?.programs ?? [];
  }

  /**
   * Hold the monitored workload still during each snapshot, for at most this many milliseconds
   * (1..LIMITS.maxHoldMs); undefined (the default) never holds.
   */
  get holdMs(): number | undefined {
    return this.#holdMs;
  }

  set holdMs(ms: number | undefined) {
    if (ms !== undefined && !(Number.isSafeInteger(ms) && ms >= 1 && ms <= LIMITS.maxHoldMs)) {
      throw new RangeError(`Cannot hold for ${ms} ms: expected 1..${LIMITS.maxHoldMs}`);
    }
    this.#holdMs = ms;
  }

  /**
   * Every how many prefetches one is asked whole: the others are deltas against the previous
   * answer (only what changed since comes whole; protocol/data_records.ts). 1 asks every one
   * whole. The first prefetch of a session is whole, and a session is one connection to one agent
   * (one boot, one kernel): a delta never crosses a reconnection.
   * @default 10 (`DEFAULT_FULL_EVERY` of snapshot.ts)
   */
  get fullEvery(): number {
    return this.#taker.fullEvery;
  }

  set fullEvery(n: number) {
    if (!(Number.isSafeInteger(n) && n >= 1 && n <= MAX_FULL_EVERY)) {
      throw new RangeError(`Cannot ask every ${n}th prefetch whole: expected 1..${MAX_FULL_EVERY}`);
    }
    this.#taker.fullEvery = n;
  }

  /**
   * The guest's process list, with what it cost; with `threads`, each process's `threadList`.
   * `cgroups` says whether the processes have cgroup paths, or why not.
   */
  async processes(
    mode: Mode,
    limits: PrefetchLimits = DEFAULT_PREFETCH_LIMITS,
    options: { threads?: boolean } = {},
  ): Promise<{ processes: Process[]; stats: SnapshotStats; cgroups?: CgroupSupport }> {
    const { value, stats } = await this.snapshot(mode, {
      planKey: options.threads ? "processes+threads" : "processes",
      plan: (b) => {
        const tasks = planTasks(b, this.types, this.initTask);
        if (options.threads) tasks.thread();
      },
      read: async (memory) => {
        const list = await listProcesses(memory, this.types, this.initTask);
        const problems = list.reason === undefined ? [] : [list.reason];
        if (options.threads) {
          problems.push(...await listThreads(memory, this.types, list.processes));
        }
        return {
          value: list,
          truncated: problems.length > 0,
          ...(problems.length ? { reason: problems.join("; ") } : {}),
        };
      },
    }, limits);
    return { processes: value.processes, stats, cgroups: value.cgroups };
  }

  /** Resolves (once) what only some views need; a failure is kept and thrown again. */
  #once<T>(key: string, make: () => T): T {
    if (!this.#lazy.has(key)) {
      try {
        this.#lazy.set(key, { value: make() });
      } catch (error) {
        this.#lazy.set(key, { error });
      }
    }
    const entry = this.#lazy.get(key) as { value: T } | { error: unknown };
    if ("error" in entry) throw entry.error;
    return entry.value;
  }

  /** A kernel symbol, looked up once per session; undefined when the guest does not give it. */
  async #symbol(name: string): Promise<KAddr | undefined> {
    return (await this.symbols([name])).get(name);
  }

  /**
   * Kernel symbols, each looked up once per session (one round trip for all the new ones);
   * undefined for one the guest's kallsyms does not give.
   */
  symbols(names: readonly string[]): Promise<Map<string, KAddr | undefined>> {
    return lookUp(this.client, this.symbolCache, names);
  }

  /**
   * Guest memory read anew, page by page: each read the new cache cannot serve is one round
   * trip, counted in `meter` when given.
   */
  liveMemory(meter?: Meter): RemoteMemory {
    return new RemoteMemory(
      new MemoryCache(),
      (addr, len) => this.client.read(this.space.fromKAddr(addr), len, meter),
      this.space,
    );
  }

  /** Resolves (once per session) a value that needs guest reads, e.g. an anchor's address. */
  async memo<T>(key: string, make: () => Promise<T>): Promise<T> {
    const k = `memo:${key}`;
    if (!this.#lazy.has(k)) this.#lazy.set(k, { value: await make() });
    return (this.#lazy.get(k) as { value: T }).value;
  }

  /**
   * The guest's kernel modules. A kernel without loadable modules answers `supported: false`
   * with the reason, never an empty list that would look like "no modules".
   */
  async modules(
    mode: Mode,
    limits: PrefetchLimits = DEFAULT_PREFETCH_LIMITS,
  ): Promise<{ answer: ModulesAnswer; stats: SnapshotStats }> {
    if (!this.client.info.features.includes("modules")) {
      return {
        answer: {
          supported: false,
          reason: "not supported by this kernel: it has no loadable modules (no /proc/modules)",
          modules: [],
        },
        stats: emptyStats(mode),
      };
    }
    const types = this.#once("modules", () => resolveModuleTypes(this.btf));
    const head = await this.#symbol("modules");
    if (head === undefined) {
      return {
        answer: {
          supported: false,
          reason: 'not available: the guest\'s kallsyms does not give the address of "modules"',
          modules: [],
        },
        stats: emptyStats(mode),
      };
    }
    const { value, stats } = await this.snapshot(mode, {
      planKey: "modules",
      plan: (b) => planModules(b, types, head),
      read: async (memory) => {
        const list = await listModules(memory, types, head);
        return { value: list.modules, truncated: list.truncated, reason: list.reason };
      },
    }, limits);
    return { answer: { supported: true, modules: value }, stats };
  }

  /**
   * The guest's TCP and UDP sockets of every network namespace, with their owners; `namespaces`
   * are the namespaces walked.
   */
  async sockets(
    mode: Mode,
    limits: PrefetchLimits = DEFAULT_PREFETCH_LIMITS,
  ): Promise<{ sockets: Socket[]; stats: SnapshotStats; namespaces: number[] }> {
    const types = this.#once("sockets", () => resolveSocketTypes(this.btf));
    const udpTable = types.net.fields.some((f) => f.name === "udpTable")
      ? undefined
      : await this.#symbol("udp_table");
    const { value, stats } = await this.snapshot(mode, {
      planKey: "sockets",
      plan: (b) => planSockets(b, types, planTasks(b, this.types, this.initTask), { udpTable }),
      read: async (memory) => {
        const list = await listSockets(memory, this.types, types, this.initTask, { udpTable });
        return { value: list, truncated: list.truncated, reason: list.reason };
      },
    }, limits);
    return { sockets: value.sockets, stats, namespaces: value.namespaces ?? [] };
  }

  /**
   * The open files of the process `pid`.
   * @throws {NoSuchProcessError} when no process has that pid.
   */
  async files(
    pid: number,
    mode: Mode,
    limits: PrefetchLimits = DEFAULT_PREFETCH_LIMITS,
  ): Promise<{ answer: FilesAnswer; stats: SnapshotStats }> {
    const types = this.#once("files", () => resolveFileTypes(this.btf));
    const { value, stats } = await this.snapshot(mode, {
      planKey: `files ${pid}`,
      plan: (b) => planFiles(b, types, planTasks(b, this.types, this.initTask), { pid }),
      read: async (memory) => {
        const list = await listProcesses(memory, this.types, this.initTask);
        const process = list.processes.find((p) => p.pid === pid);
        if (!process) throw new NoSuchProcessError(pid);
        const task = taskAddress(process, this.space)!;
        const files = await listFiles(memory, this.types, types, task);
        return {
          value: { pid, task: process.task, files: files.files },
          truncated: files.truncated || list.truncated,
          reason: files.reason ?? list.reason,
        };
      },
    }, limits);
    return { answer: value, stats };
  }
  /** Takes one snapshot of `view` in `mode`. */
  async snapshot<T>(
    mode: Mode,
    view: View<T>,
    limits: PrefetchLimits = DEFAULT_PREFETCH_LIMITS,
  ): Promise<{ value: T; stats: SnapshotStats }> {
    const started = performance.now();
    const meter: Meter = { roundTrips: 0, bytes: 0 };
    const take = () => this.#taker.take(mode, view, limits, started, meter);
    if (this.#holdMs === undefined) return await take();
    return await holding(this.client, this.#holdMs, meter, started, take);
  }

  close(): void {
    this.client.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const MAX_FULL_EVERY = 1000;

function emptyStats(mode: Mode): SnapshotStats {
  return { mode, roundTrips: 0, bytes: 0, ms: 0, truncated: false, misses: 0, lookups: 0 };
}
