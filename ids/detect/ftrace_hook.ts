/**
 * Rule `ftrace_hook`: a registered ftrace ops (ids/linux/ftrace.ts) whose callback is not in core
 * kernel text: a module's function called on entry of the functions it filters (every function
 * when its filter is empty). The kernel's own tracers, BPF trampolines and ftrace-based kprobes
 * register callbacks in core text; a listed module's callback (livepatch, a tracing module) is
 * the rule's severity (high by default), and is silenced by allow-listing the module's name; a
 * callback in a module only the kset or mod_tree hold, or in no known code, is critical.
 *
 * The race: an ops being registered or removed during the scan is on the list or not; either way
 * its callback's owner is what it is, so no re-check is needed.
 *
 * @module
 */

import { ownerOf } from "../linux/mod.ts";
import { type Detector, type Finding, sectionOf } from "./types.ts";

export const ftraceHook: Detector = {
  rule: "ftrace_hook",
  severity: "high",
  description: "a registered ftrace callback outside core kernel text (in a module, a hidden " +
    "module or no known code)",
  needs: ["ftrace", "modules"],
  detect(now, _previous, settings) {
    const ftrace = sectionOf(now, "ftrace");
    if (!ftrace) return [];
    const modules = sectionOf(now, "modules");
    const findings: Finding[] = [];
    for (const ops of ftrace.ops) {
      const owner = ownerOf(BigInt(ops.callback), ftrace.core, modules);
      if (owner.kind === "kernel") continue;
      if (owner.kind === "module" && settings.allow.has(owner.name)) continue;
      const by = owner.kind === "none" ? "no known code" : `${owner.kind} ${owner.name}`;
      const what = ops.filter.count === 0
        ? "every function"
        : `${ops.filter.count} function${ops.filter.count === 1 ? "" : "s"}`;
      findings.push({
        rule: "ftrace_hook",
        severity: owner.kind === "module" ? settings.severity : "critical",
        subject: `ftrace ops ${ops.ops}`,
        message: `ftrace ops ${ops.ops} calls ${ops.callback} in ${by} on entry of ${what}`,
        evidence: {
          ops: ops.ops,
          callback: ops.callback,
          owner,
          flags: ops.flags,
          filter: ops.filter.ips,
          count: ops.filter.count,
          ...(ops.filter.error ? { error: ops.filter.error } : {}),
        },
      });
    }
    return findings;
  },
};
