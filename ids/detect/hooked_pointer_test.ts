import { assertEquals } from "../../tests/support/mod.ts";
import type { KernelPointers, ModuleViews } from "../linux/mod.ts";
import { moduleViews, viewedModule } from "./_module_fixtures.ts";
import { hookedPointer } from "./hooked_pointer.ts";
import type { RuleSettings, Scan } from "./types.ts";

const SETTINGS: RuleSettings = { severity: "critical", allow: new Set() };

const MODULES = moduleViews([
  viewedModule("ipv6", 0xffffffffc0000000n, ["list", "kset", "mod_tree"]),
  viewedModule("rk", 0xffffffffc0100000n, ["kset", "mod_tree"]),
]);

const CORE = [{ start: "0xffffffff81000000", end: "0xffffffff82200000" }];

function scan(
  outside: KernelPointers["outside"],
  modules: ModuleViews | null = MODULES,
): Scan {
  const value: KernelPointers = { core: CORE, tables: [], absent: [], outside };
  return {
    takenAt: 0,
    sections: {
      pointers: { supported: true, value, truncated: false },
      ...(modules ? { modules: { supported: true, value: modules, truncated: false } } : {}),
    },
  };
}

const SCT = "0xffffffff82400200";

Deno.test("hooked_pointer names a system call pointing into a hidden module", () => {
  const findings = hookedPointer.detect(
    scan([{
      table: "sys_call_table",
      slot: "217",
      value: "0xffffffffc0100040",
      tableAddress: SCT,
    }]),
    undefined,
    SETTINGS,
  );
  assertEquals(findings, [{
    rule: "hooked_pointer",
    severity: "critical",
    subject: "sys_call_table[217]",
    message: "sys_call_table[217] points to 0xffffffffc0100040, outside core kernel text, in " +
      "hidden-module rk",
    evidence: {
      table: "sys_call_table",
      slot: "217",
      value: "0xffffffffc0100040",
      tableAddress: SCT,
      owner: { kind: "hidden-module", name: "rk" },
    },
  }]);
});

Deno.test("hooked_pointer lets a module's own table point into its own text only", () => {
  const tcp6 = "0xffffffffc0004000"; // in ipv6's data
  const findings = hookedPointer.detect(
    scan([
      { table: "tcp6_seq_ops", slot: "show", value: "0xffffffffc0000100", tableAddress: tcp6 },
      { table: "tcp6_seq_ops", slot: "start", value: "0xffffffffc0100000", tableAddress: tcp6 },
      { table: "tcp4_seq_ops", slot: "show", value: "0xffffffffc0000100", tableAddress: SCT },
    ]),
    undefined,
    SETTINGS,
  );
  assertEquals(findings.map((f) => [f.subject, f.evidence.owner]), [
    ["tcp6_seq_ops.start", { kind: "hidden-module", name: "rk" }],
    ["tcp4_seq_ops.show", { kind: "module", name: "ipv6" }],
  ]);
});

Deno.test("hooked_pointer says none when no module section tells the owner", () => {
  const entry = { table: "idt_table", slot: "128", value: "0xffffffffc0100000", tableAddress: SCT };
  const findings = hookedPointer.detect(scan([entry], null), undefined, SETTINGS);
  assertEquals(findings.map((f) => [f.subject, f.evidence.owner]), [
    ["idt_table[128]", { kind: "none" }],
  ]);
  const tcp4 = { ...entry, table: "tcp4_seq_ops", slot: "show", value: "0xffffffffc0000100" };
  const allowed = hookedPointer.detect(scan([entry, tcp4]), undefined, {
    severity: "critical",
    allow: new Set(["rk", "ipv6"]),
  });
  // A listed module can be allowed; a hidden one never is.
  assertEquals(allowed.map((f) => f.subject), ["idt_table[128]"]);
  assertEquals(hookedPointer.detect(scan([]), undefined, SETTINGS), []);
});
