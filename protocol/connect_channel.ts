/**
 * The IDS's side of the channel: {@linkcode connectChannel} opens a channel to an agent and
 * accepts only the agent certificate that chains to the pairing CA and has the pinned
 * fingerprint.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import tls from "node:tls";
import { type Channel, ChannelError, type ChannelErrorCode } from "./channel.ts";
import { fingerprint, parsePin } from "./fingerprint.ts";
import type { IdsCredentials } from "./credentials.ts";
import { GatedTransport } from "./_gated_transport.ts";
import { ACCEPTED, formatRemote, SocketChannel } from "./_socket_channel.ts";

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
