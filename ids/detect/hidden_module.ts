/**
 * Rule `hidden_module`: a module that one of the kernel's independent structures of modules
 * holds (the module list, the module kset, the module address tree; ids/linux/module_views.ts)
 * and another does not, confirmed on the module's own links in the live guest.
 *
 * The race: a module loading or unloading during the scan is in some views and not others for a
 * moment, and the list may have been read before it was linked. The source re-reads every such
 * module: this rule raises only for one that is LIVE and whose own links are not linked (both
 * neighbours do not point back), or, for the address tree, that a new walk of the live tree
 * does not find either (a rebalance for another module can hide a node from one walk). A COMING,
 * GOING or UNFORMED module, or one whose links turn out linked, is a race, never a finding. A
 * view whose walk was truncated proves nothing missing.
 *
 * Severity: a module hidden from the module list (lsmod, /proc/modules) is the rule's severity
 * (critical by default); one listed but missing from the kset (/sys/module) or the address tree
 * is `high`.
 *
 * @module
 */

import type { ModuleView, ViewedModule } from "../linux/mod.ts";
import { type Detector, type Finding, sectionOf, type Severity } from "./types.ts";

function missingFrom(m: ViewedModule, complete: readonly ModuleView[]): ModuleView[] {
  return complete.filter((v) => !m.seenIn.includes(v));
}

/** Whether the re-check proves the module really is out of `view` (not a load race). */
function confirmed(m: ViewedModule, view: ModuleView): boolean {
  const r = m.recheck;
  if (!r || r.error || r.state !== "live") return false;
  if (view === "list") return !r.listLinked;
  if (view === "kset") return !r.ksetLinked;
  return r.inTree === false;
}

export const hiddenModule: Detector = {
  rule: "hidden_module",
  severity: "critical",
  description: "a live kernel module missing from the module list, the module kset or the " +
    "module address tree while another of them holds it (re-checked on its own links)",
  needs: ["modules"],
  detect(now, _previous, settings) {
    const views = sectionOf(now, "modules");
    if (!views) return [];
    const complete = (Object.keys(views.views) as ModuleView[]).filter((v) =>
      views.views[v].present && !views.views[v].truncated
    );
    const findings: Finding[] = [];
    for (const m of views.modules) {
      if (settings.allow.has(m.name)) continue;
      const missing = missingFrom(m, complete).filter((v) => confirmed(m, v));
      if (missing.length === 0) continue;
      const severity: Severity = missing.includes("list") ? settings.severity : "high";
      findings.push({
        rule: "hidden_module",
        severity,
        subject: `module ${m.name}`,
        message: `module ${m.name} at ${m.module} is missing from ${
          missing.join(" and ")
        } but held by ${m.seenIn.join(" and ")}`,
        evidence: {
          name: m.name,
          address: m.module,
          state: m.recheck?.state ?? m.state,
          seenIn: m.seenIn,
          missingFrom: missing,
          text: m.text,
        },
      });
    }
    return findings;
  },
};
