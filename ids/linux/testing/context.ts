/**
 * The scan context a source's test runs it in: the guest's BTF and symbols as the test lays
 * them out, the kernel types of this machine's BTF (those of the processes a plan walks), no
 * agent and nothing yet found by `prepare`.
 *
 * @module
 */

import type { Btf } from "../../btf/mod.ts";
import type { ScanContext } from "../../detect/mod.ts";
import { AddressSpace } from "../../memory/mod.ts";
import { resolveKernelTypes } from "../mod.ts";

/**
 * A context over `btf`, with `symbols` looked up and the agent reporting `features`; its
 * kernel types are resolved from `host`.
 */
export function testContext(
  btf: Btf,
  host: Btf,
  symbols: Record<string, number>,
  features: readonly string[] = [],
): ScanContext {
  return {
    btf,
    types: resolveKernelTypes(host),
    space: AddressSpace.FOUR_LEVEL,
    initTask: 0,
    anchor: 0,
    agentPid: 0,
    loaded: [],
    symbols: new Map(Object.entries(symbols)),
    features,
    anchors: new Map(),
  };
}
