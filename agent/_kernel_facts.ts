/**
 * What the agent tells the IDS about the guest kernel besides its memory: the features it
 * offers and the symbols of /proc/kallsyms. The agent still interprets nothing it reads.
 *
 * @module
 */

import { FEATURE_LA57, KERNEL_HALF, KERNEL_HALF_LA57 } from "../protocol/mod.ts";

/**
 * What the guest kernel offers, as far as the IDS needs to know without reading memory:
 * "modules" (loadable modules) and {@linkcode FEATURE_LA57} (5-level paging).
 */
export async function kernelFeatures(): Promise<string[]> {
  const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
  return [
    ...(await exists("/proc/modules")) ? ["modules"] : [],
    ...(await usesLa57()) ? [FEATURE_LA57] : [],
  ];
}

/**
 * Whether the kernel runs with 5-level paging: the `la57` flag of /proc/cpuinfo, which the kernel
 * clears at boot when it uses 4 levels (no support built in, `no5lvl`, or a CPU without it).
 */
export async function usesLa57(): Promise<boolean> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  return /^flags\s*:.*\bla57\b/m.test(cpuinfo);
}

/** The first address of this kernel's half of the address space, in its paging mode. */
export async function kernelHalf(): Promise<bigint> {
  return (await usesLa57()) ? KERNEL_HALF_LA57 : KERNEL_HALF;
}

/**
 * The addresses of `names` in /proc/kallsyms (0 for a name it lacks, or when the kernel hides
 * addresses). A symbol table, not guest memory: the agent still interprets nothing it reads.
 */
export async function lookupSymbols(names: string[]): Promise<[string, bigint][]> {
  const wanted = new Map<string, bigint>(names.map((n) => [n, 0n]));
  const text = await Deno.readTextFile("/proc/kallsyms").catch(() => "");
  for (const line of text.split("\n")) {
    const [addr, , name] = line.split(" ");
    if (name && wanted.get(name) === 0n) wanted.set(name, BigInt("0x" + addr));
  }
  return names.map((n) => [n, wanted.get(n)!]);
}

/**
 * The symbols of /proc/kallsyms that start at `addresses` ("name", or "name [module]" for a
 * module's); an address without one is left out. A symbol table, not guest memory.
 */
export async function lookupNames(addresses: bigint[]): Promise<[bigint, string][]> {
  const wanted = new Set(addresses);
  const found = new Map<bigint, string>();
  const text = await Deno.readTextFile("/proc/kallsyms").catch(() => "");
  for (const line of text.split("\n")) {
    const [addr, , name, module] = line.split(/\s+/);
    if (!name) continue;
    const at = BigInt("0x" + addr);
    if (wanted.has(at) && !found.has(at)) found.set(at, module ? `${name} ${module}` : name);
  }
  return addresses.flatMap((at) => found.has(at) ? [[at, found.get(at)!] as [bigint, string]] : []);
}
