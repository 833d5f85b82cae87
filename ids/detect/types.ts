/**
 * The shapes of the detection layer: what a scan holds, what a source adds to it, what a
 * detector returns.
 *
 * A **scan** is one snapshot of every section the enabled detectors need, taken with one
 * PREFETCH round trip (one plan built from every source's part). A **source** (one per section)
 * declares the symbols it needs, adds its part to the plan, and reads its section from guest
 * memory; it never knows where that memory came from. Suspicions are confirmed by the source
 * before they reach a detector: it re-reads the object's own structures through `confirm`, a
 * memory that bypasses the snapshot (each read there is a counted round trip). A **detector** is
 * pure: from the scan (and the previous one, where history matters) to {@linkcode Finding}s.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { AddressSpace, GuestMemory, KAddr } from "../memory/mod.ts";
import type { PlanBuilder } from "../kernel/mod.ts";
import type { KernelTypes, TaskNodes } from "../linux/mod.ts";

export const SEVERITIES = ["info", "low", "medium", "high", "critical"] as const;
export type Severity = typeof SEVERITIES[number];

/** Orders severities: info 0 .. critical 4. */
export function severityRank(severity: Severity): number {
  return SEVERITIES.indexOf(severity);
}

/** One thing a detector found. Evidence is data (addresses, views, raw values), never prose. */
export interface Finding {
  rule: string;
  severity: Severity;
  /** What it is about, stable across scans: "pid 1234", "module rk", "sys_call_table[59]". */
  subject: string;
  message: string;
  evidence: Record<string, unknown>;
}

/** A section of a scan: what a source read, or why this guest cannot have it. */
export type Section<T> =
  | { supported: true; value: T; truncated: boolean; reason?: string }
  | { supported: false; reason: string };

/**
 * Every section a scan can hold, by name. Each source adds its own line here, with the type of
 * what it reads.
 */
export interface ScanSections {
  processes: import("../linux/mod.ts").ProcessViews;
  sockets: import("../linux/mod.ts").Socket[];
  bpf: import("../linux/mod.ts").BpfPrograms;
  modules: import("../linux/mod.ts").ModuleViews;
  pointers: import("../linux/mod.ts").KernelPointers;
  ftrace: import("../linux/mod.ts").FtraceOps;
  agent: import("../linux/mod.ts").AgentTask;
}

export type SectionName = keyof ScanSections;

/** One scan of a guest. */
export interface Scan {
  /** Milliseconds since the epoch when the scan was taken. */
  takenAt: number;
  sections: { [K in SectionName]?: Section<ScanSections[K]> };
}

/** What every source may use: the guest's kernel types, its anchors, its symbols. */
export interface ScanContext {
  btf: Btf;
  types: KernelTypes;
  /** How the guest's addresses are numbered (the session's). */
  space: AddressSpace;
  initTask: KAddr;
  /** The agent's own task. */
  anchor: KAddr;
  /** The agent's pid, as its HELLO gave it. */
  agentPid: number;
  /** The programs the agent loaded for this session (LOADED); none when it serves its default. */
  loaded: readonly { name: string; tag: string }[];
  /** Kernel symbols every source asked for, looked up once per session; undefined: unknown. */
  symbols: ReadonlyMap<string, KAddr | undefined>;
  /** What the agent said the kernel offers ("modules"...). */
  features: readonly string[];
  /** Addresses the sources' `prepare` found by reading memory, once per session. */
  anchors: ReadonlyMap<string, KAddr>;
}

/** Plan nodes sources share, made once per plan on first use. */
export interface SharedNodes {
  /** init_task and the `tasks` walk (processes.ts's planTasks). */
  tasks(): TaskNodes;
}

/** Reads one section of a scan. */
export interface Source<K extends SectionName> {
  name: K;
  /** Kernel symbols it needs; a missing one is for the source to turn into `supported: false`. */
  symbols: readonly string[];
  /**
   * Finds, once per session, addresses it needs that no symbol gives (reading `memory`, each
   * read a round trip): returned by name, they are in `ctx.anchors` from then on.
   */
  prepare?(ctx: ScanContext, memory: GuestMemory): Promise<Record<string, KAddr>>;
  /** Adds to the plan what {@linkcode Source.read} visits. */
  plan(b: PlanBuilder, ctx: ScanContext, shared: SharedNodes): void;
  /**
   * Reads the section from `memory` (the snapshot). `confirm` reads guest memory anew, for
   * re-checking a suspicion against the object's own structures. Never throws for what guest
   * memory holds: a broken structure is a truncated or unsupported section.
   */
  read(
    memory: GuestMemory,
    ctx: ScanContext,
    confirm: GuestMemory,
  ): Promise<Section<ScanSections[K]>>;
}

/** A rule's settings from ids.json, with defaults applied. */
export interface RuleSettings {
  severity: Severity;
  /** Allow-listed names (module names, program names or tags, ports, process names). */
  allow: ReadonlySet<string>;
}

/** One rule. */
export interface Detector {
  rule: string;
  /** Its severity unless ids.json overrides it. */
  severity: Severity;
  /** One line on what it compares, for `--help`, the README and the API. */
  description: string;
  /** The sections it reads. */
  needs: readonly SectionName[];
  /**
   * Pure: findings of `now` (and `previous`, where history matters; `first`, the guest's first
   * scan since the IDS started watching it, for what is new since).
   */
  detect(now: Scan, previous: Scan | undefined, settings: RuleSettings, first?: Scan): Finding[];
}

/** The section `name` of `scan` when it was read, else undefined. */
export function sectionOf<K extends SectionName>(
  scan: Scan | undefined,
  name: K,
): ScanSections[K] | undefined {
  const section = scan?.sections[name] as Section<ScanSections[K]> | undefined;
  return section?.supported ? section.value : undefined;
}
