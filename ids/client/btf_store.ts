/**
 * Guest kernels' BTF, kept in the IDS's state directory by SHA-256, so a guest's BTF crosses
 * the network once. Stored files are checked against their name's hash when read back.
 *
 * @module
 */

import type { AgentClient } from "./client.ts";
import { sha256Hex as sha256 } from "../../protocol/mod.ts";
import { hexBytes } from "../memory/mod.ts";
import { progress } from "./progress.ts";

/** The agent's kernel BTF: from `stateDir/btf/<sha256>.btf` when present, else fetched and stored. */
export async function loadBtf(client: AgentClient, stateDir: string): Promise<Uint8Array> {
  const hash = hexBytes(client.info.btfHash);
  const dir = `${stateDir}/btf`;
  const path = `${dir}/${hash}.btf`;
  try {
    const stored = await Deno.readFile(path);
    if (await sha256(stored) === hash) return stored;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const bar = progress("guest BTF");
  let btf: Uint8Array;
  try {
    btf = await client.btf((received, total) => bar.update(received, total));
  } finally {
    bar.stop();
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeFile(tmp, btf, { mode: 0o600 });
  await Deno.rename(tmp, path);
  return btf;
}
