/**
 * Every source and every rule. A section is read only when an enabled rule needs it.
 *
 * @module
 */

import {
  agentSource,
  bpfSource,
  ftraceSource,
  modulesSource,
  pointersSource,
} from "../linux/mod.ts";
import { agentIntegrity } from "./agent_integrity.ts";
import { bpfProgram } from "./bpf_program.ts";
import { ftraceHook } from "./ftrace_hook.ts";
import { hiddenModule } from "./hidden_module.ts";
import { hookedPointer } from "./hooked_pointer.ts";
import { hiddenProcess } from "./hidden_process.ts";
import { newListener } from "./new_listener.ts";
import { privilegeEscalation } from "./privilege_escalation.ts";
import { sharedCred } from "./shared_cred.ts";
import { processesSource, socketsSource } from "./sources.ts";
import type { Detector, SectionName, Source } from "./types.ts";

export const SOURCES: { [K in SectionName]: Source<K> } = {
  processes: processesSource,
  sockets: socketsSource,
  bpf: bpfSource,
  modules: modulesSource,
  pointers: pointersSource,
  ftrace: ftraceSource,
  agent: agentSource,
};

export const DETECTORS: readonly Detector[] = [
  hiddenProcess,
  sharedCred,
  privilegeEscalation,
  newListener,
  bpfProgram,
  hiddenModule,
  hookedPointer,
  ftraceHook,
  agentIntegrity,
];
