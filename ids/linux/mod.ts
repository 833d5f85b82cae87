/**
 * The Linux views: the guest's OS data rebuilt from raw kernel memory with the guest kernel's
 * own types, as /proc would show it (processes and threads, namespaces and cgroups, modules,
 * sockets, open files, BPF programs), and the independent structures cross-view detection
 * compares (the task list, the pid IDR and the children lists; the module list, kset and
 * `mod_tree`; the kernel's function-pointer tables, ftrace callbacks, the agent's own task).
 *
 * Each view is pure code over a {@linkcode GuestMemory} and the layouts of
 * {@linkcode resolveKernelTypes}, and plans what it reads for one prefetch round trip. Guest
 * memory is hostile: every walk is bounded, detects cycles and reports a cut walk as truncated.
 * {@linkcode parseCgroupPath}, {@linkcode parseNamespaceId} and {@linkcode inContainer} are the
 * container filters the command line and the API share.
 *
 * @module
 */

export { moduleHolding, ownerOf } from "./address_owner.ts";
export { AddressSpaceError, learnAddressSpace } from "./address_space.ts";
export { agentSource, type AgentTask } from "./agent_task.ts";
export { type BpfProgram, type BpfPrograms, bpfSource } from "./bpf_programs.ts";
export {
  type ContainerFilter,
  inContainer,
  parseCgroupPath,
  parseNamespaceId,
} from "./container_filter.ts";
export { type FdTypes, type FdWalkTypes } from "./fd_table.ts";
export { type FileTypes, listFiles, type OpenFile, planFiles, resolveFileTypes } from "./files.ts";
export { type FtraceOps, ftraceSource } from "./ftrace.ts";
export { type KernelPointers, pointersSource } from "./kernel_pointers.ts";
export { type KernelTypes, resolveKernelTypes } from "./kernel_types.ts";
export {
  type ModuleRecheck,
  modulesSource,
  type ModuleView,
  type ModuleViews,
  type ViewedModule,
} from "./module_views.ts";
export { listModules, type Module, planModules } from "./modules.ts";
export { resolveModuleTypes } from "./module_types.ts";
export { type CgroupSupport } from "./namespaces.ts";
export { NAME_BYTES } from "./namespace_types.ts";
export { PLANNED_LEVELS } from "./namespace_plan.ts";
export {
  findInitPidNamespace,
  type PidTypes,
  planProcessViews,
  type ProcessViews,
  readProcessViews,
  resolvePidTypes,
} from "./pids.ts";
export {
  findInitTask,
  listProcesses,
  planTasks,
  type Process,
  type ProcessList,
  type ProcessViewName,
  taskAddress,
  type TaskNodes,
} from "./processes.ts";
export { resolveSocketTypes, type SocketTypes } from "./socket_types.ts";
export {
  listHeldSockets,
  listSockets,
  planHeldSockets,
  planSockets,
  type Socket,
} from "./sockets.ts";
export { listThreads } from "./threads.ts";
