/**
 * What the tests share, here and beside the code: assertions on top of `node:assert`
 * ({@linkcode assertEquals}...), tests of the real kernel path that skip with a reason
 * ({@linkcode privilegedTest}; CI turns the skip into a failure), waiting for what a refresh loop
 * makes true ({@linkcode eventually}), ground truth from this machine's /proc
 * ({@linkcode readProc}, {@linkcode TestProcesses}), sockets of every kind to find
 * ({@linkcode TestSockets}), throwaway cgroups ({@linkcode TestCgroup}),
 * BPF objects made for the checks ({@linkcode buildElf}, {@linkcode compileBpf}), what this
 * process still holds after a garbage collection ({@linkcode retainedBytes}), the project's
 * programs run as users run them ({@linkcode runIds}, {@linkcode runEntry}), and a churning
 * workload beside a check ({@linkcode forkStorm}).
 *
 * @module
 */

export { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
export {
  cannotMakeCgroup,
  freezerHierarchies,
  type FreezerHierarchy,
  TestCgroup,
} from "./cgroups.ts";
export {
  BPF_PRELUDE,
  buildElf,
  compileBpf,
  EXIT,
  helper,
  insn,
  join,
  MOV0,
} from "./elf_fixtures.ts";
export {
  missingPrivilege,
  privilegedTest,
  REQUIRE_PRIVILEGED,
  requiringTest,
} from "./privileged.ts";
export {
  expectedSocket,
  procNet,
  type ProcNetSocket,
  type ProcStatus,
  readFds,
  readProc,
  readProcStatuses,
  sameComm,
  socketFields,
  stableAcross,
  TestProcesses,
} from "./procfs.ts";
export { retainedBytes } from "./memory.ts";
export { TestSockets } from "./sockets.ts";
export { type ProgramRun, runEntry, runIds } from "./programs.ts";
export { eventually, freePort } from "./waiting.ts";
export { forkStorm } from "./workloads.ts";
