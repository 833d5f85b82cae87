/**
 * One check of a guest: every section the enabled rules need, read with ONE prefetch plan (one
 * round trip in the prefetch modes), then every rule over it.
 *
 * What costs more is counted, never hidden: the first check of a session looks up the sources'
 * symbols (one round trip) and lets each source find its anchors (a few reads, once); a
 * suspicion re-checked against the live guest costs the reads it makes. A check on a quiet
 * guest after the first is one round trip.
 *
 * @module
 */

import {
  DEFAULT_PREFETCH_LIMITS,
  type GuestSession,
  type Mode,
  type PrefetchLimits,
  type SnapshotStats,
} from "../client/mod.ts";
import type { KAddr } from "../memory/mod.ts";
import { LIMITS } from "../../protocol/mod.ts";
import { DETECTORS, SOURCES } from "./registry.ts";
import { sharedNodes } from "./sources.ts";
import {
  type Detector,
  type Finding,
  type RuleSettings,
  type Scan,
  type ScanContext,
  type Section,
  type SectionName,
  type Severity,
  severityRank,
  type Source,
} from "./types.ts";

/** A rule's entry in ids.json. */
export interface RuleConfig {
  enabled?: boolean;
  severity?: Severity;
  allow?: string[];
}

/** The `rules` of ids.json, by rule name. */
export type RulesConfig = Partial<Record<string, RuleConfig>>;

/** Options of {@linkcode runCheck}. */
export interface CheckOptions {
  rules?: RulesConfig;
  /** The guest's previous scan, for rules over history. */
  previous?: Scan;
  /** The guest's first scan, for what is new since. */
  first?: Scan;
  limits?: PrefetchLimits;
}

/** What a check cost, and how each section went. */
export interface CheckStats extends SnapshotStats {
  sections: Record<string, { supported: boolean; truncated: boolean; reason?: string }>;
  /** The rules that ran. */
  rules: string[];
}

/** The result of a check. */
export interface CheckResult {
  findings: Finding[];
  scan: Scan;
  stats: CheckStats;
}

/** The enabled rules, with their settings. */
export function enabledRules(rules: RulesConfig = {}): [Detector, RuleSettings][] {
  return DETECTORS.filter((d) => rules[d.rule]?.enabled !== false).map((d) => [d, {
    severity: rules[d.rule]?.severity ?? d.severity,
    allow: new Set(rules[d.rule]?.allow ?? []),
  }]);
}

const ALL_SOURCES = Object.values(SOURCES) as Source<SectionName>[];

/** The scan context of a session, made once: every source's symbols and anchors. */
function contextOf(
  session: GuestSession,
): Promise<{ ctx: ScanContext; failed: Map<string, string> }> {
  return session.memo("scan-context", async () => {
    const symbols = await session.symbols(ALL_SOURCES.flatMap((s) => s.symbols));
    const anchors = new Map<string, KAddr>();
    const failed = new Map<string, string>();
    const ctx: ScanContext = {
      btf: session.btf,
      types: session.types,
      space: session.space,
      initTask: session.initTask,
      anchor: session.anchor,
      agentPid: session.client.info.agentPid,
      loaded: session.programs.map(({ name, tag }) => ({ name, tag })),
      symbols,
      features: session.client.info.features,
      anchors,
    };
    for (const source of ALL_SOURCES) {
      if (!source.prepare) continue;
      try {
        for (const [name, at] of Object.entries(await source.prepare(ctx, session.liveMemory()))) {
          anchors.set(name, at);
        }
      } catch (error) {
        failed.set(source.name, `cannot find where to start: ${(error as Error).message}`);
      }
    }
    return { ctx, failed };
  });
}

/**
 * Reads the sections `names` of the guest in one snapshot. A source that fails is an
 * unsupported section with the reason, never a failed scan; a failure of the agent throws.
 */
export async function scanSections(
  session: GuestSession,
  mode: Mode,
  names: readonly SectionName[],
  limits: PrefetchLimits = DEFAULT_PREFETCH_LIMITS,
): Promise<{ scan: Scan; stats: SnapshotStats }> {
  const { ctx, failed } = await contextOf(session);
  const sources = [...new Set(names)].map((n) => SOURCES[n] as Source<SectionName>);
  const problems = new Map(failed);
  const takenAt = Date.now();
  const { value, stats } = await session.snapshot(mode, {
    // Sources plan from the session's context alone: one plan per set of sections.
    planKey: `scan ${sources.map((s) => s.name).join(",")}`,
    plan(b) {
      const shared = sharedNodes(b, ctx);
      for (const source of sources) {
        if (problems.has(source.name)) continue;
        try {
          source.plan(b, ctx, shared);
        } catch (error) {
          // Read anyway, on demand: a plan that does not fit costs round trips, not answers.
          problems.set(`plan:${source.name}`, (error as Error).message);
        }
      }
    },
    async read(memory, confirm) {
      const sections: Scan["sections"] = {};
      for (const source of sources) {
        const problem = problems.get(source.name);
        const section: Section<unknown> = problem
          ? { supported: false, reason: problem }
          : await source.read(memory, ctx, confirm).catch((error) => ({
            supported: false as const,
            reason: (error as Error).message,
          }));
        (sections as Record<string, Section<unknown>>)[source.name] = section;
      }
      const cut = Object.entries(sections).filter(([, s]) => s.supported && s.truncated);
      return {
        value: sections,
        truncated: cut.length > 0,
        ...(cut.length
          ? { reason: cut.map(([n, s]) => `${n}: ${s.supported && s.reason}`).join("; ") }
          : {}),
      };
    },
  }, limits);
  return { scan: { takenAt, sections: value }, stats };
}

/** Runs every enabled rule once over a new scan of the guest. */
export async function runCheck(
  session: GuestSession,
  mode: Mode,
  options: CheckOptions = {},
): Promise<CheckResult> {
  const rules = enabledRules(options.rules);
  const names = [...new Set(rules.flatMap(([d]) => d.needs))];
  const { scan, stats } = await scanSections(session, mode, names, options.limits);
  const first = options.first ?? scan;
  const findings = rules.flatMap(([detector, settings]) =>
    detector.detect(scan, options.previous, settings, first)
  ).sort((a, b) => severityRank(b.severity) - severityRank(a.severity));
  const named = await nameAddresses(session, findings);
  const sections: CheckStats["sections"] = {};
  for (const [name, s] of Object.entries(scan.sections)) {
    sections[name] = s.supported
      ? { supported: true, truncated: s.truncated, ...(s.reason ? { reason: s.reason } : {}) }
      : { supported: false, truncated: false, reason: s.reason };
  }
  return {
    findings,
    scan,
    stats: {
      ...stats,
      roundTrips: stats.roundTrips + named,
      sections,
      rules: rules.map(([d]) => d.rule),
    },
  };
}

/** The evidence fields that hold kernel code addresses, by rule: named for the report. */
const CODE_ADDRESSES: Record<string, readonly string[]> = {
  ftrace_hook: ["callback", "filter"],
  hooked_pointer: ["value"],
};

/**
 * Adds to the findings that hold code addresses the names the guest's kallsyms gives them
 * (`evidence.symbols`: address -> name), for the analyst: a rule never decides on a name, which
 * the guest could lie about. One round trip per 64 addresses, only when such findings exist.
 * Returns the round trips made.
 */
async function nameAddresses(session: GuestSession, findings: Finding[]): Promise<number> {
  const of = (f: Finding) =>
    (CODE_ADDRESSES[f.rule] ?? []).flatMap((key) => [f.evidence[key]].flat())
      .filter((v): v is string => typeof v === "string" && /^0x[0-9a-f]+$/.test(v));
  const addresses = [...new Set(findings.flatMap(of))].map((a) => BigInt(a));
  const names = new Map<bigint, string>();
  let trips = 0;
  for (let i = 0; i < addresses.length; i += LIMITS.maxSymbols) {
    trips++;
    const chunk = await session.client.symbolNames(addresses.slice(i, i + LIMITS.maxSymbols));
    for (const [at, name] of chunk) names.set(at, name);
  }
  for (const f of findings) {
    const symbols = Object.fromEntries(
      of(f).flatMap((a) => names.has(BigInt(a)) ? [[a, names.get(BigInt(a))!]] : []),
    );
    if (!Object.keys(symbols).length) continue;
    f.evidence.symbols = symbols;
    f.message += ` (${[...new Set(Object.values(symbols))].join(", ")})`;
  }
  return trips;
}
