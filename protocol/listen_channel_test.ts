import net from "node:net";
import { assert, assertEquals } from "../tests/support/mod.ts";
import { connectChannel } from "./mod.ts";
import {
  listen,
  rawPeer,
  rawTlsClient,
  readBytes,
  until,
  withPairings,
} from "./_channel_test_utils.ts";

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
