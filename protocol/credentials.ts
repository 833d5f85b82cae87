/**
 * Pairing credentials for the encrypted channel between agent and IDS.
 *
 * A state directory holds a private pairing CA (`ca.key`, `ca.pem`), the agent's server
 * identity (`agent.key`, `agent.pem`) and the IDS's client identity (`ids.key`, `ids.pem`), all
 * ECDSA P-256, PEM, mode 0600 in a 0700 directory. Whichever side starts first creates what is
 * missing; later runs reuse the files. Creation holds an exclusive lock on the directory and
 * publishes each file atomically, so an agent and an IDS started at the same moment on the same
 * directory end with one consistent set.
 *
 * A machine that watches several guests gives each its own agent identity with `enrollGuest`
 * (`enroll.ts`).
 *
 * Every private key and the state directory itself are checked on load: a key file that its
 * group or others may read or write, or that another user owns, is refused with the command
 * that fixes it (`chmod 600 FILE`, `chown UID FILE`); the directory likewise (`chmod 700 DIR`).
 *
 * @module
 */
import { join } from "node:path";
import { readOptional, withLock } from "./_files.ts";
import { fingerprint, parsePin } from "./fingerprint.ts";
import { create, loadAll, loadPair, pinCertificate } from "./_state_dir.ts";
import { checkName, DEFAULT_NAMES, parseCa, type Role } from "./_x509.ts";

/** What the agent needs to serve the channel: its key and certificate and the CA, as PEM. */
export interface AgentCredentials {
  /** The agent's private key (PKCS #8 PEM). */
  key: string;
  /** The agent's certificate, signed by the pairing CA (PEM). */
  cert: string;
  /** The pairing CA's certificate (PEM): the only issuer whose clients the agent accepts. */
  ca: string;
}

/** What the IDS needs to open the channel: its identity, the CA and the agent's pinned identity. */
export interface IdsCredentials {
  /** The IDS's private key (PKCS #8 PEM). */
  key: string;
  /** The IDS's client certificate, signed by the pairing CA (PEM). */
  cert: string;
  /** The pairing CA's certificate (PEM). */
  ca: string;
  /** The agent certificate's fingerprint in the form {@linkcode fingerprint} returns. */
  agentPin: string;
}

/** Options for {@linkcode ensureAgentCredentials}. */
export interface EnsureAgentCredentialsOptions {
  /**
   * Host names and IP addresses the agent certificate names besides `localhost`, `127.0.0.1`
   * and `::1`. They are used only when the certificate is issued; an existing one is reused as
   * it is. The IDS authenticates the agent by its pinned fingerprint, not by these names.
   *
   * @default {[]}
   */
  names?: string[];
}

/** Options for {@linkcode ensureIdsCredentials}. */
export interface EnsureIdsCredentialsOptions {
  /**
   * The agent identity to pin, as `sha256:AB:CD:...` or plain hex (see {@linkcode parsePin}).
   *
   * @default {the fingerprint of `agent.pem` in the state directory}
   */
  agentPin?: string;
  /**
   * The path of the agent certificate to pin (PEM, e.g. the `guests/NAME.pem` that
   * {@linkcode enrollGuest} records); it must be signed by the pairing CA. Not with `agentPin`.
   */
  agentCertificate?: string;
}

/** The IDS's identity in files of its own, instead of those of a state directory. */
export interface IdsCredentialFiles {
  /** The pairing CA's certificate (PEM). */
  ca: string;
  /** The IDS's client certificate (PEM). */
  cert: string;
  /** The IDS's private key (PKCS #8 PEM): checked as every key is (mode 0600, owner). */
  key: string;
}

/**
 * Loads the agent's credentials from `stateDir`, first creating the directory, the pairing CA
 * and the agent identity where they are missing.
 *
 * A provisioned guest needs only `ca.pem`, `agent.key` and `agent.pem`; `ca.key` is needed
 * only to issue a missing identity.
 *
 * @throws {Error} A file is unreadable, corrupt, expired or does not match its pair; the agent
 * identity is missing and `ca.key` is not there to issue it.
 * @throws {TypeError} A requested name is neither an IP address nor a host name.
 */
export async function ensureAgentCredentials(
  stateDir: string,
  options: EnsureAgentCredentialsOptions = {},
): Promise<AgentCredentials> {
  const names = [...DEFAULT_NAMES, ...(options.names ?? [])];
  names.forEach(checkName);
  const loaded = await loadAll(stateDir, ["agent"]);
  const { ca, identities } = loaded ??
    await withLock(stateDir, () => create(stateDir, ["agent"], names));
  const { key, cert } = identities.agent!;
  return { key, cert, ca: ca.pem };
}

/**
 * Loads the IDS's credentials from `stateDir`, first creating the directory, the pairing CA and
 * the IDS identity where they are missing. Without an explicit `agentPin` or `agentCertificate`
 * the agent identity in `stateDir` is pinned, and issued (naming only the local addresses) if it
 * is missing too.
 *
 * @throws {Error} A file is unreadable, corrupt, expired, not private (see the module's notes)
 * or does not match its pair; an identity is missing and `ca.key` is not there to issue it; the
 * `agentCertificate` is missing or not signed by the pairing CA.
 * @throws {TypeError} `agentPin` is not a SHA-256 fingerprint, or both options are given.
 */
export async function ensureIdsCredentials(
  stateDir: string,
  options: EnsureIdsCredentialsOptions = {},
): Promise<IdsCredentials> {
  const explicitPin = pinOption(options);
  const pinsOwnAgent = explicitPin === undefined && options.agentCertificate === undefined;
  const roles: Role[] = pinsOwnAgent ? ["ids", "agent"] : ["ids"];
  const loaded = await loadAll(stateDir, roles);
  const { ca, identities } = loaded ??
    await withLock(stateDir, () => create(stateDir, roles, DEFAULT_NAMES));
  const ids = identities.ids!;
  const agentPin = explicitPin ??
    (options.agentCertificate === undefined
      ? fingerprint(identities.agent!.cert)
      : await pinCertificate(options.agentCertificate, ca, join(stateDir, "ca.pem")));
  return { key: ids.key, cert: ids.cert, ca: ca.pem, agentPin };
}

/**
 * Loads the IDS's credentials from files of its own (`files`), pinning `agentPin` or the
 * certificate at `agentCertificate`; nothing is created.
 *
 * @throws {Error} A file is unreadable, corrupt, expired, not private or does not match its
 * pair; the agent certificate is missing or not signed by `files.ca`.
 * @throws {TypeError} Neither or both of `agentPin` and `agentCertificate` are given, or the pin
 * is not a SHA-256 fingerprint.
 */
export async function loadIdsCredentials(
  files: IdsCredentialFiles,
  options: EnsureIdsCredentialsOptions,
): Promise<IdsCredentials> {
  const explicitPin = pinOption(options);
  if (explicitPin === undefined && options.agentCertificate === undefined) {
    throw new TypeError("Cannot pin the agent: neither a pin nor a certificate is given");
  }
  const caPem = await readOptional(files.ca);
  if (caPem === undefined) throw new Error(`Cannot read "${files.ca}": it does not exist`);
  const ca = await parseCa(files.ca, caPem, undefined, "");
  const identity = await loadPair(files.key, files.cert, ca, files.ca, { halfIsMissing: false });
  if (identity === undefined) throw new Error(`Cannot read "${files.cert}": it does not exist`);
  const agentPin = explicitPin ?? await pinCertificate(options.agentCertificate!, ca, files.ca);
  return { key: identity.key, cert: identity.cert, ca: caPem, agentPin };
}

/** `agentPin` in canonical form, refusing it together with `agentCertificate`. */
function pinOption(options: EnsureIdsCredentialsOptions): string | undefined {
  if (options.agentPin !== undefined && options.agentCertificate !== undefined) {
    throw new TypeError(
      `Cannot pin the agent: both a pin and the certificate "${options.agentCertificate}" are given`,
    );
  }
  return options.agentPin === undefined ? undefined : parsePin(options.agentPin);
}
