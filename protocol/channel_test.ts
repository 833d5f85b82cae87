import net from "node:net";
import tls from "node:tls";
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "../tests/assert.ts";
import {
  type Channel,
  ChannelError,
  type ChannelServer,
  connectChannel,
  listenChannel,
  type ListenChannelOptions,
} from "./channel.ts";
import {
  type AgentCredentials,
  ensureAgentCredentials,
  ensureIdsCredentials,
  type IdsCredentials,
} from "./credentials.ts";

interface Pairing {
  dir: string;
  agent: AgentCredentials;
  ids: IdsCredentials;
}

/** Runs `fn` with fresh pairings in their own state directories, removed afterwards. */
async function withPairings(
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
async function listen(
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

async function readBytes(channel: Channel, length: number): Promise<Uint8Array> {
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

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex();
}

/** Bytes that differ from one position to the next, so a lost or reordered chunk shows. */
function pattern(length: number): Uint8Array<ArrayBuffer> {
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

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  assert(condition(), `timed out waiting until ${what}`);
}

/** Resolves when a raw TLS client gets closed; with what it received and the error it saw. */
function rawTlsClient(port: number, options: tls.ConnectionOptions) {
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

Deno.test("connectChannel() with the IDS credentials of the same state directory exchanges bytes both ways", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels } = await listen(agent, {
      onChannel: async (channel) => {
        channels.push(channel);
        for await (const chunk of channel.chunks()) await channel.write(chunk);
      },
    });
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    assertEquals(client.remote, `127.0.0.1:${server.port}`);
    const payload = pattern(8 * 1024 * 1024 + 17);
    const echoed = readBytes(client, payload.length);
    for (let offset = 0; offset < payload.length; offset += 100_000) {
      await client.write(payload.subarray(offset, offset + 100_000));
    }
    assertEquals(await sha256(new Uint8Array(await echoed)), await sha256(payload));
    client.close();
    await client.closed;
    await channels[0].closed;
    await server.close();
  });
});

Deno.test("listenChannel() refuses a client without a certificate and reports it", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels, refusals } = await listen(agent);
    const result = await rawTlsClient(server.port, {
      ca: ids.ca,
      checkServerIdentity: () => undefined,
    });
    assertEquals(result.received, 0);
    await until(() => refusals.length === 1, "the refusal is reported");
    assert(refusals[0].startsWith(`127.0.0.1:${result.localPort} `), refusals[0]);
    assertEquals(channels.length, 0);
    await server.close();
  });
});

Deno.test("listenChannel() refuses a client that offers only TLS 1.2", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels, refusals } = await listen(agent);
    const result = await rawTlsClient(server.port, {
      key: ids.key,
      cert: ids.cert,
      ca: ids.ca,
      maxVersion: "TLSv1.2",
      checkServerIdentity: () => undefined,
    });
    assertEquals(result.received, 0);
    await until(() => refusals.length === 1, "the refusal is reported");
    assertEquals(channels.length, 0);
    await server.close();
  });
});

Deno.test("a channel works over IPv6 and names the peer in brackets", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels } = await listen(agent, { hostname: "::1" });
    assertEquals(server.hostname, "::1");
    const client = await connectChannel({ hostname: "::1", port: server.port, credentials: ids });
    assertEquals(client.remote, `[::1]:${server.port}`);
    await until(() => channels.length === 1, "the agent has the channel");
    assert(channels[0].remote.startsWith("[::1]:"), channels[0].remote);
    client.close();
    await client.closed;
    await server.close();
  });
});

Deno.test("connectChannel() with a certificate from another pairing CA is refused", async () => {
  await withPairings(2, async (home, other) => {
    const { server, channels, refusals } = await listen(home.agent);
    const credentials = { ...home.ids, key: other.ids.key, cert: other.ids.cert };
    const error = await assertRejects(
      () => connectChannel({ hostname: "127.0.0.1", port: server.port, credentials }),
      ChannelError,
    );
    assertEquals(error.code, "refused");
    await until(() => refusals.length === 1, "the refusal is reported");
    assertEquals(channels.length, 0);
    await server.close();
  });
});

Deno.test("connectChannel() pinning another agent fails with pin-mismatch", async () => {
  await withPairings(2, async (home, other) => {
    const { server, channels } = await listen(home.agent);
    const credentials = { ...home.ids, agentPin: other.ids.agentPin };
    const error = await assertRejects(
      () => connectChannel({ hostname: "127.0.0.1", port: server.port, credentials }),
      ChannelError,
      "not the pinned",
    );
    assertEquals(error.code, "pin-mismatch");
    for (const channel of channels) {
      assertEquals((await Array.fromAsync(channel.chunks())).length, 0);
    }
    await server.close();
  });
});

Deno.test("connectChannel() to another agent of the same pairing CA fails with pin-mismatch", async () => {
  await withPairings(1, async (home) => {
    const impostorDir = `${home.dir}-impostor`;
    await Deno.mkdir(impostorDir, { mode: 0o700 });
    for (const name of ["ca.key", "ca.pem"]) {
      await Deno.copyFile(join(home.dir, name), join(impostorDir, name));
    }
    const { server } = await listen(await ensureAgentCredentials(impostorDir));
    const error = await assertRejects(
      () => connectChannel({ hostname: "127.0.0.1", port: server.port, credentials: home.ids }),
      ChannelError,
    );
    assertEquals(error.code, "pin-mismatch");
    await server.close();
  });
});

Deno.test("connectChannel() to an agent of another pairing CA fails as untrusted", async () => {
  await withPairings(2, async (home, other) => {
    const { server } = await listen(other.agent);
    const error = await assertRejects(
      () => connectChannel({ hostname: "127.0.0.1", port: server.port, credentials: home.ids }),
      ChannelError,
    );
    assertEquals(error.code, "untrusted");
    await server.close();
  });
});

Deno.test("the channel carries only ciphertext across the network", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const marker = "ebpfmon-secret-comm-XYZ";
    const { server, channels } = await listen(agent, {
      onChannel: async (channel) => {
        channels.push(channel);
        for await (const chunk of channel.chunks()) {
          await channel.write(new TextEncoder().encode(`${new TextDecoder().decode(chunk)} back`));
        }
      },
    });
    let wire = "";
    const relays = new Set<net.Socket>();
    const relay = net.createServer((downstream) => {
      const upstream = net.connect(server.port, "127.0.0.1");
      for (const [from, to] of [[downstream, upstream], [upstream, downstream]]) {
        relays.add(from);
        from.on("data", (data) => {
          wire += data.toString("latin1");
          to.write(data);
        });
        from.on("end", () => to.end());
        from.on("error", () => to.destroy());
      }
    });
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
    const port = (relay.address() as net.AddressInfo).port;
    const client = await connectChannel({ hostname: "127.0.0.1", port, credentials: ids });
    await client.write(new TextEncoder().encode(marker));
    const reply = new TextDecoder().decode(await readBytes(client, marker.length + 5));
    assertEquals(reply, `${marker} back`);
    client.close();
    await client.closed;
    await channels[0].closed;
    await new Promise((resolve) => relay.close(resolve));
    await server.close();
    assert(wire.length > 1000, "the relay saw the handshake");
    assert(!wire.includes(marker), "the marker crossed the network in clear text");
    assert(!wire.includes("ebpfmon-secret"), "part of the marker crossed in clear text");
  });
});

Deno.test("a stalled handshake is dropped after the timeout while another client connects", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels, refusals } = await listen(agent, {
      handshakeTimeoutMs: 1000,
      onChannel: async (channel) => {
        channels.push(channel);
        for await (const chunk of channel.chunks()) await channel.write(chunk);
      },
    });
    const stalled = net.connect(server.port, "127.0.0.1");
    const stalledClosed = new Promise((resolve) => stalled.on("close", resolve));
    stalled.on("error", () => {});
    stalled.resume();
    await new Promise((resolve) => stalled.on("connect", resolve));
    const stalledPort = stalled.localPort;
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    await client.write(new TextEncoder().encode("ping"));
    assertEquals(new TextDecoder().decode(await readBytes(client, 4)), "ping");
    await stalledClosed;
    assertEquals(refusals, [`127.0.0.1:${stalledPort} no TLS handshake within 1000 ms`]);
    await client.write(new TextEncoder().encode("still here"));
    assertEquals(new TextDecoder().decode(await readBytes(client, 10)), "still here");
    client.close();
    await client.closed;
    await server.close();
  });
});

Deno.test("a peer sending garbage is refused and the server keeps serving", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels, refusals } = await listen(agent);
    const garbage = net.connect(server.port, "127.0.0.1", () => {
      garbage.write("GET / HTTP/1.1\r\nHost: agent\r\n\r\n" + "\x16\x03\x01\xff\xff".repeat(1000));
    });
    garbage.on("error", () => {});
    garbage.resume();
    await new Promise((resolve) => garbage.on("close", resolve));
    await until(() => refusals.length === 1, "the garbage is refused");
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    assertEquals(channels.length, 1);
    client.close();
    await client.closed;
    await server.close();
  });
});

Deno.test("connectChannel() reports an address without a listener as unreachable", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server } = await listen(agent);
    const port = server.port;
    await server.close();
    const error = await assertRejects(
      () => connectChannel({ hostname: "127.0.0.1", port, credentials: ids }),
      ChannelError,
      `"127.0.0.1:${port}"`,
    );
    assertEquals(error.code, "unreachable");
  });
});

Deno.test("connectChannel() gives up with timeout on a peer that never answers", async () => {
  await withPairings(1, async ({ ids }) => {
    const silent = new Set<net.Socket>();
    const listener = net.createServer((socket) => silent.add(socket));
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const port = (listener.address() as net.AddressInfo).port;
    const error = await assertRejects(
      () => connectChannel({ hostname: "127.0.0.1", port, credentials: ids, timeoutMs: 200 }),
      ChannelError,
      "after 200 ms",
    );
    assertEquals(error.code, "timeout");
    for (const socket of silent) socket.destroy();
    await new Promise((resolve) => listener.close(resolve));
  });
});

Deno.test("Channel.close() ends the peer's chunks and makes writes fail with closed", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels } = await listen(agent);
    using client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    await until(() => channels.length === 1, "the agent has the channel");
    await client.write(new TextEncoder().encode("last words"));
    client.close();
    client.close();
    const error = await assertRejects(() => client.write(new Uint8Array(1)), ChannelError);
    assertEquals(error.code, "closed");
    assertEquals(new TextDecoder().decode(await readBytes(channels[0], 10)), "last words");
    await channels[0].closed;
    await client.closed;
    await assertRejects(() => channels[0].write(new Uint8Array(1)), ChannelError, "closed");
    await server.close();
  });
});

Deno.test("ChannelServer.close() closes the channels it accepted", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels } = await listen(agent);
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    await until(() => channels.length === 1, "the agent has the channel");
    await server.close();
    assertEquals((await Array.fromAsync(client.chunks())).length, 0);
    await client.closed;
  });
});

Deno.test("concurrent writes arrive whole and in order", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels } = await listen(agent);
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    const payload = pattern(40 * 200_003);
    const writes = [];
    for (let offset = 0; offset < payload.length; offset += 200_003) {
      writes.push(client.write(payload.subarray(offset, offset + 200_003)));
    }
    await until(() => channels.length === 1, "the agent has the channel");
    const received = readBytes(channels[0], payload.length);
    await Promise.all(writes);
    assertEquals(await sha256(new Uint8Array(await received)), await sha256(payload));
    client.close();
    await client.closed;
    await server.close();
  });
});

Deno.test("a reader that stops reading holds the writer back", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const total = 256 * 1024 * 1024;
    let accepted = 0;
    const block = new Uint8Array(1024 * 1024);
    const { server, channels } = await listen(agent, {
      onChannel: async (channel) => {
        channels.push(channel);
        while (accepted < total) {
          await channel.write(block);
          accepted += block.length;
        }
      },
    });
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    let previous = -1;
    while (accepted !== previous) {
      previous = accepted;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert(accepted < 64 * 1024 * 1024, `${accepted} bytes accepted for a reader that reads none`);
    client.close();
    await client.closed;
    await server.close();
  });
});

Deno.test("an onChannel that fails closes its channel and is reported", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const errors: Error[] = [];
    const { server } = await listen(agent, {
      onChannel: () => Promise.reject(new Error("no thanks")),
      onError: (error) => errors.push(error),
    });
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    await client.closed;
    assertEquals(errors.map((error) => error.message), ["no thanks"]);
    await server.close();
  });
});

Deno.test("the channel carries 64 MiB from agent to IDS (prints the throughput)", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const total = 64 * 1024 * 1024;
    const block = pattern(256 * 1024);
    const { server } = await listen(agent, {
      onChannel: async (channel) => {
        for (let sent = 0; sent < total; sent += block.length) await channel.write(block);
        channel.close();
      },
    });
    const rates = [];
    for (let round = 0; round < 3; round++) {
      const started = performance.now();
      const client = await connectChannel({
        hostname: "127.0.0.1",
        port: server.port,
        credentials: ids,
      });
      let received = 0;
      for await (const chunk of client.chunks()) received += chunk.length;
      assertEquals(received, total);
      rates.push((total / 1e6 / ((performance.now() - started) / 1000)).toFixed(0));
      await client.closed;
    }
    console.log(
      `channel throughput: ${rates.join(", ")} MB/s in three rounds of 64 MiB ` +
        `(TLS 1.3 over loopback, agent and IDS sharing one thread)`,
    );
    await server.close();
  });
});

/** A raw TCP connection from `localAddress` that sends `first` (if any) and nothing more. */
function rawPeer(port: number, localAddress: string, first?: Uint8Array) {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  socket.on("error", () => {});
  socket.resume();
  if (first) socket.on("connect", () => socket.write(first));
  return socket;
}

Deno.test("listenChannel() evicts idle and slow peers beyond its caps and still authenticates a client from their address", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server, channels, refusals } = await listen(agent, {
      maxSilentConnections: 4,
      maxHandshakes: 5,
      maxHandshakesPerAddress: 2,
    });
    const header = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00]);
    const peers: net.Socket[] = [];
    for (const address of ["127.0.0.1", "127.0.0.2"]) {
      for (let i = 0; i < 3; i++) {
        const peer = rawPeer(server.port, address, header);
        peers.push(peer);
        await new Promise((resolve) => peer.on("connect", resolve));
        // Long enough for its header to arrive, so that it is in the handshake room.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    await until(() => refusals.length === 2, "one slow peer of each address is evicted");
    for (const address of ["127.0.0.1", "127.0.0.2"]) {
      for (let i = 0; i < 6; i++) peers.push(rawPeer(server.port, address));
    }
    await until(() => refusals.length === 2 + 8, "8 of the 12 idle peers are evicted");
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    await until(() => channels.length === 1, "the client is authenticated");
    const reasons = refusals.map((r) => r.replace(/^127\.0\.0\.\d:\d+ /, ""));
    assert(
      reasons.includes("evicted: 4 connections were silent (the total cap); it was silent"),
      reasons.join("\n"),
    );
    for (const address of ["127.0.0.1", "127.0.0.2"]) {
      assert(
        reasons.includes(
          `evicted: 2 handshakes were pending from "${address}" (the cap per address); it was within its first record`,
        ),
        reasons.join("\n"),
      );
    }
    for (const peer of peers) peer.destroy();
    client.close();
    await client.closed;
    await server.close();
  });
});

Deno.test("listenChannel() drops a peer that sends more than maxHandshakeBytes before it is authenticated", async () => {
  await withPairings(1, async ({ agent }) => {
    const { server, refusals } = await listen(agent, { maxHandshakeBytes: 1000 });
    const record = new Uint8Array(5 + 4000);
    record.set([0x16, 0x03, 0x01, 4000 >> 8, 4000 & 0xff]);
    const peer = rawPeer(server.port, "127.0.0.1", record);
    await new Promise((resolve) => peer.on("close", resolve));
    await until(() => refusals.length === 1, "the peer is refused");
    assert(
      refusals[0].endsWith(" it sent more than 1000 bytes before authenticating"),
      refusals[0],
    );
    await server.close();
  });
});

Deno.test("an agent-side channel whose reader stops stops reading its socket", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const { server } = await listen(agent, { maxInboundBytes: 64 * 1024 });
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    const block = new Uint8Array(1024 * 1024);
    let accepted = 0;
    const pushing = (async () => {
      while (accepted < 256 * 1024 * 1024) {
        await client.write(block);
        accepted += block.length;
      }
    })().catch(() => {});
    let previous = -1;
    while (accepted !== previous) {
      previous = accepted;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    assert(accepted < 64 * 1024 * 1024, `${accepted} bytes taken by a reader that reads none`);
    client.close();
    await pushing;
    await client.closed;
    await server.close();
  });
});

Deno.test("an agent-side write the peer does not read within sendTimeoutMs drops the channel", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const limits: string[] = [];
    let failure: unknown;
    const { server } = await listen(agent, {
      sendTimeoutMs: 500,
      onLimit: (_remote, reason) => limits.push(reason),
      onChannel: async (channel) => {
        try {
          for (;;) await channel.write(new Uint8Array(1024 * 1024));
        } catch (error) {
          failure = error;
        }
      },
    });
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    await until(() => failure !== undefined, "the agent's write fails");
    assert(failure instanceof ChannelError && failure.code === "closed", String(failure));
    assertEquals(limits, ["it did not read 1048576 bytes within 500 ms (the send deadline)"]);
    client.close();
    await server.close();
  });
});

Deno.test("an agent-side channel silent both ways for idleTimeoutMs is closed", async () => {
  await withPairings(1, async ({ agent, ids }) => {
    const limits: string[] = [];
    const { server, channels } = await listen(agent, {
      idleTimeoutMs: 300,
      onLimit: (_remote, reason) => limits.push(reason),
    });
    const client = await connectChannel({
      hostname: "127.0.0.1",
      port: server.port,
      credentials: ids,
    });
    assertEquals((await Array.fromAsync(client.chunks())).length, 0);
    await channels[0].closed;
    assertEquals(limits, ["no byte either way for 300 ms (the idle timeout)"]);
    await client.closed;
    await server.close();
  });
});
