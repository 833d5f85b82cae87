/**
 * The IDS service: the monitor and the REST API, started together, and the `serve` command that
 * starts them. The API is served over HTTPS when the configuration has `tls`, and over plain HTTP
 * only on loopback or with an explicit `insecureHttp`.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { parseHostPort } from "../protocol/mod.ts";
import { createApi } from "./api/mod.ts";
import {
  apiTransportProblem,
  ConfigError,
  ensureToken,
  isLoopback,
  loadConfig,
  MonitorService,
  type ServiceConfig,
} from "./service/mod.ts";

/** A running service. Close it to stop the API and the monitor. */
export interface RunningService extends AsyncDisposable {
  monitor: MonitorService;
  /** Base URL of the API, e.g. `http://127.0.0.1:8047` or `https://10.0.0.1:8047`. */
  url: string;
  token: string;
  tokenFile: string;
  close(): Promise<void>;
}

/** The PEM certificate and key of `tls`, read. */
async function readTls(tls: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  const read = async (path: string, what: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw new ConfigError(
        `Cannot read the API's TLS ${what} "${path}": ${(error as Error).message}`,
      );
    }
  };
  return { cert: await read(tls.cert, "certificate"), key: await read(tls.key, "key") };
}

/** Serves `fetch` on `listen`, over HTTPS with `tls`; resolves once it listens. */
async function serve(
  listen: string,
  tls: { cert: string; key: string } | undefined,
  fetch: Deno.ServeHandler,
): Promise<{ server: Deno.HttpServer; url: string }> {
  const { hostname, port } = parseHostPort(listen, "listen");
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({ hostname, port, onListen: resolve, ...tls }, fetch);
  } catch (error) {
    throw new Error(`Cannot serve the API on "${listen}": ${(error as Error).message}`);
  }
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return { server, url: `${tls ? "https" : "http"}://${host}:${addr.port}` };
}

/**
 * Starts the monitor and serves the API on `config.listen`: over HTTPS with `config.tls`,
 * otherwise over plain HTTP, which only a loopback address or `config.insecureHttp` allows.
 *
 * @throws {ConfigError} when the API would serve plain HTTP on an address the network reaches,
 * or a TLS file cannot be read.
 * @throws {Error} when the API cannot listen (the address is taken, the TLS key does not fit).
 */
export async function startService(
  config: ServiceConfig,
  options: { log?: (line: string) => void } = {},
): Promise<RunningService> {
  const problem = apiTransportProblem(config);
  if (problem) throw new ConfigError(`Cannot serve the API: ${problem}`);
  const tls = config.tls && await readTls(config.tls);
  const token = await ensureToken(config.tokenFile);
  const monitor = MonitorService.start(config, { log: options.log });
  try {
    // Open alert streams end when the service stops: a shutdown waits for every request.
    const stopping = new AbortController();
    const app = createApi({
      monitor,
      token,
      metricsAuth: config.metricsAuth,
      alertStream: { signal: stopping.signal },
    });
    const { server, url } = await serve(config.listen, tls, app.fetch);
    const close = async () => {
      stopping.abort();
      await server.shutdown();
      await monitor.close();
    };
    return {
      monitor,
      url,
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

/** What `serve` warns of before it prints the API's URL: plain HTTP the network reaches. */
function transportWarning(config: ServiceConfig): string | undefined {
  if (config.tls || isLoopback(parseHostPort(config.listen).hostname)) return undefined;
  return `warning: the API serves plain HTTP on "${config.listen}" ("insecureHttp"): its ` +
    `bearer token crosses the network in clear`;
}

/** Builds the `serve` command. */
export function serveCommand() {
  return new Command("serve")
    .description("Monitor the guests of a configuration file and serve the REST API")
    .requiredOption("--config <file>", "the service's JSON configuration")
    .action(async (options) => {
      const config = await loadConfig(options.config);
      const service = await startService(config);
      const warning = transportWarning(config);
      if (warning) console.error(`ebpfmon-ids: ${warning}`);
      console.error(`ebpfmon-ids: API on ${service.url} (token in ${service.tokenFile})`);
      const stop = () => {
        service.close().finally(() => Deno.exit(0));
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
    });
}
