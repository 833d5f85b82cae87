/**
 * Certificate fingerprints: how the IDS names, and pins, the agent identity it accepts.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { pemDecode } from "./_x509.ts";

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
