/**
 * The console once logged in: the header, the three views (guests, alerts, one guest) chosen
 * by the URL's fragment (`#/`, `#/alerts`, `#/vm/NAME`), the poll of the API every
 * {@linkcode POLL_MS} and the alert stream.
 *
 * @module
 */

import { Api } from "@console/api.js";
import { AlertsView } from "@console/alerts.js";
import { h, replace } from "@console/dom.js";
import { GuestView } from "@console/guest.js";
import { GuestsView } from "@console/guests.js";

/** How often the page reads the guests' status, the alerts and the fetch stats. */
export const POLL_MS = 2000;

/** Alerts the page holds: the API's longest list. */
const ALERT_LIMIT = 1000;

/**
 * What every view reads: the guests, their stats, the alerts, and which alerts arrived by the
 * stream since the page opened.
 */
export class ConsoleState {
  constructor() {
    /** @type {object[]} the guests as `GET /v1/vms` lists them */
    this.vms = [];
    /** @type {Map<string, object>} each guest's `GET /v1/vms/{vm}/stats` */
    this.stats = new Map();
    /** @type {Map<number, object>} alerts by id */
    this.alerts = new Map();
    /** @type {Set<number>} alerts opened (or reopened) by a change the stream brought, not yet looked at */
    this.fresh = new Set();
    /** @type {Map<number, object[]>} the changes of each alert the stream brought, oldest first */
    this.changes = new Map();
    /** `"connecting"`, `"open"` or `"retrying"` */
    this.stream = "connecting";
    /** @type {string | undefined} why the last poll failed */
    this.error = undefined;
    /** Epoch ms of the last poll. */
    this.polledAt = Date.now();
  }

  /** Takes a change from the stream. */
  take(change) {
    this.alerts.set(change.alert.id, change.alert);
    if (change.kind === "opened" || change.kind === "reopened") this.fresh.add(change.alert.id);
    const list = this.changes.get(change.alert.id) ?? [];
    list.push(change);
    this.changes.set(change.alert.id, list.slice(-20));
  }
}

/**
 * Starts the console in `root`.
 * @param {{ token: string, root: HTMLElement, logout: (message?: string) => void }} options
 */
export function start({ token, root, logout }) {
  const api = new Api(token, () => logout("The API refused the token: enter it again"));
  const state = new ConsoleState();
  const stop = new AbortController();
  const nav = {
    guests: h("a", { href: "#/", "data-nav": "guests" }, "Guests"),
    alerts: h("a", { href: "#/alerts", "data-nav": "alerts" }, "Alerts"),
  };
  const freshCount = h("span", { class: "fresh-count", hidden: true });
  const streamMark = h("span", { class: "stream", title: "The alert stream" });
  const banner = h("p", { class: "banner error", role: "alert", hidden: true });
  const main = h("main");
  replace(
    root,
    h(
      "header",
      null,
      h("strong", { class: "brand" }, "ebpfmon"),
      h("nav", null, nav.guests, h("span", null, nav.alerts, freshCount)),
      streamMark,
      h("button", { type: "button", class: "logout", onclick: () => logout() }, "Log out"),
    ),
    banner,
    main,
  );

  let view;
  const route = () => {
    const hash = location.hash.replace(/^#\/?/, "");
    const vm = /^vm\/(.+)$/.exec(hash);
    const name = vm ? decodeURIComponent(vm[1]) : undefined;
    view?.close?.();
    view = name !== undefined
      ? new GuestView(api, name)
      : hash === "alerts"
      ? new AlertsView(() => render())
      : new GuestsView();
    nav.guests.classList.toggle("current", view instanceof GuestsView);
    nav.alerts.classList.toggle("current", view instanceof AlertsView);
    replace(main, view.element);
    render();
  };

  const render = () => {
    banner.hidden = state.error === undefined;
    banner.textContent = state.error ? `The IDS API cannot be read: ${state.error}` : "";
    streamMark.textContent = state.stream === "open" ? "● live" : "○ reconnecting";
    streamMark.className = `stream ${state.stream}`;
    freshCount.hidden = state.fresh.size === 0;
    freshCount.textContent = `${state.fresh.size} new`;
    view.render(state);
  };

  const poll = async () => {
    // The view reads its own data (a guest's processes) beside the common reads.
    const viewed = view.update?.(state);
    try {
      const [{ vms }, { alerts }] = await Promise.all([
        api.get("v1/vms"),
        api.get("v1/alerts", { limit: ALERT_LIMIT }),
      ]);
      const stats = await Promise.all(
        vms.map((vm) =>
          api.get(`v1/vms/${encodeURIComponent(vm.name)}/stats`).catch(() => undefined)
        ),
      );
      state.vms = vms;
      state.stats = new Map(vms.map((vm, i) => [vm.name, stats[i]]));
      // Alerts the stream brought that this list is too short to hold are kept, within bounds.
      for (const alert of alerts) state.alerts.set(alert.id, alert);
      if (state.alerts.size > 2 * ALERT_LIMIT) {
        const kept = new Set([...alerts.map((alert) => alert.id), ...state.fresh]);
        for (const id of state.alerts.keys()) if (!kept.has(id)) state.alerts.delete(id);
      }
      state.error = undefined;
    } catch (error) {
      state.error = error.message;
    }
    state.polledAt = Date.now();
    await viewed;
    render();
  };

  const loop = async () => {
    while (!stop.signal.aborted) {
      await poll();
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  };

  api.alertStream({
    signal: stop.signal,
    onStatus: (status) => {
      state.stream = status;
      render();
    },
    onChange: (change) => {
      state.take(change);
      render();
    },
  });
  addEventListener("hashchange", () => {
    route();
    view.update?.(state).then(render);
  });
  route();
  loop();
}
