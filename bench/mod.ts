/**
 * The side-by-side benchmarks (`deno task bench` and the `bench:*` tasks): what the other
 * harnesses reuse of them, the description of the machine they run on ({@linkcode machine})
 * and the schema of the results ({@linkcode BenchResults}).
 *
 * @module
 */

export {
  machine,
  procCpuSeconds,
  type ProcMemory,
  procMemory,
  resetPeakMemory,
} from "./machine.ts";
export { BenchResults } from "./results.ts";
