/**
 * The IDS loads its own programs through the agent (LOAD), on the real kernel: an agent started
 * without an embedded object serves `ps` from the object the IDS sent; objects whose programs
 * write user memory, send signals or are not uprobes are refused by name; the verifier's log of
 * a refused load comes back; a LOAD over the cap is refused unread; what a connection loaded is
 * gone when it closes or unloads, and the caps hold. What the agent really holds is read from
 * its own /proc/PID/fdinfo (each BPF program fd's `prog_tag`), not from its answers.
 */

import {
  assert,
  assertEquals,
  assertRejects,
  BPF_PRELUDE,
  compileBpf,
  eventually,
  privilegedTest,
} from "./support/mod.ts";
import { describePrograms, spawnAgent, WALK_OBJECT, WALKER_PROGRAMS } from "../agent/mod.ts";
import { AgentClient, AgentError, AgentLoadError, openSession } from "../ids/client/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import {
  connectChannel,
  encodeFrame,
  ensureIdsCredentials,
  ErrorCode,
  FrameDecoder,
  FrameType,
  LIMITS,
  parseFrame,
  PROTOCOL_VERSION,
} from "../protocol/mod.ts";

/**
 * The tags of the BPF programs process `pid` holds an fd of, as its fdinfo says (the fds of the
 * programs themselves, not of the links that attach them, whose fdinfo names the program too).
 */
function programTags(pid: number): string[] {
  const tags: string[] = [];
  for (const entry of Deno.readDirSync(`/proc/${pid}/fdinfo`)) {
    try {
      const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
      const tag = /^prog_tag:\s*([0-9a-f]{16})$/m.exec(info)?.[1];
      if (tag && !/^link_type:/m.test(info)) tags.push(tag);
    } catch {
      // the fd was closed meanwhile
    }
  }
  return tags.sort();
}

async function withAgent(
  args: string[],
  fn: (agent: Awaited<ReturnType<typeof spawnAgent>>, state: string) => Promise<void>,
): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-load-" });
  try {
    await using agent = await spawnAgent({ stateDir: state, args: ["--ring-mb", "4", ...args] });
    await fn(agent, state);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
}

async function connect(agent: { hostname: string; port: number }, state: string) {
  return await AgentClient.connect({
    hostname: agent.hostname,
    port: agent.port,
    credentials: await ensureIdsCredentials(state),
  });
}

privilegedTest(
  "an agent started without an object serves ps from the object the IDS loads, and unloads it",
  async () => {
    await withAgent(["--no-default-object"], async (agent, state) => {
      assertEquals(programTags(agent.pid), [], "the agent loaded nothing at start");
      using bare = await connect(agent, state);
      assertEquals([bare.info.programs, bare.info.anchor], ["none", 0n]);
      const early = await assertRejects(() => bare.read(0xffff_8880_0000_0000n, 8), AgentError);
      assertEquals(early.code, ErrorCode.NOT_READY);
      assert(early.message.includes("send LOAD first"), early.message);
      bare.close();

      {
        using session = await openSession({ agent: agent.address, state });
        const { processes, stats } = await session.processes("prefetch");
        assert(!stats.truncated, `the walk was truncated: ${stats.reason}`);
        const pids = new Set(processes.map((p) => p.pid));
        assert(pids.has(agent.pid) && pids.has(Deno.pid), "ps lists the agent and this test");
        assertEquals(new Set(session.programs.map((p) => p.name)), new Set(WALKER_PROGRAMS));
        for (const p of session.programs) assertEquals([p.section, p.type], ["uprobe", "kprobe"]);
        // What the agent answered is what its process holds.
        assertEquals(session.programs.map((p) => p.tag).sort(), programTags(agent.pid));
      }
      await eventually(
        "the session's programs unloaded",
        () => Promise.resolve(programTags(agent.pid).length === 0 ? true : undefined),
      );

      // The command line: the same, through `ps --json`.
      const ps = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          ...IDS_PERMISSIONS,
          new URL("../ids/main.ts", import.meta.url).href,
          ...["ps", "--agent", agent.address, "--state", state, "--json"],
        ],
        stdin: "null",
      }).output();
      assert(ps.success, new TextDecoder().decode(ps.stderr));
      const out = JSON.parse(new TextDecoder().decode(ps.stdout));
      assert(out.processes.some((p: { pid: number }) => p.pid === agent.pid), "ps lists the agent");
      const names = out.stats.programs.map((p: { name: string }) => p.name);
      assertEquals(new Set(names), new Set(WALKER_PROGRAMS));
      for (const p of out.stats.programs) assert(/^[0-9a-f]{16}$/.test(p.tag), p.tag);
    });
  },
);

privilegedTest(
  "an agent with its default object: the IDS loads its own anyway, the same programs and tags",
  async () => {
    await withAgent([], async (agent, state) => {
      const before = programTags(agent.pid);
      assertEquals(before.length, WALKER_PROGRAMS.length, "the default walker");
      using session = await openSession({ agent: agent.address, state });
      // Both walkers are held while the session lasts, with the same kernel tags.
      assertEquals(programTags(agent.pid), [...before, ...before].sort());
      assertEquals(describePrograms(session.programs), session.client.info.programs);
      const { processes } = await session.processes("prefetch");
      assert(processes.some((p) => p.pid === agent.pid), "ps lists the agent");
    });
  },
);

privilegedTest(
  "the agent refuses, by name, objects that write, signal or are not uprobes, and goes on",
  async () => {
    await withAgent(["--no-default-object"], async (agent, state) => {
      using client = await connect(agent, state);
      const objects: [string, string, string][] = [
        [
          "bpf_probe_write_user",
          `SEC("uprobe") int scribble(void *ctx) {
  __u64 zero = 0;
  bpf_probe_write_user((void *)0x10000, &zero, sizeof(zero));
  return 0;
}`,
          "calls helper bpf_probe_write_user (36)",
        ],
        [
          "bpf_send_signal",
          `SEC("uprobe") int kill_caller(void *ctx) { bpf_send_signal(9); return 0; }`,
          "calls helper bpf_send_signal (109)",
        ],
        [
          "kprobe",
          `SEC("kprobe/do_sys_openat2") int opens(void *ctx) { return 0; }`,
          'section "kprobe/do_sys_openat2" is a kprobe',
        ],
        ["xdp", `SEC("xdp") int pass(void *ctx) { return 2; }`, 'section "xdp" is a network'],
      ];
      for (const [what, body, says] of objects) {
        const elf = await compileBpf(`${BPF_PRELUDE}${body}`);
        const error = await assertRejects(() => client.load(elf), AgentLoadError);
        assertEquals([what, error.code], [what, ErrorCode.REFUSED]);
        assert(error.message.includes(says), `${what}: "${error.message}" lacks "${says}"`);
      }
      assertEquals(programTags(agent.pid), [], "nothing refused was loaded");

      // The verifier refuses what passed the check: its log comes back, bounded.
      const walk = new URL("../bpf/walk.bpf.c", import.meta.url).pathname;
      const broken = await compileBpf(`#include "${walk}"
SEC("uprobe") int wild(void *ctx) { return *(int *)(long)bpf_get_prandom_u32(); }`);
      const verifier = await assertRejects(() => client.load(broken), AgentLoadError);
      assertEquals(verifier.code, ErrorCode.FAULT);
      assert(verifier.message.includes("Cannot load"), verifier.message);
      assert(/invalid mem access/.test(verifier.log), `no verifier log: ${verifier.log}`);
      assert(new TextEncoder().encode(verifier.log).length <= LIMITS.maxLoadLog);
      assertEquals(programTags(agent.pid), [], "nothing the verifier refused is held");

      // The same connection still loads the real walker, reads with it, and unloads it.
      const loaded = await client.load(await Deno.readFile(WALK_OBJECT));
      assertEquals(loaded.programs.map((p) => p.tag).sort(), programTags(agent.pid));
      assertEquals((await client.read(loaded.anchor, 64)).length, 64);
      assertEquals(await client.unload(), 1);
      assertEquals(programTags(agent.pid), []);
      assertEquals(await client.unload(), 0);
    });
  },
);

privilegedTest(
  "a LOAD over the object cap is refused unread, and the caps on objects hold",
  async () => {
    await withAgent(
      ["--no-default-object", "--max-objects-per-connection", "2", "--max-objects", "3"],
      async (agent, state) => {
        using client = await connect(agent, state);
        await assertRejects(
          () => client.load(new Uint8Array(LIMITS.maxObject + 1)),
          RangeError,
          "the limit is",
        );
        // The raw protocol: a LOAD frame announcing one byte more than the cap.
        const credentials = await ensureIdsCredentials(state);
        using channel = await connectChannel({
          hostname: agent.hostname,
          port: agent.port,
          credentials,
        });
        await channel.write(
          encodeFrame({ type: FrameType.HELLO, id: 1, version: PROTOCOL_VERSION }),
        );
        const head = new Uint8Array(13);
        const view = new DataView(head.buffer);
        view.setUint32(0, 9 + LIMITS.maxObject + 1, true);
        view.setUint8(4, FrameType.LOAD);
        view.setUint32(5, 2, true);
        view.setUint32(9, LIMITS.maxObject + 1, true);
        await channel.write(head);
        const decoder = new FrameDecoder();
        const answers = [];
        for await (const chunk of channel.chunks()) {
          decoder.push(chunk);
          for (let raw = decoder.next(); raw; raw = decoder.next()) answers.push(parseFrame(raw));
        }
        const last = answers.at(-1)!;
        assertEquals(answers.map((f) => f.type), [FrameType.HELLO, FrameType.ERROR]);
        assert(last.type === FrameType.ERROR && last.code === ErrorCode.TOO_LARGE, "TOO_LARGE");
        assert(last.message.includes("is outside 5.."), last.message);

        const walk = await Deno.readFile(WALK_OBJECT);
        await client.load(walk);
        await client.load(walk);
        const mine = await assertRejects(() => client.load(walk), AgentError);
        assertEquals(mine.code, ErrorCode.TOO_LARGE);
        assert(mine.message.includes("the most one may"), mine.message);
        {
          using other = await connect(agent, state);
          await other.load(walk);
          using third = await connect(agent, state);
          const total = await assertRejects(() => third.load(walk), AgentError);
          assert(total.message.includes("the agent holds 3 objects"), total.message);
          assertEquals(programTags(agent.pid).length, 3 * WALKER_PROGRAMS.length);
        }
        await eventually(
          "the closed connections' objects unloaded",
          () =>
            Promise.resolve(
              programTags(agent.pid).length === 2 * WALKER_PROGRAMS.length ? true : undefined,
            ),
        );
        // The connection's walker is the last object it loaded; it still serves.
        assertEquals((await client.read(client.anchor, 8)).length, 8);
      },
    );
  },
);
