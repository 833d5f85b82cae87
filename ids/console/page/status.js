/**
 * What the views say about a guest's agent: its state and since when, its last fetch, its open
 * alerts by severity.
 *
 * @module
 */

import { h } from "@console/dom.js";
import { ago, millis, plural, rank, SEVERITIES } from "@console/format.js";

/**
 * Since when the guest's agent is in its state, as its events tell (epoch ms, or undefined when
 * they do not): up since the last event that says who answered (`connected`, `migrated`...);
 * down since the first event after it (the failure), else since its last error.
 * @param {{ state: string, events: { at: number, kind?: string }[], lastError?: { at: number } }} vm
 */
export function stateSince(vm) {
  const events = vm.events ?? [];
  const answered = events.findLastIndex((event) => event.kind !== undefined);
  if (vm.state === "up") return answered >= 0 ? events[answered].at : undefined;
  if (vm.state === "down") return events[answered + 1]?.at ?? vm.lastError?.at;
  return undefined;
}

/** The agent's state as a badge, with since when. */
export function stateBadge(vm, now) {
  const since = stateSince(vm);
  return h(
    "span",
    { class: `state state-${vm.state}`, "data-state": vm.state },
    vm.state,
    since === undefined ? null : h("span", { class: "since" }, ` since ${ago(since, now)}`),
  );
}

/** The open alerts of `vm` among `alerts`, counted by severity. */
export function openBySeverity(alerts, vm) {
  const counts = new Map();
  for (const alert of alerts) {
    if (alert.vm === vm && alert.state === "open") {
      counts.set(alert.severity, (counts.get(alert.severity) ?? 0) + 1);
    }
  }
  return counts;
}

/** Severity counts as badges, the most severe first; "none" when empty. */
export function severityBadges(counts) {
  const shown = [...SEVERITIES].reverse().filter((severity) => counts.get(severity));
  if (shown.length === 0) return h("span", { class: "muted" }, "none");
  return shown.map((severity) =>
    h(
      "span",
      { class: `severity sev-${severity}`, title: `${counts.get(severity)} open ${severity}` },
      `${counts.get(severity)} ${severity}`,
    )
  );
}

/** The last fetch of a guest's stats (any view), or undefined. */
export function lastFetch(stats) {
  return stats?.recent?.at(-1);
}

/** A fetch as `prefetch · 12 ms · 1 round trip`. */
export function fetchSummary(record) {
  if (!record) return h("span", { class: "muted" }, "none yet");
  if (!record.ok) return h("span", { class: "failed" }, `${record.view} failed`);
  return `${record.mode} · ${millis(record.ms)} · ${plural(record.roundTrips, "round trip")}`;
}

/** Sorts alerts: open first, then the most recently opened first. */
export function alertOrder(a, b) {
  return (a.state === "open" ? 0 : 1) - (b.state === "open" ? 0 : 1) || b.firstSeen - a.firstSeen ||
    rank(b.severity) - rank(a.severity) || b.id - a.id;
}
