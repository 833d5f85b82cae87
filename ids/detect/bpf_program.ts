/**
 * Rule `bpf_program`: a BPF program loaded in the guest kernel that is not the agent's own
 * (reached from the agent's fd table, ids/linux/bpf_programs.ts) and not allow-listed by name
 * or by tag. An eBPF program is kernel code: a rootkit can hide files, processes and sockets, or
 * rewrite what programs read, without loading a module.
 *
 * Severity is the rule's (`medium`), raised to at least `high` for a program whose type can
 * write user memory or change what the kernel returns ({@linkcode POWERFUL_TYPES}), and for a
 * program that one view holds and another, after confirmation, does not (`missingFrom`): that
 * one is raised even when allow-listed or the agent's own, since a name or tag proves nothing
 * about a program hidden from the kernel's own bookkeeping.
 *
 * Races: a program loading or unloading during the scan is in one view only for a moment; the
 * source re-reads it in the live guest and drops it, so this rule only sees what is still
 * missing. A program that is not JITed is on no kallsyms list by design and is not "missing".
 *
 * @module
 */

import type { BpfProgram } from "../linux/mod.ts";
import { type Detector, type Finding, sectionOf, type Severity, severityRank } from "./types.ts";

/**
 * Program types that can write user memory (`bpf_probe_write_user`: the tracing types) or
 * override what the kernel returns or decides (`bpf_override_return` on kprobes, fmod_ret
 * tracing programs, LSM hooks, struct_ops replacing kernel operations, freplace extensions).
 */
export const POWERFUL_TYPES: ReadonlySet<string> = new Set([
  "kprobe",
  "tracepoint",
  "perf_event",
  "raw_tracepoint",
  "raw_tracepoint_writable",
  "tracing",
  "lsm",
  "struct_ops",
  "ext",
]);

function atLeast(severity: Severity, floor: Severity): Severity {
  return severityRank(severity) >= severityRank(floor) ? severity : floor;
}

function subject(p: BpfProgram): string {
  return `bpf prog ${p.id} ${p.name || p.tag}`;
}

export const bpfProgram: Detector = {
  rule: "bpf_program",
  severity: "medium",
  description: "a BPF program in the guest kernel that is not the agent's own nor allow-listed " +
    "(by name or tag); high for types that can write user memory or override returns, and for " +
    "a program in one of prog_idr and bpf_kallsyms but not the other",
  needs: ["bpf"],
  detect(now, _previous, settings) {
    const section = sectionOf(now, "bpf");
    if (!section) return [];
    const findings: Finding[] = [];
    for (const p of section.programs) {
      const hidden = p.missingFrom.length > 0;
      const allowed = p.own || settings.allow.has(p.name) || settings.allow.has(p.tag);
      if (allowed && !hidden) continue;
      const powerful = POWERFUL_TYPES.has(p.type);
      const severity = hidden || powerful ? atLeast(settings.severity, "high") : settings.severity;
      const what = `${p.type} program ${p.id} "${p.name}" (tag ${p.tag})`;
      findings.push({
        rule: "bpf_program",
        severity,
        subject: subject(p),
        message: hidden
          ? `${what} is hidden from ${p.missingFrom.join(" and ")} but held by ${
            p.seenIn.join(" and ")
          }`
          : `${what} is loaded in the guest kernel` +
            (powerful ? "; its type can write user memory or override kernel returns" : ""),
        evidence: {
          id: p.id,
          name: p.name,
          tag: p.tag,
          type: p.type,
          loadTime: p.loadTime,
          jited: p.jited,
          own: p.own,
          maps: p.maps.map((m) => ({ id: m.id, name: m.name, type: m.type })),
          seenIn: p.seenIn,
          missingFrom: p.missingFrom,
          prog: p.prog,
          aux: p.aux,
        },
      });
    }
    return findings;
  },
};
