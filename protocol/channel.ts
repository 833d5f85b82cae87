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
 * The listening side is exposed to anyone who can reach its port, so it bounds what a peer can
 * hold (every limit is an option of {@linkcode listenChannel}):
 * - Admission happens in two rooms. A connection that has sent nothing yet is *silent*: it costs a
 *   socket, a timer and a 2 KiB buffer, and silent connections are capped in total
 *   (`maxSilentConnections`); a newcomer over the cap evicts the oldest silent connection of the
 *   address that holds the most. A connection that sends a TLS record header moves to the
 *   handshake room, capped in total (`maxHandshakes`) and per source address
 *   (`maxHandshakesPerAddress`); its TLS state is created once its whole first record (the
 *   ClientHello, at most 16 KiB) is in. A newcomer over a cap evicts the least advanced
 *   connection there (still within its first record before already in the TLS handshake), the
 *   oldest among equals, of its own address or, at the total cap, preferring the address that
 *   holds the most. Nobody is turned away at the door, and a flood only evicts itself: a real
 *   client sends its whole ClientHello at once, so it leaves the silent room within a round trip
 *   and in the handshake room outranks every idle or slow peer, even one from its own address.
 * - Every unauthenticated peer has a handshake deadline (`handshakeTimeoutMs`) and a budget of
 *   bytes it may send before it is authenticated (`maxHandshakeBytes`). `onRefused` hears of
 *   each peer dropped, with the reason (an eviction names the cap). Authenticated channels are
 *   counted in neither room: a flood cannot take their place.
 * - An authenticated channel buffers at most `maxInboundBytes` for its reader, then stops reading
 *   the socket (TCP backpressure); a write the peer does not take within `sendTimeoutMs` drops
 *   the channel; a channel silent both ways for `idleTimeoutMs` is closed. `onLimit` hears of
 *   each.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
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
  /** Told about each authenticated channel dropped by a limit (send deadline, idle timeout). */
  onLimit?: (remote: string, reason: string) => void;
  /** Told about failures of `onChannel` and of the listening socket after it started. */
  onError?: (error: Error) => void;
  /**
   * Time a peer has to finish the TLS handshake before it is dropped.
   *
   * @default {3000}
   */
  handshakeTimeoutMs?: number;
  /**
   * Connections that have sent nothing yet held at once; beyond it, a new one evicts the oldest
   * of the address that holds the most. Each costs a socket and a timer.
   *
   * @default {1024}
   */
  maxSilentConnections?: number;
  /**
   * TLS handshakes in progress at once; beyond it, a new one evicts the least advanced (the
   * oldest among equals) of the address that holds the most.
   *
   * @default {256}
   */
  maxHandshakes?: number;
  /**
   * TLS handshakes in progress at once from one address; beyond it, a new one evicts that
   * address's least advanced (the oldest among equals).
   *
   * @default {64}
   */
  maxHandshakesPerAddress?: number;
  /**
   * Bytes a peer may send before it is authenticated (a ClientHello and a certificate chain).
   *
   * @default {65536}
   */
  maxHandshakeBytes?: number;
  /**
   * Received bytes an authenticated channel buffers for its reader before it stops reading the
   * socket.
   *
   * @default {1048576}
   */
  maxInboundBytes?: number;
  /**
   * Time one write to an authenticated channel may wait for the peer to read before the channel
   * is dropped.
   *
   * @default {5000}
   */
  sendTimeoutMs?: number;
  /**
   * Time an authenticated channel may carry no byte either way before it is closed.
   *
   * @default {300000}
   */
  idleTimeoutMs?: number;
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
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: options.hostname, port: options.port });
  } catch (error) {
    const address = formatRemote(options.hostname, options.port);
    const why = (error as Error).message;
    return Promise.reject(new Error(`Cannot listen on "${address}": ${why}`, { cause: error }));
  }
  const onError = options.onError ?? (() => {});
  const silent = options.maxSilentConnections ?? 1024;
  const pending: Admission = {
    silent: new PendingHandshakes(silent, Infinity, "connections were silent"),
    handshakes: new PendingHandshakes(
      options.maxHandshakes ?? 256,
      options.maxHandshakesPerAddress ?? 64,
      "handshakes were pending",
    ),
  };
  const channels = new Set<Channel>();
  const limits: ChannelLimits = {
    maxInboundBytes: options.maxInboundBytes ?? 1 << 20,
    sendTimeoutMs: options.sendTimeoutMs ?? 5_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 300_000,
    onLimit: options.onLimit ?? (() => {}),
  };
  const authenticated = (channel: Channel) => {
    channels.add(channel);
    channel.closed.then(() => channels.delete(channel));
    Promise.resolve().then(() => options.onChannel(channel)).catch((error) => {
      channel.close();
      onError(error);
    });
  };
  const handshake = serverHandshake(options, pending, limits, authenticated);
  // Out of descriptors, the oldest idle peer makes room: otherwise a flood that holds every
  // descriptor keeps out everyone until its handshake deadlines expire.
  const shed = () =>
    pending.silent.evictOne("evicted: the agent ran out of file descriptors") ||
    pending.handshakes.evictOne("evicted: the agent ran out of file descriptors");
  const accepting = acceptLoop(listener, handshake, shed, onError);
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      listener.close();
      pending.silent.refuseAll("the agent is closing its endpoint");
      pending.handshakes.refuseAll("the agent is closing its endpoint");
      for (const channel of channels) channel.close();
      await accepting;
    })();
  const address = listener.addr as Deno.NetAddr;
  return Promise.resolve({
    hostname: address.hostname,
    port: address.port,
    close,
    [Symbol.asyncDispose]: close,
  });
}

/**
 * Accepts connections until the listener closes. A failed accept (typically no free descriptor)
 * is reported and sheds a pending connection, or pauses when there is none to shed.
 */
async function acceptLoop(
  listener: Deno.TcpListener,
  handshake: (conn: Deno.TcpConn) => void,
  shed: () => boolean,
  onError: (error: Error) => void,
): Promise<void> {
  for (;;) {
    let conn: Deno.TcpConn;
    try {
      conn = await listener.accept();
    } catch (error) {
      if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
        return;
      }
      onError(new Error(`Cannot accept a connection: ${(error as Error).message}`));
      if (!shed()) await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
      continue;
    }
    handshake(conn);
  }
}

/** The first bytes of every TLS ClientHello: a handshake record header (type 22, version 3.x). */
const TLS_RECORD_HEADER = 5;
/** What the first read of a connection takes: a whole ClientHello, as clients send it. */
const FIRST_READ_BYTES = 2048;
/** Largest TLS plaintext record (2^14 bytes): the bound on a ClientHello record. */
const TLS_MAX_RECORD = 1 << 14;
/** Bytes read per call before authentication: a ClientHello arrives in a few records. */
const HANDSHAKE_READ_BYTES = 16 * 1024;
/** How long the accept loop pauses after a failed accept (typically out of descriptors). */
const ACCEPT_RETRY_MS = 100;

/** The limits an authenticated agent-side channel enforces. */
interface ChannelLimits {
  maxInboundBytes: number;
  sendTimeoutMs: number;
  idleTimeoutMs: number;
  onLimit: (remote: string, reason: string) => void;
}

/**
 * Returns what runs one accepted TCP connection through admission, the TLS handshake and the
 * client certificate check, handing an authenticated channel to `authenticated`.
 *
 * Until the peer's first bytes arrive the connection costs a socket, a timer and a 2 KiB
 * buffer: the TLS state is only created for a peer that has sent a whole first TLS record.
 */
function serverHandshake(
  options: ListenChannelOptions,
  pending: Admission,
  limits: ChannelLimits,
  authenticated: (channel: Channel) => void,
): (conn: Deno.TcpConn) => void {
  const { credentials, onRefused = () => {} } = options;
  const timeoutMs = options.handshakeTimeoutMs ?? 3_000;
  const maxBytes = options.maxHandshakeBytes ?? 64 * 1024;
  const tlsOptions: tls.TlsOptions = {
    key: credentials.key,
    cert: credentials.cert,
    ca: credentials.ca,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
  };
  return (conn) => {
    const { hostname, port } = conn.remoteAddr as Deno.NetAddr;
    const remote = formatRemote(hostname, port);
    let settled = false;
    let transport: GatedTransport | undefined;
    const refuse = (reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      pending.silent.remove(entry);
      pending.handshakes.remove(entry);
      if (transport) transport.destroy();
      else closeQuietly(conn);
      onRefused(remote, reason);
    };
    const entry: Pending = { address: hostname, progress: Progress.SILENT, refuse };
    const timer = setTimeout(() => refuse(`no TLS handshake within ${timeoutMs} ms`), timeoutMs);
    pending.silent.admit(entry);
    try {
      conn.setNoDelay(true);
      conn.setKeepAlive(true);
    } catch (error) {
      return refuse((error as Error).message);
    }
    const started = () => {
      if (settled) return;
      pending.silent.remove(entry);
      entry.progress = Progress.STARTED;
      pending.handshakes.admit(entry);
    };
    readFirstRecord(conn, started).then((record) => {
      if (settled) return;
      if (typeof record === "string") return refuse(record);
      entry.progress = Progress.GREETED;
      transport = new GatedTransport(conn, {
        first: record,
        readBytes: HANDSHAKE_READ_BYTES,
        maxBytes,
        onTooMuch: () => refuse(`it sent more than ${maxBytes} bytes before authenticating`),
      });
      const onError = (error: Error) => refuse(error.message);
      const onClose = () => refuse("the connection closed during the TLS handshake");
      transport.on("error", onError);
      transport.once("close", onClose);
      // A TLS server per connection, because by the time Deno reports a failed handshake on a
      // shared one, the failed socket no longer knows its peer's address.
      const server = tls.createServer(tlsOptions);
      server.on("tlsClientError", (error: Error) => refuse(error.message));
      server.on("error", (error: Error) => refuse(error.message));
      server.on("secureConnection", (socket: tls.TLSSocket) => {
        if (settled || !socket.authorized) {
          socket.destroy();
          refuse(`the client certificate was not authorized (${socket.authorizationError})`);
          return;
        }
        settled = true;
        clearTimeout(timer);
        pending.handshakes.remove(entry);
        const flow = transport!;
        flow.off("error", onError);
        flow.off("close", onClose);
        flow.on("error", (error: Error) => socket.destroy(error));
        socket.once("close", () => flow.destroy());
        // Over a JS stream, the TLS socket neither passes its end on nor closes with it, nor
        // ends when its peer does.
        socket.once("end", () => socket.end());
        socket.once("finish", () => flow.end());
        flow.once("close", () => socket.destroy());
        flow.unbound(READ_BYTES);
        const channel = new SocketChannel(socket, remote, flow, new Uint8Array(0), limits);
        socket.write(ACCEPTED);
        authenticated(channel);
      });
      server.emit("connection", transport);
    }, (error: Error) => refuse(error.message));
  };
}

/**
 * Reads the first TLS record a client sends (its ClientHello), calling `started` once its
 * header is in. Returns the bytes read, the whole record at least, or why the peer is not
 * starting a TLS handshake. The first read takes up to {@linkcode FIRST_READ_BYTES}, so that a
 * ClientHello sent in one piece is whole at once, while a silent peer holds no more than that.
 */
async function readFirstRecord(
  conn: Deno.Conn,
  started: () => void,
): Promise<Uint8Array | string> {
  const closed = "the connection closed during the TLS handshake";
  let bytes = new Uint8Array(FIRST_READ_BYTES);
  let filled = 0;
  while (filled < TLS_RECORD_HEADER) {
    const length = await conn.read(bytes.subarray(filled));
    if (length === null) return closed;
    filled += length;
  }
  if (bytes[0] !== 0x16 || bytes[1] !== 0x03) {
    return "its first bytes are not a TLS handshake record";
  }
  const length = (bytes[3] << 8) | bytes[4];
  if (length === 0 || length > TLS_MAX_RECORD) {
    return `its first TLS record announces ${length} bytes, outside 1..${TLS_MAX_RECORD}`;
  }
  const whole = TLS_RECORD_HEADER + length;
  if (filled < whole) {
    started();
    const record = new Uint8Array(whole);
    record.set(bytes.subarray(0, filled));
    if (!await readFull(conn, record.subarray(filled))) return closed;
    [bytes, filled] = [record, whole];
  }
  return bytes.subarray(0, filled);
}

/** Fills `buffer` from `conn`; false if the peer closes first. */
async function readFull(conn: Deno.Conn, buffer: Uint8Array): Promise<boolean> {
  for (let offset = 0; offset < buffer.length;) {
    const length = await conn.read(buffer.subarray(offset));
    if (length === null) return false;
    offset += length;
  }
  return true;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** How far a pending connection has come; the least advanced is evicted first. */
const Progress = {
  /** Connected, sent nothing yet. */
  SILENT: 0,
  /** Sent a TLS record header; the rest of that first record has not come yet. */
  STARTED: 1,
  /** Sent its whole first record (a ClientHello): the TLS handshake runs. */
  GREETED: 2,
} as const;
type Progress = typeof Progress[keyof typeof Progress];
const PROGRESS_NAMES: Record<Progress, string> = {
  [Progress.SILENT]: "silent",
  [Progress.STARTED]: "within its first record",
  [Progress.GREETED]: "in the TLS handshake",
};

/**
 * The connections not yet authenticated: those that sent nothing yet, and those that started a
 * TLS handshake. A real client sends its ClientHello at once, so it leaves the first set within
 * a round trip, while a flood of idle connections only ever competes with itself there.
 */
interface Admission {
  silent: PendingHandshakes;
  handshakes: PendingHandshakes;
}

/** A connection still in admission or in its TLS handshake, and how to drop it. */
interface Pending {
  address: string;
  progress: Progress;
  refuse: (reason: string) => void;
}

/**
 * One room of connections not yet authenticated, by source address, oldest first. Admission never
 * turns a newcomer away: when its address or the whole room is full, it evicts the least
 * advanced connection, the oldest among equals, of its own address or, at the total cap, of the
 * whole room, preferring the address that holds the most.
 */
class PendingHandshakes {
  #byAddress = new Map<string, Set<Pending>>();
  #size = 0;
  #max: number;
  #maxPerAddress: number;
  #what: string;

  /** `what` names the entries in a reason: "N handshakes were pending". */
  constructor(max: number, maxPerAddress: number, what: string) {
    this.#max = Math.max(1, max);
    this.#maxPerAddress = Math.max(1, maxPerAddress);
    this.#what = what;
  }

  /** Adds `entry`, first evicting the connection that has to make room for it. */
  admit(entry: Pending): void {
    const own = this.#byAddress.get(entry.address);
    if (own && own.size >= this.#maxPerAddress) {
      this.#evict(
        [own],
        `evicted: ${own.size} ${this.#what} from "${entry.address}" (the cap per address)`,
      );
    } else if (this.#size >= this.#max) {
      this.#evict(
        [...this.#byAddress.values()],
        `evicted: ${this.#size} ${this.#what} (the total cap)`,
      );
    }
    let set = this.#byAddress.get(entry.address);
    if (!set) this.#byAddress.set(entry.address, set = new Set());
    set.add(entry);
    this.#size++;
  }

  /** Forgets `entry`; nothing happens if it is not pending. */
  remove(entry: Pending): void {
    const set = this.#byAddress.get(entry.address);
    if (!set?.delete(entry)) return;
    this.#size--;
    if (set.size === 0) this.#byAddress.delete(entry.address);
  }

  /** Evicts the connection that a newcomer at the total cap would; false if the room is empty. */
  evictOne(reason: string): boolean {
    if (this.#size === 0) return false;
    this.#evict([...this.#byAddress.values()], reason);
    return true;
  }

  /** Drops every pending connection with `reason`. */
  refuseAll(reason: string): void {
    for (const set of [...this.#byAddress.values()]) {
      for (const entry of [...set]) entry.refuse(reason);
    }
  }

  /** Evicts the least advanced connection of `sets`, from the fullest set, oldest first. */
  #evict(sets: Set<Pending>[], reason: string): void {
    let victim: Pending | undefined;
    let victimSet: Set<Pending> | undefined;
    for (const set of sets) {
      for (const entry of set) {
        const better = !victim || entry.progress < victim.progress ||
          (entry.progress === victim.progress && set.size > victimSet!.size);
        if (better) [victim, victimSet] = [entry, set];
        if (entry.progress === Progress.SILENT) break;
      }
    }
    victim!.refuse(`${reason}; it was ${PROGRESS_NAMES[victim!.progress]}`);
    this.remove(victim!);
  }
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
interface TransportOptions {
  /** Bytes already read from the connection, delivered first. */
  first?: Uint8Array;
  /** Size of each read. @default {READ_BYTES} */
  readBytes?: number;
  /** Bytes the peer may send until {@linkcode GatedTransport.unbound}. @default {Infinity} */
  maxBytes?: number;
  /** Called once the peer sends more than `maxBytes`; the transport stops reading. */
  onTooMuch?: () => void;
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

function formatRemote(host: string | undefined, port: number | undefined): string {
  const name = host ?? "unknown";
  return `${name.includes(":") ? `[${name}]` : name}:${port ?? "?"}`;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}
