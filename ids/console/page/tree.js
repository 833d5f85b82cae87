/**
 * The process tree: parent to children, in the order it is shown. Guest memory is hostile, so
 * the parent links may form cycles or name processes that are not there: every process is shown
 * exactly once, those reached from no root as roots of their own, and nothing recurses.
 *
 * @module
 */

/**
 * The rows of the tree of `processes` (objects with `pid` and `ppid`), each parent before its
 * children, siblings by pid, with its depth and its number of children. A process is a root
 * when its parent is itself or absent.
 * @template {{ pid: number, ppid: number }} P
 * @param {P[]} processes
 * @returns {{ process: P, depth: number, children: number }[]}
 */
export function processTree(processes) {
  const byPid = new Map();
  for (const process of processes) if (!byPid.has(process.pid)) byPid.set(process.pid, process);
  const children = new Map();
  const roots = [];
  for (const process of byPid.values()) {
    const parent = process.ppid !== process.pid && byPid.has(process.ppid) ? process.ppid : null;
    if (parent === null) roots.push(process);
    else {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(process);
    }
  }
  const byPidOrder = (a, b) => a.pid - b.pid;
  for (const list of children.values()) list.sort(byPidOrder);
  roots.sort(byPidOrder);

  const rows = [];
  const shown = new Set();
  const walk = (root) => {
    const stack = [{ process: root, depth: 0 }];
    while (stack.length > 0) {
      const { process, depth } = stack.pop();
      if (shown.has(process.pid)) continue;
      shown.add(process.pid);
      const kids = (children.get(process.pid) ?? []).filter((kid) => !shown.has(kid.pid));
      rows.push({ process, depth, children: kids.length });
      for (let i = kids.length - 1; i >= 0; i--) stack.push({ process: kids[i], depth: depth + 1 });
    }
  };
  for (const root of roots) walk(root);
  // Left: processes on a cycle of parent links, reached from no root.
  for (const process of [...byPid.values()].sort(byPidOrder)) walk(process);
  return rows;
}

/**
 * The pids an alert names: its subject (`pid 1234`), its evidence's `pid`, `pids` or socket
 * `owners`.
 * @param {{ subject: string, evidence: Record<string, unknown> }} alert
 * @returns {number[]}
 */
export function alertPids(alert) {
  const pids = [];
  const subject = /^pid (\d+)$/.exec(alert.subject);
  if (subject) pids.push(Number(subject[1]));
  const { pid, pids: more, owners } = alert.evidence ?? {};
  if (Number.isInteger(pid)) pids.push(pid);
  if (Array.isArray(more)) pids.push(...more.filter(Number.isInteger));
  if (Array.isArray(owners)) {
    for (const owner of owners) if (Number.isInteger(owner?.pid)) pids.push(owner.pid);
  }
  return [...new Set(pids)];
}
