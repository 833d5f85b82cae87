import { assertEquals } from "../../tests/support/mod.ts";
import type { ModuleRecheck, ModuleViews, ViewedModule } from "../linux/mod.ts";
import { hiddenModule } from "./hidden_module.ts";
import type { RuleSettings, Scan } from "./types.ts";

const SETTINGS: RuleSettings = { severity: "critical", allow: new Set() };

function module(
  name: string,
  seenIn: ViewedModule["seenIn"],
  recheck?: ModuleRecheck,
): ViewedModule {
  return {
    name,
    module: "0xffffffffc0a00000",
    base: "0xffffffffc0800000",
    size: 0x3000,
    state: "live",
    refcount: 0,
    taints: "0x0000000000003000",
    taintFlags: "OE",
    text: [{ start: "0xffffffffc0800000", end: "0xffffffffc0801000" }],
    memory: [{ start: "0xffffffffc0800000", end: "0xffffffffc0803000" }],
    seenIn,
    ...(recheck ? { recheck } : {}),
  };
}

const ALL: ViewedModule["seenIn"] = ["list", "kset", "mod_tree"];
const live = (listLinked: boolean, ksetLinked = true): ModuleRecheck => ({
  state: "live",
  listLinked,
  ksetLinked,
});

function scan(modules: ViewedModule[], truncated: Partial<Record<string, boolean>> = {}): Scan {
  const walk = (view: string) => ({ present: true, count: 0, truncated: truncated[view] ?? false });
  const value: ModuleViews = {
    modules,
    views: { list: walk("list"), kset: walk("kset"), mod_tree: walk("mod_tree") },
    unconfirmed: 0,
  };
  return { takenAt: 0, sections: { modules: { supported: true, value, truncated: false } } };
}

Deno.test("hidden_module raises a live module unlinked from the module list", () => {
  const findings = hiddenModule.detect(
    scan([module("ext4", ALL), module("rk", ["kset", "mod_tree"], live(false))]),
    undefined,
    SETTINGS,
  );
  assertEquals(findings, [{
    rule: "hidden_module",
    severity: "critical",
    subject: "module rk",
    message: "module rk at 0xffffffffc0a00000 is missing from list but held by kset and mod_tree",
    evidence: {
      name: "rk",
      address: "0xffffffffc0a00000",
      state: "live",
      seenIn: ["kset", "mod_tree"],
      missingFrom: ["list"],
      text: [{ start: "0xffffffffc0800000", end: "0xffffffffc0801000" }],
    },
  }]);
});

Deno.test("hidden_module raises nothing for a module loading or unloading mid-scan", () => {
  const races = [
    module("coming", ["kset"], { state: "coming", listLinked: true, ksetLinked: true }),
    module("going", ["list", "mod_tree"], { state: "going", listLinked: true, ksetLinked: false }),
    module("unformed", ["list"], { state: "unformed", listLinked: true, ksetLinked: false }),
    module("late", ["kset", "mod_tree"], live(true)),
    module("gone", ["kset"], {
      state: "unknown",
      listLinked: false,
      ksetLinked: false,
      error: "x",
    }),
    module("unchecked", ["kset", "mod_tree"]),
    module("rebalanced", ["list", "kset"], { ...live(true), inTree: true }),
  ];
  assertEquals(hiddenModule.detect(scan(races), undefined, SETTINGS), []);
});

Deno.test("hidden_module trusts no view whose walk was truncated", () => {
  const rk = module("rk", ["kset", "mod_tree"], live(false));
  assertEquals(hiddenModule.detect(scan([rk], { list: true }), undefined, SETTINGS), []);
  const nosysfs = module("nosysfs", ["list", "mod_tree"], live(true, false));
  assertEquals(hiddenModule.detect(scan([nosysfs], { kset: true }), undefined, SETTINGS), []);
  assertEquals(
    hiddenModule.detect(scan([nosysfs]), undefined, SETTINGS).map((f) => f.severity),
    ["high"],
  );
});

Deno.test("hidden_module skips allow-listed names and takes the configured severity", () => {
  const rk = module("rk", ["kset", "mod_tree"], live(false));
  const allow = { severity: "critical" as const, allow: new Set(["rk"]) };
  assertEquals(hiddenModule.detect(scan([rk]), undefined, allow), []);
  const medium = { severity: "medium" as const, allow: new Set<string>() };
  assertEquals(hiddenModule.detect(scan([rk]), undefined, medium).map((f) => f.severity), [
    "medium",
  ]);
  assertEquals(hiddenModule.detect({ takenAt: 0, sections: {} }, undefined, SETTINGS), []);
});
