/**
 * The results of `bench/encryption.ts`: their JSON schema, the medians and ratios of each batch
 * size, and the Markdown table.
 *
 * @module
 */

import { z } from "zod";
import { PAGE } from "./encryption_sender.ts";
import { table } from "./report.ts";
import { quantile } from "./results.ts";

const MIB = 1 << 20;

const nullableNumber = z.number().nullable();

/** One run of one batch size. */
export const EncryptionRun = z.object({
  batchKiB: z.number().int().positive(),
  /** Frame bytes the sender wrote, and the receiver took off the channel. */
  bytesSent: z.number().int().positive(),
  bytesReceived: z.number().int().positive(),
  /** Pages that arrived in order at their address. */
  pages: z.number().int().positive(),
  writes: z.number().int().positive(),
  /** The most pages one frame (one write) held. */
  pagesPerWrite: z.number().int().positive(),
  wallMs: z.number().positive(),
  senderCpuMs: z.number().nonnegative(),
  receiverCpuMs: z.number().nonnegative(),
  /** TCP bytes the sender's socket sent (`ss`: frames and TLS records); null without `ss`. */
  wireBytes: nullableNumber,
  /** The receiver's checksum of the decrypted pages; null without `--verify`. */
  checksum: nullableNumber,
});
export type EncryptionRun = z.infer<typeof EncryptionRun>;

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
    reps: z.number(),
    verify: z.boolean(),
    pageBytes: z.number(),
  }),
  /** The sender's checksum of what it sent. */
  checksum: z.number(),
  points: z.array(EncryptionPoint),
  runs: z.array(EncryptionRun),
});
export type EncryptionResults = z.infer<typeof EncryptionResults>;

/** The medians of each batch size and their ratios to the smallest. */
export function summarise(
  options: { mib: number; batchesKiB: number[] },
  runs: EncryptionRun[],
): EncryptionPoint[] {
  const median = (xs: number[]) => quantile(xs, 0.5);
  const points = options.batchesKiB.map((batchKiB) => {
    const mine = runs.filter((r) => r.batchKiB === batchKiB);
    const first = mine[0];
    const overhead = mine.every((r) => r.wireBytes !== null)
      ? median(mine.map((r) => (r.wireBytes! - r.bytesSent) / r.writes))
      : null;
    return {
      batchKiB,
      reps: mine.length,
      writes: first.writes,
      pagesPerWrite: first.pagesPerWrite,
      senderCpuMsPerMiB: median(mine.map((r) => r.senderCpuMs / options.mib)),
      receiverCpuMsPerMiB: median(mine.map((r) => r.receiverCpuMs / options.mib)),
      throughputMBps: median(mine.map((r) => options.mib * MIB / 1e3 / r.wallMs)),
      tlsBytesPerWrite: overhead,
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

/** `n` with about three significant digits. */
function short(n: number | null): string {
  if (n === null) return "-";
  return n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0);
}

/** The results as Markdown: what ran, where, and one row per batch size. */
export function renderMarkdown(results: EncryptionResults): string {
  const { settings: s, machine: m } = results;
  const base = `${results.points[0]?.batchKiB} KiB`;
  const size = (kib: number) => kib >= 1024 ? `${kib / 1024} MiB` : `${kib} KiB`;
  return [
    `Machine: ${m.description}, Deno ${m.deno}. Run ${results.startedAt}, ` +
    `${results.wallS.toFixed(0)} s; ${s.mib} MiB per run, ${s.reps} round${
      s.reps === 1 ? "" : "s"
    } of every batch ` +
    `size in turn after one warm-up round, medians; load ${results.loadBefore.join(" ")} ` +
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
  ].join("\n");
}
