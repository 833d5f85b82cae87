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

import type { BpfPrograms } from "../linux/mod.ts";
import { type Detector, type Finding, type Scan, sectionOf } from "./types.ts";

type AgentProgram = BpfPrograms["agent"]["programs"][number];

/** The agent's programs of `scan` (its fd table's) by tag; undefined when not read whole. */
function ownPrograms(scan: Scan | undefined): Map<string, AgentProgram> | undefined {
  const agent = sectionOf(scan, "bpf")?.agent;
  return agent?.complete ? new Map(agent.programs.map((p) => [p.tag, p])) : undefined;
}

export const agentIntegrity: Detector = {
  rule: "agent_integrity",
  severity: "high",
  description: "the agent's process is the one its HELLO named, alive and traced by nothing, " +
    "and holds the BPF programs it loaded for the IDS (by tag), and no other than those and " +
    "the ones it held at the first scan",
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
    const current = ownPrograms(now);
    if (!current) return findings;
    // What must be there: what the agent loaded for this session, else what the first scan saw.
    const loaded = agent?.loaded ?? [];
    const baseline = first === now ? undefined : ownPrograms(first);
    const expected = loaded.length ? new Map(loaded.map((p) => [p.tag, p])) : baseline;
    for (const [tag, p] of expected ?? []) {
      if (current.has(tag)) continue;
      finding(
        `agent program ${p.name} ${tag}`,
        `the agent's program ${p.name} (tag ${tag}) is no longer loaded`,
        { name: p.name, tag, loaded: loaded.length > 0 },
      );
    }
    // Another IDS's session may load the same object (the same tags); another object is news.
    if (!baseline && !loaded.length) return findings;
    for (const [tag, p] of current) {
      if (expected?.has(tag) || baseline?.has(tag)) continue;
      finding(
        `agent program ${p.name} ${tag}`,
        `the agent holds a program it neither loaded for this IDS nor held at the first scan: ` +
          `${p.name} (tag ${tag})`,
        { name: p.name, tag, prog: p.prog },
      );
    }
    return findings;
  },
};
