/**
 * The REST API's bearer token: read from its file, or created there (mode 0600) on first run.
 *
 * @module
 */

import { dirname } from "node:path";
import { checkPrivateFile } from "../../protocol/mod.ts";

/**
 * The token in `path`, creating the file with a new random token when it does not exist.
 * @throws {Error} An existing file is not private to the running user (mode 0600, owner).
 */
export async function ensureToken(path: string): Promise<string> {
  try {
    await checkPrivateFile(path);
    const token = (await Deno.readTextFile(path)).trim();
    if (token.length < 16) throw new Error(`Token file "${path}" holds fewer than 16 characters`);
    return token;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const token = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
  // Written whole under a temporary name, then linked into place: a concurrent reader sees
  // either no file or the whole token, and a concurrent creator loses the link and reads ours.
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, token + "\n", { mode: 0o600 });
  try {
    await Deno.link(tmp, path);
    return token;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return ensureToken(path);
    throw error;
  } finally {
    await Deno.remove(tmp);
  }
}
