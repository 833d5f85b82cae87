/**
 * What the configuration says of detection: which rules run and with what severity and
 * allow-list (`rules`), when alerts resolve and how long they are kept (`alerts`), and where
 * their changes are sent (`webhooks`).
 *
 * @module
 */

import { z } from "zod";
import { SEVERITIES } from "../detect/mod.ts";

/** The rules ids.json may configure (and the only names it accepts). */
export const RULE_NAMES = [
  "hidden_process",
  "hidden_module",
  "hooked_pointer",
  "ftrace_hook",
  "bpf_program",
  "shared_cred",
  "privilege_escalation",
  "new_listener",
  "agent_integrity",
] as const;
/** One of {@linkcode RULE_NAMES}. */
export type RuleName = typeof RULE_NAMES[number];

const severity = z.enum(SEVERITIES, { error: `expected one of ${SEVERITIES.join(", ")}` });

const RuleSchema = z.strictObject({
  /** Whether the rule runs. @default true */
  enabled: z.boolean().optional(),
  /** Overrides the rule's own severity. */
  severity: severity.optional(),
  /** Allow-listed names (modules, programs, ports, process names: the rule says which). */
  allow: z.array(z.string().min(1).max(256)).max(10_000).optional(),
});

/** `rules`: an entry for each rule configured, none for the others. */
export const RulesSchema = z.strictObject(
  Object.fromEntries(RULE_NAMES.map((name) => [name, RuleSchema.optional()])) as Record<
    RuleName,
    z.ZodOptional<typeof RuleSchema>
  >,
);

/** One entry of `webhooks`. */
export const WebhookSchema = z.strictObject({
  /** Where alert changes are POSTed. */
  url: z.url({ protocol: /^https?$/, error: "expected an http or https URL" }),
  /** Changes of alerts below this severity are not sent. */
  minSeverity: severity.default("info"),
  /** Key of the `X-Ebpfmon-Signature` HMAC. */
  secret: z.string().min(16, { error: "expected at least 16 characters" }),
});

/** `alerts`. */
export const AlertsSchema = z.strictObject({
  /** Consecutive scans without its finding after which an alert is resolved. */
  resolveAfter: z.number().int().min(1).max(1_000).default(3),
  /** Resolved alerts and alert events older than this are deleted. */
  retentionDays: z.number().positive().max(3650).default(30),
});

/** One rule's entry of `rules`. */
export type RuleConfig = z.infer<typeof RuleSchema>;
/** `rules`: settings by rule name, only for the rules configured. */
export type RulesConfig = z.infer<typeof RulesSchema>;
/** One entry of `webhooks`, defaults applied. */
export type WebhookEntry = z.infer<typeof WebhookSchema>;
/** `alerts`, defaults applied. */
export type AlertsConfig = z.infer<typeof AlertsSchema>;
