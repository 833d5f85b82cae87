/**
 * The test guest: Debian's stock kernel in QEMU (software emulation) with the agent inside,
 * built from Debian packages and the project, monitored from outside through a forwarded port.
 *
 * - {@linkcode GUEST_KERNELS} pins the kernels it boots: Debian 12's 6.1 (the default) and
 *   Debian 13's 6.12;
 * - {@linkcode buildGuest} builds the initramfs of one into a git-ignored work dir
 *   (`.guest/KERNEL/`);
 * - {@linkcode GuestVm.boot} provisions the pairing credentials, boots QEMU and waits for the
 *   agent; the guest's own /proc and /proc/modules come from its console, and
 *   {@linkcode GuestVm.run} runs a shell command there (e.g. loads the test rootkit,
 *   {@linkcode GUEST_ROOTKIT}); the known processes run in a container
 *   ({@linkcode GUEST_CONTAINER}), the agent outside it, and {@linkcode GuestVm.runInContainer}
 *   runs a command inside; {@linkcode GuestVm.namespaces} gives each process's NSpid and cgroups;
 *   {@linkcode GuestVm.statuses}, {@linkcode GuestVm.sockets} and {@linkcode GuestVm.fds} give
 *   every process's /proc/PID/status, the sockets of /proc/net and every process's fds, for
 *   ground truth; the sockets' holder ({@linkcode GUEST_SOCKETS}) keeps TCP and UDP sockets of
 *   both families;
 * - {@linkcode measureRtt} and {@linkcode measureModules} measure through the forwarded link.
 *
 * `deno task guest` runs all of it (guest/main.ts).
 *
 * @module
 */

export {
  buildGuest,
  type BuildOptions,
  DEFAULT_WORK_DIR,
  GUEST_AGENT_PORT,
  GUEST_CONTAINER,
  GUEST_DIRTY,
  GUEST_HOSTNAME,
  GUEST_PROCESSES,
  GUEST_ROOTKIT,
  GUEST_SOCKETS,
  type GuestImage,
} from "./build.ts";
export { type BootOptions, type GuestContainer, GuestVm, type KnownProcess } from "./boot.ts";
export type {
  GuestCgroup,
  GuestFds,
  GuestModule,
  GuestNetNamespace,
  GuestPlacement,
  GuestProcess,
  GuestRun,
} from "./console.ts";
export { unifiedCgroup } from "./console.ts";
export {
  DEFAULT_KERNEL,
  fetchKernel,
  GUEST_KERNEL,
  GUEST_KERNELS,
  GUEST_MODULES,
  type GuestKernel,
  guestKernel,
  type KernelKey,
} from "./kernel.ts";
export { measureModules, measureRtt, median } from "./measure.ts";
export { DirtyWorkload } from "./dirty.ts";
export { migrateMonitored, serveGuest } from "./migrate_run.ts";
export {
  parseProcNet,
  parseProcStatus,
  PROC_NET_FILES,
  type ProcNetSocket,
  type ProcStatus,
} from "./proc_text.ts";
