/**
 * Opening a session on a guest from the command line's terms: an agent's `HOST:PORT`, the IDS's
 * state directory, and optionally the agent's pinned fingerprint. Kept apart from the commands so
 * that a program that only takes snapshots loads no more than that. Also how the service finds
 * the credentials of one configured guest, and how a refused pin is told.
 *
 * @module
 */

import {
  ChannelError,
  ensureIdsCredentials,
  type IdsCredentials,
  loadIdsCredentials,
  parseHostPort,
} from "../../protocol/mod.ts";
import { AgentClient } from "./client.ts";
import { GuestSession } from "./session.ts";

/** Options every command that talks to an agent takes. */
export interface AgentTarget {
  agent: string;
  state: string;
  pin?: string;
}

/** Where one configured guest's credentials come from (a `GuestConfig`'s fields). */
export interface GuestPinning {
  /** The agent's fingerprint. */
  pin?: string;
  /** The agent's certificate (PEM path), when pinned by file. */
  certificate?: string;
  /** The IDS's own identity in files, instead of the state directory's. */
  credentials?: { ca: string; cert: string; key: string };
}

/** Connects to the agent and opens a session on its guest. Close the session when done. */
export async function openSession(target: AgentTarget): Promise<GuestSession> {
  const { hostname, port } = parseHostPort(target.agent, "--agent");
  const credentials = await ensureIdsCredentials(target.state, { agentPin: target.pin });
  let client: AgentClient;
  try {
    client = await AgentClient.connect({ hostname, port, credentials });
  } catch (error) {
    throw explainPinMismatch(error);
  }
  try {
    return await GuestSession.open(client, target.state);
  } catch (error) {
    client.close();
    throw error;
  }
}

/**
 * The IDS's credentials for one guest: its identity (from `guest.credentials`, else from
 * `stateDir`) and the guest's own pin, its `pin` or the fingerprint of its `certificate`. A guest
 * with neither pins `stateDir/agent.pem` (the configuration allows that for a lone guest only).
 *
 * @throws {Error} A file is missing, corrupt or not private; the certificate is not the CA's.
 */
export async function guestCredentials(
  guest: GuestPinning,
  stateDir: string,
): Promise<IdsCredentials> {
  const pinning = guest.pin !== undefined
    ? { agentPin: guest.pin }
    : { agentCertificate: guest.certificate };
  if (!guest.credentials) return await ensureIdsCredentials(stateDir, pinning);
  return await loadIdsCredentials(guest.credentials, {
    agentPin: pinning.agentPin,
    agentCertificate: pinning.agentCertificate ?? `${stateDir}/agent.pem`,
  });
}

const MISMATCH = /the agent presents (sha256:[0-9A-F:]+), not the pinned (sha256:[0-9A-F:]+)/;

/**
 * A refused pin told as `Cannot connect to "HOST:PORT": pin mismatch: presented sha256:...,
 * expected sha256:...`, keeping the {@linkcode ChannelError}'s code `"pin-mismatch"` for whoever
 * alerts on it; any other error is returned as it is.
 */
export function explainPinMismatch(error: unknown): unknown {
  if (!(error instanceof ChannelError) || error.code !== "pin-mismatch") return error;
  const message = error.message.replace(MISMATCH, "pin mismatch: presented $1, expected $2");
  if (message === error.message) return error;
  return new ChannelError("pin-mismatch", message, { cause: error });
}
