/**
 * The stream under a channel's TLS socket: a TCP connection read only while the channel's reader
 * keeps up, with a byte budget for a peer not yet authenticated.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import type { Flow } from "./_socket_channel.ts";

/** Bytes read per call from an authenticated connection. */
export const READ_BYTES = 64 * 1024;

/**
 * A TCP connection as the stream under the IDS's TLS socket, read only while the channel's
 * reader keeps up: Deno's node:tls sockets go on reading their own TCP socket while paused, so
 * this is what bounds the memory a fast agent can fill.
 */
export class GatedTransport extends Duplex implements Flow {
  #conn: Deno.Conn;
  #pumping = false;
  #held = false;
  #release: (() => void) | undefined;
  #first: Uint8Array | undefined;
  #readBytes: number;
  #budget: number;
  #onTooMuch: () => void;

  constructor(conn: Deno.Conn, options: TransportOptions = {}) {
    super();
    this.#conn = conn;
    this.#first = options.first;
    this.#readBytes = options.readBytes ?? READ_BYTES;
    this.#budget = options.maxBytes ?? Infinity;
    this.#onTooMuch = options.onTooMuch ?? (() => {});
  }

  /** Lifts the byte budget (the peer is authenticated) and reads `readBytes` at a time. */
  unbound(readBytes: number): void {
    this.#budget = Infinity;
    this.#readBytes = readBytes;
  }

  hold(): void {
    this.#held = true;
  }

  release(): void {
    this.#held = false;
    this.#release?.();
    this.#release = undefined;
  }

  override _read(): void {
    if (!this.#pumping) this.#pump();
  }

  override _write(chunk: Buffer, _encoding: string, callback: (error?: Error) => void): void {
    writeAll(this.#conn, chunk).then(() => callback(), callback);
  }

  /** Many small TLS records at once in one write: one by one, sending is several times slower. */
  override _writev(
    chunks: { chunk: Buffer }[],
    callback: (error?: Error) => void,
  ): void {
    const bytes = Buffer.concat(chunks.map(({ chunk }) => chunk));
    writeAll(this.#conn, bytes).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error) => void): void {
    this.#conn.closeWrite().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer's reset.
    }
    this.release();
    callback(error);
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      if (this.#first !== undefined) {
        const first = this.#first;
        this.#first = undefined;
        if (!this.#account(first.length) || !this.push(first)) return;
      }
      while (!this.destroyed) {
        if (this.#held) await new Promise<void>((resolve) => this.#release = resolve);
        if (this.destroyed) return;
        const buffer = new Uint8Array(this.#readBytes);
        const length = await this.#conn.read(buffer);
        if (length === null) {
          // The TLS socket above ends, but does not close, at the end of a JS stream.
          this.once("end", () => this.destroy());
          this.push(null);
          return;
        }
        if (!this.#account(length) || !this.push(buffer.subarray(0, length))) return;
      }
    } catch (error) {
      this.destroy(error as Error);
    } finally {
      this.#pumping = false;
    }
  }

  /** Takes `length` bytes off the budget; false (and the peer is told off) once it is spent. */
  #account(length: number): boolean {
    this.#budget -= length;
    if (this.#budget >= 0) return true;
    this.#onTooMuch();
    return false;
  }
}

/** Options of a {@linkcode GatedTransport}. */
export interface TransportOptions {
  /** Bytes already read from the connection, delivered first. */
  first?: Uint8Array;
  /** Size of each read. @default {READ_BYTES} */
  readBytes?: number;
  /** Bytes the peer may send until {@linkcode GatedTransport.unbound}. @default {Infinity} */
  maxBytes?: number;
  /** Called once the peer sends more than `maxBytes`; the transport stops reading. */
  onTooMuch?: () => void;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}
