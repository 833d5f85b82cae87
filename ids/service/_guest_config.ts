/**
 * A guest's entry of the configuration: its name, its agent's addresses (one `HOST:PORT` or a
 * list, tried in order), how its agent is pinned, its refresh and scan settings; the list of
 * them, each name once, and no two pinned alike unless both allow it.
 *
 * @module
 */

import { z } from "zod";
import { GUEST_NAME, parseHostPort, parsePin } from "../../protocol/mod.ts";

/** A string that `parse` accepts without throwing. */
function parsedBy(parse: (value: string) => unknown, message: string) {
  return z.string().refine((value) => {
    try {
      parse(value);
      return true;
    } catch {
      return false;
    }
  }, { message });
}

/** A `HOST:PORT` string: an agent's address, and the API's `listen`. */
export const hostPort = parsedBy(parseHostPort, "expected HOST:PORT");
const pin = parsedBy(
  parsePin,
  "expected a SHA-256 fingerprint (sha256:AB:CD:... or 64 hex digits)",
);

/** Most addresses one guest's agent may be tried at. */
export const MAX_AGENT_ADDRESSES = 8;

/** One HOST:PORT or a list of them, as a list; each bad address is named by its index. */
const agentList = z.union([z.string(), z.array(z.string())], {
  error: "expected HOST:PORT or a list of them",
}).superRefine((value, ctx) => {
  const list = typeof value === "string" ? [value] : value;
  if (list.length === 0) {
    ctx.addIssue({ code: "custom", message: "expected at least one HOST:PORT" });
  }
  if (list.length > MAX_AGENT_ADDRESSES) {
    ctx.addIssue({ code: "custom", message: `expected at most ${MAX_AGENT_ADDRESSES} addresses` });
    return;
  }
  list.forEach((address, i) => {
    if (hostPort.safeParse(address).success) return;
    const path = typeof value === "string" ? [] : [i];
    ctx.addIssue({ code: "custom", message: "expected HOST:PORT", path });
  });
}).transform((value) => typeof value === "string" ? [value] : value);

/** One entry of `guests`. */
export const GuestSchema = z.strictObject({
  /** Name used in the API: `/v1/vms/{name}`. */
  name: z.string().regex(GUEST_NAME, {
    message: "expected 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
  }),
  /**
   * `HOST:PORT` of the guest's agent, or several, tried in order (for clouds where a migrated
   * guest's address changes).
   */
  agent: agentList,
  /** The agent certificate's fingerprint; default: see `certificate`. */
  pin: pin.optional(),
  /**
   * The agent's certificate (PEM), whose fingerprint is pinned; not with `pin`. Default: the
   * enrolled `STATE/guests/NAME.pem`; for a configuration of one guest, `STATE/agent.pem`.
   */
  certificate: z.string().min(1).optional(),
  /** Whether this guest may share its pin or certificate with another guest that says so too. */
  sharedPin: z.boolean().optional(),
  /** The IDS's credential for this guest (PEM files); default: the state directory's. */
  credentials: z.strictObject({ ca: z.string(), cert: z.string(), key: z.string() }).optional(),
  /** Refresh interval in milliseconds. */
  refreshMs: z.number().int().min(100).max(86_400_000).default(5_000),
  /**
   * Every how many prefetches of a connection to this guest's agent one is asked whole; the
   * others are deltas, in which only the records that changed since the previous answer travel.
   * 1 asks every one whole. Default: the session's, 10.
   */
  fullEvery: z.number().int().min(1).max(1000).optional(),
  /**
   * Most records and bytes one scan of this guest may bring in its one round trip; beyond, the
   * rest is read page by page. Default: enough for a guest of about 3,500 processes, and what a
   * lying agent can make the IDS hold. Raise it for bigger guests (about 17 records and 4 KB
   * per process).
   */
  scanLimits: z.strictObject({
    maxObjects: z.number().int().min(1).max(1 << 20),
    maxBytes: z.number().int().min(1).max(256 << 20),
  }).optional(),
}).refine((g) => g.pin === undefined || g.certificate === undefined, {
  path: ["certificate"],
  message: "expected either a pin or a certificate, not both",
});

/** `guests`: at least one, each name once. */
export const GuestsSchema = z.array(GuestSchema).min(1).superRefine((guests, ctx) => {
  const seen = new Set<string>();
  guests.forEach((g, i) => {
    if (seen.has(g.name)) {
      ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate name "${g.name}"` });
    }
    seen.add(g.name);
  });
});

/** A guest's entry, validated, paths absolute. */
export type GuestConfig = z.infer<typeof GuestSchema>;

/** The addresses of a guest's agent, in the order they are tried. */
export function agentAddresses(guest: Pick<GuestConfig, "agent">): string[] {
  return [...guest.agent];
}

/** A problem for each guest whose pin or certificate an earlier guest has, unless both allow it. */
export function sharedPins(
  guests: { name: string; pin?: string; certificate?: string; sharedPin?: boolean }[],
): string[] {
  const first = new Map<string, number>();
  const problems: string[] = [];
  guests.forEach((g, i) => {
    const identity = g.pin !== undefined
      ? `pin ${parsePin(g.pin)}`
      : g.certificate !== undefined
      ? `certificate "${g.certificate}"`
      : undefined;
    if (identity === undefined) return;
    const earlier = first.get(identity);
    if (earlier === undefined) {
      first.set(identity, i);
    } else if (!(g.sharedPin && guests[earlier].sharedPin)) {
      problems.push(
        `guests[${i}].${g.pin !== undefined ? "pin" : "certificate"}: guest "${g.name}" has ` +
          `the ${identity} of guest "${guests[earlier].name}"; give each guest its own ` +
          `identity (ebpfmon enroll NAME), or set "sharedPin": true on both`,
      );
    }
  });
  return problems;
}
