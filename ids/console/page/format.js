/**
 * How the page writes times, sizes and severities.
 *
 * @module
 */

/** Severities from the least to the most severe, as the API names them. */
export const SEVERITIES = ["info", "low", "medium", "high", "critical"];

/** Rank of `severity` in {@linkcode SEVERITIES} (-1 when unknown). */
export function rank(severity) {
  return SEVERITIES.indexOf(severity);
}

/** A duration in milliseconds, short: `850 ms`, `12 s`, `4 min`, `3 h`, `2 d`. */
export function duration(ms) {
  if (!Number.isFinite(ms)) return "?";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** How long ago epoch-ms `at` was: `12 s ago`. */
export function ago(at, now = Date.now()) {
  return at === undefined ? "never" : `${duration(Math.max(0, now - at))} ago`;
}

/** Epoch-ms `at` as local date and time, to the second. */
export function time(at) {
  return new Date(at).toLocaleString(undefined, { hour12: false });
}

/** A byte count: `512 B`, `12.3 KiB`, `4.5 MiB`. */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Milliseconds with one decimal under 10: `3.2 ms`, `41 ms`. */
export function millis(ms) {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** `n` and `noun`, plural unless `n` is 1: `1 round trip`, `3 round trips`. */
export function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
