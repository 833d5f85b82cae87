/**
 * The benchmark's results as Markdown: the machine, the links as measured, one row per view,
 * process count, link and mode, and the targets.
 *
 * @module
 */

import type { BenchResults, PointResult } from "./results.ts";

/** A Markdown table; the columns in `numeric` are right-aligned. */
export function table(header: string[], rows: string[][], numeric: Set<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const cells = (row: string[]) =>
    `| ${
      row.map((c, i) => numeric.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])).join(" | ")
    } |`;
  const rule = `| ${
    widths.map((w, i) => numeric.has(i) ? `${"-".repeat(w - 1)}:` : "-".repeat(w)).join(" | ")
  } |`;
  return [cells(header), rule, ...rows.map(cells)].join("\n");
}

function fixed(value: number | null, digits: number): string {
  return value === null ? "-" : value.toFixed(digits);
}

function ms(value: number | null): string {
  if (value === null) return "-";
  return value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0);
}

function count(value: number | null): string {
  return value === null ? "-" : Math.round(value).toLocaleString("en-US");
}

function row(p: PointResult): string[] {
  return [
    p.view,
    count(p.processes),
    p.link,
    p.mode + (p.error ? " (failed)" : ""),
    String(p.reps),
    ms(p.medianMs),
    ms(p.p90Ms),
    count(p.roundTrips),
    count(p.bytes),
    fixed(p.guestMs, 2),
    ms(p.idsCpuMs),
    fixed(p.idsOpenMB ?? null, 0),
    fixed(p.idsBaseMB, 0),
    fixed(p.idsPeakMB, 0),
    fixed(p.agentPeakMB, 0),
    p.speedup === null ? "-" : `${p.speedup.toFixed(1)}x`,
    ms(p.limitMs),
    p.limitRatio === null ? "-" : `${p.limitRatio.toFixed(1)}x`,
  ];
}

/** The whole report. */
export function renderMarkdown(results: BenchResults, chart?: string): string {
  const out: string[] = [];
  out.push(
    `Machine: ${results.machine.description}, Deno ${results.machine.deno}. ` +
      `Run ${results.startedAt}${results.quick ? " (--quick)" : ""}, ` +
      `${(results.wallS / 60).toFixed(1)} min; ` +
      `${results.settings.reps} measured repetitions per point (more where ` +
      `${
        results.settings.sampleS ?? 0
      } s of the fastest series' snapshots hold more, at most 200; ` +
      `every series of a point takes every round, past its budget excepted; the column reps) ` +
      `after a warm-up of at least ${results.settings.warmupS} s per mode, views and modes in turn.`,
    "",
    "Links, measured before the run (one-byte ping-pong; bulk transfers, the median of 5):",
    "",
    table(
      ["link", "relay hold µs", "RTT median ms", "RTT p90 ms", "error", "bandwidth MB/s"],
      results.links.map((l) => [
        l.name,
        l.holdUs === null ? "- (direct)" : String(Math.round(l.holdUs)),
        l.rttMs.median.toFixed(3),
        l.rttMs.p90.toFixed(3),
        l.rttErrorPct === null ? "-" : `${l.rttErrorPct.toFixed(0)}%`,
        l.bandwidthMBps.toFixed(0),
      ]),
      new Set([1, 2, 3, 4, 5]),
    ),
    "",
    table(
      [
        "view",
        "processes",
        "link",
        "mode",
        "reps",
        "median ms",
        "p90 ms",
        "round trips",
        "bytes",
        "guest ms",
        "IDS CPU ms",
        "IDS open MB",
        "IDS base MB",
        "IDS peak MB",
        "agent peak MB",
        "on-demand / mode",
        "limit ms",
        "median / limit",
      ],
      results.points.map(row),
      new Set([1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]),
    ),
    "",
    "A view ending in `:delta` is a delta refresh: each sample is the snapshot right after a " +
      "whole one of the same view (the others are all taken whole). IDS open MB: its resident " +
      "memory once the session is open (BTF parsed), before any snapshot." +
      (results.agentIdleMB === undefined || results.agentIdleMB === null
        ? ""
        : ` The agent held ${results.agentIdleMB.toFixed(0)} MB resident right after it started.`),
    ...(results.baselines?.length
      ? [
        "",
        "The same list by `ps -eo pid,ppid,uid,gid,comm,state` (reading /proc), in the same run:",
        "",
        table(
          ["processes", "ps median ms", "runs"],
          results.baselines.map((b) => [count(b.processes), ms(b.psMs), String(b.reps)]),
          new Set([0, 1, 2]),
        ),
      ]
      : []),
    "",
    "Targets:",
    "",
    ...results.targets.map((t) => {
      const mark = t.met === null ? "not measured" : t.met ? "met" : "**missed**";
      const value = t.value === null
        ? ""
        : `: ${t.value.toFixed(t.unit === "x" || t.unit === "%" ? 1 : 0)} ${t.unit}`;
      return `- ${t.name}${value} (${mark}; ${t.detail})`;
    }),
  );
  const disturbed = new Map<string, number>();
  for (const p of results.points) {
    if ((p.otherCpuPct ?? 0) > 10) {
      disturbed.set(`${p.processes} processes, ${p.link}`, p.otherCpuPct!);
    }
  }
  const notes = [
    ...results.notes,
    ...[...disturbed].map(([where, pct]) =>
      `${where}: other processes used ${pct.toFixed(0)}% of the CPUs while it ran.`
    ),
    ...results.points.filter((p) => p.note || p.error).map((p) =>
      `${p.view}, ${p.processes} processes, ${p.link}, ${p.mode}: ${p.error ?? p.note}`
    ),
  ];
  if (notes.length) out.push("", "Notes:", "", ...notes.map((n) => `- ${n}`));
  if (chart) out.push("", `![median time against process count](${chart})`);
  return out.join("\n") + "\n";
}
