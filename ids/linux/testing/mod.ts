/**
 * Synthetic guest memory for tests of the views: a {@linkcode SyntheticKernel} lays kernel
 * objects (tasks, namespaces and cgroups, fd tables and files, socket tables) out with the
 * offsets of a real kernel's BTF in a `MemoryCache`, and {@linkcode testContext} is the scan
 * context a source runs in over it. Pure code, no agent.
 *
 * @module
 */

export { testContext } from "./context.ts";
export { SyntheticFds, SyntheticFs } from "./files.ts";
export { INIT_NET_NS, INIT_PID_NS } from "./namespaces.ts";
export { addressBytes, SyntheticNet } from "./sockets.ts";
export { SyntheticKernel, type TaskSpec } from "./synthetic.ts";
