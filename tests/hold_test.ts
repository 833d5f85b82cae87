/**
 * The hold on the real kernel: a real agent started with `--hold-cgroup` on a cgroup made here,
 * a process inside it that counts in a file, and the IDS asking for holds. A held process
 * stops counting; a released one (by RELEASE, by the cap, by its connection closing) counts
 * again. Run on every freezer this machine has (cgroup v2, v1 freezer). Nothing here asserts a
 * duration: a stalled counter is read twice, a running one is waited for.
 */

import {
  assert,
  assertEquals,
  assertRejects,
  cannotMakeCgroup,
  eventually,
  freezerHierarchies,
  type FreezerHierarchy,
  missingPrivilege,
  requiringTest,
  TestCgroup,
} from "./support/mod.ts";
import { AGENT_PERMISSIONS, spawnAgent } from "../agent/mod.ts";
import { AgentError, openSession } from "../ids/client/mod.ts";
import { ErrorCode, HoldState } from "../protocol/mod.ts";

const hierarchies = freezerHierarchies();
const usable: FreezerHierarchy[] = [];
const problems: string[] = [];
for (const hierarchy of hierarchies) {
  const problem = await cannotMakeCgroup(hierarchy);
  if (problem) problems.push(problem);
  else usable.push(hierarchy);
}
const noFreezer = usable.length
  ? null
  : hierarchies.length
  ? problems.join("; ")
  : "no cgroup v2 or v1 freezer hierarchy is mounted";
const reason = missingPrivilege() ?? noFreezer;
/** Where the tests that need one freezer run. */
const first = usable[0] ?? { version: 2, mount: "/sys/fs/cgroup" };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A cgroup with a process counting in a file, and an agent that may hold that cgroup. */
async function heldSetup(hierarchy: FreezerHierarchy, args: string[] = []) {
  const stack = new AsyncDisposableStack();
  try {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-hold-state-" });
    stack.defer(() => Deno.remove(state, { recursive: true }));
    const cgroup = stack.use(await TestCgroup.create(hierarchy, "hold-test"));
    const file = `${state}/counter`;
    cgroup.spawn(`i=0; while :; do i=$((i+1)); echo $i > '${file}'; sleep 0.02; done`);
    const lines: string[] = [];
    const agent = stack.use(
      await spawnAgent({
        stateDir: state,
        args: ["--hold-cgroup", cgroup.dir, ...args],
        log: (line) => lines.push(line),
      }),
    );
    const count = () => Deno.readTextFile(file).catch(() => "");
    /** True once the counter moves (waited for at most 10 s). */
    const runs = async () => {
      const before = await count();
      for (let i = 0; i < 500; i++) {
        await sleep(20);
        if (await count() !== before) return true;
      }
      return false;
    };
    /** True when the counter does not move between two readings some time apart. */
    const stalls = async () => {
      const before = await count();
      await sleep(300);
      return await count() === before;
    };
    assert(await runs(), "the counting process runs before any hold");
    const disposeAsync = () => stack.disposeAsync();
    return { state, cgroup, agent, lines, runs, stalls, [Symbol.asyncDispose]: disposeAsync };
  } catch (error) {
    await stack.disposeAsync();
    throw error;
  }
}

for (const hierarchy of usable.length ? usable : [first]) {
  const v = `cgroup v${hierarchy.version}`;

  requiringTest(
    `${v}: HOLD freezes the cgroup's processes and RELEASE thaws them`,
    reason,
    async () => {
      await using s = await heldSetup(hierarchy);
      using session = await openSession({ agent: s.agent.address, state: s.state });
      const held = await session.client.hold(5000);
      assertEquals(held.state, HoldState.HOLDING);
      assertEquals(held.capMs, 5000);
      assert(await s.cgroup.frozen(), "the kernel reports the cgroup frozen");
      assert(await s.stalls(), "the held process does not count");
      const released = await session.client.release();
      assertEquals(released.state, HoldState.RELEASED);
      assert(released.heldNs >= released.freezeNs && released.heldNs > 0, JSON.stringify(released));
      assert(!await s.cgroup.frozen(), "thawed");
      assert(await s.runs(), "the released process counts again");
      assertEquals((await session.client.release()).state, HoldState.NONE);
    },
  );

  requiringTest(`${v}: the cap thaws a hold nobody releases`, reason, async () => {
    await using s = await heldSetup(hierarchy, ["--max-hold-ms", "300"]);
    using session = await openSession({ agent: s.agent.address, state: s.state });
    const held = await session.client.hold(10_000);
    assertEquals(held.capMs, 300, "the agent grants its own cap, not what was asked");
    assert(await s.runs(), "the process counts again once the cap ran out");
    await eventually(
      "the expiry's log line",
      () => Promise.resolve(s.lines.find((l) => l.includes("reached its cap of 300 ms"))),
    );
    const released = await session.client.release();
    assertEquals(released.state, HoldState.EXPIRED);
    assertEquals(released.capMs, 300);
  });

  requiringTest(`${v}: closing the holding connection thaws the workload`, reason, async () => {
    await using s = await heldSetup(hierarchy);
    const session = await openSession({ agent: s.agent.address, state: s.state });
    await session.client.hold(10_000);
    assert(await s.stalls(), "held");
    session.close();
    await eventually(
      "the agent to see the connection close",
      () => Promise.resolve(s.lines.find((l) => l.includes("its holder's connection closed"))),
    );
    assert(!await s.cgroup.frozen(), "thawed before the cap");
    assert(await s.runs(), "the process counts again");
  });

  requiringTest(`${v}: one hold at a time across connections`, reason, async () => {
    await using s = await heldSetup(hierarchy);
    using a = await openSession({ agent: s.agent.address, state: s.state });
    using b = await openSession({ agent: s.agent.address, state: s.state });
    await a.client.hold(5000);
    const error = await assertRejects(() => b.client.hold(5000), AgentError);
    assertEquals(error.code, ErrorCode.NOT_READY);
    assert(error.message.includes("another connection holds"), error.message);
    assertEquals((await b.client.release()).state, HoldState.NONE, "b cannot release a's hold");
    assert(await s.stalls(), "still held for a");
    await a.client.release();
    assert(await s.runs(), "released");
  });

  requiringTest(`${v}: a held on-demand snapshot reports the held time`, reason, async () => {
    await using s = await heldSetup(hierarchy);
    using session = await openSession({ agent: s.agent.address, state: s.state });
    session.holdMs = 10_000;
    const { processes, stats } = await session.processes("on-demand");
    assertEquals(stats.hold?.state, "held", JSON.stringify(stats.hold));
    assertEquals(stats.hold?.capMs, 10_000);
    assert(stats.hold!.heldMs > 0 && stats.hold!.heldMs <= stats.ms, JSON.stringify(stats));
    const inside = await s.cgroup.pids();
    assert(inside.some((pid) => processes.some((p) => p.pid === pid)), "the held shell is listed");
    assert(!await s.cgroup.frozen(), "thawed after the snapshot");
    assert(await s.runs(), "the process counts again");
  });

  requiringTest(
    `${v}: an agent moved into the held cgroup refuses to hold it`,
    reason,
    async () => {
      await using s = await heldSetup(hierarchy);
      using session = await openSession({ agent: s.agent.address, state: s.state });
      const line = hierarchy.version === 2 ? /^0::(.*)$/m : /^\d+:[^:]*\bfreezer\b[^:]*:(.*)$/m;
      const home = line.exec(await Deno.readTextFile(`/proc/${s.agent.pid}/cgroup`))![1];
      await s.cgroup.add(s.agent.pid);
      try {
        const error = await assertRejects(() => session.client.hold(5000), AgentError);
        assert(error.message.includes("must never freeze itself"), error.message);
        assert(!await s.cgroup.frozen(), "nothing frozen");
      } finally {
        await s.cgroup.add(s.agent.pid, `${hierarchy.mount}${home === "/" ? "" : home}`);
      }
      assertEquals((await session.client.hold(5000)).state, HoldState.HOLDING, "moved out: held");
      await session.client.release();
    },
  );
}

/** Starts the agent with `args` inside the cgroup `dir` and returns its exit status and output. */
async function agentIn(cgroup: TestCgroup, dir: string, args: string[]) {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-hold-state-" });
  try {
    const agent = [Deno.execPath(), "run", ...AGENT_PERMISSIONS, "agent/main.ts"];
    const child = cgroup.spawn(
      `exec ${[...agent, "--listen", "127.0.0.1:0", "--state", state, ...args].join(" ")}`,
      dir,
      { stderr: "piped", cwd: new URL("..", import.meta.url).pathname },
    );
    const { code, stderr } = await child.output();
    return { code, stderr: new TextDecoder().decode(stderr) };
  } finally {
    await Deno.remove(state, { recursive: true });
  }
}

requiringTest(
  "the agent refuses to start holding its own cgroup or one above it",
  reason,
  async () => {
    await using cgroup = await TestCgroup.create(first, "hold-self");
    const inner = await cgroup.child("inner");
    for (const dir of [cgroup.dir, inner]) {
      const { code, stderr } = await agentIn(cgroup, dir, ["--hold-cgroup", cgroup.dir]);
      assertEquals(code, 1, stderr);
      assert(stderr.includes(`Cannot hold cgroup "${cgroup.dir}"`), stderr);
      assert(stderr.includes("must never freeze itself"), stderr);
      assert(!stderr.includes("listening on"), "it never listened");
    }
    const root = await agentIn(cgroup, inner, ["--hold-cgroup", first.mount]);
    assertEquals(root.code, 1, root.stderr);
    assert(root.stderr.includes("the root of its hierarchy"), root.stderr);
    const tmp = await agentIn(cgroup, inner, ["--hold-cgroup", "/tmp"]);
    assertEquals(tmp.code, 1, tmp.stderr);
    assert(tmp.stderr.includes("not in a cgroup v2 hierarchy or a v1 freezer"), tmp.stderr);
  },
);

requiringTest(
  "an agent without --hold-cgroup answers HOLD with an ERROR and serves on",
  reason,
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-hold-state-" });
    try {
      await using agent = await spawnAgent({ stateDir: state });
      using session = await openSession({ agent: agent.address, state });
      const error = await assertRejects(() => session.client.hold(1000), AgentError);
      assertEquals(error.code, ErrorCode.UNSUPPORTED);
      assert(error.message.includes("started without --hold-cgroup"), error.message);
      session.holdMs = 1000;
      const { processes, stats } = await session.processes("prefetch");
      assertEquals(stats.hold?.state, "refused");
      assert(stats.hold?.error?.includes("started without --hold-cgroup"), stats.hold?.error);
      assert(processes.some((p) => p.pid === agent.pid), "the snapshot was taken anyway");
    } finally {
      await Deno.remove(state, { recursive: true });
    }
  },
);
