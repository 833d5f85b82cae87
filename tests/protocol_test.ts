/**
 * Hostile frames against the real agent: every bad frame gets an ERROR or a clean close, the
 * agent keeps serving, and other connections are unaffected.
 */

import { assert, assertEquals } from "./assert.ts";
import { privilegedTest } from "./privileged.ts";
import { type AgentProcess, spawnAgent } from "../agent/process.ts";
import { AgentClient } from "../ids/client.ts";
import { type Channel, connectChannel } from "../protocol/channel.ts";
import { ensureIdsCredentials } from "../protocol/credentials.ts";
import {
  encodeFrame,
  ErrorCode,
  type Frame,
  FrameDecoder,
  FrameType,
  parseFrame,
  PrefetchTarget,
  PROTOCOL_VERSION,
} from "../protocol/frames.ts";

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
