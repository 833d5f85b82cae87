/**
 * The monitor service: every configured guest refreshed in its own loop, its views kept and
 * shared within their max age, lost agents retried, findings turned into alerts
 * ({@linkcode MonitorService}); its configuration file ({@linkcode loadConfig}, errors that
 * name the bad key); the API's bearer token; and what the API and the CLI read of it, the
 * {@linkcode Monitor} interface.
 *
 * @module
 */

export { ConfigError, loadConfig, parseConfig, type ServiceConfig } from "./config.ts";
export { apiTransportProblem, isLoopback } from "./api_transport.ts";
export { RULE_NAMES } from "./detection_config.ts";
export { MonitorService } from "./monitor.ts";
export { ensureToken } from "./token.ts";
export {
  AgentUnavailableError,
  type Alert,
  type AlertChange,
  type AlertQuery,
  type Answer,
  type FetchRecord,
  type Monitor,
  NoSuchProcessError,
  type ProcessesAnswer,
  type ReadOptions,
  type Snapshot,
  UnknownVmError,
  type ViewName,
  VIEWS,
  type VmStats,
  type VmStatus,
} from "./types.ts";
