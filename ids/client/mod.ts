/**
 * The IDS's side of one agent: the authenticated connection ({@linkcode AgentClient}, which
 * checks every answer of a possibly compromised guest against the limits it asked for), and a
 * monitored guest over it ({@linkcode GuestSession}: its kernel's types from its BTF, and
 * snapshots of its views on demand, prefetched or selective, optionally with the workload held
 * still). {@linkcode openSession} opens one from the command line's terms (`HOST:PORT`, state
 * directory, pin); the IDS's own in-guest walker is loaded into each agent it connects to
 * ({@linkcode loadWalker}).
 *
 * ```ts
 * import { openSession } from "./mod.ts";
 *
 * using session = await openSession({ agent: "10.0.0.5:7047", state: ".ebpfmon" });
 * const { processes, stats } = await session.processes("prefetch");
 * ```
 *
 * A misbehaving agent fails the request with {@linkcode AgentMisbehaviorError} and loses its
 * connection; an agent's own refusal is an {@linkcode AgentError}.
 *
 * @module
 */

export { AgentClient, type ClientCounters } from "./client.ts";
export { AgentClosedError, AgentError, AgentLoadError, AgentMisbehaviorError } from "./errors.ts";
export { type AgentTarget, explainPinMismatch, guestCredentials, openSession } from "./connect.ts";
export {
  type FilesAnswer,
  GuestSession,
  type ModulesAnswer,
  NoSuchProcessError,
} from "./session.ts";
export {
  DEFAULT_FULL_EVERY,
  DEFAULT_PREFETCH_LIMITS,
  type Mode,
  MODES,
  type PrefetchLimits,
  type SnapshotStats,
} from "./snapshot.ts";
export { describeLoaded, loadWalker } from "./walker_object.ts";
