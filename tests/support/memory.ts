/**
 * What this process's JavaScript keeps alive, for tests that a stream of hostile input leaves
 * nothing behind: the resident set also counts garbage not yet collected and pages the
 * allocator has not handed back, so it says how high memory went, not what stayed.
 *
 * @module
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

setFlagsFromString("--expose-gc");
/** V8's full collection, exposed to a new context once the flag is set. */
const collect = runInNewContext("gc") as () => void;

/**
 * The bytes V8's heap and the buffers it owns (`external`: ArrayBuffers, TLS) still hold after a
 * full garbage collection.
 */
export function retainedBytes(): number {
  collect();
  const { heapUsed, external } = Deno.memoryUsage();
  return heapUsed + external;
}
