/**
 * What goes wrong with an agent, as callers tell it apart: the agent's refusal of a request
 * ({@linkcode AgentError}) or of an object to load ({@linkcode AgentLoadError}), its closing the
 * connection ({@linkcode AgentClosedError}), and its breaking the protocol or a limit
 * ({@linkcode AgentMisbehaviorError}, whose evidence the alerts keep).
 *
 * @module
 */

import type { FrameError } from "../../protocol/mod.ts";

/** The agent answered a request with ERROR, or broke the protocol. */
export class AgentError extends Error {
  /** The ERROR frame's code, or 0 for a protocol violation seen by the IDS. */
  readonly code: number;
  constructor(message: string, code: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentError";
    this.code = code;
  }
}

/**
 * The agent broke the protocol or a limit: `limit` names what it broke, `value` what it sent and
 * `allowed` the bound, where there is one. The connection is closed when this is thrown.
 */
export class AgentMisbehaviorError extends AgentError {
  readonly limit: string;
  readonly value?: number | string;
  readonly allowed?: number | string;
  constructor(
    limit: string,
    message: string,
    details: { value?: number | string; allowed?: number | string } = {},
    options?: ErrorOptions,
  ) {
    super(message, 0, options);
    this.name = "AgentMisbehaviorError";
    this.limit = limit;
    this.value = details.value;
    this.allowed = details.allowed;
  }

  /** What the error says, as alert evidence. */
  get evidence(): Record<string, unknown> {
    return {
      limit: this.limit,
      ...(this.value === undefined ? {} : { value: this.value }),
      ...(this.allowed === undefined ? {} : { allowed: this.allowed }),
      message: this.message,
    };
  }
}

/**
 * The agent refused to load an object: its reason (the message), and the end of libbpf's and the
 * verifier's log when the kernel refused it.
 */
export class AgentLoadError extends AgentError {
  readonly log: string;
  constructor(message: string, code: number, log: string, options?: ErrorOptions) {
    super(message, code, options);
    this.name = "AgentLoadError";
    this.log = log;
  }
}

/** The agent closed the connection (as opposed to breaking it, or the IDS closing it). */
export class AgentClosedError extends AgentError {
  constructor() {
    super("Agent closed the connection", 0);
    this.name = "AgentClosedError";
  }
}

/** An {@linkcode AgentMisbehaviorError} for `limit`, with the value sent and the bound. */
export function misbehaving(
  limit: string,
  message: string,
  value?: number,
  allowed?: number,
): AgentMisbehaviorError {
  return new AgentMisbehaviorError(limit, message, { value, allowed });
}

/** A frame the agent sent that does not decode, or is too large. */
export function fromFrameError(error: FrameError): AgentMisbehaviorError {
  return new AgentMisbehaviorError("frame", `Agent broke the protocol: ${error.message}`, {}, {
    cause: error,
  });
}
