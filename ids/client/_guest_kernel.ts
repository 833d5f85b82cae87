/**
 * What a session learns of its guest's kernel as it opens, and keeps for the next session: the
 * parsed BTF and kernel types (per BTF hash, for every guest), the kernel symbols (per guest:
 * the caller's map), and the address space, whose unusable word is the agent misbehaving.
 *
 * @module
 */

import { type Btf, parseBtf } from "../btf/mod.ts";
import { AddressSpace, type KAddr } from "../memory/mod.ts";
import {
  AddressSpaceError,
  type KernelTypes,
  learnAddressSpace,
  resolveKernelTypes,
} from "../linux/mod.ts";
import { loadBtf } from "./btf_store.ts";
import type { AgentClient } from "./client.ts";
import { AgentError, AgentMisbehaviorError } from "./errors.ts";

/** Most symbols a session keeps (the views ask for a few dozen). */
const MAX_SYMBOLS = 4096;

/** How many guest kernels' parsed BTF the IDS keeps, the most recently used. */
const MAX_KERNELS = 8;
const kernels = new Map<string, { btf: Btf; types: KernelTypes }>();

/**
 * The guest kernel's parsed BTF and types, parsed once per BTF hash: an agent that reconnects
 * again and again (a restart loop, or a lie per connection) costs a lookup, not a parse.
 */
export async function kernelOf(
  client: AgentClient,
  stateDir: string,
): Promise<{ btf: Btf; types: KernelTypes }> {
  const hash = Array.from(client.info.btfHash, (b) => b.toString(16).padStart(2, "0")).join("");
  let kernel = kernels.get(hash);
  if (kernel) {
    kernels.delete(hash);
  } else {
    const btf = parseBtf(await loadBtf(client, stateDir));
    kernel = { btf, types: resolveKernelTypes(btf) };
  }
  kernels.set(hash, kernel);
  for (const old of kernels.keys()) {
    if (kernels.size <= MAX_KERNELS) break;
    kernels.delete(old);
  }
  return kernel;
}

/**
 * Kernel symbols, each looked up once in `cache` (one round trip for all the new ones); undefined
 * for one the guest's kallsyms does not give. Symbols are in window 0 (the kernel image and
 * modules), which every address space numbers alike, so the cache outlives a space.
 */
export async function lookUp(
  client: AgentClient,
  cache: Map<string, KAddr | undefined>,
  names: readonly string[],
): Promise<Map<string, KAddr | undefined>> {
  const missing = [...new Set(names)].filter((name) => !cache.has(name));
  if (missing.length) {
    if (cache.size + missing.length > MAX_SYMBOLS) cache.clear();
    const found = await client.symbols(missing);
    for (const name of missing) {
      cache.set(name, AddressSpace.FOUR_LEVEL.toKAddr(found.get(name) ?? 0n));
    }
  }
  return new Map(names.map((name) => [name, cache.get(name)]));
}

/**
 * The guest's address space (`linux/address_space.ts`); what it says that cannot be used is the
 * agent misbehaving (limit "addressSpace").
 */
export async function addressSpaceOf(
  client: AgentClient,
  symbols: Map<string, KAddr | undefined>,
): Promise<AddressSpace> {
  try {
    return await learnAddressSpace({
      features: client.info.features,
      symbols: (names) => lookUp(client, symbols, names),
      read: (addr, len) => client.read(addr, len),
    });
  } catch (error) {
    if (!(error instanceof AddressSpaceError)) throw error;
    // The agent's failures (a closed connection, a broken protocol) are its own errors.
    const cause = error.cause;
    if (cause instanceof AgentError && cause.code === 0) throw cause;
    throw new AgentMisbehaviorError("addressSpace", error.message, {}, { cause: error });
  }
}
