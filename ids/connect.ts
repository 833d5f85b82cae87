/**
 * Opening a session on a guest from the command line's terms: an agent's `HOST:PORT`, the IDS's
 * state directory, and optionally the agent's pinned fingerprint. Kept apart from the commands so
 * that a program that only takes snapshots loads no more than that.
 *
 * @module
 */

import { ensureIdsCredentials } from "../protocol/credentials.ts";
import { parseHostPort } from "../protocol/cli.ts";
import { AgentClient } from "./client.ts";
import { GuestSession } from "./session.ts";

/** Options every command that talks to an agent takes. */
export interface AgentTarget {
  agent: string;
  state: string;
  pin?: string;
}

/** Connects to the agent and opens a session on its guest. Close the session when done. */
export async function openSession(target: AgentTarget): Promise<GuestSession> {
  const { hostname, port } = parseHostPort(target.agent, "--agent");
  const credentials = await ensureIdsCredentials(target.state, { agentPin: target.pin });
  const client = await AgentClient.connect({ hostname, port, credentials });
  try {
    return await GuestSession.open(client, target.state);
  } catch (error) {
    client.close();
    throw error;
  }
}
