/**
 * The service's configuration file: JSON, validated, with errors that name the bad key.
 *
 * ```json
 * {
 *   "listen": "127.0.0.1:8047",
 *   "stateDir": "/var/lib/ebpfmon-ids",
 *   "tokenFile": "/var/lib/ebpfmon-ids/api.token",
 *   "metricsAuth": false,
 *   "guests": [
 *     { "name": "web-1", "agent": "10.0.0.5:7047", "pin": "sha256:AB:CD:...", "refreshMs": 5000 }
 *   ],
 *   "rules": {
 *     "hidden_module": { "severity": "critical" },
 *     "new_listener": { "allow": ["22", "443"] },
 *     "bpf_program": { "enabled": false }
 *   },
 *   "alerts": { "resolveAfter": 3, "retentionDays": 30 },
 *   "webhooks": [
 *     { "url": "https://hooks.example/ebpfmon", "minSeverity": "high", "secret": "..." }
 *   ]
 * }
 * ```
 *
 * Relative paths are resolved against the configuration file's folder.
 *
 * @module
 */

import { z } from "zod";
import { dirname, resolve } from "node:path";
import { parseHostPort } from "../../protocol/cli.ts";
import { parsePin } from "../../protocol/credentials.ts";
import { type RuleSettings, SEVERITIES, type Severity } from "../detect/types.ts";

/** A string that `parse` accepts without throwing. */
function parsedBy(parse: (value: string) => unknown, message: string) {
  return z.string().refine((value) => {
    try {
      parse(value);
      return true;
    } catch {
      return false;
    }
  }, { message });
}

const hostPort = parsedBy(parseHostPort, "expected HOST:PORT");
const pin = parsedBy(
  parsePin,
  "expected a SHA-256 fingerprint (sha256:AB:CD:... or 64 hex digits)",
);

const GuestSchema = z.strictObject({
  /** Name used in the API: `/v1/vms/{name}`. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, {
    message: "expected 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
  }),
  /** `HOST:PORT` of the guest's agent. */
  agent: hostPort,
  /** The agent certificate's fingerprint; default: the state directory's `agent.pem`. */
  pin: pin.optional(),
  /** The IDS's credential for this guest (PEM files); default: the state directory's. */
  credentials: z.strictObject({ ca: z.string(), cert: z.string(), key: z.string() }).optional(),
  /** Refresh interval in milliseconds. */
  refreshMs: z.number().int().min(100).max(86_400_000).default(5_000),
});

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

const RulesSchema = z.strictObject(
  Object.fromEntries(RULE_NAMES.map((name) => [name, RuleSchema.optional()])) as Record<
    RuleName,
    z.ZodOptional<typeof RuleSchema>
  >,
);

const WebhookSchema = z.strictObject({
  /** Where alert changes are POSTed. */
  url: z.url({ protocol: /^https?$/, error: "expected an http or https URL" }),
  /** Changes of alerts below this severity are not sent. */
  minSeverity: severity.default("info"),
  /** Key of the `X-Ebpfmon-Signature` HMAC. */
  secret: z.string().min(16, { error: "expected at least 16 characters" }),
});

const AlertsSchema = z.strictObject({
  /** Consecutive scans without its finding after which an alert is resolved. */
  resolveAfter: z.number().int().min(1).max(1_000).default(3),
  /** Resolved alerts and alert events older than this are deleted. */
  retentionDays: z.number().positive().max(3650).default(30),
});

const ConfigSchema = z.strictObject({
  /** `HOST:PORT` of the REST API. */
  listen: hostPort.default("127.0.0.1:8047"),
  /** The IDS's state: credentials and BTF store. */
  stateDir: z.string().default(".ebpfmon"),
  /** File holding the API's bearer token; created (mode 0600) when missing. */
  tokenFile: z.string().optional(),
  /** Whether /metrics needs the token. */
  metricsAuth: z.boolean().default(false),
  guests: z.array(GuestSchema).min(1).superRefine((guests, ctx) => {
    const seen = new Set<string>();
    guests.forEach((g, i) => {
      if (seen.has(g.name)) {
        ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate name "${g.name}"` });
      }
      seen.add(g.name);
    });
  }),
  /** Per-rule settings; a rule not named runs with its defaults. */
  rules: RulesSchema.default({}),
  alerts: AlertsSchema.default({ resolveAfter: 3, retentionDays: 30 }),
  webhooks: z.array(WebhookSchema).max(32).default([]),
});

/** One rule's entry of `rules`. */
export type RuleConfig = z.infer<typeof RuleSchema>;
/** `rules`: settings by rule name, only for the rules configured. */
export type RulesConfig = z.infer<typeof RulesSchema>;
/** One entry of `webhooks`, defaults applied. */
export type WebhookEntry = z.infer<typeof WebhookSchema>;
/** `alerts`, defaults applied. */
export type AlertsConfig = z.infer<typeof AlertsSchema>;
/** A guest's entry, validated, paths absolute. */
export type GuestConfig = z.infer<typeof GuestSchema>;
/** The whole configuration, validated, paths absolute. */
export type ServiceConfig = z.infer<typeof ConfigSchema> & { tokenFile: string };

/**
 * A rule's settings from `rules`, over the detector's own severity: whether it runs, and the
 * {@linkcode RuleSettings} its `detect` gets.
 */
export function ruleSettings(
  rules: RulesConfig,
  rule: RuleName,
  severity: Severity,
): { enabled: boolean; settings: RuleSettings } {
  const entry = rules[rule];
  return {
    enabled: entry?.enabled ?? true,
    settings: { severity: entry?.severity ?? severity, allow: new Set(entry?.allow ?? []) },
  };
}

/** The configuration is not valid; the message names every bad key. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function keyPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) =>
    typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`
  )
    .join("") || "(root)";
}

/**
 * Validates a parsed configuration; `base` is the folder relative paths are resolved against.
 * @throws {ConfigError} naming each bad key.
 */
export function parseConfig(input: unknown, base: string, source = "configuration"): ServiceConfig {
  const result = ConfigSchema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${keyPath(i.path)}: ${i.message}`);
    throw new ConfigError(`Invalid ${source}: ${problems.join("; ")}`);
  }
  const config = result.data;
  const stateDir = resolve(base, config.stateDir);
  return {
    ...config,
    stateDir,
    tokenFile: resolve(base, config.tokenFile ?? `${stateDir}/api.token`),
    guests: config.guests.map((g) => ({
      ...g,
      credentials: g.credentials && {
        ca: resolve(base, g.credentials.ca),
        cert: resolve(base, g.credentials.cert),
        key: resolve(base, g.credentials.key),
      },
    })),
  };
}

/**
 * Reads and validates a configuration file.
 * @throws {ConfigError} when it cannot be read, is not JSON, or is not valid.
 */
export async function loadConfig(path: string): Promise<ServiceConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read configuration "${path}": ${(error as Error).message}`);
  }
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`Cannot parse configuration "${path}": ${(error as Error).message}`);
  }
  return parseConfig(input, dirname(resolve(path)), `configuration "${path}"`);
}
