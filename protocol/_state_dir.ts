/**
 * A state directory's pairing CA and identities: loading what is there, and, under the
 * directory lock, creating the CA and issuing the identities that are missing.
 *
 * @module
 */
import { join } from "node:path";
import { checkPrivateDirectory, publish, readOptional, readSecret } from "./_files.ts";
import { fingerprint } from "./fingerprint.ts";
import {
  type Ca,
  checkKeyPair,
  createCa,
  exportKey,
  type Identity,
  importKey,
  issue,
  parseCa,
  parseCertificate,
  type Role,
} from "./_x509.ts";

/**
 * Reads everything `roles` need without locking; `undefined` if anything is missing, including
 * half of a pair that another process may be writing.
 */
export async function loadAll(dir: string, roles: Role[]) {
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
export async function create(dir: string, roles: Role[], agentNames: string[]) {
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

/** The fingerprint of the agent certificate at `path`, once it proves signed by `ca`. */
export async function pinCertificate(path: string, ca: Ca, caPath: string): Promise<string> {
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
export async function loadPair(
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
