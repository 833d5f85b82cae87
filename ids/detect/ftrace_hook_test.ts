import { assertEquals } from "../../tests/support/mod.ts";
import type { FtraceOps } from "../linux/mod.ts";
import { moduleViews, viewedModule } from "./_module_fixtures.ts";
import { ftraceHook } from "./ftrace_hook.ts";
import type { RuleSettings, Scan } from "./types.ts";

const SETTINGS: RuleSettings = { severity: "high", allow: new Set() };

const MODULES = moduleViews([
  viewedModule("livepatch_fix", 0xffffffffc0000000n, ["list", "kset", "mod_tree"]),
  viewedModule("rk", 0xffffffffc0100000n, ["kset", "mod_tree"]),
]);

function scan(ops: FtraceOps["ops"]): Scan {
  const value: FtraceOps = {
    ops,
    core: [{ start: "0xffffffff81000000", end: "0xffffffff82200000" }],
    truncated: false,
  };
  return {
    takenAt: 0,
    sections: {
      ftrace: { supported: true, value, truncated: false },
      modules: { supported: true, value: MODULES, truncated: false },
    },
  };
}

const OPS = [
  {
    ops: "0xffffffff82e00000",
    callback: "0xffffffff81200000",
    flags: 0,
    filter: { count: 0, ips: [] },
  },
  {
    ops: "0xffff888004000000",
    callback: "0xffffffffc0000010",
    flags: 0x1000,
    filter: { count: 1, ips: ["0xffffffff81300000"] },
  },
  {
    ops: "0xffffffffc0104000",
    callback: "0xffffffffc0100020",
    flags: 0,
    filter: { count: 1, ips: ["0xffffffff81400000"] },
  },
];

Deno.test("ftrace_hook raises callbacks outside core text, by owner", () => {
  const findings = ftraceHook.detect(scan(OPS), undefined, SETTINGS);
  assertEquals(findings.map((f) => [f.severity, f.subject, f.evidence.owner]), [
    ["high", "ftrace ops 0xffff888004000000", { kind: "module", name: "livepatch_fix" }],
    ["critical", "ftrace ops 0xffffffffc0104000", { kind: "hidden-module", name: "rk" }],
  ]);
  assertEquals(findings[1].evidence, {
    ops: "0xffffffffc0104000",
    callback: "0xffffffffc0100020",
    owner: { kind: "hidden-module", name: "rk" },
    flags: 0,
    filter: ["0xffffffff81400000"],
    count: 1,
  });
  assertEquals(
    findings[1].message,
    "ftrace ops 0xffffffffc0104000 calls 0xffffffffc0100020 in hidden-module rk on entry of " +
      "1 function",
  );
});

Deno.test("ftrace_hook skips an allow-listed module but never a hidden one or no code", () => {
  const none = {
    ops: "0xffff888005000000",
    callback: "0xffff888005000100",
    flags: 0,
    filter: { count: 0, ips: [] },
  };
  const allow = { severity: "high" as const, allow: new Set(["livepatch_fix", "rk"]) };
  assertEquals(
    ftraceHook.detect(scan([...OPS, none]), undefined, allow).map((f) => [
      f.severity,
      f.evidence.owner,
    ]),
    [["critical", { kind: "hidden-module", name: "rk" }], ["critical", { kind: "none" }]],
  );
  assertEquals(ftraceHook.detect(scan([OPS[0]]), undefined, SETTINGS), []);
});
