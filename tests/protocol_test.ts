/**
 * Hostile frames against the real agent: every bad frame gets an ERROR or a clean close, the
 * agent keeps serving, and other connections are unaffected.
 */

import { assert, assertEquals, privilegedTest } from "./support/mod.ts";
import { type AgentProcess, spawnAgent } from "../agent/mod.ts";
import { AgentClient } from "../ids/client/mod.ts";
import {
  type Channel,
  connectChannel,
  dataRecords,
  EdgeKind,
  encodeFrame,
  encodePlan,
  ensureIdsCredentials,
  ErrorCode,
  FEATURE_PACKED_PLANS,
  type Frame,
  FrameDecoder,
  FrameType,
  packPlan,
  parseFrame,
  type Plan,
  PLAN_SIZE,
  PrefetchTarget,
  PROTOCOL_VERSION,
  StopReason,
} from "../protocol/mod.ts";
import { parseBtf } from "../ids/btf/mod.ts";

/** A raw authenticated connection: sends bytes, reads whole frames. */
class Raw implements Disposable {
  #decoder = new FrameDecoder();
  #chunks: AsyncIterator<Uint8Array>;
  constructor(readonly channel: Channel) {
    this.#chunks = channel.chunks()[Symbol.asyncIterator]();
  }
  static async open(agent: AgentProcess, state: string): Promise<Raw> {
    const credentials = await ensureIdsCredentials(state);
    return new Raw(
      await connectChannel({ hostname: agent.hostname, port: agent.port, credentials }),
    );
  }
  send(bytes: Uint8Array): Promise<void> {
    return this.channel.write(bytes);
  }
  /** The next frame, or undefined when the agent closed the connection. */
  async next(): Promise<Frame | undefined> {
    for (;;) {
      const raw = this.#decoder.next();
      if (raw) return parseFrame(raw);
      const { value, done } = await this.#chunks.next();
      if (done) return undefined;
      this.#decoder.push(value);
    }
  }
  /** Frames until the request's last (END, ERROR or HELLO). */
  async answer(): Promise<Frame[]> {
    const frames: Frame[] = [];
    for (;;) {
      const frame = await this.next();
      if (!frame) return frames;
      frames.push(frame);
      if (
        frame.type === FrameType.END || frame.type === FrameType.ERROR ||
        frame.type === FrameType.HELLO
      ) {
        return frames;
      }
    }
  }
  [Symbol.dispose](): void {
    this.channel.close();
  }
}

function errorOf(frames: Frame[]): { id: number; code: number; message: string } {
  const last = frames[frames.length - 1];
  assert(last?.type === FrameType.ERROR, `expected ERROR, got ${JSON.stringify(last?.type)}`);
  return last as { id: number; code: number; message: string };
}

function rawFrame(type: number, id: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 5 + payload.length, true);
  view.setUint8(4, type);
  view.setUint32(5, id, true);
  out.set(payload, 9);
  return out;
}

const hello = encodeFrame({ type: FrameType.HELLO, id: 1, version: PROTOCOL_VERSION });

privilegedTest("the agent answers bad frames with ERROR and keeps the connection", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-state-" });
  await using agent = await spawnAgent({ stateDir: state });
  using raw = await Raw.open(agent, state);

  await raw.send(encodeFrame({ type: FrameType.GET_BTF, id: 5 }));
  assertEquals(errorOf(await raw.answer()).code, ErrorCode.NOT_READY);

  await raw.send(hello);
  assertEquals((await raw.answer())[0].type, FrameType.HELLO);

  await raw.send(rawFrame(0x7e, 6, new Uint8Array([1, 2, 3])));
  const unknown = errorOf(await raw.answer());
  assertEquals([unknown.id, unknown.code], [6, ErrorCode.UNKNOWN_TYPE]);

  await raw.send(rawFrame(FrameType.READ, 7, new Uint8Array(5)));
  assertEquals(errorOf(await raw.answer()).code, ErrorCode.BAD_FRAME);

  await raw.send(encodeFrame({ type: FrameType.READ, id: 8, addr: 0x1000n, len: 8 }));
  const user = errorOf(await raw.answer());
  assertEquals(user.code, ErrorCode.FAULT);
  assert(user.message.includes("kernel half"), user.message);

  await raw.send(
    encodeFrame({ type: FrameType.READ, id: 9, addr: 0xffff_ffff_ffff_fff0n, len: 64 }),
  );
  assertEquals(errorOf(await raw.answer()).code, ErrorCode.FAULT);

  await raw.send(
    encodeFrame({ type: FrameType.READ, id: 10, addr: 0xffff_8880_0000_0000n, len: 8 << 20 }),
  );
  assertEquals(errorOf(await raw.answer()).code, ErrorCode.TOO_LARGE);

  await raw.send(
    encodeFrame({ type: FrameType.READ, id: 11, addr: 0xffff_8000_0000_0000n, len: 8 }),
  );
  const unmapped = errorOf(await raw.answer());
  assertEquals(unmapped.code, ErrorCode.FAULT);
  assert(unmapped.message.includes("errno"), unmapped.message);

  await raw.send(encodeFrame({
    type: FrameType.PREFETCH,
    id: 12,
    target: PrefetchTarget.TASKS,
    maxObjects: 0xffff_ffff,
    maxBytes: 1,
    plan: new Uint8Array(),
  }));
  assertEquals(errorOf(await raw.answer()).code, ErrorCode.TOO_LARGE);

  await raw.send(encodeFrame({
    type: FrameType.END,
    id: 13,
    stats: {
      objects: 0,
      bytes: 0,
      faults: 0,
      pruned: 0,
      guestNs: 0,
      agentNs: 0,
      stop: 0,
      root: 0n,
    },
  }));
  assertEquals(errorOf(await raw.answer()).code, ErrorCode.BAD_FRAME);

  // After all that, the same connection still serves a real request.
  await raw.send(
    encodeFrame({
      type: FrameType.PREFETCH,
      id: 14,
      target: PrefetchTarget.TASKS,
      maxObjects: 5,
      maxBytes: 1 << 20,
      plan: new Uint8Array(),
    }),
  );
  const frames = await raw.answer();
  const end = frames[frames.length - 1];
  assert(end.type === FrameType.END && end.stats.objects === 5, JSON.stringify(end.type));
});

privilegedTest(
  "an oversized frame gets an ERROR and a clean close; other connections go on",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-state-" });
    await using agent = await spawnAgent({ stateDir: state });
    const credentials = await ensureIdsCredentials(state);
    using bystander = await AgentClient.connect({
      hostname: agent.hostname,
      port: agent.port,
      credentials,
    });

    using raw = await Raw.open(agent, state);
    const huge = new Uint8Array(9);
    new DataView(huge.buffer).setUint32(0, 0xffff_fff0, true);
    await raw.send(huge);
    const frames = await raw.answer();
    assertEquals(errorOf(frames).code, ErrorCode.TOO_LARGE);
    assertEquals(await raw.next(), undefined, "the agent closes the connection");

    using truncated = await Raw.open(agent, state);
    await truncated.send(hello.subarray(0, 6));
    truncated.channel.close();

    using garbage = await Raw.open(agent, state);
    await garbage.send(crypto.getRandomValues(new Uint8Array(4096)));
    const reply = await garbage.answer();
    assert(reply.length === 0 || reply[reply.length - 1].type === FrameType.ERROR);

    const bytes = await bystander.read(bystander.info.anchor, 64);
    assertEquals(bytes.length, 64);
  },
);

privilegedTest("the agent walks a PREFETCH plan and refuses a bad one with BAD_FRAME", async () => {
  const btf = parseBtf(await Deno.readFile("/sys/kernel/btf/vmlinux"));
  const pid = btf.field("task_struct", "pid").offset;
  const comm = btf.field("task_struct", "comm").offset;
  const parent = btf.field("task_struct", "real_parent").offset;
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-state-" });
  await using agent = await spawnAgent({ stateDir: state });
  using raw = await Raw.open(agent, state);
  await raw.send(hello);
  const greeting = (await raw.answer())[0];
  assert(greeting.type === FrameType.HELLO && greeting.agent, "HELLO");
  const anchor = greeting.agent.anchor;

  // The agent's task, then real_parent up to init_task (its own parent), copying pid and comm.
  const ancestors = (maxDepth: number): Plan => ({
    roots: [{ addr: anchor, node: 0 }],
    nodes: [{
      dedupe: true,
      ranges: [{ off: pid, len: 4 }, { off: comm, len: 16 }],
      edges: [{ kind: EdgeKind.PTR, target: 0, off: parent, delta: 0, max: 1 }],
    }],
    maxDepth,
  });
  const prefetch = (id: number, plan: Uint8Array) =>
    raw.send(encodeFrame({
      type: FrameType.PREFETCH,
      id,
      target: PrefetchTarget.PLAN,
      maxObjects: 1000,
      maxBytes: 1 << 20,
      plan,
    }));

  await prefetch(20, encodePlan(ancestors(64)));
  const frames = await raw.answer();
  const end = frames.pop()!;
  assert(end.type === FrameType.END, `expected END, got ${end.type}`);
  const records = frames.flatMap((f) =>
    f.type === FrameType.DATA ? [...dataRecords(f.payload)] : []
  );
  assertEquals(records.length, end.stats.objects);
  assertEquals(records.slice(0, 2).map((r) => r.addr), [
    anchor + BigInt(pid),
    anchor + BigInt(comm),
  ]);
  assertEquals([end.stats.stop, end.stats.pruned, end.stats.root], [
    StopReason.COMPLETE,
    0,
    anchor,
  ]);
  assert(
    records.some((r) =>
      new DataView(r.bytes.buffer, r.bytes.byteOffset).getInt32(0, true) === 0 &&
      r.bytes.length === 4
    ),
    "reaches init_task",
  );

  await prefetch(21, encodePlan(ancestors(0)));
  const shallow = (await raw.answer()).pop()!;
  assert(shallow.type === FrameType.END, `expected END, got ${shallow.type}`);
  assertEquals([shallow.stats.objects, shallow.stats.pruned], [2, 1]);

  // A plan of any other length than the struct's is packed (protocol/plan_packing.ts).
  await prefetch(22, new Uint8Array(10));
  const short = errorOf(await raw.answer());
  assertEquals([short.id, short.code], [22, ErrorCode.BAD_FRAME]);
  assert(short.message.includes("Invalid packed plan: it ends at byte 10"), short.message);
  assert(greeting.agent.features.includes(FEATURE_PACKED_PLANS), "the agent takes packed plans");
  await prefetch(28, packPlan(encodePlan(ancestors(64))));
  const packed = (await raw.answer()).pop()!;
  assert(packed.type === FrameType.END, `expected END, got ${packed.type}`);
  assertEquals(packed.stats.objects, end.stats.objects, "the packed plan walks as the plan");

  await prefetch(23, new Uint8Array(PLAN_SIZE));
  const empty = errorOf(await raw.answer());
  assertEquals(empty.code, ErrorCode.BAD_FRAME);
  assert(empty.message.includes("0 roots"), empty.message);

  // The connection still serves both kinds of prefetch.
  await prefetch(24, encodePlan(ancestors(64)));
  const again = (await raw.answer()).pop()!;
  assert(again.type === FrameType.END && again.stats.objects === end.stats.objects, "plan again");
  // The same bytes again are the plan the connection sent last, checked already; bytes that
  // differ from it in one field are checked anew, and refused.
  await prefetch(26, encodePlan(ancestors(64)));
  const same = (await raw.answer()).pop()!;
  assert(same.type === FrameType.END && same.stats.objects === end.stats.objects, "same plan");
  const broken = encodePlan(ancestors(64));
  new DataView(broken.buffer).setUint32(0, 1000, true);
  await prefetch(27, broken);
  const tooMany = errorOf(await raw.answer());
  assertEquals([tooMany.id, tooMany.code], [27, ErrorCode.BAD_FRAME]);
  assert(tooMany.message.includes("1000 roots"), tooMany.message);
  await raw.send(encodeFrame({
    type: FrameType.PREFETCH,
    id: 25,
    target: PrefetchTarget.TASKS,
    maxObjects: 5,
    maxBytes: 1 << 20,
    plan: new Uint8Array(),
  }));
  const tasks = (await raw.answer()).pop()!;
  assert(tasks.type === FrameType.END && tasks.stats.objects === 5, "tasks");
});

privilegedTest("SYMBOLS names the text symbols at addresses as /proc/kallsyms does", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-state-" });
  await using agent = await spawnAgent({ stateDir: state });
  using client = await AgentClient.connect({
    hostname: agent.hostname,
    port: agent.port,
    credentials: await ensureIdsCredentials(state),
  });
  // Ground truth from /proc/kallsyms: the first name at each of a few function addresses.
  const truth = new Map<bigint, string>();
  for (const line of Deno.readTextFileSync("/proc/kallsyms").split("\n")) {
    const [addr, type, name, module] = line.split(/\s+/);
    if (!/^[tT]$/.test(type ?? "") || module || !/^(x64_sys_call|do_exit|vfs_read)$/.test(name)) {
      continue;
    }
    const at = BigInt(`0x${addr}`);
    if (at !== 0n && !truth.has(at)) truth.set(at, name);
  }
  assert(truth.size > 0, "kallsyms shows addresses");
  const firsts = new Map<bigint, string>();
  for (const line of Deno.readTextFileSync("/proc/kallsyms").split("\n")) {
    const [addr, , name, module] = line.split(/\s+/);
    if (!name) continue;
    const at = BigInt(`0x${addr}`);
    if (truth.has(at) && !firsts.has(at)) firsts.set(at, module ? `${name} ${module}` : name);
  }
  const names = await client.symbolNames([...truth.keys(), 1n]);
  assertEquals(names, firsts, "the first symbol at each address; none at address 1");
});
