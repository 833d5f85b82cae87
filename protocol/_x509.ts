/**
 * Certificates and keys of the pairing: ECDSA P-256 keys, the CA and the identities it signs,
 * PEM encoding, and the checks every loaded certificate and key goes through.
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { isIP } from "node:net";
import { join } from "node:path";

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
/** The names every agent certificate carries. */
export const DEFAULT_NAMES = ["localhost", "127.0.0.1", "::1"];
const DAY_MS = 86_400_000;
/** Guest clocks drift: certificates are valid from a day before they are made. */
const BACKDATE_MS = DAY_MS;
const VALIDITY_MS = 20 * 365 * DAY_MS;
const HOST_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
const HOST_NAME = new RegExp(`^(?=.{1,253}$)${HOST_LABEL}(\\.${HOST_LABEL})*$`, "i");

/** Whose identity: the agent's (server) or the IDS's (client). */
export type Role = "agent" | "ids";

export interface Ca {
  cert: x509.X509Certificate;
  pem: string;
  /** Absent where the CA key was not copied (a provisioned guest). */
  key?: CryptoKey;
}

export interface Identity {
  key: string;
  cert: string;
}

export async function createCa(): Promise<Ca> {
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

/** Signs a new key pair with the CA's key (which must be there); writes nothing. */
export async function issue(
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

export async function parseCa(
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

export function parseCertificate(pem: string, path: string): x509.X509Certificate {
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

export async function importKey(pem: string, path: string): Promise<CryptoKey> {
  try {
    const der = pemDecode(pem, "PRIVATE KEY", `"${path}"`);
    return await crypto.subtle.importKey("pkcs8", der, ALGORITHM, true, ["sign"]);
  } catch (error) {
    throw new Error(`Cannot read "${path}": it is not an ECDSA P-256 private key`, {
      cause: error,
    });
  }
}

export async function checkKeyPair(
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

export function checkName(name: string): void {
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

export async function exportKey(key: CryptoKey): Promise<string> {
  return pemEncode("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));
}

function pemEncode(label: string, der: Uint8Array): string {
  const base64 = btoa(String.fromCharCode(...der)).match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN ${label}-----\n${base64}\n-----END ${label}-----\n`;
}

export function pemDecode(pem: string, label: string, source: string): Uint8Array<ArrayBuffer> {
  const match = pem.match(
    new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`),
  );
  if (match === null) throw new Error(`Cannot read ${source}: no PEM "${label}" block in it`);
  return Uint8Array.from(atob(match[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}
