/**
 * The benchmark's chart as a standalone SVG: median time against process count, both axes
 * logarithmic, one line per mode and link, and the limit estimate of each link in grey.
 *
 * @module
 */

import type { BenchResults, PointResult } from "./results.ts";

const WIDTH = 920;
const HEIGHT = 560;
const PLOT = { left: 80, right: 660, top: 64, bottom: 490 };
const MODE_COLORS: Record<string, string> = {
  "on-demand": "#d62728",
  prefetch: "#1f77b4",
  selective: "#2ca02c",
};
const SPARE_COLORS = ["#9467bd", "#8c564b", "#e377c2"];
const DASHES = ["", "8 4", "2 4", "12 4 2 4"];
/** Marker shapes per link, so that points of one count stay apart when their values meet. */
const MARKERS = ["circle", "square", "diamond", "triangle"] as const;
const LIMIT_COLOR = "#8a8a8a";

function escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function marker(shape: Series["marker"], x: number, y: number, r: number, color: string) {
  const at = (points: [number, number][]) =>
    `<polygon points="${
      points.map(([dx, dy]) => `${(x + dx * r).toFixed(1)},${(y + dy * r).toFixed(1)}`).join(" ")
    }" fill="${color}"/>`;
  switch (shape) {
    case "circle":
      return `<circle cx="${x}" cy="${y}" r="${r}" fill="${color}"/>`;
    case "square":
      return at([[-0.9, -0.9], [0.9, -0.9], [0.9, 0.9], [-0.9, 0.9]]);
    case "diamond":
      return at([[0, -1.3], [1.3, 0], [0, 1.3], [-1.3, 0]]);
    case "triangle":
      return at([[0, -1.3], [1.2, 0.9], [-1.2, 0.9]]);
  }
}

function number(value: number): string {
  return value >= 1000 ? value.toLocaleString("en-US") : String(Number(value.toPrecision(3)));
}

/**
 * A log10 scale from [lo, hi] onto [from, to]; `min` and `max` are the decades to draw. With
 * `widen` the scale itself spans whole decades.
 */
function logScale(lo: number, hi: number, from: number, to: number, widen: boolean) {
  const min = Math.floor(Math.log10(lo));
  const max = Math.max(min + 1, Math.ceil(Math.log10(hi)));
  const [a, b] = widen ? [min, max] : [Math.log10(lo), Math.log10(hi)];
  const at = (v: number) => from + (Math.log10(v) - a) / (b - a) * (to - from);
  return { min: widen ? min : Math.ceil(a), max: widen ? max : Math.floor(b), at };
}

interface Series {
  label: string;
  color: string;
  dash: string;
  marker: (typeof MARKERS)[number];
  width: number;
  points: [number, number][];
}

/** The chart of `view` (default: processes) in `results`, as SVG text. */
export function renderChart(results: BenchResults, view = "processes"): string {
  const points = results.points.filter((p) => p.view === view && p.medianMs !== null);
  const series: Series[] = [];
  const modes = [...new Set(points.map((p) => p.mode))];
  const line = (ps: PointResult[], value: (p: PointResult) => number | null) =>
    ps.map((p) => [p.processes, value(p)] as [number, number | null])
      .filter((xy): xy is [number, number] => xy[1] !== null && xy[1] > 0)
      .sort((a, b) => a[0] - b[0]);
  results.links.forEach((link, i) => {
    const dash = DASHES[i % DASHES.length];
    const marker = MARKERS[i % MARKERS.length];
    modes.forEach((mode, j) => {
      const color = MODE_COLORS[mode] ?? SPARE_COLORS[j % SPARE_COLORS.length];
      const ps = points.filter((p) => p.link === link.name && p.mode === mode);
      series.push({
        label: `${mode}, ${link.name}`,
        color,
        dash,
        marker,
        width: 2.5,
        points: line(ps, (p) => p.medianMs),
      });
    });
    const batched = points.filter((p) => p.link === link.name && p.mode === "prefetch");
    series.push({
      label: `limit estimate, ${link.name}`,
      color: LIMIT_COLOR,
      dash,
      marker,
      width: 1.5,
      points: line(batched, (p) => p.limitMs),
    });
  });
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) all.push([100, 1]); // nothing measured: empty axes
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const x = logScale(Math.min(...xs) / 1.5, Math.max(...xs) * 1.5, PLOT.left, PLOT.right, false);
  const y = logScale(Math.min(...ys), Math.max(...ys), PLOT.bottom, PLOT.top, true);

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" ` +
    `viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${PLOT.left}" y="28" font-size="17" font-weight="bold">${
      escape(`ebpfmon: ${view} view, median time per snapshot`)
    }</text>`,
    `<text x="${PLOT.left}" y="48" fill="#555">${
      escape(`${results.machine.description}; ${results.startedAt.slice(0, 10)}`)
    }</text>`,
  ];
  for (let d = y.min; d <= y.max; d++) {
    for (let m = 1; m < 10 && (m === 1 || d < y.max); m++) {
      const v = m * 10 ** d;
      const py = y.at(v).toFixed(1);
      const major = m === 1;
      out.push(
        `<line x1="${PLOT.left}" x2="${PLOT.right}" y1="${py}" y2="${py}" ` +
          `stroke="${major ? "#ccc" : "#eee"}"/>`,
      );
      if (major) {
        out.push(
          `<text x="${PLOT.left - 8}" y="${py}" dy="4" text-anchor="end">${number(v)}</text>`,
        );
      }
    }
  }
  for (let d = x.min; d <= x.max; d++) {
    const px = x.at(10 ** d).toFixed(1);
    out.push(
      `<line x1="${px}" x2="${px}" y1="${PLOT.top}" y2="${PLOT.bottom}" stroke="#ccc"/>`,
      `<text x="${px}" y="${PLOT.bottom + 20}" text-anchor="middle">${number(10 ** d)}</text>`,
    );
  }
  for (const count of new Set(xs)) {
    if (Number.isInteger(Math.log10(count))) continue;
    const px = x.at(count).toFixed(1);
    out.push(
      `<line x1="${px}" x2="${px}" y1="${PLOT.top}" y2="${PLOT.bottom}" stroke="#eee"/>`,
      `<text x="${px}" y="${PLOT.bottom + 20}" text-anchor="middle" fill="#555">${
        number(count)
      }</text>`,
    );
  }
  out.push(
    `<rect x="${PLOT.left}" y="${PLOT.top}" width="${PLOT.right - PLOT.left}" ` +
      `height="${PLOT.bottom - PLOT.top}" fill="none" stroke="#333"/>`,
    `<text x="${(PLOT.left + PLOT.right) / 2}" y="${PLOT.bottom + 48}" text-anchor="middle">` +
      `processes in the guest (log scale)</text>`,
    `<text transform="translate(24 ${(PLOT.top + PLOT.bottom) / 2}) rotate(-90)" ` +
      `text-anchor="middle">median milliseconds per snapshot (log scale)</text>`,
  );
  for (const s of series) {
    const path = s.points.map(([px, py]) => `${x.at(px).toFixed(1)},${y.at(py).toFixed(1)}`);
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
    if (path.length > 1) {
      out.push(
        `<polyline points="${path.join(" ")}" fill="none" stroke="${s.color}" ` +
          `stroke-width="${s.width}"${dash}/>`,
      );
    }
    for (const p of path) {
      const [cx, cy] = p.split(",").map(Number);
      out.push(marker(s.marker, cx, cy, s.width + 1.5, s.color));
    }
  }
  series.forEach((s, i) => {
    const ly = PLOT.top + 8 + i * 20;
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
    out.push(
      `<line x1="${PLOT.right + 20}" x2="${PLOT.right + 60}" y1="${ly}" y2="${ly}" ` +
        `stroke="${s.color}" stroke-width="${s.width}"${dash}/>`,
      marker(s.marker, PLOT.right + 40, ly, s.width + 1.5, s.color),
      `<text x="${PLOT.right + 68}" y="${ly}" dy="4">${escape(s.label)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
