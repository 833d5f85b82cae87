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
 * Here: the schema of the whole file, its reading and its errors. The schemas of its parts stand
 * apart: a guest's entry (`_guest_config.ts`), detection (`detection_config.ts`), and how the API
 * is served (`api_transport.ts`).
 *
 * @module
 */

import { z } from "zod";
import { dirname, resolve } from "node:path";
import { guestCertificatePath, parseHostPort } from "../../protocol/mod.ts";
import { apiTransportProblem, isLoopback, TlsSchema } from "./api_transport.ts";
import { AlertsSchema, RulesSchema, WebhookSchema } from "./detection_config.ts";
import { GuestSchema, GuestsSchema, hostPort, sharedPins } from "./_guest_config.ts";

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
  guests: GuestsSchema,
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

/** The whole configuration, validated, paths absolute, `metricsAuth` decided. */
export type ServiceConfig = Omit<z.infer<typeof ConfigSchema>, "metricsAuth"> & {
  tokenFile: string;
  metricsAuth: boolean;
};

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
