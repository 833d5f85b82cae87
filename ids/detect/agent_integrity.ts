/**
 * Rule `agent_integrity`: the agent, checked from outside at every scan. Its task must be the
 * process its HELLO named, alive, and traced by nothing (a tracer can rewrite what the agent
 * answers); its BPF programs (those its own fd table holds) must be those it held at the guest's
 * first scan, by name and tag: a program gone, or replaced by one with other instructions, is
 * a walker the IDS no longer trusts.
 *
 * Races: none; the agent's task and programs do not change while it serves.
 *
 * @module
 */

import type { BpfPrograms } from "../linux/bpf_programs.ts";
import { type Detector, type Finding, type Scan, sectionOf } from "./types.ts";

type AgentProgram = BpfPrograms["agent"]["programs"][number];

/**
 * The agent's programs of `scan` (its fd table's) by "name tag", with how many of each;
 * undefined when that table was not read whole.
 */
function ownPrograms(scan: Scan | undefined): Map<string, AgentProgram[]> | undefined {
  const agent = sectionOf(scan, "bpf")?.agent;
  if (!agent?.complete) return undefined;
  const out = new Map<string, AgentProgram[]>();
  for (const p of agent.programs) {
    const key = `${p.name} ${p.tag}`;
    out.set(key, [...out.get(key) ?? [], p]);
  }
  return out;
}

export const agentIntegrity: Detector = {
  rule: "agent_integrity",
  severity: "high",
  description: "the agent's process is the one its HELLO named, alive and traced by nothing, " +
    "and holds the BPF programs (names and tags) it held at the first scan",
  needs: ["agent", "bpf"],
  detect(now, _previous, settings, first) {
    const agent = sectionOf(now, "agent");
    const findings: Finding[] = [];
    const finding = (subject: string, message: string, evidence: Record<string, unknown>) =>
      findings.push({
        rule: "agent_integrity",
        severity: settings.severity,
        subject,
        message,
        evidence,
      });
    if (agent) {
      const subject = `agent pid ${agent.claimedPid}`;
      if (agent.tgid !== agent.claimedPid) {
        finding(
          subject,
          `the agent's task ${agent.task} is pid ${agent.tgid} (${agent.comm}), not the agent's ${agent.claimedPid}`,
          { task: agent.task, pid: agent.pid, tgid: agent.tgid, claimedPid: agent.claimedPid },
        );
      }
      if (!agent.alive) {
        finding(subject, `the agent's task ${agent.task} is exiting`, { task: agent.task });
      }
      if (agent.ptrace !== 0 && !settings.allow.has(agent.tracer?.comm ?? "")) {
        const by = agent.tracer
          ? `pid ${agent.tracer.pid} (${agent.tracer.comm})`
          : "an unknown task";
        finding(subject, `the agent (pid ${agent.claimedPid}) is traced by ${by}`, {
          task: agent.task,
          ptrace: agent.ptrace,
          tracer: agent.tracer,
        });
      }
    }
    const baseline = ownPrograms(first);
    const current = ownPrograms(now);
    if (!baseline || !current || first === now) return findings;
    for (const [key, was] of baseline) {
      const left = current.get(key)?.length ?? 0;
      if (left >= was.length) continue;
      const p = was[0];
      finding(
        `agent program ${p.name} ${p.tag}`,
        `the agent's program ${p.name} (tag ${p.tag}) is no longer loaded` +
          (was.length > 1 ? ` (${left} of ${was.length} left)` : ""),
        { name: p.name, tag: p.tag, was: was.length, now: left },
      );
    }
    for (const [key, is] of current) {
      if (baseline.has(key)) continue;
      const p = is[0];
      finding(
        `agent program ${p.name} ${p.tag}`,
        `the agent holds a program it did not hold at the first scan: ${p.name} (tag ${p.tag})`,
        { name: p.name, tag: p.tag, prog: p.prog },
      );
    }
    return findings;
  },
};
