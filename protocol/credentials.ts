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
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { join } from "node:path";

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
}

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const DEFAULT_NAMES = ["localhost", "127.0.0.1", "::1"];
const DAY_MS = 86_400_000;
/** Guest clocks drift: certificates are valid from a day before they are made. */
const BACKDATE_MS = DAY_MS;
const VALIDITY_MS = 20 * 365 * DAY_MS;
const HOST_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
const HOST_NAME = new RegExp(`^(?=.{1,253}$)${HOST_LABEL}(\\.${HOST_LABEL})*$`, "i");

type Role = "agent" | "ids";

interface Ca {
  cert: x509.X509Certificate;
  pem: string;
  /** Absent where the CA key was not copied (a provisioned guest). */
  key?: CryptoKey;
}

interface Identity {
  key: string;
  cert: string;
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
 * the IDS identity where they are missing. Without an explicit `agentPin` the agent identity in
 * `stateDir` is pinned, and issued (naming only the local addresses) if it is missing too.
 *
 * @throws {Error} A file is unreadable, corrupt, expired or does not match its pair, or an
 * identity is missing and `ca.key` is not there to issue it.
 * @throws {TypeError} `agentPin` is not a SHA-256 fingerprint.
 */
export async function ensureIdsCredentials(
  stateDir: string,
  options: EnsureIdsCredentialsOptions = {},
): Promise<IdsCredentials> {
  const explicitPin = options.agentPin === undefined ? undefined : parsePin(options.agentPin);
  const roles: Role[] = explicitPin === undefined ? ["ids", "agent"] : ["ids"];
  const loaded = await loadAll(stateDir, roles);
  const { ca, identities } = loaded ??
    await withLock(stateDir, () => create(stateDir, roles, DEFAULT_NAMES));
  const ids = identities.ids!;
  const agentPin = explicitPin ?? fingerprint(identities.agent!.cert);
  return { key: ids.key, cert: ids.cert, ca: ca.pem, agentPin };
}

/**
 * Returns the SHA-256 fingerprint of a certificate, given as PEM or DER, in the canonical form
 * `sha256:` followed by colon-separated upper-case hex bytes.
 *
 * @throws {Error} `certificate` is a string without a PEM certificate in it.
 */
export function fingerprint(certificate: string | Uint8Array): string {
  const der = typeof certificate === "string"
    ? pemDecode(certificate, "CERTIFICATE", "the certificate")
    : certificate;
  const hex = createHash("sha256").update(der).digest("hex").toUpperCase();
  return `sha256:${hex.match(/../g)!.join(":")}`;
}

/**
 * Returns `pin` in the canonical form of {@linkcode fingerprint}. Accepts an optional `sha256:`
 * prefix and 64 hex digits in either case, with or without colons between bytes.
 *
 * @throws {TypeError} `pin` is not a SHA-256 fingerprint.
 */
export function parsePin(pin: string): string {
  const hex = pin.trim().replace(/^sha256:/i, "").replaceAll(":", "");
  if (!/^[0-9a-f]{64}$/i.test(hex)) {
    throw new TypeError(
      `Cannot parse agent pin "${pin}": expected a SHA-256 fingerprint such as "sha256:AB:CD:..."`,
    );
  }
  return `sha256:${hex.toUpperCase().match(/../g)!.join(":")}`;
}

/**
 * Reads everything `roles` need without locking; `undefined` if anything is missing, including
 * half of a pair that another process may be writing.
 */
async function loadAll(dir: string, roles: Role[]) {
  const caPem = await readOptional(join(dir, "ca.pem"));
  if (caPem === undefined) return undefined;
  const ca = await parseCa(dir, caPem, await readOptional(join(dir, "ca.key")));
  const identities: Partial<Record<Role, Identity>> = {};
  for (const role of roles) {
    const identity = await loadIdentity(dir, role, ca, { halfIsMissing: true });
    if (identity === undefined) return undefined;
    identities[role] = identity;
  }
  return { ca, identities };
}

/** Under the directory lock: loads or creates the CA, then loads or issues each identity. */
async function create(dir: string, roles: Role[], agentNames: string[]) {
  const caPem = await readOptional(join(dir, "ca.pem"));
  const caKey = await readOptional(join(dir, "ca.key"));
  let ca: Ca;
  if (caPem !== undefined) {
    ca = await parseCa(dir, caPem, caKey);
  } else if (caKey !== undefined) {
    throw new Error(`Cannot load the pairing CA: "${join(dir, "ca.key")}" exists without "ca.pem"`);
  } else {
    ca = await createCa();
    await publish(join(dir, "ca.key"), await exportKey(ca.key!));
    await publish(join(dir, "ca.pem"), ca.pem);
  }
  const identities: Partial<Record<Role, Identity>> = {};
  for (const role of roles) {
    identities[role] = await loadIdentity(dir, role, ca, { halfIsMissing: false }) ??
      await issueIdentity(dir, role, ca, agentNames);
  }
  return { ca, identities };
}

async function createCa(): Promise<Ca> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=ebpfmon pairing CA",
    keys,
    signingAlgorithm: ALGORITHM,
    ...validity(),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, pem: cert.toString("pem"), key: keys.privateKey };
}

async function issueIdentity(
  dir: string,
  role: Role,
  ca: Ca,
  agentNames: string[],
): Promise<Identity> {
  if (ca.key === undefined) {
    throw new Error(
      `Cannot issue the ${role} identity in "${dir}": the pairing CA key "${
        join(dir, "ca.key")
      }" ` +
        `is not there; copy "${role}.key" and "${role}.pem" from the machine that holds it`,
    );
  }
  const keys = await generateKeys();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([
      role === "agent" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
    ]),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (role === "agent") extensions.push(sanExtension(agentNames));
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=ebpfmon ${role}`,
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: ALGORITHM,
    ...validity(),
    extensions,
  });
  const identity = { key: await exportKey(keys.privateKey), cert: cert.toString("pem") };
  await publish(join(dir, `${role}.key`), identity.key);
  await publish(join(dir, `${role}.pem`), identity.cert);
  return identity;
}

async function parseCa(dir: string, pem: string, keyPem: string | undefined): Promise<Ca> {
  const path = join(dir, "ca.pem");
  const cert = parseCertificate(pem, path);
  if (!cert.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw new Error(`Cannot use "${path}" as the pairing CA: it is not a CA certificate`);
  }
  if (keyPem === undefined) return { cert, pem };
  const key = await importKey(keyPem, join(dir, "ca.key"));
  await checkKeyPair(key, cert, join(dir, "ca.key"), path);
  return { cert, pem, key };
}

/** Loads and checks one identity; `undefined` if neither of its files exists. */
async function loadIdentity(
  dir: string,
  role: Role,
  ca: Ca,
  options: { halfIsMissing: boolean },
): Promise<Identity | undefined> {
  const keyPath = join(dir, `${role}.key`);
  const certPath = join(dir, `${role}.pem`);
  const key = await readOptional(keyPath);
  const cert = await readOptional(certPath);
  if (key === undefined && cert === undefined) return undefined;
  if (key === undefined || cert === undefined) {
    if (options.halfIsMissing) return undefined;
    const [present, missing] = key === undefined ? [certPath, keyPath] : [keyPath, certPath];
    throw new Error(`Cannot load the ${role} identity: "${present}" exists without "${missing}"`);
  }
  const parsed = parseCertificate(cert, certPath);
  if (!await parsed.verify({ publicKey: ca.cert.publicKey, signatureOnly: true })) {
    throw new Error(`Cannot use "${certPath}": it is not signed by "${join(dir, "ca.pem")}"`);
  }
  await checkKeyPair(await importKey(key, keyPath), parsed, keyPath, certPath);
  return { key, cert };
}

function parseCertificate(pem: string, path: string): x509.X509Certificate {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(pemDecode(pem, "CERTIFICATE", `"${path}"`));
  } catch (error) {
    throw new Error(`Cannot read "${path}": it is not a valid certificate`, { cause: error });
  }
  const now = new Date();
  if (now < cert.notBefore || now > cert.notAfter) {
    throw new Error(
      `Cannot use "${path}": it is valid only from ${cert.notBefore.toISOString()} ` +
        `to ${cert.notAfter.toISOString()}`,
    );
  }
  return cert;
}

async function importKey(pem: string, path: string): Promise<CryptoKey> {
  try {
    const der = pemDecode(pem, "PRIVATE KEY", `"${path}"`);
    return await crypto.subtle.importKey("pkcs8", der, ALGORITHM, true, ["sign"]);
  } catch (error) {
    throw new Error(`Cannot read "${path}": it is not an ECDSA P-256 private key`, {
      cause: error,
    });
  }
}

async function checkKeyPair(
  key: CryptoKey,
  cert: x509.X509Certificate,
  keyPath: string,
  certPath: string,
): Promise<void> {
  const secret = await crypto.subtle.exportKey("jwk", key);
  const published = await crypto.subtle.exportKey(
    "jwk",
    await cert.publicKey.export(ALGORITHM, ["verify"]),
  );
  if (secret.x !== published.x || secret.y !== published.y) {
    throw new Error(`Cannot use "${keyPath}": it is not the key of "${certPath}"`);
  }
}

function checkName(name: string): void {
  if (isIP(name) === 0 && !HOST_NAME.test(name)) {
    throw new TypeError(
      `Cannot name "${name}" in the agent certificate: not an IP address or host name`,
    );
  }
}

function sanExtension(names: string[]): x509.SubjectAlternativeNameExtension {
  const unique = [...new Set(names)];
  return new x509.SubjectAlternativeNameExtension(
    unique.map((value): x509.JsonGeneralName => ({
      type: isIP(value) === 0 ? "dns" : "ip",
      value,
    })),
  );
}

function validity(): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + VALIDITY_MS) };
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as CryptoKeyPair;
}

async function exportKey(key: CryptoKey): Promise<string> {
  return pemEncode("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));
}

function pemEncode(label: string, der: Uint8Array): string {
  const base64 = btoa(String.fromCharCode(...der)).match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN ${label}-----\n${base64}\n-----END ${label}-----\n`;
}

function pemDecode(pem: string, label: string, source: string): Uint8Array<ArrayBuffer> {
  const match = pem.match(
    new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`),
  );
  if (match === null) throw new Error(`Cannot read ${source}: no PEM "${label}" block in it`);
  return Uint8Array.from(atob(match[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read "${path}": ${(error as Error).message}`, { cause: error });
  }
}

/** Writes a new 0600 file atomically: to a temporary name first, then linked, never replacing. */
async function publish(path: string, text: string): Promise<void> {
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(temporary, text, { mode: 0o600, createNew: true });
    await Deno.link(temporary, path);
  } catch (error) {
    throw new Error(`Cannot create "${path}": ${(error as Error).message}`, { cause: error });
  } finally {
    await Deno.remove(temporary).catch(() => {});
  }
}

/** Runs `fn` holding an exclusive lock on `dir` (made 0700 if new); the kernel drops it on exit. */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new Error(`Cannot create state directory "${dir}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  using handle = await Deno.open(dir, { read: true });
  await handle.lock(true);
  return await fn();
}
