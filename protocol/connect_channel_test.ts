import net from "node:net";
import { join } from "node:path";
import { assertEquals, assertRejects } from "../tests/support/mod.ts";
import { ChannelError, connectChannel, ensureAgentCredentials } from "./mod.ts";
import { listen, pattern, readBytes, sha256, until, withPairings } from "./_channel_test_utils.ts";

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
