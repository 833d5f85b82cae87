/**
 * The walker, shared by every connection: walker runs, loads and unloads happen one at a time
 * across connections, in the order they were asked for, and a peer that stops reading cannot
 * keep the walker from the others (its writes give way once another peer waits). Every frame
 * the agent writes goes through {@linkcode WalkerQueue.send}.
 *
 * @module
 */

import type { Channel } from "../protocol/mod.ts";

/**
 * A peer that takes none of a frame for this long while another peer's request waits for the
 * walker loses its connection.
 */
const YIELD_AFTER_MS = 1_000;

/** The peer went away while we were writing to it. */
export class ChannelGone extends Error {}

/** The queue of work for the walker, and the writes that must not hold it up. */
export class WalkerQueue {
  #busy: Promise<unknown> = Promise.resolve();
  /** Requests queued for the walker behind the one it runs, by channel. */
  #waiting = new Map<Channel, number>();
  /** Channels whose connection is gone: their queued walker runs are skipped. */
  #gone = new WeakSet<Channel>();
  #log: (line: string) => void;

  constructor(log: (line: string) => void) {
    this.#log = log;
  }

  /** Follows `channel`: once its connection is gone, work queued for it is skipped. */
  track(channel: Channel): void {
    channel.closed.then(() => this.#gone.add(channel));
  }

  /** Settles once the work queued so far has run. */
  get idle(): Promise<unknown> {
    return this.#busy;
  }

  /**
   * Runs `work` once every walker request queued before it is done: walker runs, loads and
   * unloads happen one at a time, across connections. With `live` (the default), work for a peer
   * that is gone by then is not run.
   */
  serial<T>(channel: Channel, work: () => T | Promise<T>, live = true): Promise<T> {
    this.#waiting.set(channel, (this.#waiting.get(channel) ?? 0) + 1);
    const task = this.#busy.then(() => {
      const left = this.#waiting.get(channel)! - 1;
      if (left) this.#waiting.set(channel, left);
      else this.#waiting.delete(channel);
      // A peer dropped while it waited for the walker gets nothing run on its behalf.
      if (live && this.#gone.has(channel)) throw new ChannelGone();
      return work();
    });
    this.#busy = task.catch(() => {});
    return task;
  }

  /**
   * Writes `bytes` to `channel`. A peer that takes none of them for {@linkcode YIELD_AFTER_MS}
   * while another peer's request waits for the walker is dropped then, not at its send deadline: a
   * connection that now leads nowhere (its guest was migrated, its network broke) must not keep
   * the walker from the IDS that connected again.
   */
  async send(channel: Channel, bytes: Uint8Array): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const watch = () => {
      timer = setTimeout(() => {
        const others = [...this.#waiting.keys()].some((c) => c !== channel && !this.#gone.has(c));
        if (!others) return watch();
        const reason = `it took no frame for ${YIELD_AFTER_MS} ms while another peer waited`;
        this.#log(`dropped ${channel.remote}: ${reason}`);
        channel.abort(reason);
      }, YIELD_AFTER_MS);
    };
    watch();
    try {
      await channel.write(bytes);
    } catch {
      throw new ChannelGone();
    } finally {
      clearTimeout(timer);
    }
  }
}
