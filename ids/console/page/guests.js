/**
 * The guests view: one row per guest, updated at every poll.
 *
 * @module
 */

import { h, replace } from "@console/dom.js";
import { ago } from "@console/format.js";
import {
  fetchSummary,
  lastFetch,
  openBySeverity,
  severityBadges,
  stateBadge,
} from "@console/status.js";

/** The table of guests. */
export class GuestsView {
  constructor() {
    this.body = h("tbody");
    this.element = h(
      "section",
      { class: "guests", "data-view": "guests" },
      h("h1", null, "Guests"),
      h(
        "table",
        null,
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            ["Guest", "Agent", "Kernel", "Last snapshot", "Open alerts", "Last fetch"].map((
              title,
            ) => h("th", null, title)),
          ),
        ),
        this.body,
      ),
    );
  }

  /** @param {import("@console/app.js").ConsoleState} state */
  render(state) {
    const alerts = [...state.alerts.values()];
    const now = state.polledAt;
    if (state.vms.length === 0) {
      replace(this.body, h("tr", null, h("td", { colspan: 6, class: "muted" }, "No guest yet")));
      return;
    }
    replace(
      this.body,
      state.vms.map((vm) => {
        const error = vm.state !== "up" && vm.lastError
          ? h("div", { class: "error-text" }, vm.lastError.message)
          : null;
        const snapshot = vm.lastSnapshotAgeMs === undefined
          ? "none yet"
          : ago(now - vm.lastSnapshotAgeMs, now);
        return h(
          "tr",
          { "data-vm": vm.name },
          h("td", null, h("a", { href: `#/vm/${encodeURIComponent(vm.name)}` }, vm.name)),
          h("td", null, stateBadge(vm, now), h("div", { class: "muted" }, vm.agent), error),
          h("td", null, vm.kernel?.release ?? h("span", { class: "muted" }, "unknown")),
          h("td", null, snapshot),
          h("td", { class: "open-alerts" }, severityBadges(openBySeverity(alerts, vm.name))),
          h("td", null, fetchSummary(lastFetch(state.stats.get(vm.name)))),
        );
      }),
    );
  }
}
