/**
 * The service's configuration file: JSON, validated, with errors that name the bad key.
 *
 * ```json
 * {
 *   "listen": "10.0.0.1:8047",
 *   "tls": { "cert": "api.pem", "key": "api.key" },
 *   "stateDir": "/var/lib/ebpfmon-ids",
 *   "tokenFile": "/var/lib/ebpfmon-ids/api.token",
 *   "metricsAuth": true,
 *   "guests": [
 *     { "name": "web-1", "agent": "10.0.0.5:7047", "pin": "sha256:AB:CD:...", "refreshMs": 5000 },
 *     { "name": "db-1", "agent": "10.0.0.6:7047", "certificate": "guests/db-1.pem" }
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
 * Relative paths are resolved against the configuration file's folder. An API that listens
 * anywhere but on loopback needs `tls` (or an explicit `insecureHttp`), and its `/metrics` needs
 * the token unless `metricsAuth` is `false`.
 *
 * Each guest's agent is pinned by its own certificate (`ebpfmon enroll NAME` issues one and
 * prints its `pin`): the guest's `pin`, or the certificate at `certificate`; with neither, the
 * certificate `enroll` recorded for the guest's name, `STATE/guests/NAME.pem`, or, when the
 * configuration has that one guest only, the state directory's own `agent.pem` (the pairing of
 * an agent and an IDS on one machine). Two guests with the same `pin` or `certificate` are
 * refused unless both say `"sharedPin": true`: an agent that holds the key of several guests
 * can stand in for each of them.
 *
 * @module
 */

import { z } from "zod";
import { isIP } from "node:net";
import { dirname, resolve } from "node:path";
import { GUEST_NAME, guestCertificatePath, parseHostPort, parsePin } from "../../protocol/mod.ts";
import { type RuleSettings, SEVERITIES, type Severity } from "../detect/mod.ts";

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

/** Most addresses one guest's agent may be tried at. */
export const MAX_AGENT_ADDRESSES = 8;

/** One HOST:PORT or a list of them, as a list; each bad address is named by its index. */
const agentList = z.union([z.string(), z.array(z.string())], {
  error: "expected HOST:PORT or a list of them",
}).superRefine((value, ctx) => {
  const list = typeof value === "string" ? [value] : value;
  if (list.length === 0) {
    ctx.addIssue({ code: "custom", message: "expected at least one HOST:PORT" });
  }
  if (list.length > MAX_AGENT_ADDRESSES) {
    ctx.addIssue({ code: "custom", message: `expected at most ${MAX_AGENT_ADDRESSES} addresses` });
    return;
  }
  list.forEach((address, i) => {
    if (hostPort.safeParse(address).success) return;
    const path = typeof value === "string" ? [] : [i];
    ctx.addIssue({ code: "custom", message: "expected HOST:PORT", path });
  });
}).transform((value) => typeof value === "string" ? [value] : value);

const GuestSchema = z.strictObject({
  /** Name used in the API: `/v1/vms/{name}`. */
  name: z.string().regex(GUEST_NAME, {
    message: "expected 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
  }),
  /**
   * `HOST:PORT` of the guest's agent, or several, tried in order (for clouds where a migrated
   * guest's address changes).
   */
  agent: agentList,
  /** The agent certificate's fingerprint; default: see `certificate`. */
  pin: pin.optional(),
  /**
   * The agent's certificate (PEM), whose fingerprint is pinned; not with `pin`. Default: the
   * enrolled `STATE/guests/NAME.pem`; for a configuration of one guest, `STATE/agent.pem`.
   */
  certificate: z.string().min(1).optional(),
  /** Whether this guest may share its pin or certificate with another guest that says so too. */
  sharedPin: z.boolean().optional(),
  /** The IDS's credential for this guest (PEM files); default: the state directory's. */
  credentials: z.strictObject({ ca: z.string(), cert: z.string(), key: z.string() }).optional(),
  /** Refresh interval in milliseconds. */
  refreshMs: z.number().int().min(100).max(86_400_000).default(5_000),
  /**
   * Every how many prefetches of a connection to this guest's agent one is asked whole; the
   * others are deltas, in which only the records that changed since the previous answer travel.
   * 1 asks every one whole. Default: the session's, 10.
   */
  fullEvery: z.number().int().min(1).max(1000).optional(),
  /**
   * Most records and bytes one scan of this guest may bring in its one round trip; beyond, the
   * rest is read page by page. Default: enough for a guest of about 3,500 processes, and what a
   * lying agent can make the IDS hold. Raise it for bigger guests (about 17 records and 4 KB
   * per process).
   */
  scanLimits: z.strictObject({
    maxObjects: z.number().int().min(1).max(1 << 20),
    maxBytes: z.number().int().min(1).max(256 << 20),
  }).optional(),
}).refine((g) => g.pin === undefined || g.certificate === undefined, {
  path: ["certificate"],
  message: "expected either a pin or a certificate, not both",
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

/** The API's HTTPS identity: PEM files. */
const TlsSchema = z.strictObject({
  /** The certificate (chain) the API presents. */
  cert: z.string().min(1),
  /** Its private key. */
  key: z.string().min(1),
});

/**
 * Whether `hostname`, as `listen` names it, is a loopback address: `localhost`, 127.0.0.0/8 or
 * `::1` (also IPv4-mapped). Anything else, a host name included, may be reached from the network.
 */
export function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  // A zone index ("fe80::1%eth0") names a link, never loopback.
  if (isIP(host) !== 6 || host.includes("%")) return false;
  const canonical = new URL(`http://[${host}]/`).hostname;
  return canonical === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

/** What the API's transport needs from the configuration. */
export interface ApiTransport {
  listen: string;
  tls?: { cert: string; key: string };
  insecureHttp: boolean;
}

/**
 * Why the API must not be served as configured: plain HTTP on an address the network reaches,
 * without `insecureHttp`. Undefined when it may be (or when `listen` is not `HOST:PORT`).
 */
export function apiTransportProblem(api: ApiTransport): string | undefined {
  let hostname: string;
  try {
    hostname = parseHostPort(api.listen).hostname;
  } catch {
    return undefined;
  }
  if (api.tls !== undefined || api.insecureHttp || isLoopback(hostname)) return undefined;
  return `"${api.listen}" is not a loopback address, and plain HTTP would send the bearer ` +
    `token in clear: set "tls": { "cert": "FILE.pem", "key": "FILE.key" } to serve HTTPS, or ` +
    `"insecureHttp": true to accept plain HTTP`;
}

const ConfigSchema = z.strictObject({
  /** `HOST:PORT` of the REST API; any address but loopback needs `tls` or `insecureHttp`. */
  listen: hostPort.default("127.0.0.1:8047"),
  /** Serve the API over HTTPS with these PEM files. */
  tls: TlsSchema.optional(),
  /** Serve plain HTTP on an address the network reaches (the token crosses it in clear). */
  insecureHttp: z.boolean().default(false),
  /** The IDS's state: credentials and BTF store. */
  stateDir: z.string().default(".ebpfmon"),
  /** File holding the API's bearer token; created (mode 0600) when missing. */
  tokenFile: z.string().optional(),
  /** Whether /metrics needs the token. @default {true, but false when `listen` is loopback} */
  metricsAuth: z.boolean().optional(),
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
}).superRefine((config, ctx) => {
  if (config.tls !== undefined && config.insecureHttp) {
    ctx.addIssue({ code: "custom", path: ["insecureHttp"], message: 'contradicts "tls"' });
  }
  const problem = apiTransportProblem(config);
  if (problem) ctx.addIssue({ code: "custom", path: ["listen"], message: problem });
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

/** The addresses of a guest's agent, in the order they are tried. */
export function agentAddresses(guest: Pick<GuestConfig, "agent">): string[] {
  return [...guest.agent];
}
/** The whole configuration, validated, paths absolute, `metricsAuth` decided. */
export type ServiceConfig = Omit<z.infer<typeof ConfigSchema>, "metricsAuth"> & {
  tokenFile: string;
  metricsAuth: boolean;
};

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
  const loopback = isLoopback(parseHostPort(config.listen).hostname);
  return {
    ...config,
    stateDir,
    tokenFile: resolve(base, config.tokenFile ?? `${stateDir}/api.token`),
    tls: config.tls && { cert: resolve(base, config.tls.cert), key: resolve(base, config.tls.key) },
    metricsAuth: config.metricsAuth ?? !loopback,
    guests: guestsWithPins(config.guests, base, stateDir, source),
  };
}

/**
 * The guests with paths absolute and, for a guest without a `pin`, the certificate it is pinned
 * by (none for the one guest of a configuration that pins the state directory's `agent.pem`).
 * @throws {ConfigError} when two guests share a pin or certificate without both allowing it.
 */
function guestsWithPins<G extends z.output<typeof GuestSchema>>(
  input: G[],
  base: string,
  stateDir: string,
  source: string,
): G[] {
  const guests = input.map((g) => ({
    ...g,
    certificate: g.certificate !== undefined
      ? resolve(base, g.certificate)
      : g.pin !== undefined || input.length === 1
      ? undefined
      : guestCertificatePath(stateDir, g.name),
    credentials: g.credentials && {
      ca: resolve(base, g.credentials.ca),
      cert: resolve(base, g.credentials.cert),
      key: resolve(base, g.credentials.key),
    },
  }));
  const shared = sharedPins(guests);
  if (shared.length) throw new ConfigError(`Invalid ${source}: ${shared.join("; ")}`);
  return guests;
}

/** A problem for each guest whose pin or certificate an earlier guest has, unless both allow it. */
function sharedPins(
  guests: { name: string; pin?: string; certificate?: string; sharedPin?: boolean }[],
): string[] {
  const first = new Map<string, number>();
  const problems: string[] = [];
  guests.forEach((g, i) => {
    const identity = g.pin !== undefined
      ? `pin ${parsePin(g.pin)}`
      : g.certificate !== undefined
      ? `certificate "${g.certificate}"`
      : undefined;
    if (identity === undefined) return;
    const earlier = first.get(identity);
    if (earlier === undefined) {
      first.set(identity, i);
    } else if (!(g.sharedPin && guests[earlier].sharedPin)) {
      problems.push(
        `guests[${i}].${g.pin !== undefined ? "pin" : "certificate"}: guest "${g.name}" has ` +
          `the ${identity} of guest "${guests[earlier].name}"; give each guest its own ` +
          `identity (ebpfmon enroll NAME), or set "sharedPin": true on both`,
      );
    }
  });
  return problems;
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
