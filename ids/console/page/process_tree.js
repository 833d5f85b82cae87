/**
 * The process tree as nested lists (a child's item inside its parent's), collapsible, with each
 * process's uid, comm, thread count, container and the alerts that name it.
 *
 * @module
 */

import { h } from "@console/dom.js";
import { processTree } from "@console/tree.js";

const COLUMNS = ["PID", "Command", "UID", "Threads", "Container", "Alerts"];

/** The uid column: the real uid, and the effective one when it differs. */
function uids(process) {
  return process.euid === process.uid
    ? String(process.uid)
    : `${process.uid} (euid ${process.euid})`;
}

/**
 * The container column: the cgroup path when it is not the root, and the pid namespace (with
 * the pid inside it) when it is not the one of the tree's first root.
 */
function container(process, rootNs) {
  const parts = [];
  if (process.cgroup && process.cgroup !== "/") parts.push(process.cgroup);
  if (process.pidNs !== undefined && process.pidNs !== rootNs) {
    parts.push(
      `pidns ${process.pidNs}${process.nsPid === undefined ? "" : ` pid ${process.nsPid}`}`,
    );
  }
  return parts.join(" · ");
}

/**
 * The tree of `processes`.
 * @param {object[]} processes
 * @param {{ collapsed: Set<number>, marks: Map<number, object[]>, selected?: number, onSelect: (pid: number) => void }} options
 *   `collapsed`: the pids whose children are hidden (kept up to date as the user toggles);
 *   `marks`: the open alerts naming each pid
 * @returns {HTMLElement}
 */
export function processTreeElement(processes, { collapsed, marks, selected, onSelect }) {
  const rows = processTree(processes);
  const rootNs = rows[0]?.process.pidNs;
  const top = h("ul", { class: "tree", role: "tree" });
  const lists = [top];
  for (const { process, depth, children } of rows) {
    const alerts = marks.get(process.pid) ?? [];
    const toggle = children === 0 ? h("span", { class: "toggle-space" }) : h("button", {
      type: "button",
      class: "toggle",
      "aria-label": `Show or hide the ${children} children of ${process.pid}`,
      onclick: (event) => {
        const item = event.currentTarget.closest("li");
        const hidden = item.classList.toggle("collapsed");
        if (hidden) collapsed.add(process.pid);
        else collapsed.delete(process.pid);
      },
    });
    const row = h(
      "div",
      { class: "row", role: "treeitem" },
      h("span", { class: "pid" }, process.pid),
      h(
        "span",
        { class: "name" },
        toggle,
        h("button", {
          type: "button",
          class: "comm",
          title: `Open files of ${process.pid}`,
          onclick: () => onSelect(process.pid),
        }, process.comm),
      ),
      h("span", { class: "uid" }, uids(process)),
      h("span", { class: "threads" }, process.threads ?? ""),
      h(
        "span",
        { class: "container", title: container(process, rootNs) },
        container(process, rootNs),
      ),
      h(
        "span",
        { class: "marks" },
        alerts.map((alert) =>
          h("span", { class: `severity sev-${alert.severity}`, title: alert.message }, alert.rule)
        ),
        process.error
          ? h("span", { class: "error-text", title: process.error }, "unreadable")
          : null,
      ),
    );
    row.querySelector(".name").style.setProperty("--depth", String(depth));
    const item = h("li", {
      "data-pid": process.pid,
      class: [
        process.kthread && "kthread",
        alerts.length > 0 && "marked",
        selected === process.pid && "selected",
        children > 0 && collapsed.has(process.pid) && "collapsed",
      ],
    }, row);
    lists[depth].append(item);
    if (children > 0) {
      const list = h("ul", { role: "group" });
      item.append(list);
      lists[depth + 1] = list;
    }
  }
  return h(
    "div",
    { class: "process-tree" },
    h("div", { class: "row head" }, COLUMNS.map((title) => h("span", null, title))),
    top,
  );
}
