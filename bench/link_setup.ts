/**
 * The links of the benchmark: loopback, and relays that add a known round-trip time. Each relay
 * is calibrated against a probe endpoint (the hold is adjusted until a one-byte ping-pong through
 * it takes the claimed time), then the probe measures its round-trip time and bandwidth, and a
 * relay with the same hold is started in front of the agent.
 *
 * @module
 */

import {
  type LinkProbe,
  type Listener,
  type NativeTools,
  probeLink,
  startRelay,
} from "./native.ts";
import { type LinkResult, quantile } from "./results.ts";

/** A link the IDS can use: the port to dial, and what the link measured. */
export interface Link extends AsyncDisposable {
  result: LinkResult;
  /** The loopback port that reaches the agent over this link. */
  port: number;
  /** The relay's process, if there is one. */
  pid?: number;
}

/** Options of {@linkcode setUpLink}. */
export interface LinkOptions {
  /** Round trips per probe. @default 500 */
  pings?: number;
  /** Bytes of each bulk transfer. @default 64 MiB */
  bulkBytes?: number;
  /** Bulk transfers (the median counts). @default 5 */
  bulks?: number;
  /** Calibration stops within this error. @default 0.05 */
  tolerance?: number;
}

function describe(probe: LinkProbe, targetRttMs: number, holdUs: number | null): LinkResult {
  const median = quantile(probe.rttUs, 0.5);
  return {
    name: targetRttMs === 0 ? "loopback" : `${targetRttMs} ms`,
    targetRttMs,
    holdUs,
    rttMs: { median: median / 1000, p90: quantile(probe.rttUs, 0.9) / 1000 },
    rttErrorPct: targetRttMs === 0 ? null : (median / 1000 - targetRttMs) / targetRttMs * 100,
    bandwidthMBps: probe.bulkBytes / Math.max(1, quantile(probe.bulkUs, 0.5) - median),
  };
}

/**
 * Sets up one link to the agent's `agentPort` with round-trip time `targetRttMs` (0: loopback,
 * no relay), measured through `probePort` (a probe endpoint).
 */
export async function setUpLink(
  tools: NativeTools,
  ports: { agent: number; probe: number },
  targetRttMs: number,
  options: LinkOptions = {},
): Promise<Link> {
  const probeOptions = {
    pings: options.pings ?? 500,
    bulkBytes: options.bulkBytes ?? 64 << 20,
    bulks: options.bulks ?? 5,
  };
  if (targetRttMs === 0) {
    const probe = await probeLink(tools, ports.probe, probeOptions);
    return {
      result: describe(probe, 0, null),
      port: ports.agent,
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  }
  const targetUs = targetRttMs * 1000;
  const tolerance = options.tolerance ?? 0.05;
  const through = async (holdUs: number) => {
    await using relay = await startRelay(tools, ports.probe, holdUs);
    return await probeLink(tools, relay.port, probeOptions);
  };
  const base = quantile((await through(0)).rttUs, 0.5);
  let holdUs = Math.max(0, (targetUs - base) / 2);
  let probe = await through(holdUs);
  for (let step = 0; step < 4; step++) {
    const error = quantile(probe.rttUs, 0.5) - targetUs;
    if (Math.abs(error) <= tolerance * targetUs) break;
    holdUs = Math.max(0, holdUs - error / 2);
    probe = await through(holdUs);
  }
  const relay: Listener = await startRelay(tools, ports.agent, holdUs);
  return {
    result: describe(probe, targetRttMs, Math.round(holdUs)),
    port: relay.port,
    pid: relay.pid,
    [Symbol.asyncDispose]: () => relay[Symbol.asyncDispose](),
  };
}
