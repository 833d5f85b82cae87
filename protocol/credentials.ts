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
 * A machine that watches several guests gives each its own agent identity with
 * {@linkcode enrollGuest}: a guest directory holding `ca.pem` and that guest's `agent.key` and
 * `agent.pem`, whose certificate names the guest (subject `CN=NAME, OU=ebpfmon guest`, and the
 * subjectAltName URI `urn:ebpfmon:guest:NAME`); the IDS keeps the certificate as
 * `guests/NAME.pem` in its state directory and pins it.
 *
 * Every private key and the state directory itself are checked on load: a key file that its
 * group or others may read or write, or that another user owns, is refused with the command
 * that fixes it (`chmod 600 FILE`, `chown UID FILE`); the directory likewise (`chmod 700 DIR`).
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { dirname, join, resolve } from "node:path";
import {
  checkPrivateDirectory,
  exists,
  makePrivateDirectory,
  publish,
  readOptional,
  readSecret,
  withLock,
} from "./_files.ts";

export { checkPrivateDirectory, checkPrivateFile } from "./_files.ts";

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

/** Options for {@linkcode enrollGuest}. */
export interface EnrollGuestOptions {
  /**
   * Host names and IP addresses the guest's certificate names besides `localhost`,
   * `127.0.0.1` and `::1` (informative: the IDS authenticates the agent by its pin).
   *
   * @default {[]}
   */
  names?: string[];
}

/** What {@linkcode enrollGuest} issued. */
export interface Enrollment {
  /** The guest's name, as its certificate carries it. */
  name: string;
  /** The guest directory: `ca.pem`, `agent.key`, `agent.pem`, to copy into the guest. */
  dir: string;
  /** The files written into `dir`, absolute. */
  files: string[];
  /** Where the IDS keeps the guest's certificate: `guests/NAME.pem` in its state directory. */
  certificate: string;
  /** The guest certificate's fingerprint, in the form {@linkcode fingerprint} returns. */
  pin: string;
}

/** A guest name: what the service's configuration accepts as a name, and enrollment too. */
export const GUEST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** The files a guest directory holds, and all the agent needs. */
export const GUEST_FILES = ["ca.pem", "agent.key", "agent.pem"] as const;
/** The subjectAltName URI that carries an enrolled guest's name. */
export const GUEST_URI_PREFIX = "urn:ebpfmon:guest:";

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

/**
 * Issues the identity of guest `name`: signs a new agent key with the pairing CA of `stateDir`
 * (creating the CA and the IDS identity first if the directory is new) and writes `ca.pem`,
 * `agent.key` and `agent.pem` into `outDir`, mode 0600 in a 0700 directory, ready to be copied
 * into the guest and used as its agent's `--state`. The CA key never leaves `stateDir`. The
 * certificate is also kept as {@linkcode guestCertificatePath} for the IDS to pin.
 *
 * Enrollment never replaces an identity: it refuses when the guest's certificate is already
 * recorded or `outDir` already holds any of the three files. To issue a new one, remove both.
 *
 * @throws {TypeError} `name` is not a guest name, or a requested name is not a host name or IP.
 * @throws {Error} The identity exists; `stateDir` has `ca.pem` without `ca.key`; a directory or
 * key file is not private; a file cannot be written.
 */
export async function enrollGuest(
  stateDir: string,
  name: string,
  outDir: string,
  options: EnrollGuestOptions = {},
): Promise<Enrollment> {
  if (!GUEST_NAME.test(name)) {
    throw new TypeError(
      `Cannot enroll "${name}": expected 1-63 letters, digits, '.', '_' or '-', ` +
        "starting with a letter or digit",
    );
  }
  const names = [...DEFAULT_NAMES, ...(options.names ?? [])];
  names.forEach(checkName);
  const dir = resolve(outDir);
  return await withLock(stateDir, async () => {
    const caKey = join(stateDir, "ca.key");
    if (await exists(join(stateDir, "ca.pem")) && !await exists(caKey)) {
      throw new Error(
        `Cannot enroll "${name}": the pairing CA key "${caKey}" is not there; ` +
          "enroll on the machine that holds it",
      );
    }
    const { ca } = await create(stateDir, ["ids"], DEFAULT_NAMES);
    const certificate = guestCertificatePath(stateDir, name);
    const files = GUEST_FILES.map((file) => join(dir, file));
    if (await exists(certificate)) {
      throw new Error(
        `Cannot enroll "${name}": it is enrolled already ("${certificate}" exists), and ` +
          "enrolling never replaces an identity; to issue a new one, remove that file",
      );
    }
    for (const path of files) {
      if (await exists(path)) {
        throw new Error(
          `Cannot enroll "${name}" into "${dir}": "${path}" exists, and enrolling never ` +
            "replaces an identity; give a new directory",
        );
      }
    }
    await makePrivateDirectory(dir);
    await makePrivateDirectory(dirname(certificate));
    const identity = await issue(ca, "agent", {
      subject: `CN=${name}, OU=ebpfmon guest`,
      names,
      uri: `${GUEST_URI_PREFIX}${name}`,
    });
    const contents = [ca.pem, identity.key, identity.cert, identity.cert];
    const written: string[] = [];
    try {
      for (const [i, path] of [...files, certificate].entries()) {
        await publish(path, contents[i]);
        written.push(path);
      }
    } catch (error) {
      await Promise.all(written.map((path) => Deno.remove(path).catch(() => {})));
      throw error;
    }
    return { name, dir, files, certificate, pin: fingerprint(identity.cert) };
  });
}

/** Where the IDS keeps the certificate of enrolled guest `name`: `STATE/guests/NAME.pem`. */
export function guestCertificatePath(stateDir: string, name: string): string {
  return join(stateDir, "guests", `${name}.pem`);
}

/**
 * The guest name an enrolled certificate (PEM) carries in its subjectAltName URI
 * `urn:ebpfmon:guest:NAME`; `undefined` for a certificate that names no guest.
 *
 * @throws {Error} `certificate` holds no valid PEM certificate.
 */
export function certificateGuestName(certificate: string): string | undefined {
  const cert = new x509.X509Certificate(pemDecode(certificate, "CERTIFICATE", "the certificate"));
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uri = san?.names.toJSON().find((n) =>
    n.type === "url" && n.value.startsWith(GUEST_URI_PREFIX)
  );
  return uri?.value.slice(GUEST_URI_PREFIX.length);
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
  try {
    await checkPrivateDirectory(dir);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const caPem = await readOptional(join(dir, "ca.pem"));
  if (caPem === undefined) return undefined;
  const ca = await parseCa(join(dir, "ca.pem"), caPem, await readSecret(join(dir, "ca.key")), dir);
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
  const caKey = await readSecret(join(dir, "ca.key"));
  let ca: Ca;
  if (caPem !== undefined) {
    ca = await parseCa(join(dir, "ca.pem"), caPem, caKey, dir);
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
      await issueIdentity(dir, role, ca, role === "agent" ? agentNames : []);
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
  const identity = await issue(ca, role, { subject: `CN=ebpfmon ${role}`, names: agentNames });
  await publish(join(dir, `${role}.key`), identity.key);
  await publish(join(dir, `${role}.pem`), identity.cert);
  return identity;
}

/** Signs a new key pair with the CA's key (which must be there); writes nothing. */
async function issue(
  ca: Ca,
  role: Role,
  what: { subject: string; names: string[]; uri?: string },
): Promise<Identity> {
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
  if (what.names.length || what.uri) extensions.push(sanExtension(what.names, what.uri));
  const cert = await x509.X509CertificateGenerator.create({
    subject: what.subject,
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.key!,
    signingAlgorithm: ALGORITHM,
    ...validity(),
    extensions,
  });
  return { key: await exportKey(keys.privateKey), cert: cert.toString("pem") };
}

/** The fingerprint of the agent certificate at `path`, once it proves signed by `ca`. */
async function pinCertificate(path: string, ca: Ca, caPath: string): Promise<string> {
  const pem = await readOptional(path);
  if (pem === undefined) {
    throw new Error(
      `Cannot pin the agent certificate "${path}": it does not exist (enroll the guest, or ` +
        "give its pin)",
    );
  }
  const cert = parseCertificate(pem, path);
  if (!await cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true })) {
    throw new Error(`Cannot pin "${path}": it is not signed by the pairing CA "${caPath}"`);
  }
  return fingerprint(pem);
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

async function parseCa(
  path: string,
  pem: string,
  keyPem: string | undefined,
  dir: string,
): Promise<Ca> {
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
function loadIdentity(
  dir: string,
  role: Role,
  ca: Ca,
  options: { halfIsMissing: boolean },
): Promise<Identity | undefined> {
  const paths = [join(dir, `${role}.key`), join(dir, `${role}.pem`), join(dir, "ca.pem")];
  return loadPair(paths[0], paths[1], ca, paths[2], options, role);
}

/** Loads a key and its certificate and checks both against `ca`; `undefined` if both are missing. */
async function loadPair(
  keyPath: string,
  certPath: string,
  ca: Ca,
  caPath: string,
  options: { halfIsMissing: boolean },
  role = "IDS",
): Promise<Identity | undefined> {
  const key = await readSecret(keyPath);
  const cert = await readOptional(certPath);
  if (key === undefined && cert === undefined) return undefined;
  if (key === undefined || cert === undefined) {
    if (options.halfIsMissing) return undefined;
    const [present, missing] = key === undefined ? [certPath, keyPath] : [keyPath, certPath];
    throw new Error(`Cannot load the ${role} identity: "${present}" exists without "${missing}"`);
  }
  const parsed = parseCertificate(cert, certPath);
  if (!await parsed.verify({ publicKey: ca.cert.publicKey, signatureOnly: true })) {
    throw new Error(`Cannot use "${certPath}": it is not signed by "${caPath}"`);
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

function sanExtension(names: string[], uri?: string): x509.SubjectAlternativeNameExtension {
  const unique = [...new Set(names)];
  const general = unique.map((value): x509.JsonGeneralName => ({
    type: isIP(value) === 0 ? "dns" : "ip",
    value,
  }));
  if (uri !== undefined) general.unshift({ type: "url", value: uri });
  return new x509.SubjectAlternativeNameExtension(general);
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
