/**
 * The alerts view: open alerts first, newest first, filtered by guest, rule and severity; each
 * opens to its evidence and its history. Alerts the stream brought carry a "new" mark until
 * opened.
 *
 * @module
 */

import { h, replace } from "@console/dom.js";
import { plural, rank, SEVERITIES, time } from "@console/format.js";
import { alertOrder } from "@console/status.js";

/** A select whose options are rebuilt only when they change (an open one stays open). */
class Choice {
  constructor(label, any, onchange) {
    this.any = any;
    this.values = [];
    this.select = h("select", { "aria-label": label, onchange });
    this.element = h("label", null, `${label} `, this.select);
    this.options([]);
  }

  get value() {
    return this.select.value;
  }

  options(values) {
    if (values.join("\n") === this.values.join("\n")) return;
    const current = this.select.value;
    this.values = values;
    replace(
      this.select,
      h("option", { value: "" }, this.any),
      values.map((value) => h("option", { value }, value)),
    );
    this.select.value = values.includes(current) ? current : "";
  }
}

/** An evidence value as text: strings as they are, the rest as indented JSON. */
function evidenceValue(value) {
  if (typeof value === "string") return h("code", null, value);
  if (typeof value === "number" || typeof value === "boolean" || value === null) {
    return h("code", null, String(value));
  }
  if (Array.isArray(value) && value.every((item) => typeof item !== "object" || item === null)) {
    return h("code", null, value.length === 0 ? "(none)" : value.join(", "));
  }
  return h("pre", null, JSON.stringify(value, null, 2));
}

/** What happened to `alert`, oldest first, from its fields and the changes the stream brought. */
function history(alert, changes) {
  const items = [];
  const opened = alert.previousId === undefined
    ? "opened"
    : `reopened (the finding of alert #${alert.previousId} came back)`;
  items.push([alert.firstSeen, opened]);
  for (const change of changes) {
    if (change.kind === "severity_changed") {
      items.push([change.at, `severity ${change.previousSeverity} → ${change.alert.severity}`]);
    }
  }
  items.push([alert.lastSeen, `last seen, found by ${plural(alert.count, "scan")}`]);
  if (alert.state === "resolved" && alert.resolvedAt !== undefined) {
    items.push([alert.resolvedAt, "resolved"]);
  } else if (alert.missing > 0) {
    items.push([alert.lastSeen, `missing from the last ${plural(alert.missing, "scan")}`]);
  }
  return h(
    "ol",
    { class: "history" },
    items.sort((a, b) => a[0] - b[0]).map(([at, what]) =>
      h("li", null, h("time", null, time(at)), " ", what)
    ),
  );
}

/** The list of alerts. */
export class AlertsView {
  /** @param {() => void} onSeen called when a new alert was opened (the page's count changes) */
  constructor(onSeen) {
    this.onSeen = onSeen;
    const rerender = () => this.state && this.render(this.state);
    this.guest = new Choice("Guest", "every guest", rerender);
    this.rule = new Choice("Rule", "every rule", rerender);
    this.severity = new Choice("Severity", "any severity", rerender);
    this.severity.options(SEVERITIES.map((severity) => severity));
    /** @type {Set<number>} the alerts shown open */
    this.expanded = new Set();
    this.list = h("ol", { class: "alerts" });
    this.count = h("p", { class: "muted" });
    this.element = h(
      "section",
      { class: "alerts-view", "data-view": "alerts" },
      h("h1", null, "Alerts"),
      h(
        "div",
        { class: "filters" },
        this.guest.element,
        this.rule.element,
        this.severity.element,
        h("span", { class: "muted" }, "(at least)"),
      ),
      this.count,
      this.list,
    );
  }

  /** @param {import("@console/app.js").ConsoleState} state */
  render(state) {
    this.state = state;
    const all = [...state.alerts.values()];
    this.guest.options([...new Set([...state.vms.map((vm) => vm.name), ...all.map((a) => a.vm)])]);
    this.rule.options([...new Set(all.map((alert) => alert.rule))].sort());
    const shown = all.filter((alert) =>
      (!this.guest.value || alert.vm === this.guest.value) &&
      (!this.rule.value || alert.rule === this.rule.value) &&
      (!this.severity.value || rank(alert.severity) >= rank(this.severity.value))
    ).sort(alertOrder);
    const open = shown.filter((alert) => alert.state === "open").length;
    this.count.textContent = `${plural(shown.length, "alert")}, ${open} open`;
    replace(this.list, shown.map((alert) => this.#item(alert, state)));
  }

  #item(alert, state) {
    const expanded = this.expanded.has(alert.id);
    const fresh = state.fresh.has(alert.id);
    const toggle = () => {
      if (expanded) this.expanded.delete(alert.id);
      else this.expanded.add(alert.id);
      if (state.fresh.delete(alert.id)) this.onSeen();
      else this.render(state);
    };
    const evidence = Object.entries(alert.evidence ?? {});
    return h(
      "li",
      {
        class: ["alert", `state-${alert.state}`, fresh && "fresh"],
        "data-id": alert.id,
        "data-rule": alert.rule,
        "data-subject": alert.subject,
        "data-fresh": fresh,
      },
      h(
        "button",
        { type: "button", class: "alert-head", "aria-expanded": String(expanded), onclick: toggle },
        h("span", { class: `severity sev-${alert.severity}` }, alert.severity),
        fresh ? h("span", { class: "new-mark" }, "new") : null,
        h("span", { class: "rule" }, alert.rule),
        h("span", { class: "vm" }, alert.vm),
        h("span", { class: "subject" }, alert.subject),
        h("span", { class: `alert-state ${alert.state}` }, alert.state),
        h("time", { class: "muted" }, time(alert.firstSeen)),
      ),
      h("p", { class: "message" }, alert.message),
      expanded
        ? h(
          "div",
          { class: "alert-body" },
          h("h3", null, "Evidence"),
          evidence.length === 0 ? h("p", { class: "muted" }, "none") : h(
            "dl",
            { class: "evidence" },
            evidence.map((
              [key, value],
            ) => [h("dt", null, key), h("dd", null, evidenceValue(value))]),
          ),
          h("h3", null, "History"),
          history(alert, state.changes.get(alert.id) ?? []),
        )
        : null,
    );
  }
}
