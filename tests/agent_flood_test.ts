/**
 * A real agent under a hostile network: floods of unauthenticated connections, a client that
 * never reads, one that pushes far more than it should, one that falls silent. Each test proves
 * what the agent does (who is still served, who is dropped, how much memory it holds), never how
 * fast.
 */

import { assert, assertEquals, assertRejects, privilegedTest } from "./support/mod.ts";
import { type AgentProcess, spawnAgent } from "../agent/mod.ts";
import { AgentClient, AgentError, AgentMisbehaviorError, openSession } from "../ids/client/mod.ts";
import {
  connectChannel,
  ensureIdsCredentials,
  type Frame,
  FrameDecoder,
  FrameType,
  parseFrame,
} from "../protocol/mod.ts";
import {
  drainAnswers,
  holdConnections,
  junkFrame,
  prefetchTasks,
  rawClient,
} from "../tools/mod.ts";
import { procMemory } from "../bench/mod.ts";

const MIB = 1 << 20;
const residentBytes = (pid: number) => procMemory(pid).rssKb * 1024;
/** The agent's memory may grow by this much under any of these attacks. */
const RSS_BOUND = 64 * MIB;

/** Runs `fn` with an agent started with `args`, its log lines collected; cleans up after. */
async function withAgent(
  args: string[],
  fn: (agent: AgentProcess, state: string, log: string[]) => Promise<void>,
): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-flood-" });
  const log: string[] = [];
  try {
    await using agent = await spawnAgent({ stateDir: state, args, log: (l) => log.push(l) });
    await fn(agent, state, log);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
}

/** Lists the guest's processes through the IDS client; the test's own process must be there. */
async function ps(agent: AgentProcess, state: string): Promise<void> {
  using session = await openSession({ agent: agent.address, state });
  const { processes } = await session.processes("prefetch");
  assert(processes.some((p) => p.pid === Deno.pid), `pid ${Deno.pid} is missing from ps`);
}

/** Waits (at most `ms`) until `condition` holds. */
async function until(what: string, condition: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Fails with `what` unless `promise` settles within `ms`: the outcome, not a timing. */
async function within<T>(what: string, promise: Promise<T>, ms = 30_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

privilegedTest(
  "an IDS on the flood's own address still lists processes while idle and slow connections from two addresses exceed every pending cap",
  async () => {
    const caps = [
      "--max-silent-connections",
      "64",
      "--max-handshakes",
      "32",
      "--max-handshakes-per-address",
      "16",
    ];
    await withAgent(caps, async (agent, state, log) => {
      await ps(agent, state);
      const before = residentBytes(agent.pid);
      const floods = ["127.0.0.1", "127.0.0.2"].flatMap((localAddress) => [
        holdConnections({ port: agent.port, localAddress, count: 150 }),
        holdConnections({ port: agent.port, localAddress, count: 50, slow: true }),
      ]);
      try {
        await until(
          "the flood exceeds the silent cap and the per-address handshake cap",
          () =>
            log.some((l) => l.includes("connections were silent (the total cap)")) &&
            log.some((l) => l.includes(`from "127.0.0.1" (the cap per address)`)) &&
            log.some((l) => l.includes(`from "127.0.0.2" (the cap per address)`)),
        );
        for (let round = 0; round < 5; round++) await ps(agent, state);
        const grown = residentBytes(agent.pid) - before;
        assert(grown < RSS_BOUND, `the agent's RSS grew by ${grown} bytes during the flood`);
      } finally {
        for (const flood of floods) flood.stop();
      }
    });
  },
);

privilegedTest(
  "a client that never reads is dropped at the send deadline and another client's ps completes",
  async () => {
    // Shorter than the second after which a stalled peer yields the walker to another.
    await withAgent(["--send-timeout-ms", "400"], async (agent, state, log) => {
      const stuck = await rawClient(agent.port, state);
      for (let id = 2; id < 200; id++) await stuck.channel.write(prefetchTasks(id));
      await within("another client's ps", ps(agent, state));
      await until(
        "the agent logs the drop",
        () => log.some((l) => l.includes("send deadline")),
      ).catch((error) => {
        throw new Error(`${error.message}; the agent logged:\n${log.join("\n")}`);
      });
      const drop = log.find((l) => l.includes("send deadline"))!;
      assert(/dropped 127\.0\.0\.1:\d+: it did not read \d+ bytes within 400 ms/.test(drop), drop);
      stuck.channel.close();
    });
  },
);

privilegedTest(
  "a client that stops reading yields the walker to another client long before its send deadline",
  async () => {
    // What a migrated guest's agent sees: its old connection leads nowhere, a new one waits.
    await withAgent(["--send-timeout-ms", "600000"], async (agent, state, log) => {
      const stuck = await rawClient(agent.port, state);
      for (let id = 2; id < 200; id++) await stuck.channel.write(prefetchTasks(id));
      await within("another client's ps", ps(agent, state));
      const drop = log.find((l) => l.includes("while another peer waited"));
      assert(
        drop && /dropped 127\.0\.0\.1:\d+: it took no frame for 1000 ms/.test(drop),
        log.join("\n"),
      );
      assert(!log.some((l) => l.includes("send deadline")), log.join("\n"));
      stuck.channel.close();
    });
  },
);

privilegedTest(
  "a client that pushes frames and never reads is throttled, and the agent's memory stays flat",
  async () => {
    await withAgent(["--send-timeout-ms", "600000"], async (agent, state) => {
      await ps(agent, state);
      const before = residentBytes(agent.pid);
      const pusher = await rawClient(agent.port, state);
      // Answers bigger than the socket buffers, so that the agent waits for a reader that never
      // comes; then frames of no use, as fast as the agent takes them.
      for (let id = 2; id < 200; id++) await pusher.channel.write(prefetchTasks(id));
      const frame = junkFrame(7, 60 * 1024);
      let pushed = 0;
      let stalled = false;
      const pushing = (async () => {
        while (pushed < 512 * MIB) {
          await pusher.channel.write(frame);
          pushed += frame.length;
        }
      })().catch(() => {});
      for (let previous = -1; !stalled && pushed < 512 * MIB;) {
        previous = pushed;
        await new Promise((resolve) => setTimeout(resolve, 1000));
        stalled = pushed === previous;
      }
      const grown = residentBytes(agent.pid) - before;
      pusher.channel.close();
      await pushing;
      assert(stalled, `the agent took all ${pushed} bytes of a client that reads nothing`);
      assert(pushed < 64 * MIB, `the agent took ${pushed} bytes before pushing back`);
      assert(grown < RSS_BOUND, `the agent's RSS grew by ${grown} bytes`);
      await ps(agent, state);
    });
  },
);

privilegedTest(
  "an authenticated connection that stays silent is closed at the idle timeout",
  async () => {
    await withAgent(["--idle-timeout-ms", "500"], async (agent, state, log) => {
      const idle = await rawClient(agent.port, state);
      await within("the idle connection's close", drainAnswers(idle.channel));
      await until("the agent logs it", () => log.some((l) => l.includes("(the idle timeout)")));
      assert(
        log.some((l) => /dropped 127\.0\.0\.1:\d+: no byte either way for 500 ms/.test(l)),
        log.join("\n"),
      );
      idle.channel.close();
      await ps(agent, state);
    });
  },
);

privilegedTest("a connection over the cap gets an ERROR that names the cap", async () => {
  await withAgent(["--max-connections", "1"], async (agent, state, log) => {
    const first = await rawClient(agent.port, state);
    const credentials = await ensureIdsCredentials(state);
    using second = await connectChannel({ hostname: "127.0.0.1", port: agent.port, credentials });
    const decoder = new FrameDecoder();
    let answer: Frame | undefined;
    for await (const chunk of second.chunks()) {
      decoder.push(chunk);
      const raw = decoder.next();
      if (raw) answer = parseFrame(raw);
      if (answer) break;
    }
    assert(answer?.type === FrameType.ERROR, `the second connection got ${answer?.type}`);
    assertEquals(
      answer.message,
      `Cannot serve "127.0.0.1:${
        log.find((l) => l.includes("(the connection cap)"))?.match(/127\.0\.0\.1:(\d+)/)?.[1]
      }": 1 connections are already open (the connection cap)`,
    );
    // The IDS's client says so too: the agent's word, not a protocol violation.
    const refused = await assertRejects(
      () => AgentClient.connect({ hostname: "127.0.0.1", port: agent.port, credentials }),
      AgentError,
    );
    assert(!(refused instanceof AgentMisbehaviorError), refused.message);
    assert(refused.message.includes("(the connection cap)"), refused.message);
    first.channel.close();
  });
});
