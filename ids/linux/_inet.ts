/**
 * Socket states and addresses as text, the way `ss` writes them.
 *
 * @module
 */

/** TCP states by number (include/net/tcp_states.h). */
export const TCP_STATES = [
  "",
  "ESTABLISHED",
  "SYN_SENT",
  "SYN_RECV",
  "FIN_WAIT1",
  "FIN_WAIT2",
  "TIME_WAIT",
  "CLOSE",
  "CLOSE_WAIT",
  "LAST_ACK",
  "LISTEN",
  "CLOSING",
  "NEW_SYN_RECV",
  "BOUND_INACTIVE",
];
const TIME_WAIT = 6;
const NEW_SYN_RECV = 12;
/** States of a full `struct sock` (every TCP state but TIME_WAIT and NEW_SYN_RECV). */
export const FULL_STATES = new Set(
  TCP_STATES.map((_, i) => i).filter((i) => i > 0 && i !== TIME_WAIT && i !== NEW_SYN_RECV),
);
export const FULL_MASK = [...FULL_STATES].reduce((mask, s) => mask | (1n << BigInt(s)), 0n);
export const AF_INET = 2;
export const AF_INET6 = 10;

/** Dotted text of an IPv4 address in network order. */
export function ipv4Text(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4)).join(".");
}

/** RFC 5952 text of an IPv6 address: lower case, the longest run of zero groups as "::". */
export function ipv6Text(bytes: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return "::ffff:" + ipv4Text(bytes.subarray(12));
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const text = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (best < 0) return text(groups);
  return text(groups.slice(0, best)) + "::" + text(groups.slice(best + bestLen));
}

/**
 * A sock state by its TCP name; a UDP socket is UNCONN or, connected, ESTABLISHED (ss says
 * ESTAB for both protocols: one name per state lets a filter name it once).
 */
export function stateName(protocol: "tcp" | "udp", state: number): string {
  if (protocol === "udp") {
    if (state === 1) return "ESTABLISHED";
    if (state === 7) return "UNCONN";
  }
  return TCP_STATES[state] || `UNKNOWN(${state})`;
}
