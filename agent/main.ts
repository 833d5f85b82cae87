/**
 * `ebpfmon-agent`: the agent's own entry point, the one copied into guests.
 *
 * @module
 */

import { agentCommand } from "./cli.ts";
import { runProgram } from "../protocol/mod.ts";

if (import.meta.main) await runProgram(agentCommand().name("ebpfmon-agent"), "ebpfmon-agent");
