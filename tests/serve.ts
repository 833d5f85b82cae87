/**
 * The IDS service as `ebpfmon-ids serve` runs it, on a configuration a test writes: started, its
 * API address and token read from its ready line, requests made with the token.
 *
 * @module
 */

import { spawnReady } from "../agent/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";

/** A running `serve`; dispose it to stop it. */
export interface Served extends AsyncDisposable {
  url: string;
  token: string;
  /** A request of the API with the service's token. */
  request(path: string): Promise<Response>;
}

/** Writes `config` to `STATE/ids.json` and starts `serve` on it. */
export async function serveConfig(state: string, config: Record<string, unknown>): Promise<Served> {
  const path = `${state}/ids.json`;
  await Deno.writeTextFile(path, JSON.stringify(config));
  const serve = await spawnReady({
    main: new URL("../ids/main.ts", import.meta.url),
    permissions: IDS_PERMISSIONS,
    args: ["serve", "--config", path],
    ready: /API on (\S+) \(token in (\S+)\)/,
  });
  const [, url, tokenFile] = serve.ready;
  const token = (await Deno.readTextFile(tokenFile)).trim();
  return {
    url,
    token,
    request: (p) => fetch(`${url}${p}`, { headers: { Authorization: `Bearer ${token}` } }),
    [Symbol.asyncDispose]: () => serve[Symbol.asyncDispose](),
  };
}
