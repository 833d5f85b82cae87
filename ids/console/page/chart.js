/**
 * A small SVG chart of fetch latency over time.
 *
 * @module
 */

import { h, s } from "@console/dom.js";
import { duration, millis } from "@console/format.js";

/**
 * A line of `records` (`{ at, ms, ok }`, oldest first): time across, milliseconds up, failed
 * fetches as red dots on the baseline.
 * @param {{ at: number, ms: number, ok: boolean }[]} records
 * @returns {HTMLElement}
 */
export function latencyChart(records, { width = 360, height = 90 } = {}) {
  if (records.length < 2) return h("p", { class: "muted" }, "Not enough fetches yet for a chart");
  const pad = { left: 44, right: 6, top: 8, bottom: 16 };
  const first = records[0].at;
  const span = Math.max(1, records[records.length - 1].at - first);
  const top = Math.max(1, ...records.map((r) => r.ms));
  const x = (at) => pad.left + ((at - first) / span) * (width - pad.left - pad.right);
  const y = (ms) => pad.top + (1 - ms / top) * (height - pad.top - pad.bottom);
  const ok = records.filter((r) => r.ok);
  const points = ok.map((r) => `${x(r.at).toFixed(1)},${y(r.ms).toFixed(1)}`).join(" ");
  const base = y(0);
  return h(
    "figure",
    { class: "chart" },
    s(
      "svg",
      {
        viewBox: `0 0 ${width} ${height}`,
        width,
        height,
        role: "img",
        "aria-label": "Fetch latency",
      },
      s("line", { x1: pad.left, y1: base, x2: width - pad.right, y2: base, class: "axis" }),
      s("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: base, class: "axis" }),
      s(
        "text",
        { x: pad.left - 4, y: pad.top + 8, class: "tick", "text-anchor": "end" },
        millis(top),
      ),
      s("text", { x: pad.left - 4, y: base, class: "tick", "text-anchor": "end" }, "0"),
      s("polyline", { points, class: "line" }),
      records.filter((r) => !r.ok).map((r) =>
        s("circle", { cx: x(r.at), cy: base, r: 3, class: "failed" })
      ),
    ),
    h("figcaption", null, `Fetch latency, last ${records.length} fetches over ${duration(span)}`),
  );
}
