/**
 * Connecting to a guest's agent: each of its addresses in turn, within the guest's deadlines.
 *
 * @module
 */

import { ChannelError, type IdsCredentials } from "../../protocol/mod.ts";
import { AgentClient, explainPinMismatch } from "../client/mod.ts";

const CONNECT_TIMEOUT_MS = 5_000;
/** A request of a guest's agent without a frame of its answer for this long fails. */
const IDLE_TIMEOUT_MS = 10_000;
/** A request unfinished after this long fails, unless the guest's deadlines say otherwise. */
const REQUEST_TIMEOUT_MS = 10_000;

/** Deadlines of a guest's agent connection. */
export interface AgentTimeouts {
  /** Connect, TLS handshake and acceptance. @default 5000 */
  connectMs?: number;
  /** No frame of a request's answer for this long fails it. @default 10000 */
  idleMs?: number;
  /** A request unfinished after this long fails. @default 10000 (the service: max(10000, refreshMs)) */
  requestMs?: number;
}

/**
 * Connects to the first of the agent's addresses that answers, in order (the guest `name`
 * for messages).
 * @throws the error of the last address (the others' causes named in its message).
 */
export async function dial(
  name: string,
  addresses: readonly { hostname: string; port: number; text: string }[],
  credentials: IdsCredentials,
  timeouts: AgentTimeouts,
): Promise<{ agent: AgentClient; address: string }> {
  const failed: string[] = [];
  for (const [i, { hostname, port, text }] of addresses.entries()) {
    try {
      const agent = await AgentClient.connect({
        hostname,
        port,
        credentials,
        timeoutMs: timeouts.connectMs ?? CONNECT_TIMEOUT_MS,
        requestTimeoutMs: timeouts.requestMs ?? REQUEST_TIMEOUT_MS,
        idleTimeoutMs: timeouts.idleMs ?? IDLE_TIMEOUT_MS,
      });
      return { agent, address: text };
    } catch (error) {
      const explained = explainPinMismatch(error);
      if (i === addresses.length - 1) {
        if (failed.length === 0) throw explained;
        const others = `${failed.join("; ")}; ${text}: ${(explained as Error).message}`;
        throw new ChannelError(
          explained instanceof ChannelError ? explained.code : "unreachable",
          `No address of the agent answered (${others})`,
          { cause: explained },
        );
      }
      failed.push(`${text}: ${(explained as Error).message}`);
    }
  }
  throw new Error(`Guest "${name}" has no agent address`);
}
