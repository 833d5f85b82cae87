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
 * @module
 */

import {
  encodePlan,
  LIMITS,
  type LoadedProgram,
  PrefetchTarget,
  StopReason,
} from "../../protocol/mod.ts";
import type { AgentClient, Meter } from "./client.ts";
import { AgentError, AgentMisbehaviorError } from "./errors.ts";
import { holding, type HoldStats } from "./hold.ts";
export type { HoldStats };
import { loadBtf } from "./btf_store.ts";
import { loadWalker } from "./walker_object.ts";
import { type Btf, parseBtf } from "../btf/mod.ts";
import {
  AddressSpace,
  AnswerBuilder,
  type AnswerRecords,
  type KAddr,
  MemoryCache,
  RemoteMemory,
} from "../memory/mod.ts";
import { type CopyMode, PlanBuilder } from "../kernel/mod.ts";
import {
  AddressSpaceError,
  type CgroupSupport,
  findInitTask,
  type KernelTypes,
  learnAddressSpace,
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
  resolveKernelTypes,
  resolveModuleTypes,
  resolveSocketTypes,
  type Socket,
} from "../linux/mod.ts";

/** How a snapshot gets its memory. */
export type Mode = "prefetch" | "selective" | "on-demand";
export const MODES: readonly Mode[] = ["prefetch", "selective", "on-demand"];

/** What a snapshot cost and how it ended. */
export interface SnapshotStats {
  mode: Mode;
  /** Requests to the agent, each one network round trip. */
  roundTrips: number;
  /** Frame bytes received from the agent. */
  bytes: number;
  /** Wall-clock milliseconds of the snapshot. */
  ms: number;
  /** The view could not be completed. */
  truncated: boolean;
  reason?: string;
  /** Reads the cache could not serve (each fetched page by page). */
  misses: number;
  /** Cache lookups the view made; `1 - misses / lookups` is the hit ratio. */
  lookups: number;
  /** Prefetch modes: what the in-guest walk returned. */
  prefetch?: {
    objects: number;
    bytes: number;
    /** Milliseconds the eBPF program ran in the guest kernel. */
    guestMs: number;
    /** Milliseconds from request to END in the agent. */
    agentMs: number;
    /** Why the walk stopped ("complete" when it did not stop early). */
    stop: string;
    /** Edges the walker did not follow because they lead deeper than the plan allows. */
    pruned: number;
    /** Records refused because their address is not a kernel address. */
    rejected: number;
    /**
     * Whether it was asked as a delta (against the session's previous answer, see
     * {@linkcode GuestSession.fullEvery}); `carried` records (`carriedBytes` bytes) of it were
     * unchanged since and came as references.
     */
    delta: boolean;
    carried: number;
    carriedBytes: number;
  };
  /** When the session holds the workload ({@linkcode GuestSession.holdMs}): how that went. */
  hold?: HoldStats;
}

/** Limits of a prefetch walk. */
export interface PrefetchLimits {
  maxObjects: number;
  maxBytes: number;
}

export const DEFAULT_PREFETCH_LIMITS: PrefetchLimits = { maxObjects: 1 << 20, maxBytes: 256 << 20 };

const STOP_NAMES = new Map<number, string>(
  Object.entries(StopReason).map(([name, code]) => [code, name.toLowerCase().replaceAll("_", "-")]),
);

/** What a view returns to {@linkcode GuestSession.snapshot}. */
export interface ViewResult<T> {
  value: T;
  truncated: boolean;
  reason?: string;
}

/**
 * A view as a session runs it: its plan, and the view itself over guest memory. `confirm` reads
 * the guest anew (not from the snapshot), for re-checking a suspicion; its reads are counted in
 * the snapshot's round trips.
 */
export interface View<T> {
  plan(builder: PlanBuilder): void;
  read(memory: RemoteMemory, confirm: RemoteMemory): Promise<ViewResult<T>>;
  /**
   * Names the plan when it depends on nothing but the session (its kernel, and what it found
   * once): the session then builds and encodes it once per mode, and sends the same bytes again.
   */
  planKey?: string;
}

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

/** Most named plans a session keeps (each a few tens of KB). */
const MAX_PLANS = 32;

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

/** Most symbols a session keeps (the views ask for a few dozen). */
const MAX_SYMBOLS = 4096;

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
  #fullEvery = DEFAULT_FULL_EVERY;
  /** The last answer of a prefetch, and how many deltas were asked since the last whole one. */
  #base: AnswerRecords | undefined;
  #deltas = 0;

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
  ) {}

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
   * @default {@linkcode DEFAULT_FULL_EVERY}
   */
  get fullEvery(): number {
    return this.#fullEvery;
  }

  set fullEvery(n: number) {
    if (!(Number.isSafeInteger(n) && n >= 1 && n <= MAX_FULL_EVERY)) {
      throw new RangeError(`Cannot ask every ${n}th prefetch whole: expected 1..${MAX_FULL_EVERY}`);
    }
    this.#fullEvery = n;
    if (n === 1) this.#base = undefined;
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
        const task = this.space.parseKAddr(process.task)!;
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

  /** Encoded plans of views that name theirs, by mode and name. */
  readonly #plans = new Map<string, Uint8Array | undefined>();

  /**
   * The encoded plan of `view` in `mode`, or undefined when it has no roots (the view then reads
   * on demand only); kept when the view names it.
   */
  #planOf<T>(mode: CopyMode, view: View<T>): Uint8Array | undefined {
    const key = view.planKey === undefined ? undefined : `${mode} ${view.planKey}`;
    if (key !== undefined && this.#plans.has(key)) return this.#plans.get(key);
    const builder = new PlanBuilder(mode, this.space);
    view.plan(builder);
    const plan = builder.build();
    const encoded = plan.roots.length ? encodePlan(plan) : undefined;
    if (key !== undefined) {
      if (this.#plans.size >= MAX_PLANS) this.#plans.clear();
      this.#plans.set(key, encoded);
    }
    return encoded;
  }

  /** Takes one snapshot of `view` in `mode`. */
  async snapshot<T>(
    mode: Mode,
    view: View<T>,
    limits: PrefetchLimits = DEFAULT_PREFETCH_LIMITS,
  ): Promise<{ value: T; stats: SnapshotStats }> {
    const started = performance.now();
    const meter: Meter = { roundTrips: 0, bytes: 0 };
    const take = () => this.#take(mode, view, limits, started, meter);
    if (this.#holdMs === undefined) return await take();
    return await holding(this.client, this.#holdMs, meter, started, take);
  }

  async #take<T>(
    mode: Mode,
    view: View<T>,
    limits: PrefetchLimits,
    started: number,
    meter: Meter,
  ): Promise<{ value: T; stats: SnapshotStats }> {
    const cache = new MemoryCache();
    const space = this.space;
    const memory = new RemoteMemory(
      cache,
      (addr, len) => this.client.read(space.fromKAddr(addr), len, meter),
      space,
    );
    let prefetch: SnapshotStats["prefetch"];
    const planned = mode === "on-demand" ? undefined : this.#planOf(COPY_MODES[mode], view);
    // A view that found nothing to walk (no roots) reads on demand only.
    if (planned) {
      let rejected = 0;
      const batch = cache.batch();
      const asks = this.#fullEvery > 1;
      const base = asks && this.#deltas < this.#fullEvery - 1 ? this.#base : undefined;
      const answer = asks ? new AnswerBuilder() : undefined;
      let end;
      try {
        end = await this.client.prefetch(
          PrefetchTarget.PLAN,
          limits,
          (high, low, payload, start, len) => {
            // In the guest's kernel half (the client checked), but maybe in none of its windows.
            const at = space.kaddrOf(high, low);
            if (at === undefined || !space.contains(at, len)) {
              rejected++;
              return true;
            }
            answer?.add(at, payload, start, len);
            // A refusal (the cache is full) cuts the answer off.
            return cache.insertFrom(at, payload, start, len, batch);
          },
          planned,
          meter,
          answer && {
            base: base?.generation ?? 0,
            onCarried: (first, count) => answer.carry(base!, first, count, cache, batch),
          },
        );
      } catch (error) {
        this.#base = undefined;
        throw error;
      }
      // The next delta goes against this answer, if the agent remembers it and it came whole.
      if (answer && end.generation && !rejected) {
        if (!this.#base || end.generation > this.#base.generation) {
          this.#base = answer.finish(end.generation);
          this.#deltas = base ? this.#deltas + 1 : 0;
        }
      } else if (answer) {
        this.#base = undefined;
      }
      prefetch = {
        objects: end.objects,
        bytes: end.bytes,
        guestMs: end.guestNs / 1e6,
        agentMs: end.agentNs / 1e6,
        stop: STOP_NAMES.get(end.stop) ?? String(end.stop),
        pruned: end.pruned,
        rejected,
        delta: base !== undefined,
        carried: answer?.carried ?? 0,
        carriedBytes: answer?.carriedBytes ?? 0,
      };
    }
    const result = await view.read(memory, this.liveMemory(meter));
    return {
      value: result.value,
      stats: {
        mode,
        roundTrips: meter.roundTrips,
        bytes: meter.bytes,
        ms: performance.now() - started,
        truncated: result.truncated,
        ...(result.reason ? { reason: result.reason } : {}),
        misses: memory.stats.misses,
        lookups: cache.stats.hits + cache.stats.misses,
        ...(prefetch ? { prefetch } : {}),
      },
    };
  }

  close(): void {
    this.client.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Every how many prefetches of a session one is asked whole, unless set otherwise. */
export const DEFAULT_FULL_EVERY = 10;
const MAX_FULL_EVERY = 1000;

/** How many guest kernels' parsed BTF the IDS keeps, the most recently used. */
const MAX_KERNELS = 8;
const kernels = new Map<string, { btf: Btf; types: KernelTypes }>();

/**
 * The guest kernel's parsed BTF and types, parsed once per BTF hash: an agent that reconnects
 * again and again (a restart loop, or a lie per connection) costs a lookup, not a parse.
 */
async function kernelOf(
  client: AgentClient,
  stateDir: string,
): Promise<{ btf: Btf; types: KernelTypes }> {
  const hash = Array.from(client.info.btfHash, (b) => b.toString(16).padStart(2, "0")).join("");
  let kernel = kernels.get(hash);
  if (kernel) {
    kernels.delete(hash);
  } else {
    const btf = parseBtf(await loadBtf(client, stateDir));
    kernel = { btf, types: resolveKernelTypes(btf) };
  }
  kernels.set(hash, kernel);
  for (const old of kernels.keys()) {
    if (kernels.size <= MAX_KERNELS) break;
    kernels.delete(old);
  }
  return kernel;
}

/**
 * Kernel symbols, each looked up once in `cache` (one round trip for all the new ones); undefined
 * for one the guest's kallsyms does not give. Symbols are in window 0 (the kernel image and
 * modules), which every address space numbers alike, so the cache outlives a space.
 */
async function lookUp(
  client: AgentClient,
  cache: Map<string, KAddr | undefined>,
  names: readonly string[],
): Promise<Map<string, KAddr | undefined>> {
  const missing = [...new Set(names)].filter((name) => !cache.has(name));
  if (missing.length) {
    if (cache.size + missing.length > MAX_SYMBOLS) cache.clear();
    const found = await client.symbols(missing);
    for (const name of missing) {
      cache.set(name, AddressSpace.FOUR_LEVEL.toKAddr(found.get(name) ?? 0n));
    }
  }
  return new Map(names.map((name) => [name, cache.get(name)]));
}

/**
 * The guest's address space (`linux/address_space.ts`); what it says that cannot be used is the
 * agent misbehaving (limit "addressSpace").
 */
async function addressSpaceOf(
  client: AgentClient,
  symbols: Map<string, KAddr | undefined>,
): Promise<AddressSpace> {
  try {
    return await learnAddressSpace({
      features: client.info.features,
      symbols: (names) => lookUp(client, symbols, names),
      read: (addr, len) => client.read(addr, len),
    });
  } catch (error) {
    if (!(error instanceof AddressSpaceError)) throw error;
    // The agent's failures (a closed connection, a broken protocol) are its own errors.
    const cause = error.cause;
    if (cause instanceof AgentError && cause.code === 0) throw cause;
    throw new AgentMisbehaviorError("addressSpace", error.message, {}, { cause: error });
  }
}

function emptyStats(mode: Mode): SnapshotStats {
  return { mode, roundTrips: 0, bytes: 0, ms: 0, truncated: false, misses: 0, lookups: 0 };
}

const COPY_MODES: Record<Exclude<Mode, "on-demand">, CopyMode> = {
  prefetch: "whole",
  selective: "selective",
};
