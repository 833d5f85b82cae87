/**
 * The agent's side of the channel: {@linkcode listenChannel} accepts IDS connections with TLS
 * 1.3, only from clients whose certificate chains to the pairing CA.
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
import tls from "node:tls";
import type { AgentCredentials } from "./credentials.ts";
import type { Channel } from "./channel.ts";
import { type Admission, type Pending, PendingHandshakes, Progress } from "./_admission.ts";
import { GatedTransport, READ_BYTES } from "./_gated_transport.ts";
import { ACCEPTED, type ChannelLimits, formatRemote, SocketChannel } from "./_socket_channel.ts";

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
