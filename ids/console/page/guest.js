/**
 * One guest: its agent, the numbers of its last fetch and a chart of fetch latency, then its
 * process tree (a process's open files on click), its modules or its sockets.
 *
 * @module
 */

import { latencyChart } from "@console/chart.js";
import { h, replace } from "@console/dom.js";
import { ago, bytes, millis, plural } from "@console/format.js";
import { processTreeElement } from "@console/process_tree.js";
import { lastFetch, stateBadge, stateSince } from "@console/status.js";
import { alertPids } from "@console/tree.js";

const TABS = ["processes", "modules", "sockets"];

/** A table with `columns` and `rows` (arrays of cells). */
function table(columns, rows, empty) {
  if (rows.length === 0) return h("p", { class: "muted" }, empty);
  return h(
    "table",
    null,
    h("thead", null, h("tr", null, columns.map((title) => h("th", null, title)))),
    h("tbody", null, rows.map((cells) => h("tr", null, cells.map((cell) => h("td", null, cell))))),
  );
}

/** What to say instead of a view that could not be read. */
function failure(error, vm) {
  if (error.code === "agent_unreachable") {
    return h(
      "p",
      { class: "banner warning" },
      `No snapshot to show: the agent of ${vm} cannot be reached and none was taken before (${error.message})`,
    );
  }
  return h("p", { class: "banner error" }, `Cannot read this view: ${error.message}`);
}

/** The view of one guest. */
export class GuestView {
  /**
   * @param {import("@console/api.js").Api} api
   * @param {string} name
   */
  constructor(api, name) {
    this.api = api;
    this.name = name;
    this.path = `v1/vms/${encodeURIComponent(name)}`;
    this.tab = "processes";
    /** @type {Record<string, object | undefined>} the last answer of each tab's view */
    this.answers = {};
    /** @type {Record<string, Error | undefined>} the last failure of each tab's view */
    this.errors = {};
    this.collapsed = new Set();
    this.collapsedDefaults = false;
    this.selected = undefined;
    this.files = undefined;
    this.treeKey = "";
    this.head = h("div", { class: "guest-head" });
    this.numbers = h("div", { class: "numbers" });
    this.tabs = h(
      "nav",
      { class: "tabs" },
      TABS.map((tab) =>
        h("button", { type: "button", "data-tab": tab, onclick: () => this.#show(tab) }, tab)
      ),
    );
    this.content = h("div", { class: "content" });
    this.filesPanel = h("aside", { class: "files", hidden: true });
    this.element = h(
      "section",
      { class: "guest", "data-view": "guest", "data-vm": name },
      this.head,
      this.numbers,
      this.tabs,
      h("div", { class: "split" }, this.content, this.filesPanel),
    );
  }

  /** Reads the shown tab's view (the last snapshot, stale or not, when the agent is down). */
  async update(state) {
    this.state = state;
    const tab = this.tab;
    try {
      this.answers[tab] = await this.api.get(`${this.path}/${tab}`, { allow_stale: true });
      this.errors[tab] = undefined;
    } catch (error) {
      this.errors[tab] = error;
    }
  }

  async #show(tab) {
    this.tab = tab;
    this.treeKey = "";
    if (this.state) this.render(this.state);
    await this.update(this.state);
    this.render(this.state);
  }

  async #select(pid) {
    this.selected = pid;
    for (const item of this.content.querySelectorAll("li.selected")) {
      item.classList.remove("selected");
    }
    this.content.querySelector(`li[data-pid="${pid}"]`)?.classList.add("selected");
    this.files = { pid, loading: true };
    this.#renderFiles();
    try {
      this.files = await this.api.get(`${this.path}/processes/${pid}/files`, { allow_stale: true });
    } catch (error) {
      this.files = { pid, error };
    }
    this.#renderFiles();
  }

  /** @param {import("@console/app.js").ConsoleState} state */
  render(state) {
    this.state = state;
    const vm = state.vms.find((candidate) => candidate.name === this.name);
    if (!vm) {
      replace(this.head, h("h1", null, this.name));
      if (state.vms.length > 0) {
        replace(this.content, h("p", { class: "banner error" }, `No guest named "${this.name}"`));
      }
      return;
    }
    this.#renderHead(vm, state);
    this.#renderNumbers(state.stats.get(this.name));
    for (const button of this.tabs.children) {
      button.classList.toggle("current", button.dataset.tab === this.tab);
    }
    const error = this.errors[this.tab];
    const answer = this.answers[this.tab];
    if (error && !answer) {
      this.treeKey = "";
      replace(this.content, failure(error, this.name));
      return;
    }
    if (!answer) return;
    if (this.tab === "processes") this.#renderProcesses(answer, state);
    else if (this.tab === "modules") this.#renderModules(answer);
    else this.#renderSockets(answer);
  }

  #renderHead(vm, state) {
    const down = vm.state !== "up";
    const since = stateSince(vm);
    replace(
      this.head,
      h("h1", null, vm.name, " ", stateBadge(vm, state.polledAt)),
      h(
        "p",
        { class: "muted" },
        `agent ${vm.agent} · kernel ${
          vm.kernel?.release ?? "unknown"
        } · refresh every ${vm.refreshMs} ms`,
      ),
      down
        ? h(
          "p",
          { class: "banner warning", role: "status" },
          `The agent is ${vm.state}${
            since === undefined ? "" : ` since ${ago(since, state.polledAt)}`
          }`,
          vm.lastError ? `: ${vm.lastError.message}` : "",
          vm.lastSnapshotAt === undefined
            ? ". No snapshot was taken yet."
            : `. The views show the last snapshot, taken ${
              ago(vm.lastSnapshotAt, state.polledAt)
            }.`,
        )
        : null,
    );
  }

  #renderNumbers(stats) {
    const last = lastFetch(stats);
    const processes = (stats?.recent ?? []).filter((record) => record.view === "processes");
    const number = (label, value) =>
      h("div", { class: "number" }, h("span", { class: "label" }, label), h("strong", null, value));
    replace(
      this.numbers,
      last
        ? h(
          "div",
          { class: "last-fetch", "data-view": last.view },
          h("h2", null, `Last fetch (${last.view})${last.ok ? "" : ": failed"}`),
          number("mode", last.mode),
          number("round trips", String(last.roundTrips)),
          number("bytes", bytes(last.bytes)),
          number("time", millis(last.ms)),
          number("fetches", `${stats.fetches} (${stats.failures} failed)`),
        )
        : h("p", { class: "muted" }, "No fetch yet"),
      latencyChart(processes),
    );
  }

  #renderProcesses(answer, state) {
    const marks = new Map();
    for (const alert of state.alerts.values()) {
      if (alert.vm !== this.name || alert.state !== "open") continue;
      for (const pid of alertPids(alert)) marks.set(pid, [...(marks.get(pid) ?? []), alert]);
    }
    const key = `${answer.snapshot.takenAt}/${answer.snapshot.stale}/${
      [...marks].map(([pid, alerts]) => `${pid}:${alerts.map((a) => a.id)}`)
    }`;
    if (key === this.treeKey) return;
    this.treeKey = key;
    if (!this.collapsedDefaults) {
      // Kernel threads hang under kthreadd: folded until asked for.
      this.collapsedDefaults = true;
      for (const process of answer.processes) {
        if (process.pid === 2 && process.kthread) this.collapsed.add(2);
      }
    }
    const snapshot = answer.snapshot;
    replace(
      this.content,
      h(
        "p",
        { class: snapshot.stale ? "banner warning" : "muted" },
        `${answer.processes.length} processes, snapshot taken ${
          ago(snapshot.takenAt)
        } (${snapshot.mode}, ${plural(snapshot.stats.roundTrips, "round trip")}, ${
          bytes(snapshot.stats.bytes)
        }, ${millis(snapshot.stats.ms)})`,
        snapshot.stale ? ": stale, the agent cannot be reached" : "",
      ),
      processTreeElement(answer.processes, {
        collapsed: this.collapsed,
        marks,
        selected: this.selected,
        onSelect: (pid) => this.#select(pid),
      }),
    );
  }

  #renderFiles() {
    const files = this.files;
    this.filesPanel.hidden = files === undefined;
    if (!files) return;
    const close = h("button", {
      type: "button",
      class: "close",
      onclick: () => {
        this.files = undefined;
        this.#renderFiles();
      },
    }, "close");
    const comm = this.answers.processes?.processes.find((p) => p.pid === files.pid)?.comm;
    const title = h(
      "h2",
      null,
      `Open files of ${files.pid}`,
      comm === undefined ? "" : ` (${comm})`,
    );
    if (files.loading) {
      return replace(this.filesPanel, close, title, h("p", { class: "muted" }, "Reading…"));
    }
    if (files.error) return replace(this.filesPanel, close, title, failure(files.error, this.name));
    replace(
      this.filesPanel,
      close,
      title,
      table(
        ["fd", "type", "path"],
        files.files.map((file) => [
          String(file.fd),
          file.type,
          [
            file.path,
            file.pathComplete ? "" : " (incomplete)",
            file.error ? ` (${file.error})` : "",
          ],
        ]),
        "No open file",
      ),
    );
  }

  #renderModules(answer) {
    if (!answer.supported) {
      replace(
        this.content,
        h(
          "p",
          { class: "banner info" },
          `This kernel has no loadable modules: ${answer.reason ?? "not supported"}`,
        ),
      );
      return;
    }
    replace(
      this.content,
      table(
        ["name", "state", "size", "refcount", "taints", "address"],
        answer.modules.map((module) => [
          module.name,
          module.state,
          bytes(module.size),
          module.refcount === null ? "?" : String(module.refcount),
          module.taintFlags,
          [module.module, module.error ? ` (${module.error})` : ""],
        ]),
        "No module loaded",
      ),
    );
  }

  #renderSockets(answer) {
    const comms = new Map((this.answers.processes?.processes ?? []).map((p) => [p.pid, p.comm]));
    const endpoint = (
      address,
      port,
    ) => (address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);
    replace(
      this.content,
      table(
        ["protocol", "state", "local", "remote", "owners"],
        answer.sockets.map((socket) => [
          `${socket.protocol}${socket.family === "inet6" ? "6" : ""}`,
          socket.state,
          endpoint(socket.localAddress, socket.localPort),
          endpoint(socket.remoteAddress, socket.remotePort),
          socket.owners.map((owner) =>
            `${owner.pid}${comms.has(owner.pid) ? ` (${comms.get(owner.pid)})` : ""} fd ${owner.fd}`
          ).join(", "),
        ]),
        "No socket",
      ),
    );
  }
}
