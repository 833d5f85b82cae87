/**
 * What encryption costs the agent per byte it sends (`deno task bench:encryption`): the same
 * memory sent over the real channel as 4 KiB pages, each written and encrypted on its own (as
 * on-demand answers a READ), and coalesced into larger writes (as prefetch sends DATA frames).
 *
 * The agent's side is a process of its own (`encryption_sender.ts`, run with the agent's V8
 * flags) that listens with `listenChannel` on credentials made by `ensureAgentCredentials`;
 * this process is the IDS: it connects with `connectChannel` and the credentials of
 * `ensureIdsCredentials` on the same fresh state directory, decodes every frame and checks that
 * each page arrives, in order, at its address (with `--verify`, also a checksum of every byte).
 * For each batch size the sender copies every page into DATA frames with the agent's builder
 * flushed at that size and writes each frame as the agent does. It also answers `--answers`
 * READs of one page, each asked once the previous one is answered, as on-demand asks: with DATA
 * and END in two writes (as the agent answers) and in one. The sizes and the two answers run in
 * turn, `--reps` rounds after one warm-up round, so they are measured side by side; each point
 * is the median.
 *
 * It writes `bench/results/encryption-<time>.json` and `.md`, and prints the table.
 *
 * Usage: `deno task bench:encryption [--mib 64] [--batches 4,16,64,256,1024] [--reps 5]
 *   [--answers 2000] [--verify] [--out bench/results]` (batches in KiB, whole pages, at most 1024)
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { AGENT_PERMISSIONS } from "../agent/mod.ts";
import {
  type Channel,
  connectChannel,
  encodeFrame,
  ensureIdsCredentials,
  forEachRecord,
  FrameDecoder,
  FrameType,
  LIMITS,
  type RawFrame,
} from "../protocol/mod.ts";
import {
  BASE_ADDRESS,
  checksum,
  CHECKSUM_SEED,
  lines,
  PAGE,
  type SenderCommand,
  type SenderReady,
  type SenderRun,
} from "./encryption_sender.ts";
import {
  type AnswerRun,
  type EncryptionResults,
  type EncryptionRun,
  renderMarkdown,
  summarise,
  summariseAnswers,
} from "./encryption_results.ts";
import { loadavg, machine, tcpBytesSent } from "./machine.ts";

const ROOT = new URL("..", import.meta.url);
const SENDER = new URL("./encryption_sender.ts", import.meta.url);
const MIB = 1 << 20;

/** What one invocation measures. */
export interface Options {
  /** Memory sent per run, in MiB. */
  mib: number;
  /** Batch sizes (frame bytes past which a frame is written), in KiB. */
  batchesKiB: number[];
  /** READs of one page answered per run (at most the pages of `mib`). */
  answers: number;
  /** Measured rounds (every batch size once per round). */
  reps: number;
  /** Whether the receiver also checksums every byte it decrypted. */
  verify: boolean;
  /** Folder of the results. */
  out: string;
}

/** READs per run unless told, or as many as the pages sent. */
const DEFAULT_ANSWERS = 2000;

/** A whole number from 1 to `max`, or an error naming the option. */
function whole(text: string, option: string, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`Invalid --${option} "${text}": expected a whole number from 1 to ${max}`);
  }
  return value;
}

/**
 * Reads the command line.
 * @throws {RangeError} naming the option whose value is not acceptable.
 * @throws {TypeError} for an unknown option.
 */
export function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      mib: { type: "string", default: "64" },
      batches: { type: "string", default: "4,16,64,256,1024" },
      answers: { type: "string" },
      reps: { type: "string", default: "5" },
      verify: { type: "boolean", default: false },
      out: { type: "string", default: new URL("results/", import.meta.url).pathname },
    },
  });
  const maxKiB = LIMITS.dataFrame / 1024;
  const batchesKiB = values.batches.split(",").map((text) => {
    const kib = whole(text, "batches", maxKiB);
    if (kib % (PAGE / 1024) !== 0) {
      throw new RangeError(`Invalid --batches "${text}": a batch is whole pages (a multiple of 4)`);
    }
    return kib;
  });
  if (new Set(batchesKiB).size !== batchesKiB.length) {
    throw new RangeError(`Invalid --batches "${values.batches}": a size is given twice`);
  }
  const mib = whole(values.mib, "mib", 4096);
  const pages = mib * MIB / PAGE;
  const answers = values.answers === undefined
    ? Math.min(DEFAULT_ANSWERS, pages)
    : whole(values.answers, "answers", 100_000);
  if (answers > pages) {
    throw new RangeError(
      `Invalid --answers "${values.answers}": at most the ${pages} pages of --mib ${mib}`,
    );
  }
  return {
    mib,
    batchesKiB: batchesKiB.sort((a, b) => a - b),
    answers,
    reps: whole(values.reps, "reps", 100),
    verify: values.verify,
    out: values.out,
  };
}

/** Throws unless a record (address in two halves, length) is page `page`. */
function checkPage(run: number, page: number, high: number, low: number, len: number): void {
  const addr = (BigInt(high) << 32n) | BigInt(low);
  const expected = BASE_ADDRESS + BigInt(page * PAGE);
  if (len !== PAGE || addr !== expected) {
    throw new Error(
      `Run ${run}: page ${page} came as ${len} bytes at 0x${addr.toString(16)}, not ${PAGE} ` +
        `at 0x${expected.toString(16)}`,
    );
  }
}

/**
 * Takes run `run`'s pages off the channel: every frame a DATA frame of the run, every record
 * the next page at its address. Returns the channel bytes, the pages and their checksum.
 * @throws {Error} on anything else, or when the channel ends first.
 */
async function receive(
  channel: Channel,
  run: number,
  pages: number,
  verify: boolean,
): Promise<{ bytes: number; pages: number; checksum: number | null }> {
  const decoder = new FrameDecoder({ maxFrame: LIMITS.maxAnswerFrame });
  let bytes = 0;
  let page = 0;
  let sum = CHECKSUM_SEED;
  const onRecord = (high: number, low: number, payload: Uint8Array, start: number, len: number) => {
    checkPage(run, page++, high, low, len);
    if (verify) sum = checksum(sum, payload.subarray(start, start + len));
  };
  for await (const chunk of channel.chunks()) {
    bytes += chunk.length;
    decoder.push(chunk);
    for (let raw = decoder.next(); raw; raw = decoder.next()) {
      if (raw.type !== FrameType.DATA || raw.id !== run) {
        throw new Error(`Run ${run}: a frame of type ${raw.type} for request ${raw.id} came`);
      }
      forEachRecord(raw.payload, onRecord, raw.id);
    }
    if (page === pages) break;
  }
  if (page !== pages) {
    throw new Error(`Run ${run}: ${page} of ${pages} pages came before the channel ended`);
  }
  if (decoder.buffered) {
    throw new Error(`Run ${run}: ${decoder.buffered} bytes came after the pages`);
  }
  return { bytes, pages: page, checksum: verify ? sum : null };
}

/**
 * Asks for pages 0 to `count` - 1 one READ at a time, each once the END of the one before is in,
 * as on-demand asks. Returns the channel bytes, the pages and their checksum.
 * @throws {Error} when an answer is not the page's DATA then END, or the channel ends first.
 */
async function ask(
  channel: Channel,
  run: number,
  count: number,
  verify: boolean,
): Promise<{ bytes: number; pages: number; checksum: number | null }> {
  const decoder = new FrameDecoder({ maxFrame: LIMITS.maxAnswerFrame });
  const incoming = channel.chunks()[Symbol.asyncIterator]();
  let bytes = 0;
  let page = 0;
  let sum = CHECKSUM_SEED;
  const next = async (type: number): Promise<RawFrame> => {
    for (let raw = decoder.next();; raw = decoder.next()) {
      if (raw) {
        if (raw.type === type && raw.id === page + 1) return raw;
        throw new Error(`Run ${run}: a frame of type ${raw.type} for request ${raw.id} came`);
      }
      const { value, done } = await incoming.next();
      if (done) throw new Error(`Run ${run}: the channel ended after ${page} answers`);
      bytes += value.length;
      decoder.push(value);
    }
  };
  const onRecord = (high: number, low: number, payload: Uint8Array, start: number, len: number) => {
    checkPage(run, page, high, low, len);
    if (verify) sum = checksum(sum, payload.subarray(start, start + len));
  };
  try {
    for (; page < count; page++) {
      const addr = BASE_ADDRESS + BigInt(page * PAGE);
      await channel.write(encodeFrame({ type: FrameType.READ, id: page + 1, addr, len: PAGE }));
      const data = await next(FrameType.DATA);
      if (data.payload.length !== RECORD_BYTES) throw new Error(`Run ${run}: not one page`);
      forEachRecord(data.payload, onRecord, data.id);
      await next(FrameType.END);
    }
  } finally {
    await incoming.return?.();
  }
  return { bytes, pages: page, checksum: verify ? sum : null };
}

/** A DATA payload of one page: its record header and bytes. */
const RECORD_BYTES = 12 + PAGE;

/**
 * Runs the measurement: a sender process, the channel to it, one warm-up round, then
 * `options.reps` rounds of every batch size in turn.
 */
export async function measure(
  options: Options,
  log: (line: string) => void = () => {},
): Promise<EncryptionResults> {
  const startedAt = new Date();
  const loadBefore = loadavg();
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-encryption-" });
  await using stack = new AsyncDisposableStack();
  stack.defer(() => Deno.remove(state, { recursive: true }));
  // The IDS's first run on a state directory: the CA, both identities, the agent pinned.
  const credentials = await ensureIdsCredentials(state);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...AGENT_PERMISSIONS, SENDER.href, "--state", state, "--mib", `${options.mib}`],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  stack.defer(async () => {
    const status = await Promise.race([child.status, new Promise((r) => setTimeout(r, 5000))]);
    if (!status) child.kill("SIGKILL");
  });
  const replies = lines(child.stdout);
  const commands = child.stdin.getWriter();
  stack.defer(() => commands.close().catch(() => {}));
  const reply = async <T>(): Promise<T> => {
    const { value, done } = await replies.next();
    if (done) throw new Error("The sender exited early (its errors are above)");
    return JSON.parse(value) as T;
  };
  const command = (value: object) =>
    commands.write(new TextEncoder().encode(JSON.stringify(value) + "\n"));
  const ready = await reply<SenderReady>();
  const channel = stack.use(
    await connectChannel({ hostname: "127.0.0.1", port: ready.port, credentials }),
  );

  const pages = options.mib * MIB / PAGE;
  let run = 0;
  /** Makes one run: tells the sender what to send, takes it off the channel, checks it. */
  const once = async (what: SenderCommand) => {
    const wireBefore = await tcpBytesSent(ready.port);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await command(what);
    const got = "batch" in what
      ? await receive(channel, run, pages, options.verify)
      : await ask(channel, run, what.answers, options.verify);
    const wallMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    await command({ ack: run });
    const sent = await reply<SenderRun>();
    const wireAfter = await tcpBytesSent(ready.port);
    if (sent.run !== run) throw new Error(`The sender reported run ${sent.run}, not ${run}`);
    if (got.checksum !== null && got.checksum !== sent.checksum) {
      throw new Error(`Run ${run}: the decrypted pages do not match what the sender sent`);
    }
    if (got.bytes !== sent.frameBytes) {
      throw new Error(`Run ${run}: ${got.bytes} bytes came of the ${sent.frameBytes} sent`);
    }
    return {
      bytesSent: sent.frameBytes,
      bytesReceived: got.bytes,
      pages: got.pages,
      writes: sent.writes,
      pagesPerWrite: sent.pagesPerFrame,
      wallMs,
      senderCpuMs: sent.cpuUs / 1e3,
      receiverCpuMs: (cpu.user + cpu.system) / 1e3,
      wireBytes: wireBefore === null || wireAfter === null ? null : wireAfter - wireBefore,
      sentChecksum: sent.checksum,
      checksum: got.checksum,
    };
  };
  const runs: EncryptionRun[] = [];
  const answerRuns: AnswerRun[] = [];
  /** Every batch size, then both ways to answer, each once. */
  const round = async (keep: boolean) => {
    for (const batchKiB of options.batchesKiB) {
      const { pagesPerWrite, ...result } = await once({ run: ++run, batch: batchKiB * 1024 });
      if (keep) runs.push({ batchKiB, pagesPerWrite, ...result });
    }
    for (const joined of [false, true]) {
      const { pagesPerWrite: _, ...result } = await once({
        run: ++run,
        answers: options.answers,
        joined,
      });
      if (keep) answerRuns.push({ writesPerAnswer: joined ? 1 : 2, ...result });
    }
  };
  await round(false);
  for (let rep = 1; rep <= options.reps; rep++) {
    await round(true);
    log(`round ${rep} of ${options.reps}`);
  }
  const { description, cores, deno } = machine();
  return {
    version: 1,
    startedAt: startedAt.toISOString(),
    wallS: (Date.now() - startedAt.getTime()) / 1000,
    machine: { description, cores, deno },
    loadBefore,
    loadAfter: loadavg(),
    settings: {
      mib: options.mib,
      batchesKiB: options.batchesKiB,
      answers: options.answers,
      reps: options.reps,
      verify: options.verify,
      pageBytes: PAGE,
    },
    points: summarise(options, runs),
    answerPoints: summariseAnswers(options.answers, answerRuns),
    runs,
    answerRuns,
  };
}

async function main(): Promise<void> {
  let options: Options;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`bench:encryption: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const log = (line: string) => console.error(`bench:encryption: ${line}`);
  log(`load ${loadavg().join(" ")}; ${options.mib} MiB per run, batches ${options.batchesKiB}`);
  const results = await measure(options, log);
  const out = options.out.endsWith("/") ? options.out : `${options.out}/`;
  await Deno.mkdir(out, { recursive: true });
  const name = `${out}encryption-${results.startedAt.replaceAll(":", "-")}`;
  await Deno.writeTextFile(`${name}.json`, JSON.stringify(results, null, 2) + "\n");
  const markdown = renderMarkdown(results);
  await Deno.writeTextFile(`${name}.md`, markdown);
  // `deno fmt --check` of the repository formats Markdown too: the committed table must pass it.
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", `${name}.md`], cwd: ROOT })
    .output();
  console.log(markdown);
  log(`wrote ${name}.json and .md`);
}

if (import.meta.main) await main();
