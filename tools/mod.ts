/**
 * The project's tools (`deno task compile`, `fuzz`, `soak`, `tools/flood.ts`,
 * `tools/hostile.ts`): what tests reuse of them, the hostile network peers of the flood
 * ({@linkcode holdConnections}, {@linkcode rawClient}...).
 *
 * @module
 */

export { drainAnswers, holdConnections, junkFrame, prefetchTasks, rawClient } from "./flood.ts";
