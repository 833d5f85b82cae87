import net from "node:net";
import { assert, assertEquals, assertRejects } from "../tests/support/mod.ts";
import { ChannelError, connectChannel } from "./mod.ts";
import { listen, pattern, readBytes, sha256, until, withPairings } from "./_channel_test_utils.ts";

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
