/**
 * The report of `deno task migrate`: a Markdown table of every migration and its medians, and a
 * chart of total time and downtime against the guest's dirty rate, throttled and not.
 *
 * @module
 */

import type { MigrationRecord } from "./migrate_run.ts";

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const fixed = (n: number | undefined, digits = 1) => n === undefined ? "-" : n.toFixed(digits);

/** Every migration as a row, then one row of medians per dirty size and throttle. */
export function renderMigrationTable(records: MigrationRecord[]): string {
  const head = [
    "| dirty MiB | throttle | run | direction | converged | total s | downtime ms | sent MB " +
    "| dirty MB/s | highest throttle % | monitoring gap s | identity kept | workload errors |",
    "| --: | --- | --: | --- | --- | --: | --: | --: | --: | --: | --: | --- | --: |",
  ];
  const row = (r: MigrationRecord) =>
    `| ${r.dirtyMiB} | ${r.throttle} | ${r.run} | ${r.direction} | ${
      r.completed ? "yes" : `no (${r.reason})`
    } | ${fixed(r.totalMs / 1000)} | ${r.downtimeMs ?? "-"} | ${
      fixed(r.transferredBytes / 1e6, 0)
    } | ${fixed(r.dirtyMBps, 0)} | ${r.throttlePct} | ${
      fixed(r.gapMs === undefined ? undefined : r.gapMs / 1000, 2)
    } | ${r.identityKept ? "yes" : "**no**"} | ${r.workloadErrors} |`;
  const groups = new Map<string, MigrationRecord[]>();
  for (const r of records) {
    const key = `${r.dirtyMiB} ${r.throttle}`;
    groups.set(key, [...groups.get(key) ?? [], r]);
  }
  const summary = [
    "",
    "| dirty MiB | throttle | migrations | converged | median total s | median downtime ms " +
    "| median dirty MB/s | median highest throttle % | median monitoring gap s | workload errors |",
    "| --: | --- | --: | --: | --: | --: | --: | --: | --: | --: |",
    ...[...groups.values()].map((g) => {
      const done = g.filter((r) => r.completed);
      const gaps = done.flatMap((r) => r.gapMs === undefined ? [] : [r.gapMs / 1000]);
      return `| ${g[0].dirtyMiB} | ${g[0].throttle} | ${g.length} | ${done.length} | ${
        fixed(median(done.map((r) => r.totalMs / 1000)))
      } | ${fixed(median(done.flatMap((r) => r.downtimeMs ?? [])), 0)} | ${
        fixed(median(g.map((r) => r.dirtyMBps)), 0)
      } | ${fixed(median(g.map((r) => r.throttlePct)), 0)} | ${fixed(median(gaps), 2)} | ${
        Math.max(0, ...g.map((r) => r.workloadErrors))
      } |`;
    }),
  ];
  return [...head, ...records.map(row), ...summary, ""].join("\n");
}

/** An SVG scatter of total time and downtime (log scale) against the dirty rate. */
export function renderMigrationChart(records: MigrationRecord[]): string {
  const W = 640, H = 360, L = 60, R = 20, T = 30, B = 50;
  const xs = records.map((r) => r.dirtyMBps);
  const ys = records.flatMap((r) => [r.totalMs, r.downtimeMs ?? r.totalMs]).filter((y) => y > 0);
  const xMax = Math.max(1, ...xs) * 1.1;
  const yMin = Math.max(1, Math.min(...ys, 10)) / 2;
  const yMax = Math.max(...ys, 100) * 2;
  const x = (v: number) => L + (W - L - R) * v / xMax;
  const y = (v: number) =>
    T + (H - T - B) * (1 - Math.log(Math.max(v, yMin) / yMin) / Math.log(yMax / yMin));
  const colour = { off: "#c0392b", auto: "#2471a3" };
  const marks = records.map((r) => {
    const c = colour[r.throttle];
    const total = `<circle cx="${x(r.dirtyMBps).toFixed(1)}" cy="${y(r.totalMs).toFixed(1)}" ` +
      `r="4" fill="${r.completed ? c : "none"}" stroke="${c}"/>`;
    const down = r.downtimeMs === undefined ? "" : `<rect x="${(x(r.dirtyMBps) - 3).toFixed(1)}" ` +
      `y="${(y(r.downtimeMs) - 3).toFixed(1)}" width="6" height="6" fill="${c}"/>`;
    return total + down;
  });
  const ticks: string[] = [];
  for (let v = 1; v <= yMax; v *= 10) {
    if (v < yMin) continue;
    ticks.push(
      `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${
        v >= 1000 ? `${v / 1000} s` : `${v} ms`
      }</text>`,
      `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
    );
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<text x="${L}" y="18">Live migration: total time (circles; hollow: did not converge) and downtime (squares)</text>`,
    ...ticks,
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`,
    `<text x="${(L + W - R) / 2}" y="${
      H - 12
    }" text-anchor="middle">highest dirty rate during pre-copy, MB/s</text>`,
    `<text x="${W - R}" y="${H - B + 16}" text-anchor="end">${xMax.toFixed(0)}</text>`,
    `<text x="${L}" y="${H - B + 16}">0</text>`,
    `<text x="${W - R - 150}" y="${T + 12}" fill="${colour.off}">no throttling</text>`,
    `<text x="${W - R - 150}" y="${
      T + 28
    }" fill="${colour.auto}">vCPU throttling (auto-converge)</text>`,
    ...marks,
    "</svg>",
    "",
  ].join("\n");
}
