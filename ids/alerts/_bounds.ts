/**
 * What a finding may store: guest-controlled strings made well formed and cut to size.
 *
 * @module
 */

import { type Finding, severityRank } from "../detect/mod.ts";

/** Size caps of what a finding may store, in UTF-16 code units. */
export const LIMITS = {
  rule: 64,
  subject: 256,
  message: 2048,
  /** Of the evidence's JSON; larger evidence is replaced by its size. */
  evidence: 8192,
} as const;

/** A finding as stored: well formed, within {@linkcode LIMITS}. */
export interface Entry {
  rule: string;
  subject: string;
  severity: number;
  message: string;
  evidence: string;
}

/** `text` well formed, without NUL, at most `max` code units (cut ones end with "…"). */
export function boundString(text: string, max: number): string {
  let clean = String(text).toWellFormed().replaceAll("\0", "\uFFFD");
  if (clean.length > max) {
    clean = clean.slice(0, max - 1);
    if (/[\uD800-\uDBFF]$/.test(clean)) clean = clean.slice(0, -1);
    clean += "…";
  }
  return clean;
}

function boundEvidence(evidence: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(evidence ?? {});
  } catch (error) {
    return JSON.stringify({ unserializable: boundString((error as Error).message, 200) });
  }
  if (json === undefined || !json.startsWith("{")) return JSON.stringify({ value: json ?? null });
  json = json.toWellFormed().replaceAll("\\u0000", "\\ufffd");
  if (json.length > LIMITS.evidence) {
    return JSON.stringify({ truncated: true, length: json.length });
  }
  return json;
}

export function entryOf(finding: Finding): Entry {
  const severity = severityRank(finding.severity);
  if (severity < 0) {
    throw new TypeError(
      `Cannot apply finding of rule "${finding.rule}": unknown severity "${finding.severity}"`,
    );
  }
  return {
    rule: boundString(finding.rule, LIMITS.rule),
    subject: boundString(finding.subject, LIMITS.subject),
    severity,
    message: boundString(finding.message, LIMITS.message),
    evidence: boundEvidence(finding.evidence),
  };
}
