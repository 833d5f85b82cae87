/**
 * Requests over one channel to an agent, any number at a time: each gets a fresh id and two
 * deadlines (the whole request, and the wait for each frame of its answer), and the pump hands
 * every frame that arrives to the request it answers. A frame that does not decode, or answers
 * no pending request, closes the connection: a stream that broke the protocol is not read on.
 *
 * @module
 */

import {
  type Channel,
  encodeFrame,
  type EndStats,
  type Frame,
  FrameDecoder,
  FrameError,
  FrameType,
  frameTypeName,
  LIMITS,
  parseFrame,
} from "../../protocol/mod.ts";
import type { ClientCounters, Meter } from "./client.ts";
import {
  AgentClosedError,
  AgentError,
  AgentMisbehaviorError,
  fromFrameError,
  misbehaving,
} from "./errors.ts";

interface Pending {
  onFrame(frame: Frame): void;
  fail(error: Error): void;
  meter?: Meter;
}

/** One connection's requests in flight; {@linkcode AgentClient} asks its requests through it. */
export class Connection {
  #channel: Channel;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #counters: ClientCounters = { roundTrips: 0, bytes: 0 };
  #closed: Error | undefined;
  #requestTimeoutMs: number;
  #idleTimeoutMs: number;
  #ended = Promise.withResolvers<Error>();

  constructor(channel: Channel, requestTimeoutMs: number, idleTimeoutMs: number) {
    this.#channel = channel;
    this.#requestTimeoutMs = requestTimeoutMs;
    this.#idleTimeoutMs = idleTimeoutMs;
    this.#pump();
  }

  /** Resolves with the reason once the connection is closed, by either side. */
  get closed(): Promise<Error> {
    return this.#ended.promise;
  }

  /** A copy of the cumulative counters. */
  get counters(): ClientCounters {
    return { ...this.#counters };
  }

  /** Sends a request and feeds its frames to `onData` until END; returns END's stats. */
  async stream(
    request: Frame,
    meter: Meter | undefined,
    onData: (frame: Frame) => boolean,
  ): Promise<EndStats> {
    const end = await this.request(request, meter, (frame) => {
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
  request(
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
  close(reason: Error): void {
    if (this.#closed) return;
    this.#closed = reason;
    this.#ended.resolve(reason);
    for (const pending of [...this.#pending.values()]) pending.fail(reason);
    this.#pending.clear();
    this.#channel.close();
  }
}
