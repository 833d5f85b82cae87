/**
 * Rule `hidden_process`: a process that one of the kernel's independent views of processes holds
 * and another does not (task list, pid IDR, children lists; ids/linux/pids.ts), confirmed
 * against the live guest before it is raised: a fork or exit during the scan is cleared there,
 * so it never reaches this rule.
 *
 * @module
 */

import { type Detector, sectionOf } from "./types.ts";

export const hiddenProcess: Detector = {
  rule: "hidden_process",
  severity: "critical",
  description: "a process missing from the task list, the pid IDR or its parent's children " +
    "list while another of them holds it (re-checked on the task's own links)",
  needs: ["processes"],
  detect(now, _previous, settings) {
    const views = sectionOf(now, "processes");
    if (!views) return [];
    return views.hidden
      .filter((p) => !settings.allow.has(p.comm))
      .map((p) => ({
        rule: "hidden_process",
        severity: settings.severity,
        subject: `pid ${p.pid}`,
        message: `process ${p.pid} (${p.comm}, uid ${p.uid}) is hidden from ${
          p.missingFrom.join(" and ")
        } but held by ${p.seenIn.join(" and ")}`,
        evidence: {
          pid: p.pid,
          comm: p.comm,
          uid: p.uid,
          euid: p.euid,
          task: p.task,
          seenIn: p.seenIn,
          missingFrom: p.missingFrom,
        },
      }));
  },
};
