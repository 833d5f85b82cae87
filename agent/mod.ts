/**
 * The agent: the in-guest half of ebpfmon. It loads the CO-RE eBPF walker (libbpf through FFI)
 * and serves the protocol over the authenticated channel, copying the guest kernel memory the IDS
 * asks for without interpreting it.
 *
 * ```ts
 * import { spawnAgent } from "./mod.ts";
 *
 * await using agent = await spawnAgent({ stateDir: ".ebpfmon" });
 * console.log(agent.hostname, agent.port);
 * ```
 *
 * {@linkcode Agent} runs an agent in this process; {@linkcode spawnAgent} starts one as a child
 * process (`agent/main.ts`) with {@linkcode AGENT_PERMISSIONS}. {@linkcode Walker} is the user
 * side of the in-guest programs, for tests that drive them directly. {@linkcode Holder} holds the
 * cgroups the operator allows still during a snapshot (HOLD, RELEASE).
 *
 * @module
 */

export { agentCommand } from "./cli.ts";
export { AGENT_PERMISSIONS } from "./permissions.ts";
export {
  type AgentProcess,
  type ReadyOptions,
  type ReadyProcess,
  spawnAgent,
  type SpawnOptions,
  spawnReady,
} from "./process.ts";
export { Agent, type AgentOptions } from "./server.ts";
export { DEFAULT_MAX_HOLD_MS, Holder, type HolderOptions } from "./hold.ts";
export { type HoldCgroup, resolveHoldCgroup } from "./hold_cgroup.ts";
export { describePrograms, type RunResult, Walker, type WalkLimits } from "./walker.ts";
export { WALK_OBJECT, WALKER_PROGRAMS, type WalkerOptions } from "./walker_object.ts";
export { LibbpfError } from "./libbpf.ts";
export { type CheckedObject, checkObject, FORBIDDEN_HELPERS, LAST_HELPER } from "./bpf_check.ts";
export { ObjectRefused } from "./object_refused.ts";
export { DeltaEncoder, RememberedAnswer } from "./delta.ts";
