/**
 * How the API is served: its HTTPS identity (`tls`), and whether an address it listens on is
 * loopback, where plain HTTP may carry the bearer token; anywhere else it needs `tls` or an
 * explicit `insecureHttp`.
 *
 * @module
 */

import { z } from "zod";
import { isIP } from "node:net";
import { parseHostPort } from "../../protocol/mod.ts";

/** The API's HTTPS identity: PEM files. */
export const TlsSchema = z.strictObject({
  /** The certificate (chain) the API presents. */
  cert: z.string().min(1),
  /** Its private key. */
  key: z.string().min(1),
});

/**
 * Whether `hostname`, as `listen` names it, is a loopback address: `localhost`, 127.0.0.0/8 or
 * `::1` (also IPv4-mapped). Anything else, a host name included, may be reached from the network.
 */
export function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  // A zone index ("fe80::1%eth0") names a link, never loopback.
  if (isIP(host) !== 6 || host.includes("%")) return false;
  const canonical = new URL(`http://[${host}]/`).hostname;
  return canonical === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

/** What the API's transport needs from the configuration. */
export interface ApiTransport {
  listen: string;
  tls?: { cert: string; key: string };
  insecureHttp: boolean;
}

/**
 * Why the API must not be served as configured: plain HTTP on an address the network reaches,
 * without `insecureHttp`. Undefined when it may be (or when `listen` is not `HOST:PORT`).
 */
export function apiTransportProblem(api: ApiTransport): string | undefined {
  let hostname: string;
  try {
    hostname = parseHostPort(api.listen).hostname;
  } catch {
    return undefined;
  }
  if (api.tls !== undefined || api.insecureHttp || isLoopback(hostname)) return undefined;
  return `"${api.listen}" is not a loopback address, and plain HTTP would send the bearer ` +
    `token in clear: set "tls": { "cert": "FILE.pem", "key": "FILE.key" } to serve HTTPS, or ` +
    `"insecureHttp": true to accept plain HTTP`;
}
