/**
 * The IDS service: the monitor and the REST API served over HTTP, started together.
 *
 * @module
 */

import { parseHostPort } from "../../protocol/cli.ts";
import { createApi } from "../api/mod.ts";
import type { ServiceConfig } from "./config.ts";
import { MonitorService } from "./monitor.ts";
import { ensureToken } from "./token.ts";

/** A running service. Close it to stop the API and the monitor. */
export interface RunningService extends AsyncDisposable {
  monitor: MonitorService;
  /** Base URL of the API, e.g. `http://127.0.0.1:8047`. */
  url: string;
  token: string;
  tokenFile: string;
  close(): Promise<void>;
}

/** Starts the monitor and serves the API on `config.listen`. */
export async function startService(
  config: ServiceConfig,
  options: { log?: (line: string) => void } = {},
): Promise<RunningService> {
  const token = await ensureToken(config.tokenFile);
  const monitor = MonitorService.start(config, { log: options.log });
  try {
    const app = createApi({ monitor, token, metricsAuth: config.metricsAuth });
    const { hostname, port } = parseHostPort(config.listen, "listen");
    const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
    const server = Deno.serve({ hostname, port, onListen: resolve }, app.fetch);
    const addr = await listening;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    const close = async () => {
      await server.shutdown();
      await monitor.close();
    };
    return {
      monitor,
      url: `http://${host}:${addr.port}`,
      token,
      tokenFile: config.tokenFile,
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (error) {
    await monitor.close();
    throw error;
  }
}
