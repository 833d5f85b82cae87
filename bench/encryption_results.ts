/**
 * The results of `bench/encryption.ts`: their JSON schema, the medians and ratios of each batch
 * size and of each way to answer a READ, and the Markdown tables.
 *
 * @module
 */

import { z } from "zod";
import { PAGE } from "./encryption_sender.ts";
import { table } from "./report.ts";
import { quantile } from "./results.ts";

const MIB = 1 << 20;

const nullableNumber = z.number().nullable();

/** What every run records, whatever it sends. */
const RunFields = {
  /** Frame bytes the sender wrote, and the receiver took off the channel. */
  bytesSent: z.number().int().positive(),
  bytesReceived: z.number().int().positive(),
  /** Pages that arrived in order at their address. */
  pages: z.number().int().positive(),
  writes: z.number().int().positive(),
  wallMs: z.number().positive(),
  senderCpuMs: z.number().nonnegative(),
  receiverCpuMs: z.number().nonnegative(),
  /** TCP bytes the sender's socket sent (`ss`: frames and TLS records); null without `ss`. */
  wireBytes: nullableNumber,
  /** The sender's checksum of the pages it sent, in order. */
  sentChecksum: z.number(),
  /** The receiver's checksum of the pages it decrypted; null without `--verify`. */
  checksum: nullableNumber,
};

/** One run of one batch size: every page, in frames flushed at the batch size. */
export const EncryptionRun = z.object({
  batchKiB: z.number().int().positive(),
  /** The most pages one frame (one write) held. */
  pagesPerWrite: z.number().int().positive(),
  ...RunFields,
});
export type EncryptionRun = z.infer<typeof EncryptionRun>;

/** One run of READs answered one at a time, DATA and END in two writes or in one. */
export const AnswerRun = z.object({ writesPerAnswer: z.number().int().positive(), ...RunFields });
export type AnswerRun = z.infer<typeof AnswerRun>;

/** The medians of one batch size over its runs, and its ratios to the smallest batch. */
export const EncryptionPoint = z.object({
  batchKiB: z.number().int().positive(),
  reps: z.number().int().positive(),
  writes: z.number().int().positive(),
  /** The most pages one write carried. */
  pagesPerWrite: z.number().int().positive(),
  senderCpuMsPerMiB: z.number(),
  receiverCpuMsPerMiB: z.number(),
  /** Memory bytes per second of wall time, in 10^6. */
  throughputMBps: z.number(),
  /** TCP bytes beyond the frames' (TLS record headers and tags) per write. */
  tlsBytesPerWrite: nullableNumber,
  /** The smallest batch's sender CPU per MiB over this one's. */
  cpuRatio: z.number(),
  /** This batch's throughput over the smallest one's. */
  throughputRatio: z.number(),
});
export type EncryptionPoint = z.infer<typeof EncryptionPoint>;

/** The medians of one way to answer a READ, and its ratios to the first way measured. */
export const AnswerPoint = z.object({
  writesPerAnswer: z.number().int().positive(),
  reps: z.number().int().positive(),
  senderCpuUsPerAnswer: z.number(),
  receiverCpuUsPerAnswer: z.number(),
  /** Wall time per READ: request written to END decoded. */
  roundTripUs: z.number(),
  tlsBytesPerAnswer: nullableNumber,
  /** The first way's sender CPU per answer over this one's. */
  cpuRatio: z.number(),
});
export type AnswerPoint = z.infer<typeof AnswerPoint>;

export const EncryptionResults = z.object({
  version: z.literal(1),
  startedAt: z.string(),
  wallS: z.number(),
  machine: z.object({ description: z.string(), cores: z.number(), deno: z.string() }),
  /** `/proc/loadavg`'s 1, 5 and 15 minute loads before and after the run. */
  loadBefore: z.array(z.number()),
  loadAfter: z.array(z.number()),
  settings: z.object({
    mib: z.number(),
    batchesKiB: z.array(z.number()),
    answers: z.number(),
    reps: z.number(),
    verify: z.boolean(),
    pageBytes: z.number(),
  }),
  points: z.array(EncryptionPoint),
  answerPoints: z.array(AnswerPoint),
  runs: z.array(EncryptionRun),
  answerRuns: z.array(AnswerRun),
});
export type EncryptionResults = z.infer<typeof EncryptionResults>;

const median = (xs: number[]) => quantile(xs, 0.5);

/** TCP bytes beyond the frames' per `unit` (a write, an answer); null when not measured. */
function tlsBytes(runs: z.infer<z.ZodObject<typeof RunFields>>[], units: number): number | null {
  return runs.every((r) => r.wireBytes !== null)
    ? median(runs.map((r) => (r.wireBytes! - r.bytesSent) / units))
    : null;
}

/** The medians of each batch size and their ratios to the smallest. */
export function summarise(
  options: { mib: number; batchesKiB: number[] },
  runs: EncryptionRun[],
): EncryptionPoint[] {
  const points = options.batchesKiB.map((batchKiB) => {
    const mine = runs.filter((r) => r.batchKiB === batchKiB);
    const first = mine[0];
    return {
      batchKiB,
      reps: mine.length,
      writes: first.writes,
      pagesPerWrite: first.pagesPerWrite,
      senderCpuMsPerMiB: median(mine.map((r) => r.senderCpuMs / options.mib)),
      receiverCpuMsPerMiB: median(mine.map((r) => r.receiverCpuMs / options.mib)),
      throughputMBps: median(mine.map((r) => options.mib * MIB / 1e3 / r.wallMs)),
      tlsBytesPerWrite: tlsBytes(mine, first.writes),
      cpuRatio: 1,
      throughputRatio: 1,
    };
  });
  const base = points[0];
  for (const p of points) {
    p.cpuRatio = base.senderCpuMsPerMiB / p.senderCpuMsPerMiB;
    p.throughputRatio = p.throughputMBps / base.throughputMBps;
  }
  return points;
}

/** The medians of each way to answer a READ (two writes, then one), per answer. */
export function summariseAnswers(answers: number, runs: AnswerRun[]): AnswerPoint[] {
  const ways = [...new Set(runs.map((r) => r.writesPerAnswer))].sort((a, b) => b - a);
  const points = ways.map((writesPerAnswer) => {
    const mine = runs.filter((r) => r.writesPerAnswer === writesPerAnswer);
    return {
      writesPerAnswer,
      reps: mine.length,
      senderCpuUsPerAnswer: median(mine.map((r) => r.senderCpuMs * 1e3 / answers)),
      receiverCpuUsPerAnswer: median(mine.map((r) => r.receiverCpuMs * 1e3 / answers)),
      roundTripUs: median(mine.map((r) => r.wallMs * 1e3 / answers)),
      tlsBytesPerAnswer: tlsBytes(mine, answers),
      cpuRatio: 1,
    };
  });
  for (const p of points) p.cpuRatio = points[0].senderCpuUsPerAnswer / p.senderCpuUsPerAnswer;
  return points;
}

/** `n` with about three significant digits. */
function short(n: number | null): string {
  if (n === null) return "-";
  return n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0);
}

/** The results as Markdown: what ran, where, one row per batch size and per way to answer. */
export function renderMarkdown(results: EncryptionResults): string {
  const { settings: s, machine: m } = results;
  const base = `${results.points[0]?.batchKiB} KiB`;
  const size = (kib: number) => kib >= 1024 ? `${kib / 1024} MiB` : `${kib} KiB`;
  const rounds = `${s.reps} round${s.reps === 1 ? "" : "s"}`;
  return [
    `Machine: ${m.description}, Deno ${m.deno}. Run ${results.startedAt}, ` +
    `${results.wallS.toFixed(0)} s; ${s.mib} MiB per run, ${rounds} of every batch size and ` +
    `way to answer in turn after one warm-up round, medians; load ${
      results.loadBefore.join(" ")
    } ` +
    `before, ${results.loadAfter.join(" ")} after.`,
    "",
    table(
      [
        "batch",
        "writes",
        "KiB per write",
        "sender CPU ms/MiB",
        "receiver CPU ms/MiB",
        "MB/s",
        `sender CPU, ${base} / batch`,
        `MB/s, batch / ${base}`,
        "TLS bytes per write",
      ],
      results.points.map((p) => [
        size(p.batchKiB),
        p.writes.toLocaleString("en-US"),
        String(p.pagesPerWrite * PAGE / 1024),
        short(p.senderCpuMsPerMiB),
        short(p.receiverCpuMsPerMiB),
        short(p.throughputMBps),
        `${p.cpuRatio.toFixed(2)}x`,
        `${p.throughputRatio.toFixed(2)}x`,
        short(p.tlsBytesPerWrite),
      ]),
      new Set([1, 2, 3, 4, 5, 6, 7, 8]),
    ),
    "",
    `${s.answers.toLocaleString("en-US")} READs of one page per run, each answered (DATA, END) ` +
    "before the next is asked:",
    "",
    table(
      [
        "answer",
        "sender CPU µs/READ",
        "receiver CPU µs/READ",
        "round trip µs",
        "sender CPU, 2 writes / this",
        "TLS bytes per READ",
      ],
      results.answerPoints.map((p) => [
        p.writesPerAnswer === 1 ? "DATA and END in one write" : "DATA, then END",
        short(p.senderCpuUsPerAnswer),
        short(p.receiverCpuUsPerAnswer),
        short(p.roundTripUs),
        `${p.cpuRatio.toFixed(2)}x`,
        short(p.tlsBytesPerAnswer),
      ]),
      new Set([1, 2, 3, 4, 5]),
    ),
    "",
  ].join("\n");
}
