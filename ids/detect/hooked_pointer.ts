/**
 * Rule `hooked_pointer`: an entry of a kernel function-pointer table (system call tables, IDT,
 * /proc/net seq_operations, the /proc root's operations; ids/linux/kernel_pointers.ts) that
 * points outside core kernel text. A table that lives in a module (tcp6_seq_ops with a modular
 * ipv6) may point into that module's own text. Otherwise the entry is named with its owner: a
 * listed module, a module only the kset or mod_tree hold (`hidden-module`), or none.
 *
 * The race: a table is rewritten only by code that hooks it; no load or unload of a clean module
 * moves a kernel table's entry out of core text, so there is none to tell apart. NULL entries
 * and zero IDT gates are not pointers and are never raised. A pointer into an allow-listed
 * module that the module list holds is skipped; a hidden module is never allowed.
 *
 * @module
 */

import { moduleHolding, ownerOf } from "../linux/mod.ts";
import { type Detector, type Finding, sectionOf } from "./types.ts";

export const hookedPointer: Detector = {
  rule: "hooked_pointer",
  severity: "critical",
  description: "a system call, IDT, /proc/net seq_operations or /proc root operations pointer " +
    "that leads outside core kernel text (and outside the text of the module holding it)",
  needs: ["pointers", "modules"],
  detect(now, _previous, settings) {
    const pointers = sectionOf(now, "pointers");
    if (!pointers) return [];
    const modules = sectionOf(now, "modules");
    const findings: Finding[] = [];
    for (const e of pointers.outside) {
      const owner = ownerOf(BigInt(e.value), pointers.core, modules);
      if (owner.kind === "kernel") continue;
      const home = moduleHolding(BigInt(e.tableAddress), modules);
      if (owner.kind === "module" && home?.name === owner.name) continue;
      if (owner.kind === "module" && settings.allow.has(owner.name)) continue;
      const by = owner.kind === "none" ? "no known code" : `${owner.kind} ${owner.name}`;
      const slot = /^\d+$/.test(e.slot) ? `[${e.slot}]` : `.${e.slot}`;
      findings.push({
        rule: "hooked_pointer",
        severity: settings.severity,
        subject: `${e.table}${slot}`,
        message: `${e.table}${slot} points to ${e.value}, outside core kernel text, in ${by}`,
        evidence: {
          table: e.table,
          slot: e.slot,
          value: e.value,
          tableAddress: e.tableAddress,
          owner,
        },
      });
    }
    return findings;
  },
};
