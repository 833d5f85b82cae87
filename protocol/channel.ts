/**
 * The encrypted, mutually authenticated byte channel between agent and IDS: TLS 1.3 over TCP
 * with the pairing credentials of `credentials.ts`.
 *
 * The agent listens and accepts only clients whose certificate chains to the pairing CA
 * (`listen_channel.ts`, which also bounds what an unauthenticated peer can hold). The IDS
 * connects (`connect_channel.ts`), checks that the agent's certificate chains to the same CA
 * *and* has the pinned fingerprint (host names are not checked: the pin is the stronger claim),
 * and waits for the agent to confirm that it accepted the IDS's certificate: in TLS 1.3 a client
 * finishes its handshake before the server has judged the client certificate, so without that
 * confirmation a refusal would look like an ordinary close.
 *
 * @module
 */

/** Why a channel could not be opened or used. */
export type ChannelErrorCode =
  /** No TCP connection to the agent's address. */
  | "unreachable"
  /** The peer did not prove to be an agent of the pairing CA (or did not speak TLS 1.3). */
  | "untrusted"
  /** The agent's certificate is from the pairing CA but is not the pinned one. */
  | "pin-mismatch"
  /** The agent did not accept the IDS's certificate. */
  | "refused"
  /** The channel was not established within the time allowed. */
  | "timeout"
  /** The channel is closed, or its connection failed after it was established. */
  | "closed";

/** A channel could not be opened or used; `code` says why, `cause` holds any underlying error. */
export class ChannelError extends Error {
  /** Why the channel failed. */
  readonly code: ChannelErrorCode;

  /** Creates an error with the given code and message. */
  constructor(code: ChannelErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ChannelError";
    this.code = code;
  }
}

/**
 * One established, authenticated connection. The caller owns it and must {@linkcode close} it;
 * a closed channel can not be reopened.
 */
export interface Channel extends Disposable {
  /** The peer's address as `host:port` (IPv6 hosts in brackets). */
  readonly remote: string;
  /** Resolves once the connection is fully closed, by either side; never rejects. */
  readonly closed: Promise<void>;
  /**
   * The incoming bytes, in order. Ends when the peer closes or the channel is closed locally;
   * throws a {@linkcode ChannelError} with code `"closed"` when the connection fails, after the
   * bytes received before the failure. One reader at a time (a second concurrent iteration
   * throws a `TypeError`); stopping an iteration keeps the rest for the next one and does not
   * close the channel.
   */
  chunks(): AsyncIterable<Uint8Array>;
  /**
   * Queues `bytes` for sending; resolves once they are accepted, waiting while the connection's
   * send buffer is full. `bytes` must not be modified afterwards.
   *
   * @throws {ChannelError} With code `"closed"` when the channel is or becomes closed first.
   */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * Sends the bytes already accepted, then closes the connection; writes still waiting fail.
   * Idempotent.
   */
  close(): void;
  /**
   * Closes the connection at once, discarding what is not sent: writes still waiting, and later
   * ones, fail with `reason`. For a peer that stopped taking bytes. Idempotent.
   */
  abort(reason: string): void;
}
