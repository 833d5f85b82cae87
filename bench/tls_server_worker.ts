/**
 * The server of `bench/tls_clients.ts`, run as its Worker: the agent's channel server
 * (`listenChannel`) on a fresh state directory, streaming `bytes` to every channel it accepts.
 * It posts `{ port }` once it listens.
 *
 * @module
 */

import { ensureAgentCredentials, listenChannel } from "../protocol/mod.ts";

const scope = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<{ state: string; bytes: number }>) => void) | null;
};

scope.onmessage = async (e) => {
  const { state, bytes } = e.data;
  const chunk = new Uint8Array(256 << 10).fill(0x5a);
  const server = await listenChannel({
    hostname: "127.0.0.1",
    port: 0,
    credentials: await ensureAgentCredentials(state),
    onChannel: async (channel) => {
      for (let sent = 0; sent < bytes; sent += chunk.length) await channel.write(chunk);
      await channel.closed;
    },
  });
  scope.postMessage({ port: server.port });
};
