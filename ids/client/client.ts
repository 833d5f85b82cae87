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
 * @module
 */

import {
  type AgentInfo,
  CARRIED_RUN,
  type Channel,
  connectChannel,
  dataRecords,
  encodeFrame,
  type EndStats,
  forEachRecord,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameType,
  frameTypeName,
  type HoldAnswer,
  HoldState,
  type IdsCredentials,
  kernelHalfOf,
  LIMITS,
  type LoadAnswer,
  parseFrame,
  type PrefetchTarget,
  PROTOCOL_VERSION,
} from "../../protocol/mod.ts";

/** The agent answered a request with ERROR, or broke the protocol. */
export class AgentError extends Error {
  /** The ERROR frame's code, or 0 for a protocol violation seen by the IDS. */
  readonly code: number;
  constructor(message: string, code: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentError";
    this.code = code;
  }
}

/**
 * The agent broke the protocol or a limit: `limit` names what it broke, `value` what it sent and
 * `allowed` the bound, where there is one. The connection is closed when this is thrown.
 */
export class AgentMisbehaviorError extends AgentError {
  readonly limit: string;
  readonly value?: number | string;
  readonly allowed?: number | string;
  constructor(
    limit: string,
    message: string,
    details: { value?: number | string; allowed?: number | string } = {},
    options?: ErrorOptions,
  ) {
    super(message, 0, options);
    this.name = "AgentMisbehaviorError";
    this.limit = limit;
    this.value = details.value;
    this.allowed = details.allowed;
  }

  /** What the error says, as alert evidence. */
  get evidence(): Record<string, unknown> {
    return {
      limit: this.limit,
      ...(this.value === undefined ? {} : { value: this.value }),
      ...(this.allowed === undefined ? {} : { allowed: this.allowed }),
      message: this.message,
    };
  }
}

/**
 * The agent refused to load an object: its reason (the message), and the end of libbpf's and the
 * verifier's log when the kernel refused it.
 */
export class AgentLoadError extends AgentError {
  readonly log: string;
  constructor(message: string, code: number, log: string, options?: ErrorOptions) {
    super(message, code, options);
    this.name = "AgentLoadError";
    this.log = log;
  }
}

/** The agent closed the connection (as opposed to breaking it, or the IDS closing it). */
export class AgentClosedError extends AgentError {
  constructor() {
    super("Agent closed the connection", 0);
    this.name = "AgentClosedError";
  }
}

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

/** Limits of a {@linkcode AgentClient.prefetch}, as asked of the agent. */
export interface PrefetchRequestLimits {
  maxObjects: number;
  maxBytes: number;
}

/**
 * A PREFETCH that asks for a delta: the generation of the answer the IDS holds (0: none), and
 * what to do with each carried run of the answer (records of that base, unchanged), which returns
 * their bytes or throws when the run does not fit the base.
 */
export interface PrefetchDelta {
  base: number;
  onCarried(first: number, count: number): number;
}

/**
 * Counts what some requests cost, e.g. one snapshot's, however many other requests run on the
 * same connection meanwhile.
 */
export interface Meter {
  roundTrips: number;
  bytes: number;
}

interface Pending {
  onFrame(frame: Frame): void;
  fail(error: Error): void;
  meter?: Meter;
}

function misbehaving(limit: string, message: string, value?: number, allowed?: number) {
  return new AgentMisbehaviorError(limit, message, { value, allowed });
}

/** A connection to one agent. Close it when done. */
export class AgentClient implements Disposable {
  #channel: Channel;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #counters: ClientCounters = { roundTrips: 0, bytes: 0 };
  #closed: Error | undefined;
  #requestTimeoutMs: number;
  #idleTimeoutMs: number;
  #info: AgentInfo | undefined;
  /** The high 32 bits of the first address of the guest's kernel half, as its paging mode puts it. */
  #halfHigh = 0;
  #loaded: LoadAnswer | undefined;
  #ended = Promise.withResolvers<Error>();

  private constructor(channel: Channel, requestTimeoutMs: number, idleTimeoutMs: number) {
    this.#channel = channel;
    this.#requestTimeoutMs = requestTimeoutMs;
    this.#idleTimeoutMs = idleTimeoutMs;
    this.#pump();
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
      channel,
      options.requestTimeoutMs ?? 30_000,
      options.idleTimeoutMs ?? 10_000,
    );
    try {
      const hello = await client.#request(
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
      await this.#stream({ type: FrameType.LOAD, id: 0, object }, meter, (frame) => {
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
      const text = new TextDecoder().decode(concat(log));
      throw new AgentLoadError(error.message, error.code, text, { cause: error });
    }
    if (!answer) throw misbehaving("load", "Agent ended LOAD without a LOADED frame");
    this.#loaded = answer;
    return answer;
  }

  /** Has the agent drop every object this connection loaded; returns how many it dropped. */
  async unload(meter?: Meter): Promise<number> {
    const end = await this.#stream({ type: FrameType.UNLOAD, id: 0 }, meter, () => false);
    this.#loaded = undefined;
    return end.objects;
  }

  /** Resolves with the reason once the connection is closed, by either side. */
  get closed(): Promise<Error> {
    return this.#ended.promise;
  }

  /** A copy of the cumulative counters. */
  get counters(): ClientCounters {
    return { ...this.#counters };
  }

  /**
   * The guest kernel's BTF, as the agent sent it, checked against the hash from HELLO.
   * @throws {AgentError} when the bytes do not match the hash or the chunks do not add up.
   */
  async btf(onProgress?: (received: number, total: number) => void): Promise<Uint8Array> {
    const size = this.info.btfSize;
    if (size === 0) throw misbehaving("btfSize", "Cannot use BTF: HELLO announces 0 bytes", 0);
    // HELLO's size was checked against LIMITS.maxBtf when it was decoded.
    const out = new Uint8Array(size);
    let received = 0;
    await this.#stream({ type: FrameType.GET_BTF, id: 0 }, undefined, (frame) => {
      if (frame.type !== FrameType.BTF) return false;
      if (frame.total !== size) {
        throw misbehaving(
          "btfSize",
          `Cannot use BTF: a chunk says ${frame.total} bytes, HELLO said ${size}`,
          frame.total,
          size,
        );
      }
      if (frame.offset !== received || frame.bytes.length === 0) {
        throw misbehaving(
          "btfChunk",
          `Cannot use BTF: a chunk of ${frame.bytes.length} bytes at ${frame.offset}, expected the bytes at ${received}`,
          frame.offset,
          received,
        );
      }
      out.set(frame.bytes, frame.offset);
      received += frame.bytes.length;
      onProgress?.(received, frame.total);
      return true;
    });
    if (received !== size) {
      throw misbehaving(
        "btfSize",
        `Cannot use BTF: received ${received} of ${size} bytes`,
        received,
        size,
      );
    }
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", out));
    if (!hash.every((b, i) => b === this.info.btfHash[i])) {
      throw misbehaving("btfHash", "Cannot use BTF: its SHA-256 differs from the hash in HELLO");
    }
    return out;
  }

  /**
   * Reads guest kernel memory: one round trip.
   * @throws {AgentError} when the agent cannot read it (code FAULT) or answers inconsistently.
   */
  async read(addr: bigint, len: number, meter?: Meter): Promise<Uint8Array> {
    if (len <= 0 || len > LIMITS.maxRead) {
      throw new RangeError(`Cannot read ${len} bytes: the length must be 1..${LIMITS.maxRead}`);
    }
    const out = new Uint8Array(len);
    let filled = 0;
    await this.#stream({ type: FrameType.READ, id: 0, addr, len }, meter, (frame) => {
      if (frame.type !== FrameType.DATA) return false;
      if (frame.payload.length === 0) throw emptyData(frame.id);
      for (const record of dataRecords(frame.payload, frame.id)) {
        const at = record.addr - addr;
        if (at < 0n || at + BigInt(record.bytes.length) > BigInt(len)) {
          throw new AgentMisbehaviorError(
            "readRange",
            `Agent answered READ of ${len} bytes at 0x${
              addr.toString(16)
            } with ${record.bytes.length} bytes at 0x${
              record.addr.toString(16)
            }, outside what was asked`,
            { value: `0x${record.addr.toString(16)}`, allowed: `0x${addr.toString(16)}+${len}` },
          );
        }
        if (filled + record.bytes.length > len) {
          throw misbehaving(
            "readBytes",
            `Agent answered READ of ${len} bytes with more than ${len}`,
            filled + record.bytes.length,
            len,
          );
        }
        out.set(record.bytes, Number(at));
        filled += record.bytes.length;
      }
      return true;
    });
    if (filled !== len) {
      throw misbehaving(
        "readBytes",
        `Agent answered READ of ${len} bytes with ${filled}`,
        filled,
        len,
      );
    }
    return out;
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
    onRecord: (
      high: number,
      low: number,
      payload: Uint8Array,
      start: number,
      len: number,
    ) => unknown,
    plan: Uint8Array = new Uint8Array(),
    meter?: Meter,
    delta?: PrefetchDelta,
  ): Promise<EndStats> {
    const { maxObjects, maxBytes } = limits;
    if (
      !(Number.isSafeInteger(maxObjects) && maxObjects >= 0 && maxObjects <= LIMITS.maxRecords) ||
      !(Number.isSafeInteger(maxBytes) && maxBytes >= 0 && maxBytes <= LIMITS.maxPrefetchBytes)
    ) {
      throw new RangeError(
        `Cannot prefetch ${maxObjects} objects / ${maxBytes} bytes: limits are ${LIMITS.maxRecords} / ${LIMITS.maxPrefetchBytes}`,
      );
    }
    let records = 0;
    let bytes = 0;
    const countRecords = (n: number) => {
      records += n;
      if (records > maxObjects) {
        throw misbehaving(
          "maxObjects",
          `Agent sent more records than the ${maxObjects} asked for`,
          records,
          maxObjects,
        );
      }
    };
    const countBytes = (n: number) => {
      bytes += n;
      if (bytes > maxBytes) {
        throw misbehaving(
          "maxBytes",
          `Agent sent more bytes than the ${maxBytes} asked for`,
          bytes,
          maxBytes,
        );
      }
    };
    const halfHigh = this.#halfHigh;
    const check = (high: number, low: number, payload: Uint8Array, start: number, len: number) => {
      if (high === 0 && low === 0) return carried(payload, start, len);
      countRecords(1);
      countBytes(len);
      if (high < halfHigh) {
        throw new AgentMisbehaviorError(
          "kernelHalf",
          `Agent sent a record at 0x${hex32(high)}${hex32(low)}, outside the kernel half`,
          { value: `0x${hex32(high)}${hex32(low)}`, allowed: `0x${hex32(halfHigh)}00000000..` },
        );
      }
      if (onRecord(high, low, payload, start, len) === false) {
        throw misbehaving(
          "cache",
          `Cannot keep the prefetch: the memory cache refused a record after ${bytes} bytes`,
          bytes,
        );
      }
    };
    // A carried run: records of the base the IDS holds, unchanged (protocol/data_records.ts).
    const carried = (payload: Uint8Array, start: number, len: number) => {
      if (!delta) {
        throw misbehaving(
          "carried",
          "Agent sent a carried run to a PREFETCH that asked for no delta",
        );
      }
      if (len !== CARRIED_RUN) {
        throw misbehaving(
          "carried",
          `Agent sent a carried run of ${len} bytes, not ${CARRIED_RUN}`,
          len,
          CARRIED_RUN,
        );
      }
      const view = new DataView(payload.buffer, payload.byteOffset + start, CARRIED_RUN);
      const first = view.getUint32(0, true);
      const count = view.getUint32(4, true);
      if (delta.base === 0) {
        throw misbehaving("carried", "Agent sent a carried run to a PREFETCH that held no base");
      }
      countRecords(count);
      let carriedBytes: number;
      try {
        carriedBytes = delta.onCarried(first, count);
      } catch (error) {
        throw misbehaving("carried", `Agent sent a bad carried run: ${(error as Error).message}`);
      }
      countBytes(carriedBytes);
    };
    return this.#stream(
      {
        type: FrameType.PREFETCH,
        id: 0,
        target,
        maxObjects,
        maxBytes,
        plan,
        ...(delta ? { delta: { base: delta.base } } : {}),
      },
      meter,
      (frame) => {
        if (frame.type !== FrameType.DATA) return false;
        if (frame.payload.length === 0) throw emptyData(frame.id);
        forEachRecord(frame.payload, check, frame.id);
        return true;
      },
    );
  }

  /**
   * The addresses of kernel symbols, from the guest's /proc/kallsyms: one round trip. A name the
   * guest does not export maps to 0.
   */
  async symbols(names: string[]): Promise<Map<string, bigint>> {
    const out = new Map<string, bigint>();
    let answers = 0;
    await this.#stream({ type: FrameType.SYMBOLS, id: 0, names }, undefined, (frame) => {
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
    await this.#stream({ type: FrameType.SYMBOLS, id: 0, addresses }, undefined, (frame) => {
      if (frame.type !== FrameType.SYMBOLS || !("at" in frame)) return false;
      if (++answers > 1) throw secondAnswer(frame.id);
      for (const [addr, name] of frame.at) if (addresses.includes(addr)) out.set(addr, name);
      return true;
    });
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
    await this.#stream(request, meter, (frame) => {
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

  /** Sends a request and feeds its frames to `onData` until END; returns END's stats. */
  async #stream(
    request: Frame,
    meter: Meter | undefined,
    onData: (frame: Frame) => boolean,
  ): Promise<EndStats> {
    const end = await this.#request(request, meter, (frame) => {
      if (frame.type === FrameType.END) return true;
      if (!onData(frame)) {
        throw new AgentMisbehaviorError(
          "frameType",
          `Agent answered ${frameTypeName(request.type)} with an unexpected ${
            frameTypeName(frame.type)
          } frame`,
          { value: frameTypeName(frame.type) },
        );
      }
      return false;
    });
    if (end.type !== FrameType.END) {
      throw misbehaving("frameType", "Agent ended a request without END");
    }
    return end.stats;
  }

  /**
   * Sends `request` with a fresh id; every answer frame goes to `isLast`, and the request resolves
   * with the first for which it returns true. An ERROR rejects with {@linkcode AgentError}.
   */
  #request(
    request: Frame,
    meter: Meter | undefined,
    isLast: (frame: Frame) => boolean,
  ): Promise<Frame> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    if (this.#nextId > 0xffff_ffff) this.#nextId = 1;
    const what = `request ${id} (${frameTypeName(request.type)})`;
    const { promise, resolve, reject } = Promise.withResolvers<Frame>();
    const cutOff = (error: AgentMisbehaviorError) => {
      done();
      reject(error);
      this.close(error);
    };
    const timer = setTimeout(() => {
      cutOff(misbehaving(
        "requestTimeout",
        `Agent did not finish ${what} within ${this.#requestTimeoutMs} ms`,
        this.#requestTimeoutMs,
        this.#requestTimeoutMs,
      ));
    }, this.#requestTimeoutMs);
    const idle = () =>
      setTimeout(() => {
        cutOff(misbehaving(
          "idleTimeout",
          `Agent sent no frame of ${what} for ${this.#idleTimeoutMs} ms`,
          this.#idleTimeoutMs,
          this.#idleTimeoutMs,
        ));
      }, this.#idleTimeoutMs);
    let idleTimer = idle();
    const done = () => {
      clearTimeout(timer);
      clearTimeout(idleTimer);
      this.#pending.delete(id);
    };
    this.#pending.set(id, {
      onFrame: (frame) => {
        clearTimeout(idleTimer);
        idleTimer = idle();
        try {
          if (frame.type === FrameType.ERROR) {
            done();
            reject(new AgentError(`Agent refused ${what}: ${frame.message}`, frame.code));
          } else if (isLast(frame)) {
            done();
            resolve(frame);
          }
        } catch (error) {
          if (error instanceof AgentMisbehaviorError) cutOff(error);
          else if (error instanceof FrameError) cutOff(fromFrameError(error));
          else {
            done();
            reject(error);
          }
        }
      },
      fail: (error) => {
        done();
        reject(error);
      },
      meter,
    });
    this.#counters.roundTrips++;
    if (meter) meter.roundTrips++;
    this.#channel.write(encodeFrame({ ...request, id })).catch((error) => {
      this.close(new AgentError(`Cannot send to the agent: ${error.message}`, 0, { cause: error }));
    });
    return promise;
  }

  async #pump(): Promise<void> {
    const decoder = new FrameDecoder({ maxFrame: LIMITS.maxAnswerFrame });
    try {
      for await (const chunk of this.#channel.chunks()) {
        this.#counters.bytes += chunk.length;
        decoder.push(chunk);
        for (let raw = decoder.next(); raw; raw = decoder.next()) {
          const frame = parseFrame(raw);
          const pending = this.#pending.get(frame.id);
          // Request ids start at 1: an ERROR for 0 is the agent's word on the connection (its
          // connection cap, a frame it could not accept), said before it closes.
          if (!pending && frame.type === FrameType.ERROR && frame.id === 0) {
            throw new AgentError(`The agent ended the connection: ${frame.message}`, frame.code);
          }
          if (!pending) {
            throw new AgentMisbehaviorError(
              "requestId",
              `Agent sent a ${
                frameTypeName(frame.type)
              } frame for request ${frame.id}, which is not pending`,
              { value: frame.id },
            );
          }
          if (pending.meter) pending.meter.bytes += raw.payload.length + 9;
          pending.onFrame(frame);
        }
      }
      this.close(new AgentClosedError());
    } catch (error) {
      const reason = error instanceof AgentMisbehaviorError || error instanceof AgentError
        ? error
        : error instanceof FrameError
        ? fromFrameError(error)
        : new AgentError(`Connection to the agent failed: ${(error as Error).message}`, 0, {
          cause: error,
        });
      this.close(reason);
    }
  }

  /** Closes the connection; pending requests fail with `reason`. Idempotent. */
  close(reason: Error = new AgentError("Client closed", 0)): void {
    if (this.#closed) return;
    this.#closed = reason;
    this.#ended.resolve(reason);
    for (const pending of [...this.#pending.values()]) pending.fail(reason);
    this.#pending.clear();
    this.#channel.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A frame the agent sent that does not decode, or is too large. */
function fromFrameError(error: FrameError): AgentMisbehaviorError {
  return new AgentMisbehaviorError("frame", `Agent broke the protocol: ${error.message}`, {}, {
    cause: error,
  });
}

function emptyData(id: number): AgentMisbehaviorError {
  return misbehaving("emptyData", `Agent sent a DATA frame without records for request ${id}`);
}

function secondAnswer(id: number): AgentMisbehaviorError {
  return misbehaving("answers", `Agent answered SYMBOLS request ${id} more than once`);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}
