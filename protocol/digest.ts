/**
 * SHA-256 in lowercase hex: pins, stored BTF, the guest image's stamps and the objects a test
 * compares all name bytes by it.
 *
 * @module
 */

/** The SHA-256 of `bytes`, as 64 lowercase hex digits. */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex();
}
