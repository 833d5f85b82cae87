/**
 * The IDS side of the protocol: one authenticated connection to one agent.
 *
 * Requests may be issued concurrently; each resolves when its END (or ERROR) arrives. The client
 * counts round trips (requests) and the frame bytes it receives, for the stats of every view.
 *
 * The agent runs in the guest, which may be compromised: every answer is checked before it is
 * used or anything is allocated for it. A frame larger than {@linkcode LIMITS.maxAnswerFrame},
 * a BTF larger than {@linkcode LIMITS.maxBtf}, more records or bytes than a request asked for,
 * records outside the memory asked for, a frame of another type or for a request never made,
 * a request without any frame for `idleTimeoutMs` or unfinished after `requestTimeoutMs`: each
 * fails the request with an {@linkcode AgentMisbehaviorError} that names the limit, and closes
 * the connection (a stream that broke the protocol can no longer be trusted).
 *
 * Here: the handshake and the requests, each as the caller asks it. The requests in flight and
 * their deadlines are `_connection.ts`'s; the checks of the answers that carry guest memory
 * (`_memory.ts`) and the BTF (`_btf_download.ts`) stand beside it, the errors in `errors.ts`.
 *
 * @module
 */

import {
  type AgentInfo,
  concatBytes,
  connectChannel,
  type EndStats,
  type Frame,
  FrameType,
  frameTypeName,
  type HoldAnswer,
  HoldState,
  type IdsCredentials,
  kernelHalfOf,
  LIMITS,
  type LoadAnswer,
  type PrefetchTarget,
  PROTOCOL_VERSION,
} from "../../protocol/mod.ts";
import { downloadBtf } from "./_btf_download.ts";
import { Connection } from "./_connection.ts";
import {
  type OnRecord,
  type PrefetchDelta,
  prefetchMemory,
  type PrefetchRequestLimits,
  readMemory,
} from "./_memory.ts";
import { AgentError, AgentLoadError, AgentMisbehaviorError, misbehaving } from "./errors.ts";

/** Counters of one client, cumulative since connect. */
export interface ClientCounters {
  /** Requests sent (each costs one round trip). */
  roundTrips: number;
  /** Frame bytes received from the agent. */
  bytes: number;
}

/** Options of {@linkcode AgentClient.connect}. */
export interface ConnectOptions {
  hostname: string;
  port: number;
  credentials: IdsCredentials;
  /** Connect and handshake timeout. @default 10000 */
  timeoutMs?: number;
  /** Per-request timeout: an agent that stops answering fails the request. @default 30000 */
  requestTimeoutMs?: number;
  /**
   * Inactivity deadline: a request without a whole frame of its answer for this long fails and
   * the connection is closed, whatever `requestTimeoutMs` is. @default 10000
   */
  idleTimeoutMs?: number;
}

/**
 * Counts what some requests cost, e.g. one snapshot's, however many other requests run on the
 * same connection meanwhile.
 */
export interface Meter {
  roundTrips: number;
  bytes: number;
}

/** A connection to one agent. Close it when done. */
export class AgentClient implements Disposable {
  #connection: Connection;
  #info: AgentInfo | undefined;
  /** The high 32 bits of the first address of the guest's kernel half, as its paging mode puts it. */
  #halfHigh = 0;
  #loaded: LoadAnswer | undefined;

  private constructor(connection: Connection) {
    this.#connection = connection;
  }

  /**
   * Connects, authenticates and exchanges HELLO.
   * @throws {ChannelError} when the agent cannot be reached or authenticated.
   * @throws {AgentError} when the agent refuses the protocol version.
   */
  static async connect(options: ConnectOptions): Promise<AgentClient> {
    const channel = await connectChannel({
      hostname: options.hostname,
      port: options.port,
      credentials: options.credentials,
      timeoutMs: options.timeoutMs ?? 10_000,
    });
    const client = new AgentClient(
      new Connection(channel, options.requestTimeoutMs ?? 30_000, options.idleTimeoutMs ?? 10_000),
    );
    try {
      const hello = await client.#connection.request(
        { type: FrameType.HELLO, id: 0, version: PROTOCOL_VERSION },
        undefined,
        (frame) => {
          if (frame.type === FrameType.HELLO) return true;
          throw misbehaving(
            "frameType",
            `Agent answered HELLO with a ${frameTypeName(frame.type)} frame`,
          );
        },
      );
      if (hello.type !== FrameType.HELLO || !hello.agent) {
        throw misbehaving("hello", "Cannot use the agent: its HELLO carries no agent information");
      }
      if (hello.version !== PROTOCOL_VERSION) {
        throw new AgentError(
          `Cannot talk to the agent: it speaks protocol version ${hello.version}, not ${PROTOCOL_VERSION}`,
          0,
        );
      }
      client.#info = hello.agent;
      client.#halfHigh = Number(kernelHalfOf(hello.agent.features) >> 32n);
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  /** What the agent reported in its HELLO. */
  get info(): AgentInfo {
    return this.#info!;
  }

  /** What the agent answered to this connection's last {@linkcode load}, if any. */
  get loaded(): LoadAnswer | undefined {
    return this.#loaded;
  }

  /**
   * The agent's own task, where walks begin: as the object this connection loaded reported it,
   * else as HELLO did (0 when the agent has no default object).
   */
  get anchor(): bigint {
    return this.#loaded?.anchor ?? this.info.anchor;
  }

  /**
   * Has the agent check, load and attach `object` (ELF bytes of a walker, such as
   * `bpf/out/walk.bpf.o`) as this connection's walker: one round trip. The answer names every
   * program the agent loaded, with its type and the kernel's tag.
   * @throws {AgentLoadError} with the agent's reason (and the verifier's log) when it refuses.
   */
  async load(object: Uint8Array, meter?: Meter): Promise<LoadAnswer> {
    if (object.length < 1 || object.length > LIMITS.maxObject) {
      throw new RangeError(
        `Cannot load an object of ${object.length} bytes: the limit is 1..${LIMITS.maxObject}`,
      );
    }
    let answer: LoadAnswer | undefined;
    const log: Uint8Array[] = [];
    let logBytes = 0;
    try {
      await this.#connection.stream({ type: FrameType.LOAD, id: 0, object }, meter, (frame) => {
        if (frame.type === FrameType.LOG) {
          logBytes += frame.text.length;
          if (logBytes > LIMITS.maxLoadLog) {
            throw misbehaving(
              "loadLog",
              "Agent sent a longer load log than the protocol allows",
              logBytes,
              LIMITS.maxLoadLog,
            );
          }
          log.push(frame.text);
          return true;
        }
        if (frame.type !== FrameType.LOADED) return false;
        if (answer) throw misbehaving("answers", "Agent answered LOAD more than once");
        answer = frame.loaded;
        return true;
      });
    } catch (error) {
      if (!(error instanceof AgentError) || error instanceof AgentMisbehaviorError) throw error;
      const text = new TextDecoder().decode(concatBytes(log));
      throw new AgentLoadError(error.message, error.code, text, { cause: error });
    }
    if (!answer) throw misbehaving("load", "Agent ended LOAD without a LOADED frame");
    this.#loaded = answer;
    return answer;
  }

  /** Has the agent drop every object this connection loaded; returns how many it dropped. */
  async unload(meter?: Meter): Promise<number> {
    const end = await this.#connection.stream(
      { type: FrameType.UNLOAD, id: 0 },
      meter,
      () => false,
    );
    this.#loaded = undefined;
    return end.objects;
  }

  /** Resolves with the reason once the connection is closed, by either side. */
  get closed(): Promise<Error> {
    return this.#connection.closed;
  }

  /** A copy of the cumulative counters. */
  get counters(): ClientCounters {
    return this.#connection.counters;
  }

  /**
   * The guest kernel's BTF, as the agent sent it, checked against the hash from HELLO.
   * @throws {AgentError} when the bytes do not match the hash or the chunks do not add up.
   */
  btf(onProgress?: (received: number, total: number) => void): Promise<Uint8Array> {
    return downloadBtf(this.#connection, this.info, onProgress);
  }

  /**
   * Reads guest kernel memory: one round trip.
   * @throws {AgentError} when the agent cannot read it (code FAULT) or answers inconsistently.
   */
  read(addr: bigint, len: number, meter?: Meter): Promise<Uint8Array> {
    return readMemory(this.#connection, addr, len, meter);
  }

  /**
   * Asks the agent to walk `target` in the guest (for PLAN, the encoded `plan`) and stream the
   * memory: one round trip. `onRecord` gets each record's address, in two 32-bit halves, and
   * where its `len` bytes are in a received frame's payload (from `start`; the frame may be
   * kept, never changed); it returns false when it cannot keep
   * the record (a full cache), which cuts the answer off (any other value keeps it).
   *
   * Records are counted against `limits` (and {@linkcode LIMITS}) as they arrive; a record past
   * them, or outside the kernel half (of the paging mode HELLO reports), fails the request with
   * {@linkcode AgentMisbehaviorError}.
   * @throws {RangeError} for limits above the protocol's
   */
  prefetch(
    target: PrefetchTarget,
    limits: PrefetchRequestLimits,
    onRecord: OnRecord,
    plan: Uint8Array = new Uint8Array(),
    meter?: Meter,
    delta?: PrefetchDelta,
  ): Promise<EndStats> {
    return prefetchMemory(
      this.#connection,
      this.#halfHigh,
      target,
      limits,
      onRecord,
      plan,
      meter,
      delta,
    );
  }

  /**
   * The addresses of kernel symbols, from the guest's /proc/kallsyms: one round trip. A name the
   * guest does not export maps to 0.
   */
  async symbols(names: string[]): Promise<Map<string, bigint>> {
    const out = new Map<string, bigint>();
    let answers = 0;
    await this.#connection.stream({ type: FrameType.SYMBOLS, id: 0, names }, undefined, (frame) => {
      if (frame.type !== FrameType.SYMBOLS || !("symbols" in frame)) return false;
      if (++answers > 1) throw secondAnswer(frame.id);
      for (const [name, addr] of frame.symbols) if (names.includes(name)) out.set(name, addr);
      return true;
    });
    return out;
  }

  /**
   * The names of the kernel symbols that start at `addresses` (at most 64), from the guest's
   * /proc/kallsyms: one round trip. Names are what the guest says: for reports, never for
   * decisions. An address without a symbol is absent from the map.
   */
  async symbolNames(addresses: bigint[]): Promise<Map<bigint, string>> {
    const out = new Map<bigint, string>();
    let answers = 0;
    await this.#connection.stream(
      { type: FrameType.SYMBOLS, id: 0, addresses },
      undefined,
      (frame) => {
        if (frame.type !== FrameType.SYMBOLS || !("at" in frame)) return false;
        if (++answers > 1) throw secondAnswer(frame.id);
        for (const [addr, name] of frame.at) if (addresses.includes(addr)) out.set(addr, name);
        return true;
      },
    );
    return out;
  }

  /**
   * Asks the agent to hold the workload it may hold (its `--hold-cgroup`) still for at most
   * `maxMs`: one round trip, resolved once the workload is frozen. The answer's `capMs` is what
   * the agent granted (never more than asked).
   * @throws {AgentError} when the agent cannot hold (none allowed, another hold, a failure).
   */
  hold(maxMs: number, meter?: Meter): Promise<HoldAnswer> {
    if (!Number.isSafeInteger(maxMs) || maxMs < 1 || maxMs > LIMITS.maxHoldMs) {
      throw new RangeError(`Cannot hold for ${maxMs} ms: expected 1..${LIMITS.maxHoldMs}`);
    }
    return this.#holdRequest({ type: FrameType.HOLD, id: 0, maxMs }, meter, (hold) => {
      if (hold.state !== HoldState.HOLDING) return "a state other than HOLDING";
      if (hold.capMs < 1 || hold.capMs > maxMs) return `a cap of ${hold.capMs} ms`;
      return undefined;
    });
  }

  /**
   * Ends this connection's hold: one round trip. The answer says how long the workload was held
   * (`heldNs`, as the agent measured it) and whether its cap had ended it first (EXPIRED).
   */
  release(meter?: Meter): Promise<HoldAnswer> {
    return this.#holdRequest(
      { type: FrameType.RELEASE, id: 0 },
      meter,
      (hold) => hold.state === HoldState.HOLDING ? "a state of HOLDING" : undefined,
    );
  }

  async #holdRequest(
    request: Frame,
    meter: Meter | undefined,
    problem: (hold: HoldAnswer) => string | undefined,
  ): Promise<HoldAnswer> {
    let answer: HoldAnswer | undefined;
    await this.#connection.stream(request, meter, (frame) => {
      if (frame.type !== FrameType.HELD) return false;
      if (answer) {
        throw misbehaving(
          "answers",
          `Agent answered ${frameTypeName(request.type)} more than once`,
        );
      }
      const wrong = problem(frame.hold);
      if (wrong) {
        throw misbehaving(
          "hold",
          `Agent answered ${frameTypeName(request.type)} with ${wrong}`,
          frame.hold.capMs,
        );
      }
      answer = frame.hold;
      return true;
    });
    if (!answer) {
      throw misbehaving("hold", `Agent ended ${frameTypeName(request.type)} without a HELD frame`);
    }
    return answer;
  }

  /** Closes the connection; pending requests fail with `reason`. Idempotent. */
  close(reason: Error = new AgentError("Client closed", 0)): void {
    this.#connection.close(reason);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function secondAnswer(id: number): AgentMisbehaviorError {
  return misbehaving("answers", `Agent answered SYMBOLS request ${id} more than once`);
}
