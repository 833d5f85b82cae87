/**
 * What the channel tests share: fresh pairings, a listening endpoint that records what it sees,
 * and raw peers that do not follow the protocol.
 *
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import { join } from "node:path";
import { assert, assertEquals } from "../tests/support/mod.ts";
import type { Channel } from "./channel.ts";
import {
  type AgentCredentials,
  ensureAgentCredentials,
  ensureIdsCredentials,
  type IdsCredentials,
} from "./credentials.ts";
import { type ChannelServer, listenChannel, type ListenChannelOptions } from "./listen_channel.ts";

export interface Pairing {
  dir: string;
  agent: AgentCredentials;
  ids: IdsCredentials;
}

/** Runs `fn` with fresh pairings in their own state directories, removed afterwards. */
export async function withPairings(
  count: number,
  fn: (...pairings: Pairing[]) => Promise<void>,
): Promise<void> {
  const parent = await Deno.makeTempDir({ prefix: "ebpfmon-channel-" });
  try {
    const pairings = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const dir = join(parent, `state${i}`);
        return {
          dir,
          agent: await ensureAgentCredentials(dir),
          ids: await ensureIdsCredentials(dir),
        };
      }),
    );
    await fn(...pairings);
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
}

/** A listening agent endpoint on loopback that records the channels and refusals it sees. */
export async function listen(
  credentials: AgentCredentials,
  options: Partial<ListenChannelOptions> = {},
): Promise<{ server: ChannelServer; channels: Channel[]; refusals: string[] }> {
  const channels: Channel[] = [];
  const refusals: string[] = [];
  const server = await listenChannel({
    hostname: "127.0.0.1",
    port: 0,
    credentials,
    onChannel: (channel) => void channels.push(channel),
    onRefused: (remote, reason) => refusals.push(`${remote} ${reason}`),
    ...options,
  });
  return { server, channels, refusals };
}

export async function readBytes(channel: Channel, length: number): Promise<Uint8Array> {
  const result = new Uint8Array(length);
  let offset = 0;
  for await (const chunk of channel.chunks()) {
    result.set(chunk, offset);
    offset += chunk.length;
    if (offset === length) break;
  }
  assertEquals(offset, length);
  return result;
}

export { sha256Hex as sha256 } from "./digest.ts";

/** Bytes that differ from one position to the next, so a lost or reordered chunk shows. */
export function pattern(length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  let state = 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state;
  }
  return bytes;
}

export async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  assert(condition(), `timed out waiting until ${what}`);
}

/** Resolves when a raw TLS client gets closed; with what it received and the error it saw. */
export function rawTlsClient(port: number, options: tls.ConnectionOptions) {
  return new Promise<{ received: number; error?: Error; localPort?: number }>((resolve) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ...options });
    let received = 0;
    let error: Error | undefined;
    let localPort: number | undefined;
    socket.on("connect", () => localPort = socket.localPort);
    socket.on("data", (data) => received += data.length);
    socket.on("error", (e) => error = e);
    socket.on("close", () => resolve({ received, error, localPort }));
  });
}

/** A raw TCP connection from `localAddress` that sends `first` (if any) and nothing more. */
export function rawPeer(port: number, localAddress: string, first?: Uint8Array) {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  socket.on("error", () => {});
  socket.resume();
  if (first) socket.on("connect", () => socket.write(first));
  return socket;
}
