/**
 * The sending side of `bench/encryption.ts`: the agent's end of the real channel, in a process
 * of its own so that the CPU time it counts is the sender's alone.
 *
 * It loads the agent's credentials from `--state`, listens on loopback like the agent and
 * prints `{"port"}` on stdout. It holds `--mib` MiB of memory laid out as the
 * agent's ring buffer holds it (`u64 address | u32 length | bytes` per 4 KiB page) and, for
 * each `{"run", "batch"}` line on stdin, copies every page into DATA frames with the agent's
 * {@linkcode DataFrameBuilder} flushed at `batch` bytes, writing each frame to the channel as
 * the agent does (one write per frame, awaited). For each `{"run", "answers", "joined"}` it
 * answers that many READ frames off the channel as the agent answers on-demand: a DATA frame of
 * the page, then END, as two writes or (`joined`) one. It then waits for `{"ack"}` (the
 * receiver has every byte) and prints what the run cost it: the CPU time of all its threads, and
 * its writes.
 *
 * Usage (from `bench/encryption.ts` only): `encryption_sender.ts --state DIR --mib N`
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import {
  type Channel,
  DataFrameBuilder,
  EMPTY_END_STATS,
  encodeFrame,
  ensureAgentCredentials,
  FrameDecoder,
  FrameType,
  LIMITS,
  listenChannel,
  parseFrame,
  type RawFrame,
  RECORD_HEADER,
} from "../protocol/mod.ts";

/** The unit of memory: a page, as on-demand reads it. */
export const PAGE = 4096;
/** Where the sent memory claims to be: the start of the direct map of a 4-level kernel. */
export const BASE_ADDRESS = 0xffff_8880_0000_0000n;

/** What the sender prints once it listens. */
export interface SenderReady {
  port: number;
}

/** A run the sender is told to make: pages in frames of `batch` bytes, or `answers` READs. */
export type SenderCommand =
  | { run: number; batch: number }
  | { run: number; answers: number; joined: boolean };

/** What the sender prints after each run. */
export interface SenderRun {
  run: number;
  /** Frames written, one channel write each. */
  writes: number;
  /** Frame bytes written (DATA headers and records). */
  frameBytes: number;
  /** CPU time of the whole process (every thread), user and system, from start to ack. */
  cpuUs: number;
  /** The most pages one frame held. */
  pagesPerFrame: number;
  /** Wall time from the first frame to the last write accepted. */
  sendMs: number;
  /** {@linkcode checksum} of the pages sent, in order (taken after the run). */
  checksum: number;
}

/**
 * Folds `bytes` into a running checksum (FNV-1a over little-endian 32-bit words, then the tail
 * bytes): order matters, so a lost, repeated or reordered page changes it.
 */
export function checksum(sum: number, bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const words = bytes.length >>> 2;
  for (let i = 0; i < words; i++) sum = Math.imul(sum ^ view.getUint32(i << 2, true), 0x01000193);
  for (let i = words << 2; i < bytes.length; i++) sum = Math.imul(sum ^ bytes[i], 0x01000193);
  return sum >>> 0;
}

/** The checksum's starting value (FNV's offset basis). */
export const CHECKSUM_SEED = 0x811c9dc5;

/** The lines of a byte stream, decoded, without their line ends. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    rest += text;
    for (let end = rest.indexOf("\n"); end >= 0; end = rest.indexOf("\n")) {
      yield rest.slice(0, end);
      rest = rest.slice(end + 1);
    }
  }
  if (rest) yield rest;
}

/**
 * `pages` pages of varied bytes, each behind the ring record header the agent copies from: its
 * address (u64) and length (u32).
 */
function ringImage(pages: number): Uint8Array {
  const stride = RECORD_HEADER + PAGE;
  const image = new Uint8Array(pages * stride);
  const view = new DataView(image.buffer);
  let state = 0x9e3779b9;
  for (let page = 0; page < pages; page++) {
    const at = page * stride;
    view.setBigUint64(at, BASE_ADDRESS + BigInt(page * PAGE), true);
    view.setUint32(at + 8, PAGE, true);
    for (let i = at + RECORD_HEADER; i < at + stride; i += 4) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      view.setUint32(i, state >>> 0, true);
    }
  }
  return image;
}

/** Sends the whole image in frames flushed at `batch` bytes, one awaited write per frame. */
async function send(
  channel: Channel,
  image: Uint8Array,
  run: number,
  batch: number,
): Promise<{ writes: number; frameBytes: number; pagesPerFrame: number }> {
  const builder = new DataFrameBuilder(LIMITS.dataFrame, batch);
  const stride = RECORD_HEADER + PAGE;
  let writes = 0;
  let frameBytes = 0;
  let pagesPerFrame = 0;
  const flush = async () => {
    pagesPerFrame = Math.max(pagesPerFrame, builder.records);
    const frame = builder.take(run);
    writes++;
    frameBytes += frame.length;
    await channel.write(frame);
  };
  for (let at = 0; at < image.length; at += stride) {
    if (builder.appendFrom(image, at, at + RECORD_HEADER, PAGE)) continue;
    await flush();
    builder.appendFrom(image, at, at + RECORD_HEADER, PAGE);
  }
  if (builder.records) await flush();
  return { writes, frameBytes, pagesPerFrame };
}

/** The frames coming in on `channel`. */
async function* frames(channel: Channel): AsyncGenerator<RawFrame> {
  const decoder = new FrameDecoder({ maxFrame: 64 << 10 });
  for await (const chunk of channel.chunks()) {
    decoder.push(chunk);
    for (let raw = decoder.next(); raw; raw = decoder.next()) yield raw;
  }
}

/**
 * Answers `count` READs of one page as the agent answers on-demand: a DATA frame of the page,
 * then its END, written one after the other or, `joined`, in one write.
 */
async function answer(
  channel: Channel,
  requests: AsyncIterator<RawFrame>,
  image: Uint8Array,
  count: number,
  joined: boolean,
): Promise<{ writes: number; frameBytes: number; pagesPerFrame: number }> {
  const builder = new DataFrameBuilder(LIMITS.dataFrame);
  const stride = RECORD_HEADER + PAGE;
  let writes = 0;
  let frameBytes = 0;
  for (let i = 0; i < count; i++) {
    const { value, done } = await requests.next();
    if (done) throw new Error(`The receiver closed the channel after ${i} READs`);
    const read = parseFrame(value);
    if (read.type !== FrameType.READ || read.len !== PAGE) throw new Error("Expected a READ");
    const at = Number((read.addr - BASE_ADDRESS) / BigInt(PAGE)) * stride;
    if (at < 0 || at >= image.length) throw new Error("Expected a READ of a page sent");
    builder.appendFrom(image, at, at + RECORD_HEADER, PAGE);
    const data = builder.take(read.id);
    const end = encodeFrame({
      type: FrameType.END,
      id: read.id,
      stats: { ...EMPTY_END_STATS, objects: 1, bytes: PAGE },
    });
    frameBytes += data.length + end.length;
    if (joined) {
      const both = new Uint8Array(data.length + end.length);
      both.set(data);
      both.set(end, data.length);
      await channel.write(both);
      writes++;
    } else {
      await channel.write(data);
      await channel.write(end);
      writes += 2;
    }
  }
  return { writes, frameBytes, pagesPerFrame: 1 };
}

/** The checksum of the first `pages` pages of `image`. */
function imageChecksum(image: Uint8Array, pages: number): number {
  let sum = CHECKSUM_SEED;
  const stride = RECORD_HEADER + PAGE;
  for (let at = RECORD_HEADER; at < pages * stride; at += stride) {
    sum = checksum(sum, image.subarray(at, at + PAGE));
  }
  return sum;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { state: { type: "string" }, mib: { type: "string" } },
  });
  const mib = Number(values.mib);
  if (!values.state || !Number.isInteger(mib) || mib < 1) {
    throw new TypeError("Usage: encryption_sender.ts --state DIR --mib N");
  }
  const pages = mib * (1 << 20) / PAGE;
  const image = ringImage(pages);
  const whole = imageChecksum(image, pages);

  const credentials = await ensureAgentCredentials(values.state);
  const accepted = Promise.withResolvers<Channel>();
  await using server = await listenChannel({
    hostname: "127.0.0.1",
    port: 0,
    credentials,
    onChannel: (channel) => accepted.resolve(channel),
    onRefused: (remote, reason) => console.error(`sender: refused ${remote}: ${reason}`),
    onLimit: (remote, reason) => console.error(`sender: dropped ${remote}: ${reason}`),
  });
  const out = Deno.stdout.writable.getWriter();
  const print = (value: SenderReady | SenderRun) =>
    out.write(new TextEncoder().encode(JSON.stringify(value) + "\n"));
  await print({ port: server.port });

  const input = lines(Deno.stdin.readable);
  const nextCommand = async () => {
    const { value, done } = await input.next();
    return done ? undefined : JSON.parse(value) as Partial<SenderCommand & { ack: number }>;
  };
  const channel = await accepted.promise;
  const requests = frames(channel);
  for (let command = await nextCommand(); command; command = await nextCommand()) {
    const { run } = command;
    if (run === undefined) throw new TypeError("Expected a run");
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const sent = "answers" in command && command.answers !== undefined
      ? await answer(channel, requests, image, command.answers, command.joined === true)
      : await send(channel, image, run, (command as { batch: number }).batch);
    const sendMs = performance.now() - started;
    const ack = await nextCommand();
    if (ack?.ack !== run) throw new TypeError(`Expected the ack of run ${run}`);
    const cpu = process.cpuUsage(cpuBefore);
    const sum = "answers" in command ? imageChecksum(image, command.answers!) : whole;
    await print({ run, ...sent, cpuUs: cpu.user + cpu.system, sendMs, checksum: sum });
  }
  channel.close();
  await channel.closed;
}

if (import.meta.main) await main();
