/**
 * Property-based fuzzing of every decoder that reads peer input (`deno task fuzz`): agent-side
 * and IDS-side frames, plans, BTF, the process list over hostile memory images, and the API.
 * Each decoder runs in a Worker of its own; an input that throws anything but the decoder's
 * documented errors is a crash, one that runs longer than `--hang-ms` (or a Worker that stops
 * making progress) is a hang. Prints inputs, crashes, hangs and inputs/s per decoder, and the
 * seed and counterexample of a failure; exits 1 on any.
 *
 * ```sh
 * deno task fuzz --runs 100000 --seed 42 --only btf,plan
 * ```
 *
 * @module
 */

import fc from "fast-check";
import { parseArgs } from "node:util";
import { type FuzzTarget, TARGETS } from "./fuzz/mod.ts";

/** What one decoder's fuzzing found. */
export interface FuzzReport {
  name: string;
  /** Inputs run before the first failure (or all of them). */
  inputs: number;
  crashes: number;
  hangs: number;
  ms: number;
  seed: number;
  /** The shrunk failing input and what it did, when there is one. */
  failure?: string;
}

/** Options of {@linkcode fuzzTarget} and {@linkcode fuzz}. */
export interface FuzzOptions {
  /** Inputs per decoder. @default 10000 */
  runs?: number;
  /** @default a random seed */
  seed?: number;
  /** An input running longer than this is a hang. @default 1000 */
  hangMs?: number;
  /** Called about once a second with the inputs run so far. */
  onProgress?: (inputs: number) => void;
}

/** An input that ran longer than allowed. */
class HangError extends Error {
  constructor(ms: number, limit: number) {
    super(`Input ran ${Math.round(ms)} ms, more than the ${limit} ms allowed`);
    this.name = "HangError";
  }
}

/** Fuzzes one target in this thread. */
export async function fuzzTarget(
  target: FuzzTarget,
  options: FuzzOptions = {},
): Promise<FuzzReport> {
  const runs = options.runs ?? 10_000;
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const hangMs = options.hangMs ?? 1000;
  let calls = 0;
  let lastProgress = performance.now();
  const judge = (error: unknown, started: number) => {
    if (error !== undefined && !target.expected(error)) throw error;
    const now = performance.now();
    calls++;
    if (now - lastProgress > 1000) {
      lastProgress = now;
      options.onProgress?.(calls);
    }
    if (now - started > hangMs) throw new HangError(now - started, hangMs);
  };
  const property = isAsync(target)
    ? fc.asyncProperty(target.arbitrary, async (input) => {
      const started = performance.now();
      let failure: unknown;
      try {
        await target.run(input);
      } catch (error) {
        failure = error ?? new Error(`Decoder threw ${error}`);
      }
      judge(failure, started);
    })
    : fc.property(target.arbitrary, (input) => {
      const started = performance.now();
      let failure: unknown;
      try {
        target.run(input);
      } catch (error) {
        failure = error ?? new Error(`Decoder threw ${error}`);
      }
      judge(failure, started);
    });
  const started = performance.now();
  const details = await fc.check(property as fc.IAsyncProperty<unknown>, { numRuns: runs, seed });
  const ms = performance.now() - started;
  const report: FuzzReport = {
    name: target.name,
    inputs: details.numRuns,
    crashes: 0,
    hangs: 0,
    ms,
    seed,
  };
  if (details.failed) {
    if (details.errorInstance instanceof HangError) report.hangs = 1;
    else report.crashes = 1;
    report.failure = describeFailure(details);
  }
  return report;
}

function isAsync(target: FuzzTarget): boolean {
  return target.run.constructor.name === "AsyncFunction";
}

function describeFailure(details: fc.RunDetails<unknown>): string {
  const error = details.errorInstance;
  const what = error instanceof Error
    ? `${error.name}: ${error.message}\n${error.stack ?? ""}`
    : String(error);
  return [
    `seed ${details.seed}, path "${details.counterexamplePath}"`,
    `counterexample: ${fc.stringify(details.counterexample)}`,
    `error: ${what}`,
  ].join("\n");
}

/** The targets named in `only` (all when it is empty). @throws {RangeError} for an unknown name. */
export function selectTargets(only: readonly string[] = []): FuzzTarget[] {
  if (only.length === 0) return [...TARGETS] as FuzzTarget[];
  return only.map((name) => {
    const target = TARGETS.find((t) => t.name === name);
    if (!target) {
      throw new RangeError(
        `Cannot fuzz "${name}": no such decoder (${TARGETS.map((t) => t.name).join(", ")})`,
      );
    }
    return target as FuzzTarget;
  });
}

/** Options of {@linkcode fuzz}. */
export interface FuzzAllOptions extends FuzzOptions {
  /** Names of the decoders to fuzz. @default all */
  only?: string[];
  /** Decoders fuzzed at once, each in its own Worker. @default the number of CPUs */
  jobs?: number;
  /** A Worker silent for this long is a hang, and is terminated. @default 60000 */
  stallMs?: number;
  /** Called with each line of progress. @default dropped */
  log?: (line: string) => void;
}

/** Fuzzes each selected decoder in a Worker; resolves with one report per decoder, in order. */
export async function fuzz(options: FuzzAllOptions = {}): Promise<FuzzReport[]> {
  const targets = selectTargets(options.only);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const reports: FuzzReport[] = new Array(targets.length);
  let nextIndex = 0;
  const lane = async () => {
    while (nextIndex < targets.length) {
      const index = nextIndex++;
      reports[index] = await inWorker(targets[index].name, { ...options, seed });
    }
  };
  const jobs = Math.max(1, options.jobs ?? navigator.hardwareConcurrency);
  await Promise.all(Array.from({ length: Math.min(jobs, targets.length) }, lane));
  return reports;
}

type WorkerMessage =
  | { kind: "progress"; inputs: number }
  | { kind: "done"; report: FuzzReport }
  | { kind: "failed"; message: string };

function inWorker(name: string, options: FuzzAllOptions): Promise<FuzzReport> {
  const stallMs = options.stallMs ?? 60_000;
  const worker = new Worker(new URL("./fuzz.ts", import.meta.url), { type: "module" });
  const started = performance.now();
  let inputs = 0;
  return new Promise<FuzzReport>((resolve) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (report: FuzzReport) => {
      clearTimeout(timer);
      worker.terminate();
      resolve(report);
    };
    const watch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        finish({
          name,
          inputs,
          crashes: 0,
          hangs: 1,
          ms: performance.now() - started,
          seed: options.seed!,
          failure: `seed ${options.seed}: no progress for ${stallMs} ms after about ${inputs} ` +
            `inputs (rerun with --only ${name} --seed ${options.seed} --runs ${inputs + 1000})`,
        });
      }, stallMs);
    };
    worker.onmessage = (event: MessageEvent<WorkerMessage>) => {
      const message = event.data;
      if (message.kind === "progress") {
        inputs = message.inputs;
        options.log?.(`${name}: ${inputs} inputs`);
        watch();
      } else if (message.kind === "done") {
        finish(message.report);
      } else {
        finish({
          name,
          inputs,
          crashes: 1,
          hangs: 0,
          ms: performance.now() - started,
          seed: options.seed!,
          failure: message.message,
        });
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      worker.onmessage!(
        new MessageEvent("message", {
          data: { kind: "failed", message: `Worker failed: ${event.message}` },
        }),
      );
    };
    watch();
    worker.postMessage({ name, runs: options.runs, seed: options.seed, hangMs: options.hangMs });
  });
}

function serveWorker(): void {
  const scope = self as unknown as {
    onmessage: (event: MessageEvent) => void;
    postMessage: (message: WorkerMessage) => void;
  };
  scope.onmessage = async (event: MessageEvent<{ name: string } & FuzzOptions>) => {
    const { name, ...options } = event.data;
    try {
      const [target] = selectTargets([name]);
      const report = await fuzzTarget(target, {
        ...options,
        onProgress: (inputs) => scope.postMessage({ kind: "progress", inputs }),
      });
      scope.postMessage({ kind: "done", report });
    } catch (error) {
      scope.postMessage({ kind: "failed", message: String((error as Error)?.stack ?? error) });
    }
  };
}

/** The table `deno task fuzz` prints. */
export function formatReports(reports: readonly FuzzReport[]): string {
  const rows = reports.map((r) => [
    r.name,
    String(r.inputs),
    String(r.crashes),
    String(r.hangs),
    String(Math.round(r.inputs / Math.max(r.ms / 1000, 1e-3))),
    (r.ms / 1000).toFixed(1),
  ]);
  const head = ["decoder", "inputs", "crashes", "hangs", "inputs/s", "seconds"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  return [head, ...rows].map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join("  "))
    .join("\n");
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      runs: { type: "string", default: "10000" },
      seed: { type: "string" },
      only: { type: "string" },
      "hang-ms": { type: "string", default: "1000" },
      jobs: { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  const number = (name: string, text: string | undefined) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`Cannot fuzz: --${name} must be a non-negative integer, not "${text}"`);
    }
    return n;
  };
  const seed = number("seed", values.seed) ?? Math.floor(Math.random() * 2 ** 31);
  const runs = number("runs", values.runs)!;
  console.log(`fuzz: ${runs} inputs per decoder, seed ${seed}`);
  const reports = await fuzz({
    runs,
    seed,
    only: values.only ? values.only.split(",").filter(Boolean) : [],
    hangMs: number("hang-ms", values["hang-ms"]),
    jobs: number("jobs", values.jobs),
    log: values.quiet ? undefined : (line) => console.error(line),
  });
  console.log(formatReports(reports));
  const failed = reports.filter((r) => r.failure);
  for (const r of failed) console.log(`\n${r.name} FAILED (seed ${r.seed}):\n${r.failure}`);
  return failed.length ? 1 : 0;
}

const WorkerScope = (globalThis as { WorkerGlobalScope?: new () => unknown }).WorkerGlobalScope;
const isWorker = WorkerScope !== undefined && self instanceof WorkerScope;
if (isWorker) serveWorker();
else if (import.meta.main) Deno.exit(await main(Deno.args));
