/**
 * The encrypted, mutually authenticated byte channel between agent and IDS: TLS 1.3 over TCP
 * with the pairing credentials of `credentials.ts`.
 *
 * The agent listens and accepts only clients whose certificate chains to the pairing CA. The IDS
 * connects, checks that the agent's certificate chains to the same CA *and* has the pinned
 * fingerprint (host names are not checked: the pin is the stronger claim), and waits for the
 * agent to confirm that it accepted the IDS's certificate: in TLS 1.3 a client finishes its
 * handshake before the server has judged the client certificate, so without that confirmation
 * a refusal would look like an ordinary close.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import net from "node:net";
import tls from "node:tls";
import {
  type AgentCredentials,
  fingerprint,
  type IdsCredentials,
  parsePin,
} from "./credentials.ts";

/** Why a channel could not be opened or used. */
export type ChannelErrorCode =
  /** No TCP connection to the agent's address. */
  | "unreachable"
  /** The peer did not prove to be an agent of the pairing CA (or did not speak TLS 1.3). */
  | "untrusted"
  /** The agent's certificate is from the pairing CA but is not the pinned one. */
  | "pin-mismatch"
  /** The agent did not accept the IDS's certificate. */
  | "refused"
  /** The channel was not established within the time allowed. */
  | "timeout"
  /** The channel is closed, or its connection failed after it was established. */
  | "closed";

/** A channel could not be opened or used; `code` says why, `cause` holds any underlying error. */
export class ChannelError extends Error {
  /** Why the channel failed. */
  readonly code: ChannelErrorCode;

  /** Creates an error with the given code and message. */
  constructor(code: ChannelErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ChannelError";
    this.code = code;
  }
}

/**
 * One established, authenticated connection. The caller owns it and must {@linkcode close} it;
 * a closed channel can not be reopened.
 */
export interface Channel extends Disposable {
  /** The peer's address as `host:port` (IPv6 hosts in brackets). */
  readonly remote: string;
  /** Resolves once the connection is fully closed, by either side; never rejects. */
  readonly closed: Promise<void>;
  /**
   * The incoming bytes, in order. Ends when the peer closes or the channel is closed locally;
   * throws a {@linkcode ChannelError} with code `"closed"` when the connection fails, after the
   * bytes received before the failure. One reader at a time (a second concurrent iteration
   * throws a `TypeError`); stopping an iteration keeps the rest for the next one and does not
   * close the channel.
   */
  chunks(): AsyncIterable<Uint8Array>;
  /**
   * Queues `bytes` for sending; resolves once they are accepted, waiting while the connection's
   * send buffer is full. `bytes` must not be modified afterwards.
   *
   * @throws {ChannelError} With code `"closed"` when the channel is or becomes closed first.
   */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * Sends the bytes already accepted, then closes the connection; writes still waiting fail.
   * Idempotent.
   */
  close(): void;
}

/** A listening agent endpoint. Closing it closes every channel it accepted. */
export interface ChannelServer extends AsyncDisposable {
  /** The address it is bound to. */
  readonly hostname: string;
  /** The port it is bound to (the one chosen by the system when asked for port 0). */
  readonly port: number;
  /** Stops listening, drops handshakes in progress and closes accepted channels. Idempotent. */
  close(): Promise<void>;
}

/** Options for {@linkcode listenChannel}. */
export interface ListenChannelOptions {
  /** Address to bind. */
  hostname: string;
  /** Port to bind; 0 lets the system choose. */
  port: number;
  /** The agent's identity and the pairing CA. */
  credentials: AgentCredentials;
  /**
   * Receives each authenticated channel, which it then owns. If it throws or its promise
   * rejects, the channel is closed and the error goes to `onError`.
   */
  onChannel: (channel: Channel) => void | Promise<void>;
  /** Told about each peer that was dropped before it was authenticated, and why. */
  onRefused?: (remote: string, reason: string) => void;
  /** Told about failures of `onChannel` and of the listening socket after it started. */
  onError?: (error: Error) => void;
  /**
   * Time a peer has to finish the TLS handshake before it is dropped.
   *
   * @default {10000}
   */
  handshakeTimeoutMs?: number;
  /**
   * Handshakes in progress beyond which new connections are dropped at once.
   *
   * @default {64}
   */
  maxHandshakes?: number;
}

/** Options for {@linkcode connectChannel}. */
export interface ConnectChannelOptions {
  /** The agent's host name or address. */
  hostname: string;
  /** The agent's port. */
  port: number;
  /** The IDS's identity, the pairing CA and the agent's pinned fingerprint. */
  credentials: IdsCredentials;
  /**
   * Time allowed to connect, authenticate both sides and be accepted.
   *
   * @default {10000}
   */
  timeoutMs?: number;
}

/** Sent by the agent once it has accepted the IDS's certificate; never seen by channel users. */
const ACCEPTED = new TextEncoder().encode("ebpfmon channel accepted\n");
/** Received bytes buffered for a slow reader before the socket stops reading. */
const HIGH_WATER_BYTES = 8 * 1024 * 1024;
/** How long {@linkcode Channel.close} waits for queued bytes to leave before it drops them. */
const CLOSE_GRACE_MS = 5_000;
const KEEPALIVE_MS = 30_000;
const WRITE_SLICE_BYTES = 64 * 1024;
const READ_BYTES = 64 * 1024;

/** How a channel stops and restarts the bytes coming in while its reader is behind. */
interface Flow {
  hold(): void;
  release(): void;
}

type Stage = "connecting" | "handshaking" | "awaiting acceptance";
const FAILURE_CODES = {
  connecting: "unreachable",
  handshaking: "untrusted",
  "awaiting acceptance": "refused",
} as const satisfies Record<Stage, ChannelErrorCode>;
const FAILURE_REASONS: Record<Stage, string> = {
  connecting: "no connection",
  handshaking: "the agent could not be authenticated",
  "awaiting acceptance": "the agent refused this IDS's certificate",
};

/**
 * Listens for IDS connections on `options.hostname:options.port` with TLS 1.3, accepting only
 * clients whose certificate chains to `options.credentials.ca`. Every socket error is reported
 * through the callbacks; none is thrown.
 *
 * @returns Once listening; the caller must {@linkcode ChannelServer.close} it.
 * @throws {Error} The address cannot be bound.
 */
export function listenChannel(options: ListenChannelOptions): Promise<ChannelServer> {
  const {
    credentials,
    onChannel,
    onRefused = () => {},
    onError = () => {},
    handshakeTimeoutMs = 10_000,
    maxHandshakes = 64,
  } = options;
  const tlsOptions: tls.TlsOptions = {
    key: credentials.key,
    cert: credentials.cert,
    ca: credentials.ca,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
  };
  /** How to drop each connection still in its handshake. */
  const handshaking = new Set<(reason: string) => void>();
  const channels = new Set<Channel>();

  const accept = (raw: net.Socket) => {
    const remote = formatRemote(raw.remoteAddress, raw.remotePort);
    let settled = false;
    const refuse = (reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      handshaking.delete(refuse);
      raw.destroy();
      onRefused(remote, reason);
    };
    raw.on("error", (error) => refuse(error.message));
    raw.once("close", () => refuse("the connection closed during the TLS handshake"));
    const timer = setTimeout(
      () => refuse(`no TLS handshake within ${handshakeTimeoutMs} ms`),
      handshakeTimeoutMs,
    );
    if (handshaking.size >= maxHandshakes) {
      refuse(`${maxHandshakes} TLS handshakes are already in progress`);
      return;
    }
    handshaking.add(refuse);
    raw.setNoDelay(true);
    raw.setKeepAlive(true, KEEPALIVE_MS);
    // A TLS server per connection, because by the time Deno reports a failed handshake on a
    // shared one, the failed socket no longer knows its peer's address.
    const handshake = tls.createServer(tlsOptions);
    handshake.on("tlsClientError", (error: Error) => refuse(error.message));
    handshake.on("error", (error: Error) => refuse(error.message));
    handshake.on("secureConnection", (socket: tls.TLSSocket) => {
      if (settled || !socket.authorized) {
        socket.destroy();
        refuse(`the client certificate was not authorized (${socket.authorizationError})`);
        return;
      }
      settled = true;
      clearTimeout(timer);
      handshaking.delete(refuse);
      // Pausing only stops delivery: Deno's TLS socket goes on reading TCP. The IDS is trusted
      // and sends small requests, so the agent does not need the IDS side's gated transport.
      const flow = { hold: () => socket.pause(), release: () => socket.resume() };
      const channel = new SocketChannel(socket, remote, flow);
      channels.add(channel);
      channel.closed.then(() => channels.delete(channel));
      socket.write(ACCEPTED);
      Promise.resolve().then(() => onChannel(channel)).catch((error) => {
        channel.close();
        onError(error);
      });
    });
    handshake.emit("connection", raw);
  };

  const server = net.createServer(accept);
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= new Promise<void>((resolve) => {
      for (const refuse of handshaking) refuse("the agent is closing its endpoint");
      for (const channel of channels) channel.close();
      server.close(() => resolve());
    });
  return new Promise((resolve, reject) => {
    server.once("error", (error) => {
      reject(
        new Error(
          `Cannot listen on "${formatRemote(options.hostname, options.port)}": ${error.message}`,
          { cause: error },
        ),
      );
    });
    server.listen({ host: options.hostname, port: options.port }, () => {
      server.removeAllListeners("error");
      server.on("error", onError);
      const address = server.address() as net.AddressInfo;
      resolve({
        hostname: address.address,
        port: address.port,
        close,
        [Symbol.asyncDispose]: close,
      });
    });
  });
}

/**
 * Connects to an agent with TLS 1.3, presenting the IDS's certificate and accepting only the
 * agent certificate that chains to `options.credentials.ca` and has the pinned fingerprint.
 *
 * @returns The established channel; the caller must close it.
 * @throws {ChannelError} With the code that says why no channel was established.
 * @throws {TypeError} `options.credentials.agentPin` is not a SHA-256 fingerprint.
 */
export function connectChannel(options: ConnectChannelOptions): Promise<Channel> {
  const { hostname, port, credentials, timeoutMs = 10_000 } = options;
  const pin = parsePin(credentials.agentPin);
  const target = formatRemote(hostname, port);
  return new Promise((resolve, reject) => {
    let stage: Stage = "connecting";
    let presented: string | undefined;
    let socket: tls.TLSSocket | undefined;
    let settled = false;
    const fail = (error: ChannelError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.destroy();
      reject(error);
    };
    const failure = (reason: string, cause?: Error) => {
      const [code, why] = presented === undefined
        ? [FAILURE_CODES[stage], `${FAILURE_REASONS[stage]} (${reason})`]
        : ["pin-mismatch" as const, `the agent presents ${presented}, not the pinned ${pin}`];
      return new ChannelError(code, `Cannot connect to "${target}": ${why}`, { cause });
    };
    const timer = setTimeout(() => {
      const message = `Cannot connect to "${target}": still ${stage} after ${timeoutMs} ms`;
      fail(new ChannelError("timeout", message));
    }, timeoutMs);
    const handshake = (conn: Deno.TcpConn) => {
      if (settled) return conn.close();
      stage = "handshaking";
      conn.setNoDelay(true);
      conn.setKeepAlive(true);
      const transport = new GatedTransport(conn);
      const tlsSocket = tls.connect({
        socket: transport,
        key: credentials.key,
        cert: credentials.cert,
        ca: credentials.ca,
        minVersion: "TLSv1.3",
        checkServerIdentity: (_name, certificate) => {
          const actual = fingerprint(new Uint8Array(certificate.raw));
          if (actual === pin) return undefined;
          presented = actual;
          return new Error(`the agent certificate is ${actual}, not the pinned ${pin}`);
        },
      });
      socket = tlsSocket;
      transport.on("error", (error) => tlsSocket.destroy(error));
      tlsSocket.once("close", () => transport.destroy());
      let received = Buffer.alloc(0);
      const onData = (data: Buffer) => {
        received = Buffer.concat([received, data]);
        const length = Math.min(received.length, ACCEPTED.length);
        if (!received.subarray(0, length).every((byte, i) => byte === ACCEPTED[i])) {
          return fail(failure("its first bytes are not an acceptance"));
        }
        if (received.length < ACCEPTED.length) return;
        settled = true;
        clearTimeout(timer);
        tlsSocket.off("data", onData);
        tlsSocket.off("error", onError);
        tlsSocket.off("close", onClose);
        const rest = new Uint8Array(received.subarray(ACCEPTED.length));
        const remote = formatRemote(hostname, port);
        resolve(new SocketChannel(tlsSocket, remote, transport, rest));
      };
      const onError = (error: Error) => fail(failure(error.message, error));
      const onClose = () => fail(failure("the connection closed"));
      tlsSocket.once("secureConnect", () => stage = "awaiting acceptance");
      tlsSocket.on("data", onData);
      tlsSocket.on("error", onError);
      tlsSocket.on("close", onClose);
    };
    Deno.connect({ hostname, port }).then(
      handshake,
      (error) => fail(failure(error.message, error)),
    );
  });
}

/**
 * A TCP connection as the stream under the IDS's TLS socket, read only while the channel's
 * reader keeps up: Deno's node:tls sockets go on reading their own TCP socket while paused, so
 * this is what bounds the memory a fast agent can fill.
 */
class GatedTransport extends Duplex implements Flow {
  #conn: Deno.Conn;
  #pumping = false;
  #held = false;
  #release: (() => void) | undefined;

  constructor(conn: Deno.Conn) {
    super();
    this.#conn = conn;
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
      while (!this.destroyed) {
        if (this.#held) await new Promise<void>((resolve) => this.#release = resolve);
        const buffer = new Uint8Array(READ_BYTES);
        const length = await this.#conn.read(buffer);
        if (length === null) {
          // The TLS socket above ends, but does not close, at the end of a JS stream.
          this.once("end", () => this.destroy());
          this.push(null);
          return;
        }
        if (!this.push(buffer.subarray(0, length))) return;
      }
    } catch (error) {
      this.destroy(error as Error);
    } finally {
      this.#pumping = false;
    }
  }
}

/** A {@linkcode Channel} over an authenticated TLS socket. */
class SocketChannel implements Channel {
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

  constructor(
    socket: tls.TLSSocket,
    remote: string,
    flow: Flow,
    first: Uint8Array = new Uint8Array(0),
  ) {
    this.remote = remote;
    this.#socket = socket;
    this.#flow = flow;
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
          if (this.#queuedBytes < HIGH_WATER_BYTES / 2) this.#flow.release();
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

  /** Writes slice by slice, waiting for the socket to drain: a deep send buffer is slow. */
  async #send(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    do {
      if (this.#closing || !this.#socket.writable) {
        throw new ChannelError("closed", `Cannot write to "${this.remote}": the channel is closed`);
      }
      const slice = bytes.subarray(offset, offset + WRITE_SLICE_BYTES);
      offset += slice.length;
      if (!this.#socket.write(slice)) await this.#drained();
    } while (offset < bytes.length);
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
    if (this.#queuedBytes >= HIGH_WATER_BYTES) this.#flow.hold();
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

function formatRemote(host: string | undefined, port: number | undefined): string {
  const name = host ?? "unknown";
  return `${name.includes(":") ? `[${name}]` : name}:${port ?? "?"}`;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}
