/**
 * The channel to the real agent: who may talk to it, and what crosses the wire.
 */

import {
  assert,
  assertEquals,
  assertRejects,
  privilegedTest,
  TestProcesses,
} from "./support/mod.ts";
import { spawnAgent } from "../agent/mod.ts";
import { AgentClient, GuestSession } from "../ids/client/mod.ts";
import {
  ChannelError,
  ensureAgentCredentials,
  ensureIdsCredentials,
  fingerprint,
} from "../protocol/mod.ts";

async function stateDirs() {
  return {
    state: await Deno.makeTempDir({ prefix: "ebpfmon-state-" }),
    other: await Deno.makeTempDir({ prefix: "ebpfmon-other-" }),
  };
}

privilegedTest(
  "the agent refuses an IDS whose certificate is not from its pairing CA, and logs it",
  async () => {
    const { state, other } = await stateDirs();
    const log: string[] = [];
    await using agent = await spawnAgent({ stateDir: state, log: (line) => log.push(line) });
    const good = await ensureIdsCredentials(state);
    const foreign = await ensureIdsCredentials(other);
    // Trusts and pins the right agent, but presents another CA's client certificate.
    const credentials = { ...good, key: foreign.key, cert: foreign.cert };
    const error = await assertRejects(
      () => AgentClient.connect({ hostname: agent.hostname, port: agent.port, credentials }),
      ChannelError,
    );
    assertEquals(error.code, "refused");
    for (let i = 0; i < 100 && !log.some((l) => l.includes("refused")); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert(log.some((l) => l.includes("refused 127.0.0.1:")), `agent log: ${log.join("\n")}`);
    // The agent still serves the IDS that holds the credential.
    using client = await AgentClient.connect({
      hostname: agent.hostname,
      port: agent.port,
      credentials: good,
    });
    assert(client.info.agentPid === agent.pid);
  },
);

privilegedTest("the IDS refuses an agent whose identity is not the pinned one", async () => {
  const { state, other } = await stateDirs();
  await using agent = await spawnAgent({ stateDir: state });
  const otherAgent = await ensureAgentCredentials(other);
  const credentials = await ensureIdsCredentials(state, { agentPin: fingerprint(otherAgent.cert) });
  const error = await assertRejects(
    () => AgentClient.connect({ hostname: agent.hostname, port: agent.port, credentials }),
    ChannelError,
  );
  assertEquals(error.code, "pin-mismatch");
  const foreign = await ensureIdsCredentials(other);
  const untrusted = await assertRejects(
    () => AgentClient.connect({ hostname: agent.hostname, port: agent.port, credentials: foreign }),
    ChannelError,
  );
  assert(["untrusted", "pin-mismatch", "refused"].includes(untrusted.code), untrusted.code);
});

/** A TCP relay that records every byte in both directions. */
function startRelay(target: { hostname: string; port: number }) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const captured: Uint8Array[] = [];
  const pumps: Promise<void>[] = [];
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (let n = await from.read(buf); n !== null; n = await from.read(buf)) {
        const chunk = buf.slice(0, n);
        captured.push(chunk);
        for (let at = 0; at < chunk.length;) at += await to.write(chunk.subarray(at));
      }
    } catch {
      // either side closed
    }
    try {
      to.closeWrite();
    } catch {
      // already closed
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      const upstream = await Deno.connect(target);
      pumps.push(pump(conn, upstream), pump(upstream, conn));
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    captured,
    async close() {
      listener.close();
      await accepting.catch(() => {});
      await Promise.all(pumps);
    },
  };
}

function contains(haystack: Uint8Array[], needle: string): boolean {
  const total = new Uint8Array(haystack.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of haystack) {
    total.set(c, at);
    at += c.length;
  }
  const bytes = new TextEncoder().encode(needle);
  outer: for (let i = 0; i + bytes.length <= total.length; i++) {
    for (let j = 0; j < bytes.length; j++) if (total[i + j] !== bytes[j]) continue outer;
    return true;
  }
  return false;
}

privilegedTest(
  "only ciphertext crosses the wire: a listed process name never appears in it",
  async () => {
    const { state } = await stateDirs();
    await using agent = await spawnAgent({ stateDir: state });
    await using children = await TestProcesses.start("ebpfmon-secret", [65534]);
    const relay = startRelay(agent);
    try {
      const credentials = await ensureIdsCredentials(state);
      const client = await AgentClient.connect({
        hostname: "127.0.0.1",
        port: relay.port,
        credentials,
      });
      using session = await GuestSession.open(client, state);
      for (const mode of ["prefetch", "on-demand"] as const) {
        const { processes } = await session.processes(mode);
        assert(processes.some((p) => p.comm === children.children[0].name), `${mode}: listed`);
      }
    } finally {
      await relay.close();
    }
    const bytes = relay.captured.reduce((n, c) => n + c.length, 0);
    assert(bytes > 100_000, `the relay saw ${bytes} bytes`);
    assert(!contains(relay.captured, "ebpfmon-secret"), "a process name crossed the wire in clear");
    assert(!contains(relay.captured, "swapper/0"), "kernel memory crossed the wire in clear");
  },
);
