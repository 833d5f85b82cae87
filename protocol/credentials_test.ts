import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "../tests/support/mod.ts";
import {
  certificateGuestName,
  checkPrivateDirectory,
  checkPrivateFile,
  enrollGuest,
  ensureAgentCredentials,
  ensureIdsCredentials,
  fingerprint,
  guestCertificatePath,
  loadIdsCredentials,
  parsePin,
} from "./mod.ts";

const FILES = ["ca.key", "ca.pem", "agent.key", "agent.pem", "ids.key", "ids.pem"];

async function withStateDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const parent = await Deno.makeTempDir({ prefix: "ebpfmon-credentials-" });
  try {
    await fn(join(parent, "state"));
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
}

Deno.test("ensureAgentCredentials() and ensureIdsCredentials() create 0600 files in a 0700 directory", async () => {
  await withStateDir(async (dir) => {
    await ensureAgentCredentials(dir);
    await ensureIdsCredentials(dir);
    assertEquals((await Deno.stat(dir)).mode! & 0o777, 0o700);
    for (const name of FILES) {
      assertEquals((await Deno.stat(join(dir, name))).mode! & 0o777, 0o600, name);
    }
    const entries = await Array.fromAsync(Deno.readDir(dir), (entry) => entry.name);
    assertEquals(entries.sort(), [...FILES].sort());
  });
});

Deno.test("ensureAgentCredentials() reuses the files of an earlier call", async () => {
  await withStateDir(async (dir) => {
    const first = await ensureAgentCredentials(dir);
    const second = await ensureAgentCredentials(dir);
    assertEquals(fingerprint(second.cert), fingerprint(first.cert));
    assertEquals(second, first);
  });
});

Deno.test("ensureIdsCredentials() pins the agent identity of the same state directory", async () => {
  await withStateDir(async (dir) => {
    const ids = await ensureIdsCredentials(dir);
    const agent = await ensureAgentCredentials(dir);
    assertEquals(ids.agentPin, fingerprint(agent.cert));
    assertEquals(ids.ca, agent.ca);
  });
});

Deno.test("ensureIdsCredentials() pins an explicit agent fingerprint instead", async () => {
  await withStateDir(async (dir) => {
    const pin = "ab".repeat(32);
    const ids = await ensureIdsCredentials(dir, { agentPin: pin });
    assertEquals(ids.agentPin, parsePin(pin));
    assertEquals(await Array.fromAsync(Deno.readDir(dir), (e) => e.name).then((n) => n.sort()), [
      "ca.key",
      "ca.pem",
      "ids.key",
      "ids.pem",
    ]);
    await assertRejects(() => ensureIdsCredentials(dir, { agentPin: "sha256:12" }), TypeError);
  });
});

Deno.test("concurrent ensure calls in one process end with one consistent set", async () => {
  await withStateDir(async (dir) => {
    const [a1, i1, a2, i2] = await Promise.all([
      ensureAgentCredentials(dir),
      ensureIdsCredentials(dir),
      ensureAgentCredentials(dir),
      ensureIdsCredentials(dir),
    ]);
    for (const credentials of [i1, a2, i2]) assertEquals(credentials.ca, a1.ca);
    assertEquals(a2, a1);
    assertEquals(i2, i1);
    assertEquals(i1.agentPin, fingerprint(a1.cert));
  });
});

Deno.test("concurrent ensure calls in separate processes end with one consistent set", async () => {
  await withStateDir(async (dir) => {
    const module = new URL("./mod.ts", import.meta.url).href;
    const run = (fn: string) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          `const m = await import(${JSON.stringify(module)});
           const c = await m.${fn}(${JSON.stringify(dir)});
           console.log(JSON.stringify({ ca: c.ca, pin: c.agentPin ?? m.fingerprint(c.cert) }));`,
        ],
        cwd: new URL("..", import.meta.url),
        stdout: "piped",
        stderr: "inherit",
      }).output();
    const outputs = await Promise.all([
      run("ensureAgentCredentials"),
      run("ensureIdsCredentials"),
      run("ensureAgentCredentials"),
    ]);
    const results = outputs.map((output) => {
      assertEquals(output.code, 0);
      return JSON.parse(new TextDecoder().decode(output.stdout));
    });
    const local = await ensureIdsCredentials(dir);
    for (const result of results) assertEquals(result, { ca: local.ca, pin: local.agentPin });
  });
});

Deno.test("ensureAgentCredentials() names the local and the requested addresses", async () => {
  await withStateDir(async (dir) => {
    const { cert } = await ensureAgentCredentials(dir, { names: ["agent.example", "10.0.0.7"] });
    const san = new x509.X509Certificate(cert).getExtension(x509.SubjectAlternativeNameExtension);
    assertEquals(san?.names.toJSON().map((name) => `${name.type}:${name.value}`), [
      "dns:localhost",
      "ip:127.0.0.1",
      "ip:::1",
      "dns:agent.example",
      "ip:10.0.0.7",
    ]);
    await assertRejects(
      () => ensureAgentCredentials(dir, { names: ["not a name"] }),
      TypeError,
      '"not a name"',
    );
  });
});

Deno.test("a provisioned guest loads its copied identity without the CA key", async () => {
  await withStateDir(async (dir) => {
    const agent = await ensureAgentCredentials(dir);
    const guest = `${dir}-guest`;
    await Deno.mkdir(guest, { mode: 0o700 });
    for (const name of ["ca.pem", "agent.key", "agent.pem"]) {
      await Deno.copyFile(join(dir, name), join(guest, name));
    }
    assertEquals(await ensureAgentCredentials(guest), agent);
    await Deno.remove(join(guest, "agent.pem"));
    await assertRejects(
      () => ensureAgentCredentials(guest),
      Error,
      `"${join(guest, "agent.key")}"`,
    );
    await Deno.remove(join(guest, "agent.key"));
    await assertRejects(() => ensureAgentCredentials(guest), Error, `"${join(guest, "ca.key")}"`);
  });
});

Deno.test("a corrupt certificate gives an error naming the file", async () => {
  await withStateDir(async (dir) => {
    await ensureAgentCredentials(dir);
    const path = join(dir, "agent.pem");
    await Deno.writeTextFile(
      path,
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    await assertRejects(() => ensureAgentCredentials(dir), Error, `Cannot read "${path}"`);
    await Deno.writeTextFile(path, "not PEM at all");
    await assertRejects(() => ensureAgentCredentials(dir), Error, `Cannot read "${path}"`);
  });
});

Deno.test("a key that is not its certificate's gives an error naming both files", async () => {
  await withStateDir(async (dir) => {
    await ensureIdsCredentials(dir);
    await Deno.copyFile(join(dir, "ids.key"), join(dir, "agent.key"));
    await assertRejects(
      () => ensureAgentCredentials(dir),
      Error,
      `"${join(dir, "agent.key")}": it is not the key of "${join(dir, "agent.pem")}"`,
    );
  });
});

Deno.test("an identity from another pairing CA gives an error naming it", async () => {
  await withStateDir(async (dir) => {
    await ensureAgentCredentials(dir);
    await ensureAgentCredentials(`${dir}-other`);
    for (const name of ["agent.key", "agent.pem"]) {
      await Deno.copyFile(join(`${dir}-other`, name), join(dir, name));
    }
    await assertRejects(
      () => ensureAgentCredentials(dir),
      Error,
      `"${join(dir, "agent.pem")}": it is not signed by`,
    );
  });
});

Deno.test("fingerprint() gives the same canonical form for PEM and DER", async () => {
  await withStateDir(async (dir) => {
    const { cert } = await ensureAgentCredentials(dir);
    const der = new Uint8Array(new x509.X509Certificate(cert).rawData);
    const expected = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
    const hex = Array.from(expected, (byte) => byte.toString(16).padStart(2, "0").toUpperCase());
    assertEquals(fingerprint(cert), `sha256:${hex.join(":")}`);
    assertEquals(fingerprint(der), fingerprint(cert));
  });
});

Deno.test("parsePin() accepts prefixed, colon-separated and plain hex in either case", () => {
  const canonical = `sha256:${Array(32).fill("AB").join(":")}`;
  for (
    const pin of [
      canonical,
      canonical.toLowerCase(),
      "ab".repeat(32),
      ` SHA256:${"Ab".repeat(32)} `,
    ]
  ) {
    assertEquals(parsePin(pin), canonical);
  }
});

Deno.test("parsePin() rejects what is not a SHA-256 fingerprint", () => {
  for (
    const pin of [
      "",
      "sha256:",
      "ab".repeat(31),
      "ab".repeat(33),
      "zz".repeat(32),
      "sha1:" + "ab".repeat(32),
    ]
  ) {
    const error = assertThrows(() => parsePin(pin), TypeError);
    assert(error.message.startsWith(`Cannot parse agent pin "${pin}"`));
  }
});

Deno.test("enrollGuest() writes one guest's own identity, 0600 in a 0700 directory, never the CA key", async () => {
  await withStateDir(async (dir) => {
    const out = `${dir}-web-1`;
    const enrolled = await enrollGuest(dir, "web-1", out, { names: ["web-1.example"] });
    assertEquals(enrolled.dir, out);
    assertEquals(enrolled.files, ["ca.pem", "agent.key", "agent.pem"].map((f) => join(out, f)));
    assertEquals((await Deno.stat(out)).mode! & 0o777, 0o700);
    for (const file of enrolled.files) assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    const names = await Array.fromAsync(Deno.readDir(out), (entry) => entry.name);
    assertEquals(names.sort(), ["agent.key", "agent.pem", "ca.pem"]);
    const pem = await Deno.readTextFile(join(out, "agent.pem"));
    assertEquals(enrolled.pin, fingerprint(pem));
    assertEquals(enrolled.certificate, guestCertificatePath(dir, "web-1"));
    assertEquals(await Deno.readTextFile(enrolled.certificate), pem);
    assertEquals(certificateGuestName(pem), "web-1");
    const cert = new x509.X509Certificate(pem);
    assertEquals(cert.subject, "CN=web-1, OU=ebpfmon guest");
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON();
    assert(san.some((n) => n.type === "dns" && n.value === "web-1.example"), JSON.stringify(san));
    // The agent runs from it as it is; the IDS pins it by its recorded certificate.
    const agent = await ensureAgentCredentials(out);
    assertEquals(agent.cert, pem);
    assertEquals(await Array.fromAsync(Deno.readDir(out)).then((e) => e.length), 3);
    const ids = await ensureIdsCredentials(dir, { agentCertificate: enrolled.certificate });
    assertEquals(ids.agentPin, enrolled.pin);
    assertEquals(ids.ca, agent.ca);
    // The IDS side issued no agent identity of its own.
    await assertRejects(() => Deno.stat(join(dir, "agent.pem")), Deno.errors.NotFound);
  });
});

Deno.test("enrollGuest() gives each guest its own key and never replaces an identity", async () => {
  await withStateDir(async (dir) => {
    const a = await enrollGuest(dir, "a", `${dir}-a`);
    const b = await enrollGuest(dir, "b", `${dir}-b`);
    assert(a.pin !== b.pin);
    const keyA = await Deno.readTextFile(join(a.dir, "agent.key"));
    assert(keyA !== await Deno.readTextFile(join(b.dir, "agent.key")));
    await assertRejects(
      () => enrollGuest(dir, "a", `${dir}-a2`),
      Error,
      `"a": it is enrolled already ("${a.certificate}" exists)`,
    );
    await assertRejects(
      () => enrollGuest(dir, "c", a.dir),
      Error,
      `"${join(a.dir, "ca.pem")}" exists`,
    );
    assertEquals(await Deno.readTextFile(join(a.dir, "agent.key")), keyA);
    await assertRejects(() => Deno.stat(guestCertificatePath(dir, "c")), Deno.errors.NotFound);
    await assertRejects(() => enrollGuest(dir, "-bad", `${dir}-x`), TypeError, '"-bad"');
    await assertRejects(() => enrollGuest(dir, "../up", `${dir}-x`), TypeError, '"../up"');
    // A guest directory holds no CA key: it cannot enroll anyone.
    await assertRejects(
      () => enrollGuest(a.dir, "d", `${dir}-d`),
      Error,
      `"${join(a.dir, "ca.key")}"`,
    );
  });
});

Deno.test("an agent certificate of another pairing CA, or both pin and certificate, are refused", async () => {
  await withStateDir(async (dir) => {
    const other = `${dir}-other`;
    const foreign = await enrollGuest(other, "x", `${other}-x`);
    await assertRejects(
      () => ensureIdsCredentials(dir, { agentCertificate: foreign.certificate }),
      Error,
      `Cannot pin "${foreign.certificate}": it is not signed by the pairing CA`,
    );
    await assertRejects(
      () => ensureIdsCredentials(dir, { agentCertificate: join(dir, "guests", "none.pem") }),
      Error,
      "it does not exist",
    );
    await assertRejects(
      () =>
        ensureIdsCredentials(dir, { agentPin: foreign.pin, agentCertificate: foreign.certificate }),
      TypeError,
      "both a pin and the certificate",
    );
  });
});

Deno.test("a key file that its group or others may read, or another user owns, is refused", async () => {
  await withStateDir(async (dir) => {
    await ensureAgentCredentials(dir);
    await ensureIdsCredentials(dir);
    for (const name of ["ca.key", "agent.key", "ids.key"]) {
      const path = join(dir, name);
      for (const mode of [0o640, 0o604, 0o644, 0o620]) {
        await Deno.chmod(path, mode);
        const error = await assertRejects(
          () => Promise.all([ensureAgentCredentials(dir), ensureIdsCredentials(dir)]),
          Error,
          `"${path}"`,
        );
        assert(error.message.includes(`chmod 600 ${path}`), error.message);
      }
      await Deno.chmod(path, 0o600);
      if (Deno.uid() === 0) {
        await Deno.chown(path, 65534, null);
        await assertRejects(
          () =>
            ensureIdsCredentials(dir, { agentPin: "ab".repeat(32) }).then(
              () => ensureAgentCredentials(dir),
            ),
          Error,
          `chown 0 ${path}`,
        );
        await Deno.chown(path, 0, null);
      }
    }
    await ensureAgentCredentials(dir);
  });
});

Deno.test("a state directory that its group or others may enter is refused", async () => {
  await withStateDir(async (dir) => {
    await ensureAgentCredentials(dir);
    await Deno.chmod(dir, 0o750);
    await assertRejects(() => ensureAgentCredentials(dir), Error, `chmod 700 ${dir}`);
    await assertRejects(() => ensureIdsCredentials(dir), Error, `chmod 700 ${dir}`);
    await assertRejects(() => enrollGuest(dir, "g", `${dir}-g`), Error, `chmod 700 ${dir}`);
    await Deno.chmod(dir, 0o700);
    const out = `${dir}-open`;
    await Deno.mkdir(out, { mode: 0o755 });
    await Deno.chmod(out, 0o755);
    await assertRejects(() => enrollGuest(dir, "g", out), Error, `chmod 700 ${out}`);
    await assertRejects(() => checkPrivateDirectory(out), Error, `"${out}"`);
    await assertRejects(() => checkPrivateFile(join(dir, "absent")), Deno.errors.NotFound);
  });
});

Deno.test("loadIdsCredentials() reads an identity of its own files, checking its key", async () => {
  await withStateDir(async (dir) => {
    const ids = await ensureIdsCredentials(dir, { agentPin: "ab".repeat(32) });
    const files = {
      ca: join(dir, "ca.pem"),
      cert: join(dir, "ids.pem"),
      key: join(dir, "ids.key"),
    };
    const { pin, certificate } = await enrollGuest(dir, "g", `${dir}-g`);
    const loaded = await loadIdsCredentials(files, { agentCertificate: certificate });
    assertEquals(loaded, { ...ids, agentPin: pin });
    await assertRejects(() => loadIdsCredentials(files, {}), TypeError, "neither a pin");
    await Deno.chmod(files.key, 0o644);
    await assertRejects(
      () => loadIdsCredentials(files, { agentPin: pin }),
      Error,
      `chmod 600 ${files.key}`,
    );
  });
});
