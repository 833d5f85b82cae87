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
 * flushed at that size and writes each frame as the agent does. The sizes run in turn, `--reps`
 * rounds after one warm-up round, so they are measured side by side; each point is the median.
 *
 * It writes `bench/results/encryption-<time>.json` and `.md`, and prints the table.
 *
 * Usage: `deno task bench:encryption [--mib 64] [--batches 4,16,64,256,1024] [--reps 5]
 *   [--verify] [--out bench/results]` (batches in KiB, whole pages, at most 1024)
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { AGENT_PERMISSIONS } from "../agent/permissions.ts";
import {
  type Channel,
  connectChannel,
  ensureIdsCredentials,
  forEachRecord,
  FrameDecoder,
  FrameType,
  LIMITS,
} from "../protocol/mod.ts";
import {
  BASE_ADDRESS,
  checksum,
  CHECKSUM_SEED,
  lines,
  PAGE,
  type SenderReady,
  type SenderRun,
} from "./encryption_sender.ts";
import {
  type EncryptionResults,
  type EncryptionRun,
  renderMarkdown,
  summarise,
} from "./encryption_results.ts";
import { machine } from "./machine.ts";

const ROOT = new URL("..", import.meta.url);
const SENDER = new URL("./encryption_sender.ts", import.meta.url);
const MIB = 1 << 20;

/** What one invocation measures. */
export interface Options {
  /** Memory sent per run, in MiB. */
  mib: number;
  /** Batch sizes (frame bytes past which a frame is written), in KiB. */
  batchesKiB: number[];
  /** Measured rounds (every batch size once per round). */
  reps: number;
  /** Whether the receiver also checksums every byte it decrypted. */
  verify: boolean;
  /** Folder of the results. */
  out: string;
}

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
  return {
    mib: whole(values.mib, "mib", 4096),
    batchesKiB: batchesKiB.sort((a, b) => a - b),
    reps: whole(values.reps, "reps", 100),
    verify: values.verify,
    out: values.out,
  };
}

/**
 * TCP bytes sent so far by the established socket of local port `port`, as the kernel counts
 * them (`ss`'s `bytes_sent`); null where `ss` is missing or does not say.
 */
async function tcpBytesSent(port: number): Promise<number | null> {
  try {
    const { stdout } = await new Deno.Command("ss", {
      args: ["-tinH", "state", "established", `( sport = :${port} )`],
      stdout: "piped",
      stderr: "null",
    }).output();
    const sent = /\bbytes_sent:(\d+)/.exec(new TextDecoder().decode(stdout))?.[1];
    return sent === undefined ? null : Number(sent);
  } catch {
    return null;
  }
}

function loadavg(): number[] {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  } catch {
    return [];
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
    const addr = (BigInt(high) << 32n) | BigInt(low);
    const expected = BASE_ADDRESS + BigInt(page * PAGE);
    if (len !== PAGE || addr !== expected) {
      throw new Error(
        `Run ${run}: page ${page} came as ${len} bytes at 0x${addr.toString(16)}, not ${PAGE} ` +
          `at 0x${expected.toString(16)}`,
      );
    }
    if (verify) sum = checksum(sum, payload.subarray(start, start + len));
    page++;
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
  const once = async (batchKiB: number): Promise<EncryptionRun> => {
    run++;
    const wireBefore = await tcpBytesSent(ready.port);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await command({ run, batch: batchKiB * 1024 });
    const got = await receive(channel, run, pages, options.verify);
    const wallMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    await command({ ack: run });
    const sent = await reply<SenderRun>();
    const wireAfter = await tcpBytesSent(ready.port);
    if (sent.run !== run) throw new Error(`The sender reported run ${sent.run}, not ${run}`);
    if (got.checksum !== null && got.checksum !== ready.checksum) {
      throw new Error(`Run ${run}: the decrypted pages do not match what the sender sent`);
    }
    return {
      batchKiB,
      bytesSent: sent.frameBytes,
      bytesReceived: got.bytes,
      pages: got.pages,
      writes: sent.writes,
      pagesPerWrite: sent.pagesPerFrame,
      wallMs,
      senderCpuMs: sent.cpuUs / 1e3,
      receiverCpuMs: (cpu.user + cpu.system) / 1e3,
      wireBytes: wireBefore === null || wireAfter === null ? null : wireAfter - wireBefore,
      checksum: got.checksum,
    };
  };
  for (const batch of options.batchesKiB) await once(batch);
  const runs: EncryptionRun[] = [];
  for (let rep = 1; rep <= options.reps; rep++) {
    for (const batch of options.batchesKiB) runs.push(await once(batch));
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
      reps: options.reps,
      verify: options.verify,
      pageBytes: PAGE,
    },
    checksum: ready.checksum,
    points: summarise(options, runs),
    runs,
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
