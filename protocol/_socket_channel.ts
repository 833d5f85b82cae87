/**
 * The established channel: a {@linkcode Channel} over an authenticated TLS socket, with a bounded
 * inbound buffer and, on the agent's side, a send deadline and an idle timeout.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import type tls from "node:tls";
import { type Channel, ChannelError } from "./channel.ts";

/** Sent by the agent once it has accepted the IDS's certificate; never seen by channel users. */
export const ACCEPTED = new TextEncoder().encode("ebpfmon channel accepted\n");
/** Received bytes buffered for a slow reader before the socket stops reading. */
const HIGH_WATER_BYTES = 8 * 1024 * 1024;
/** How long {@linkcode Channel.close} waits for queued bytes to leave before it drops them. */
const CLOSE_GRACE_MS = 5_000;
const WRITE_SLICE_BYTES = 64 * 1024;

/** How a channel stops and restarts the bytes coming in while its reader is behind. */
export interface Flow {
  hold(): void;
  release(): void;
}

/** The limits an authenticated agent-side channel enforces. */
export interface ChannelLimits {
  maxInboundBytes: number;
  sendTimeoutMs: number;
  idleTimeoutMs: number;
  onLimit: (remote: string, reason: string) => void;
}

/** A {@linkcode Channel} over an authenticated TLS socket. */
export class SocketChannel implements Channel {
  readonly remote: string;
  readonly closed: Promise<void>;
  #socket: tls.TLSSocket;
  #flow: Flow;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #ended = false;
  #failure: ChannelError | undefined;
  #wake: (() => void) | undefined;
  #reading = false;
  #closing = false;
  #lastWrite: Promise<void> = Promise.resolve();
  #highWater: number;
  #limits: ChannelLimits | undefined;
  #idle: ReturnType<typeof setTimeout> | undefined;

  /** `limits`, on the agent's side only, adds the send deadline and the idle timeout. */
  constructor(
    socket: tls.TLSSocket,
    remote: string,
    flow: Flow,
    first: Uint8Array = new Uint8Array(0),
    limits?: ChannelLimits,
  ) {
    this.remote = remote;
    this.#socket = socket;
    this.#flow = flow;
    this.#limits = limits;
    this.#highWater = limits?.maxInboundBytes ?? HIGH_WATER_BYTES;
    this.#touch();
    if (first.length > 0) this.#push(first);
    socket.on("data", (data: Buffer) => {
      this.#push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
    socket.on("end", () => this.#end());
    socket.on("error", (error: Error) => {
      this.#failure ??= new ChannelError(
        "closed",
        `Connection to "${remote}" failed: ${error.message}`,
        { cause: error },
      );
      this.#end();
    });
    this.closed = new Promise((resolve) => {
      socket.once("close", () => {
        this.#end();
        resolve();
      });
    });
  }

  async *chunks(): AsyncGenerator<Uint8Array> {
    if (this.#reading) {
      throw new TypeError(`Cannot read channel "${this.remote}": another reader is iterating it`);
    }
    this.#reading = true;
    try {
      while (true) {
        const chunk = this.#queue.shift();
        if (chunk !== undefined) {
          this.#queuedBytes -= chunk.length;
          if (this.#queuedBytes < this.#highWater / 2) this.#flow.release();
          yield chunk;
        } else if (this.#failure !== undefined && !this.#closing) {
          throw this.#failure;
        } else if (this.#ended) {
          return;
        } else {
          await new Promise<void>((resolve) => this.#wake = resolve);
        }
      }
    } finally {
      this.#reading = false;
    }
  }

  write(bytes: Uint8Array): Promise<void> {
    const written = this.#lastWrite.then(() => this.#send(bytes));
    this.#lastWrite = written.catch(() => {});
    return written;
  }

  /**
   * Writes slice by slice, waiting for the socket to drain: a deep send buffer is slow. With
   * limits, a peer that has not taken all of `bytes` within the send deadline is dropped.
   */
  async #send(bytes: Uint8Array): Promise<void> {
    const limits = this.#limits;
    const deadline = limits &&
      setTimeout(
        () =>
          this.#drop(
            `it did not read ${bytes.length} bytes within ${limits.sendTimeoutMs} ms (the send deadline)`,
          ),
        limits.sendTimeoutMs,
      );
    try {
      let offset = 0;
      do {
        if (this.#closing || !this.#socket.writable) {
          const why = this.#failure?.message ?? "the channel is closed";
          throw new ChannelError("closed", `Cannot write to "${this.remote}": ${why}`);
        }
        const slice = bytes.subarray(offset, offset + WRITE_SLICE_BYTES);
        offset += slice.length;
        if (!this.#socket.write(slice)) await this.#drained();
      } while (offset < bytes.length);
    } finally {
      clearTimeout(deadline);
    }
    this.#touch();
  }

  /** Drops the connection at once for a broken limit, failing pending and later writes. */
  #drop(reason: string): void {
    if (this.#closing) return;
    this.#limits?.onLimit(this.remote, reason);
    this.abort(reason);
  }

  abort(reason: string): void {
    this.#failure ??= new ChannelError("closed", `Dropped "${this.remote}": ${reason}`);
    this.close();
    this.#socket.destroy();
  }

  /** Restarts the idle timeout: bytes moved one way or the other. */
  #touch(): void {
    const limits = this.#limits;
    if (!limits || this.#closing) return;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      if (this.#closing) return;
      limits.onLimit(
        this.remote,
        `no byte either way for ${limits.idleTimeoutMs} ms (the idle timeout)`,
      );
      this.close();
    }, limits.idleTimeoutMs);
  }

  #drained(): Promise<void> {
    return new Promise((resolve) => {
      const settle = () => {
        this.#socket.off("drain", settle);
        this.#socket.off("close", settle);
        resolve();
      };
      this.#socket.on("drain", settle);
      this.#socket.on("close", settle);
    });
  }

  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    clearTimeout(this.#idle);
    this.#queue = [];
    this.#flow.release();
    this.#end();
    if (this.#socket.destroyed) return;
    this.#socket.end();
    const timer = setTimeout(() => this.#socket.destroy(), CLOSE_GRACE_MS);
    this.#socket.once("close", () => clearTimeout(timer));
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #push(chunk: Uint8Array): void {
    if (this.#closing) return;
    this.#queue.push(chunk);
    this.#queuedBytes += chunk.length;
    if (this.#queuedBytes >= this.#highWater) this.#flow.hold();
    this.#touch();
    this.#wakeReader();
  }

  #end(): void {
    this.#ended = true;
    this.#wakeReader();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatRemote(host: string | undefined, port: number | undefined): string {
  const name = host ?? "unknown";
  return `${name.includes(":") ? `[${name}]` : name}:${port ?? "?"}`;
}
