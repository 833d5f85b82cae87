/**
 * One identity per guest: `main.ts enroll` issues each guest its own agent key, real agents run
 * from the enrolled directories, the service pins each guest's own certificate and refuses an
 * agent that presents another guest's, and key and token files that are not private are refused.
 */

import { join } from "node:path";
import { assert, assertEquals, assertRejects, privilegedTest } from "./support/mod.ts";
import { spawnAgent } from "../agent/mod.ts";
import { ensureToken, MonitorService, parseConfig, type VmStatus } from "../ids/service/mod.ts";

const MAIN = new URL("../main.ts", import.meta.url);
const ROOT = new URL("..", import.meta.url);

/** What `main.ts enroll` printed. */
interface Enrolled {
  pin: string;
  entry: { name: string; agent: string; pin: string };
  stdout: string;
}

/** Runs `main.ts enroll NAME` as the operator would; fails the test unless it succeeds. */
async function enroll(name: string, state: string, out: string, agent: string): Promise<Enrolled> {
  const { code, stdout, stderr } = await runEnroll(name, state, out, agent);
  assertEquals(code, 0, `enroll ${name} failed: ${stderr}`);
  const pin = /^pin: (\S+)$/m.exec(stdout)?.[1];
  const entry = stdout.trim().split("\n").at(-1)!;
  assert(pin !== undefined, `no pin in: ${stdout}`);
  return { pin, entry: JSON.parse(entry), stdout };
}

async function runEnroll(name: string, state: string, out: string, agent: string) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN.pathname,
      "enroll",
      name,
      "--state",
      state,
      "--out",
      out,
      "--agent",
      agent,
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: text(output.stdout), stderr: text(output.stderr) };
}

/** The certificate's SHA-256 fingerprint and subject as openssl reads them. */
async function openssl(path: string): Promise<{ pin: string; subject: string; san: string }> {
  const output = await new Deno.Command("openssl", {
    args: [
      "x509",
      "-in",
      path,
      "-noout",
      "-fingerprint",
      "-sha256",
      "-subject",
      "-ext",
      "subjectAltName",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assertEquals(output.code, 0);
  const text = new TextDecoder().decode(output.stdout);
  const pin = /sha256 Fingerprint=([0-9A-F:]+)/i.exec(text)?.[1];
  assert(pin !== undefined, `no fingerprint in: ${text}`);
  return {
    pin: `sha256:${pin.toUpperCase()}`,
    subject: /^subject=(.*)$/m.exec(text)?.[1] ?? "",
    san: text.slice(text.indexOf("Subject Alternative Name")),
  };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ebpfmon-enroll-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Waits (generously) until `vm`'s status satisfies `done`; returns that status. */
async function waitFor(
  monitor: MonitorService,
  vm: string,
  done: (status: VmStatus) => boolean,
): Promise<VmStatus> {
  for (let i = 0; i < 600; i++) {
    const status = monitor.vm(vm);
    if (done(status)) return status;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`"${vm}" never got there: ${JSON.stringify(monitor.vm(vm))}`);
}

function mode(path: string): number {
  return Deno.statSync(path).mode! & 0o777;
}

privilegedTest(
  "enrolled guests run their own identities; an agent presenting another guest's is refused",
  async () => {
    await withTempDir(async (dir) => {
      const state = join(dir, "ids");
      const dirA = join(dir, "guest-a");
      const dirB = join(dir, "guest-b");
      const a = await enroll("guest-a", state, dirA, "127.0.0.1:7047");
      const b = await enroll("guest-b", state, dirB, "127.0.0.1:7048");

      // What each guest directory holds, and what its certificate says, read by openssl.
      for (const [guest, enrolled, name] of [[dirA, a, "guest-a"], [dirB, b, "guest-b"]] as const) {
        assertEquals(mode(guest), 0o700);
        const files = await Array.fromAsync(Deno.readDir(guest), (e) => e.name);
        assertEquals(files.sort(), ["agent.key", "agent.pem", "ca.pem"]);
        for (const file of files) assertEquals(mode(join(guest, file)), 0o600, file);
        const cert = await openssl(join(guest, "agent.pem"));
        assertEquals(enrolled.pin, cert.pin);
        assertEquals(enrolled.entry, { name, agent: enrolled.entry.agent, pin: cert.pin });
        assert(cert.subject.includes(`CN = ${name}`), cert.subject);
        assert(cert.san.includes(`URI:urn:ebpfmon:guest:${name}`), cert.san);
        assertEquals((await openssl(join(state, "guests", `${name}.pem`))).pin, cert.pin);
      }
      assert(a.pin !== b.pin, "two enrolled guests share a pin");
      assertEquals(
        await Deno.readTextFile(join(dirA, "ca.pem")),
        await Deno.readTextFile(join(state, "ca.pem")),
      );

      // Enrolling never replaces an identity.
      const again = await runEnroll("guest-a", state, join(dir, "elsewhere"), "127.0.0.1:7047");
      assertEquals(again.code, 1);
      assert(again.stderr.includes("enrolled already"), again.stderr);

      await using agentA = await spawnAgent({ stateDir: dirA });
      await using agentB = await spawnAgent({ stateDir: dirB });
      // The agents ran from their directories as they are: no CA key, nothing issued.
      for (const guest of [dirA, dirB]) {
        assertEquals((await Array.fromAsync(Deno.readDir(guest))).length, 3);
      }

      // Guest A pinned by the printed pin, guest B by its enrolled certificate (the default).
      const config = (guests: { name: string; agent: string; pin?: string }[]) =>
        parseConfig({ stateDir: state, guests }, dir, "test configuration");
      const paired = config([
        { name: "guest-a", agent: agentA.address, pin: a.pin },
        { name: "guest-b", agent: agentB.address },
      ]);
      assertEquals(paired.guests[1].certificate, join(state, "guests", "guest-b.pem"));
      {
        await using monitor = MonitorService.start(paired, { log: () => {} });
        const up = await Promise.all(
          ["guest-a", "guest-b"].map((vm) => waitFor(monitor, vm, (s) => s.state === "up")),
        );
        assertEquals(up.map((s) => s.kernel?.bootId !== undefined), [true, true]);
      }

      // Swapped: each address now has the other guest's agent behind it.
      const swapped = config([
        { name: "guest-a", agent: agentB.address, pin: a.pin },
        { name: "guest-b", agent: agentA.address },
      ]);
      await using monitor = MonitorService.start(swapped, { log: () => {} });
      for (const [vm, presented, expected] of [["guest-a", b, a], ["guest-b", a, b]] as const) {
        const status = await waitFor(monitor, vm, (s) => s.lastError !== undefined);
        assertEquals(status.state === "up", false);
        const want = `pin mismatch: presented ${presented.pin}, expected ${expected.pin}`;
        assert(status.lastError!.message.includes(want), status.lastError!.message);
        assert(status.events.some((e) => e.message.includes(want)), JSON.stringify(status.events));
        const alerts = monitor.alerts({ vm, state: "open" });
        assert(alerts.some((alert) => alert.message.includes(want)), JSON.stringify(alerts));
      }
    });
  },
);

privilegedTest(
  "an agent refuses to start from a guest directory whose key others may read",
  async () => {
    await withTempDir(async (dir) => {
      const guest = join(dir, "guest");
      await enroll("guest", join(dir, "ids"), guest, "127.0.0.1:7047");
      const key = join(guest, "agent.key");
      await Deno.chmod(key, 0o644);
      const error = await assertRejects(() => spawnAgent({ stateDir: guest }), Error);
      assert(error.message.includes(`"${key}"`), error.message);
      assert(error.message.includes(`chmod 600 ${key}`), error.message);
      await Deno.chmod(key, 0o600);
      await Deno.chmod(guest, 0o755);
      const open = await assertRejects(() => spawnAgent({ stateDir: guest }), Error);
      assert(open.message.includes(`chmod 700 ${guest}`), open.message);
    });
  },
);

Deno.test("the service refuses a key and a token file that others may read, naming the fix", async () => {
  await withTempDir(async (dir) => {
    const state = join(dir, "ids");
    await enroll("guest", state, join(dir, "guest"), "127.0.0.1:7047");
    for (const name of ["ca.key", "ids.key"]) {
      const key = join(state, name);
      await Deno.chmod(key, 0o640);
      const refused = await runEnroll("other", state, join(dir, "other"), "127.0.0.1:1");
      assertEquals(refused.code, 1);
      assert(refused.stderr.includes(`"${key}"`), refused.stderr);
      assert(refused.stderr.includes(`chmod 600 ${key}`), refused.stderr);
      // The guest's connection fails on it too, before anything is sent.
      const config = parseConfig({
        stateDir: state,
        guests: [{ name: "guest", agent: "127.0.0.1:9", certificate: "ids/guests/guest.pem" }],
      }, dir);
      {
        await using monitor = MonitorService.start(config, { log: () => {} });
        const status = await waitFor(monitor, "guest", (s) => s.lastError !== undefined);
        assert(status.lastError!.message.includes(`chmod 600 ${key}`), status.lastError!.message);
      }
      await Deno.chmod(key, 0o600);
    }
    const token = join(state, "api.token");
    const created = await ensureToken(token);
    assertEquals(mode(token), 0o600);
    await Deno.chmod(token, 0o644);
    await assertRejects(() => ensureToken(token), Error, `"${token}"`);
    await assertRejects(() => ensureToken(token), Error, `chmod 600 ${token}`);
    await Deno.chmod(token, 0o600);
    assertEquals(await ensureToken(token), created);
    if (Deno.uid() === 0) {
      await Deno.chown(token, 65534, null);
      await assertRejects(() => ensureToken(token), Error, `chown 0 ${token}`);
    }
  });
});
