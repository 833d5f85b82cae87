/**
 * Rule `privilege_escalation`: a process whose uid or euid became 0 between two scans without
 * an exec, while it had no way back to root: its real, effective and saved uids were all
 * non-zero and it lacked CAP_SETUID. A set-uid program is an exec (its exec count changes); a
 * daemon that lowered only its effective uid keeps a saved uid of 0 and may raise it again.
 *
 * Races: the process is matched across scans by task address, pid and start time, so a task
 * freed and reused by another process is not the same process.
 *
 * @module
 */

import { type Detector, sectionOf } from "./types.ts";

const CAP_SETUID = 7n;

function hasCap(caps: string | undefined, cap: bigint): boolean {
  return caps !== undefined && ((BigInt(caps) >> cap) & 1n) === 1n;
}

export const privilegeEscalation: Detector = {
  rule: "privilege_escalation",
  severity: "critical",
  description: "a process whose uid or euid went from non-zero to 0 between scans without an exec",
  needs: ["processes"],
  detect(now, previous, settings) {
    const before = sectionOf(previous, "processes");
    const after = sectionOf(now, "processes");
    if (!before || !after) return [];
    const old = new Map(before.processes.map((p) => [`${p.task}/${p.pid}/${p.startTime}`, p]));
    return after.processes.flatMap((p) => {
      const was = old.get(`${p.task}/${p.pid}/${p.startTime}`);
      if (!was || was.error || p.error || p.startTime === undefined) return [];
      const couldReturn = was.uid === 0 || was.euid === 0 || was.suid === 0 ||
        hasCap(was.capEffective, CAP_SETUID);
      if (couldReturn || (p.uid !== 0 && p.euid !== 0) || p.execId !== was.execId) return [];
      if (settings.allow.has(p.comm)) return [];
      return [{
        rule: "privilege_escalation",
        severity: settings.severity,
        subject: `pid ${p.pid}`,
        message: `process ${p.pid} (${p.comm}) went from uid ${was.uid}/euid ${was.euid} to ` +
          `uid ${p.uid}/euid ${p.euid} without an exec`,
        evidence: {
          pid: p.pid,
          comm: p.comm,
          task: p.task,
          before: { uid: was.uid, euid: was.euid, suid: was.suid, cred: was.cred },
          after: { uid: p.uid, euid: p.euid, suid: p.suid, cred: p.cred },
          execId: p.execId,
        },
      }];
    });
  },
};
