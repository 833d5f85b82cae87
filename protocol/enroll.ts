/**
 * Enrollment of guests: a machine that watches several guests gives each its own agent identity
 * with {@linkcode enrollGuest}: a guest directory holding `ca.pem` and that guest's `agent.key` and
 * `agent.pem`, whose certificate names the guest (subject `CN=NAME, OU=ebpfmon guest`, and the
 * subjectAltName URI `urn:ebpfmon:guest:NAME`); the IDS keeps the certificate as
 * `guests/NAME.pem` in its state directory and pins it.
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { dirname, join, resolve } from "node:path";
import { exists, makePrivateDirectory, publish, withLock } from "./_files.ts";
import { fingerprint } from "./fingerprint.ts";
import { create } from "./_state_dir.ts";
import { checkName, DEFAULT_NAMES, issue, pemDecode } from "./_x509.ts";

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
