/**
 * Rule `new_listener`: a listening socket that was not there when the IDS started watching the
 * guest (its first scan): a TCP socket in LISTEN, or a UDP socket bound to a port below the
 * ephemeral range (32768; a client's UDP socket, e.g. a DNS lookup, binds an ephemeral port and
 * is not a listener). The alert lasts while the listener does. Allow-list: port numbers
 * ("8080"), "tcp/8080" or "udp/53", or the name of a process holding it.
 *
 * Races: a listener that opens and closes between scans is not seen; one seen is real.
 *
 * @module
 */

import type { Socket } from "../linux/mod.ts";
import { type Detector, type Scan, sectionOf } from "./types.ts";

const EPHEMERAL_MIN = 32768;

function listening(s: Socket): boolean {
  return s.protocol === "tcp"
    ? s.state === "LISTEN"
    : s.state === "UNCONN" && s.localPort > 0 && s.localPort < EPHEMERAL_MIN;
}

function key(s: Socket): string {
  return `${s.protocol} ${
    s.family === "inet6" ? `[${s.localAddress}]` : s.localAddress
  }:${s.localPort}`;
}

function listeners(scan: Scan | undefined): Map<string, Socket> | undefined {
  const sockets = sectionOf(scan, "sockets");
  return sockets && new Map(sockets.filter(listening).map((s) => [key(s), s]));
}

export const newListener: Detector = {
  rule: "new_listener",
  severity: "medium",
  description: "a listening TCP or UDP socket opened after the IDS's first scan of the guest",
  needs: ["sockets", "processes"],
  detect(now, _previous, settings, first) {
    const baseline = listeners(first);
    const current = listeners(now);
    if (!baseline || !current || first === now) return [];
    const comms = new Map(sectionOf(now, "processes")?.processes.map((p) => [p.pid, p.comm]));
    return [...current].filter(([k]) => !baseline.has(k)).flatMap(([k, s]) => {
      const owners = s.owners.map((o) => ({ ...o, comm: comms.get(o.pid) ?? "" }));
      const allowed = settings.allow.has(String(s.localPort)) ||
        settings.allow.has(`${s.protocol}/${s.localPort}`) ||
        owners.some((o) => o.comm && settings.allow.has(o.comm));
      if (allowed) return [];
      const who = owners.length
        ? owners.map((o) => `${o.pid} (${o.comm})`).join(", ")
        : "no process";
      return [{
        rule: "new_listener",
        severity: settings.severity,
        subject: k,
        message: `new ${s.protocol.toUpperCase()} listener on ${s.localAddress}:${s.localPort}, ` +
          `held by ${who}`,
        evidence: {
          protocol: s.protocol,
          family: s.family,
          address: s.localAddress,
          port: s.localPort,
          inode: s.inode,
          sock: s.sock,
          owners,
        },
      }];
    });
  },
};
