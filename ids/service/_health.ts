/**
 * A guest's health alerts: `agent_unreachable` while its agent cannot be used (with the cause),
 * `agent_misbehaving` while the agent breaks the protocol or a limit; both resolved once the
 * agent answers a whole snapshot again.
 *
 * @module
 */

import { ChannelError } from "../../protocol/mod.ts";
import { AgentClosedError, AgentMisbehaviorError } from "../client/mod.ts";
import { MISBEHAVING_RULE, UNREACHABLE_RULE } from "../alerts/mod.ts";
import type { Finding } from "../detect/mod.ts";

/** Where a guest raises and resolves its health alerts (agent misbehaving, unreachable). */
export interface HealthAlerts {
  raise(finding: Finding, at: number): void;
  resolve(rule: string, at: number): void;
  /** The health rules with an open alert for this guest when the service started. */
  open?: readonly string[];
}

/**
 * What failed with the agent behind `error`: the first error of its cause chain (a read of
 * guest memory wraps the agent's error) that says why the channel or the agent failed, else
 * `error` itself.
 */
function agentFailure(error: unknown): unknown {
  for (let at = error, depth = 0; at instanceof Error && depth < 8; at = at.cause, depth++) {
    if (
      at instanceof ChannelError || at instanceof AgentMisbehaviorError ||
      at instanceof AgentClosedError
    ) return at;
  }
  return error;
}

/**
 * Why an agent cannot be used, as far as the IDS can tell: "refused" (no TCP connection),
 * "timeout" (no channel in time: the TCP connect or the TLS handshake), "pin-mismatch",
 * "untrusted" (not an agent of the pairing CA), "certificate-refused" (the agent refused the
 * IDS), "closed", "misbehaving" (it broke the protocol or a limit), or "error".
 */
export function unreachableCause(error: unknown): string {
  error = agentFailure(error);
  if (error instanceof ChannelError) {
    return {
      unreachable: "refused",
      timeout: "timeout",
      "pin-mismatch": "pin-mismatch",
      untrusted: "untrusted",
      refused: "certificate-refused",
      closed: "closed",
    }[error.code];
  }
  if (error instanceof AgentMisbehaviorError) return "misbehaving";
  if (error instanceof AgentClosedError) return "closed";
  return "error";
}

/** One guest's health alerts and what it said of them. */
export class HealthAlarm {
  /** Health rules with an alert open for this guest. */
  readonly #raised = new Set<string>();
  /** The limit the agent broke last, since its last whole snapshot. */
  #lastLimit?: string;

  constructor(
    readonly vm: string,
    readonly alerts: HealthAlerts,
    /** Says an event of the guest (an error when `error`). */
    readonly event: (message: string, error: boolean) => void,
  ) {
    for (const rule of alerts.open ?? []) this.#raised.add(rule);
  }

  /**
   * Raises `agent_unreachable` with the cause of `error`, and `agent_misbehaving` with what the
   * agent at `address` broke when it broke something. An agent failing on every retry updates
   * the same two alerts.
   */
  unhealthy(error: unknown, address: string): void {
    const at = Date.now();
    const vm = this.vm;
    const message = (error as Error).message;
    const cause = unreachableCause(error);
    const findings: Finding[] = [{
      rule: UNREACHABLE_RULE,
      severity: "high",
      subject: vm,
      message: `The agent of "${vm}" at ${address} cannot be used (${cause}): ${message}`,
      evidence: { cause, agent: address, error: message },
    }];
    const failure = agentFailure(error);
    if (failure instanceof AgentMisbehaviorError) {
      // Each new way of misbehaving is an event, even while the agent is down; the same one
      // again on every retry is not.
      if (failure.limit !== this.#lastLimit) {
        this.#lastLimit = failure.limit;
        this.event(`agent misbehaving (${failure.limit}): ${failure.message}`, true);
      }
      findings.push({
        rule: MISBEHAVING_RULE,
        severity: "high",
        subject: vm,
        message: `The agent of "${vm}" broke "${failure.limit}": ${failure.message}`,
        evidence: { agent: address, ...failure.evidence },
      });
    }
    for (const finding of findings) {
      try {
        this.alerts.raise(finding, at);
        this.#raised.add(finding.rule);
      } catch (failure) {
        this.event(`cannot store alert ${finding.rule}: ${(failure as Error).message}`, true);
      }
    }
  }

  /** Resolves the health alerts once the agent answered a whole snapshot. */
  healthy(): void {
    this.#lastLimit = undefined;
    for (const rule of [...this.#raised]) {
      try {
        this.alerts.resolve(rule, Date.now());
        this.#raised.delete(rule);
      } catch (failure) {
        this.event(`cannot resolve alert ${rule}: ${(failure as Error).message}`, true);
      }
    }
  }
}
