/**
 * The in-guest programs: CO-RE eBPF C (`walk.bpf.c`, the plan walker in `plan_walk.h`), the
 * record layouts shared with TypeScript (`walk.h`, `plan.h`), and {@linkcode buildBpf}, which
 * compiles them into `bpf/out/` (`deno task build:bpf`).
 *
 * @module
 */

export { buildBpf } from "./build.ts";
