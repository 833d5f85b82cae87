/**
 * Rule `shared_cred`: processes that are not threads of one process sharing one `cred`. The
 * kernel gives every new process its own credentials (copy_creds shares them only with
 * CLONE_THREAD, and every change of credentials makes a new one), so two processes holding the
 * same objective `real_cred` means one was handed another's: the classic way a rootkit makes a
 * process root without a trace in its uid history.
 *
 * Races: a walk is not atomic. A process that exits after the walk read it frees its cred, and a
 * process forked later may get the same memory before the walk reaches it: both then seem to hold
 * one cred. So a shared cred is raised only once the live guest confirms it (pids.ts's
 * `confirmSharedCreds`: both processes still alive and still holding it). Threads are not in the
 * list (only thread-group leaders are).
 *
 * @module
 */

import { type Detector, sectionOf } from "./types.ts";

export const sharedCred: Detector = {
  rule: "shared_cred",
  severity: "critical",
  description: "two processes (not threads of one) holding the same struct cred",
  needs: ["processes"],
  detect(now, _previous, settings) {
    const views = sectionOf(now, "processes");
    if (!views) return [];
    const confirmed = new Set(views.sharedCreds);
    const byCred = new Map<string, typeof views.processes>();
    for (const p of views.processes) {
      if (!p.cred || p.error) continue;
      const group = byCred.get(p.cred) ?? [];
      group.push(p);
      byCred.set(p.cred, group);
    }
    return [...byCred].filter(([cred, group]) =>
      confirmed.has(cred) && new Set(group.map((p) => p.tgid)).size > 1
    )
      .filter(([, group]) => !group.every((p) => settings.allow.has(p.comm)))
      .map(([cred, group]) => {
        const names = group.map((p) => `${p.pid} (${p.comm})`).join(", ");
        return {
          rule: "shared_cred",
          severity: settings.severity,
          subject: `cred ${cred}`,
          message: `processes ${names} share one cred (uid ${group[0].uid}, euid ${group[0].euid})`,
          evidence: {
            cred,
            pids: group.map((p) => p.pid),
            comms: group.map((p) => p.comm),
            tasks: group.map((p) => p.task),
            uid: group[0].uid,
            euid: group[0].euid,
          },
        };
      });
  },
};
