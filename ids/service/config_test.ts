import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/support/mod.ts";
import { ConfigError, loadConfig, parseConfig } from "./config.ts";
import { isLoopback } from "./api_transport.ts";
import { enabledRules } from "../detect/mod.ts";
import { agentAddresses } from "./_guest_config.ts";
import { ensureToken } from "./token.ts";

const PIN = "sha256:" + Array.from({ length: 32 }, () => "AB").join(":");

Deno.test("parseConfig() fills defaults and resolves paths against the config's folder", () => {
  const config = parseConfig({
    guests: [{ name: "web-1", agent: "10.0.0.5:7047" }, {
      name: "db",
      agent: "[fd00::2]:7047",
      pin: PIN,
      credentials: { ca: "creds/ca.pem", cert: "creds/ids.pem", key: "/abs/ids.key" },
      refreshMs: 250,
    }],
  }, "/etc/ebpfmon");
  assertEquals(config.listen, "127.0.0.1:8047");
  assertEquals(config.stateDir, "/etc/ebpfmon/.ebpfmon");
  assertEquals(config.tokenFile, "/etc/ebpfmon/.ebpfmon/api.token");
  assertEquals(config.metricsAuth, false);
  assertEquals(config.guests[0].refreshMs, 5000);
  assertEquals(config.guests[1].credentials, {
    ca: "/etc/ebpfmon/creds/ca.pem",
    cert: "/etc/ebpfmon/creds/ids.pem",
    key: "/abs/ids.key",
  });
});

Deno.test("parseConfig() names every bad key", () => {
  const error = assertThrows(
    () =>
      parseConfig({
        listen: "nowhere",
        guests: [
          { name: "ok", agent: "127.0.0.1:1", refreshMs: 5 },
          { name: "ok", agent: "127.0.0.1:99999", pin: "sha256:zz" },
          { name: "-bad", agent: "h:1", colour: "red" },
        ],
      }, "/"),
    ConfigError,
  );
  for (
    const key of [
      "listen:",
      "guests[0].refreshMs:",
      "guests[1].name: duplicate",
      "guests[1].agent:",
      "guests[1].pin:",
      "guests[2].name:",
      "colour",
    ]
  ) {
    assert(error.message.includes(key), `"${key}" missing from: ${error.message}`);
  }
});

Deno.test("parseConfig() takes a guest's fullEvery, 1..1000, and leaves it unset by default", () => {
  const config = parseConfig({
    guests: [
      { name: "a", agent: "127.0.0.1:1", pin: PIN },
      { name: "b", agent: "127.0.0.1:2", fullEvery: 1 },
    ],
  }, "/");
  assertEquals(config.guests.map((g) => g.fullEvery), [undefined, 1]);
  for (const fullEvery of [0, 1001, 2.5, "10"]) {
    const error = assertThrows(
      () => parseConfig({ guests: [{ name: "a", agent: "127.0.0.1:1", fullEvery }] }, "/"),
      ConfigError,
    );
    assert(error.message.includes("guests[0].fullEvery:"), error.message);
  }
});

Deno.test("parseConfig() reads rules, alerts and webhooks, with defaults", () => {
  const guests = [{ name: "web-1", agent: "10.0.0.5:7047" }];
  const bare = parseConfig({ guests }, "/");
  assertEquals(bare.rules, {});
  assertEquals(bare.alerts, { resolveAfter: 3, retentionDays: 30 });
  assertEquals(bare.webhooks, []);
  const config = parseConfig({
    guests,
    rules: {
      hidden_module: { severity: "critical", allow: ["vboxsf"] },
      bpf_program: { enabled: false },
    },
    alerts: { resolveAfter: 5, retentionDays: 0.5 },
    webhooks: [{ url: "https://hooks.example/x", secret: "s".repeat(16) }],
  }, "/");
  assertEquals(config.rules, {
    hidden_module: { severity: "critical", allow: ["vboxsf"] },
    bpf_program: { enabled: false },
  });
  assertEquals(config.alerts, { resolveAfter: 5, retentionDays: 0.5 });
  assertEquals(config.webhooks, [{
    url: "https://hooks.example/x",
    minSeverity: "info",
    secret: "s".repeat(16),
  }]);
});

Deno.test("the rules of ids.json give each detector its settings: on or off, severity, allow-list", () => {
  const { rules } = parseConfig({
    guests: [{ name: "web-1", agent: "10.0.0.5:7047" }],
    rules: {
      new_listener: { allow: ["22", "443"] },
      bpf_program: { enabled: false },
      hidden_module: { severity: "medium" },
    },
  }, "/");
  const settings = new Map(enabledRules(rules).map(([detector, s]) => [detector.rule, s]));
  assertEquals(settings.has("bpf_program"), false, "a rule turned off does not run");
  assertEquals(settings.get("new_listener")?.allow, new Set(["22", "443"]));
  assertEquals(settings.get("hidden_module"), { severity: "medium", allow: new Set<string>() });
  // A rule left out of ids.json runs with the severity of the README's table.
  assertEquals(settings.get("shared_cred"), { severity: "critical", allow: new Set<string>() });
});

Deno.test("parseConfig() names each bad key of rules, alerts and webhooks", () => {
  const error = assertThrows(
    () =>
      parseConfig({
        guests: [{ name: "web-1", agent: "10.0.0.5:7047" }],
        rules: {
          hidden_proces: { enabled: true },
          shared_cred: { severity: "severe", allow: "root", colour: 1 },
        },
        alerts: { resolveAfter: 0, retentionDays: -1, keep: true },
        webhooks: [{ url: "ftp://x/", secret: "short", minSeverity: "loud" }],
      }, "/"),
    ConfigError,
  );
  for (
    const key of [
      'rules: Unrecognized key: "hidden_proces"',
      "rules.shared_cred.severity: expected one of info, low, medium, high, critical",
      "rules.shared_cred.allow:",
      'rules.shared_cred: Unrecognized key: "colour"',
      "alerts.resolveAfter:",
      "alerts.retentionDays:",
      'alerts: Unrecognized key: "keep"',
      "webhooks[0].url: expected an http or https URL",
      "webhooks[0].secret: expected at least 16 characters",
      "webhooks[0].minSeverity:",
    ]
  ) {
    assert(error.message.includes(key), `"${key}" missing from: ${error.message}`);
  }
});

Deno.test("parseConfig() refuses a configuration without guests", () => {
  assertThrows(() => parseConfig({ guests: [] }, "/"), ConfigError, "guests");
  assertThrows(() => parseConfig({}, "/"), ConfigError, "guests");
  assertThrows(() => parseConfig([], "/"), ConfigError);
});

Deno.test("loadConfig() names the file when it is missing or not JSON", async () => {
  const dir = await Deno.makeTempDir();
  await assertRejects(() => loadConfig(`${dir}/none.json`), ConfigError, "none.json");
  await Deno.writeTextFile(`${dir}/bad.json`, "{ guests: ");
  await assertRejects(() => loadConfig(`${dir}/bad.json`), ConfigError, "Cannot parse");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("ensureToken() creates a token file with mode 0600 once, then reuses it", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/sub/api.token`;
  const [a, b] = await Promise.all([ensureToken(path), ensureToken(path)]);
  assertEquals(a, b);
  assert(a.length >= 40, "a 256-bit token");
  assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
  assertEquals(await ensureToken(path), a);
  await Deno.remove(dir, { recursive: true });
});

const GUESTS = [{ name: "web-1", agent: "10.0.0.5:7047" }];

Deno.test("isLoopback() accepts only localhost, 127.0.0.0/8 and ::1", () => {
  const table: [string, boolean][] = [
    ["localhost", true],
    ["LOCALHOST", true],
    ["127.0.0.1", true],
    ["127.200.3.4", true],
    ["::1", true],
    ["0:0:0:0:0:0:0:1", true],
    ["::ffff:127.0.0.1", true],
    ["128.0.0.1", false],
    ["10.0.0.1", false],
    ["0.0.0.0", false],
    ["::", false],
    ["::ffff:10.0.0.1", false],
    ["fe80::1%eth0", false],
    ["127.1", false],
    ["localhost.example", false],
    ["127.0.0.1.example", false],
  ];
  for (const [host, loopback] of table) assertEquals(isLoopback(host), loopback, host);
});

Deno.test("parseConfig() refuses plain HTTP off loopback, naming tls and insecureHttp", () => {
  for (const listen of ["0.0.0.0:8047", "10.0.0.1:8047", "[::]:8047", "ids.example:8047"]) {
    const error = assertThrows(() => parseConfig({ listen, guests: GUESTS }, "/"), ConfigError);
    for (const part of [`listen: "${listen}" is not a loopback address`, '"tls"', "insecureHttp"]) {
      assert(error.message.includes(part), `"${part}" missing from: ${error.message}`);
    }
  }
});

Deno.test("parseConfig() serves loopback over plain HTTP with /metrics open by default", () => {
  for (const listen of ["127.0.0.1:8047", "127.0.0.2:1", "[::1]:8047", "localhost:8047"]) {
    const config = parseConfig({ listen, guests: GUESTS }, "/");
    assertEquals([config.tls, config.insecureHttp, config.metricsAuth], [undefined, false, false]);
  }
  const closed = parseConfig({ metricsAuth: true, guests: GUESTS }, "/");
  assertEquals(closed.metricsAuth, true);
});

Deno.test("parseConfig() resolves tls against the config's folder; /metrics needs the token", () => {
  const config = parseConfig({
    listen: "0.0.0.0:8047",
    tls: { cert: "tls/api.pem", key: "/abs/api.key" },
    guests: GUESTS,
  }, "/etc/ebpfmon");
  assertEquals(config.tls, { cert: "/etc/ebpfmon/tls/api.pem", key: "/abs/api.key" });
  assertEquals(config.metricsAuth, true);
  const open = parseConfig({
    listen: "0.0.0.0:8047",
    insecureHttp: true,
    metricsAuth: false,
    guests: GUESTS,
  }, "/");
  assertEquals([open.tls, open.insecureHttp, open.metricsAuth], [undefined, true, false]);
  assertEquals(
    parseConfig({ listen: "0.0.0.0:1", insecureHttp: true, guests: GUESTS }, "/")
      .metricsAuth,
    true,
  );
});

Deno.test("parseConfig() names each bad key of tls and insecureHttp", () => {
  const error = assertThrows(
    () =>
      parseConfig({
        listen: "0.0.0.0:8047",
        tls: { cert: "", key: 1, ca: "x" },
        insecureHttp: "yes",
        metricsAuth: "no",
        guests: GUESTS,
      }, "/"),
    ConfigError,
  );
  for (
    const key of [
      "tls.cert:",
      "tls.key:",
      'tls: Unrecognized key: "ca"',
      "insecureHttp:",
      "metricsAuth:",
    ]
  ) {
    assert(error.message.includes(key), `"${key}" missing from: ${error.message}`);
  }
  assertThrows(
    () =>
      parseConfig({
        listen: "0.0.0.0:8047",
        tls: { cert: "a.pem", key: "a.key" },
        insecureHttp: true,
        guests: GUESTS,
      }, "/"),
    ConfigError,
    'insecureHttp: contradicts "tls"',
  );
});

const OTHER_PIN = "sha256:" + Array.from({ length: 32 }, () => "CD").join(":");

Deno.test("parseConfig() pins each guest by its own certificate unless it gives a pin", () => {
  const config = parseConfig({
    stateDir: "/var/lib/ebpfmon",
    guests: [
      { name: "web-1", agent: "10.0.0.5:7047" },
      { name: "db", agent: "10.0.0.6:7047", pin: PIN },
      { name: "cache", agent: "10.0.0.7:7047", certificate: "certs/cache.pem" },
    ],
  }, "/etc/ebpfmon");
  assertEquals(config.guests.map((g) => [g.pin, g.certificate]), [
    [undefined, "/var/lib/ebpfmon/guests/web-1.pem"],
    [PIN, undefined],
    [undefined, "/etc/ebpfmon/certs/cache.pem"],
  ]);
  // One guest alone may pin the state directory's own agent (an agent and IDS on one machine).
  const lone = parseConfig({ guests: [{ name: "local", agent: "127.0.0.1:7047" }] }, "/");
  assertEquals(lone.guests[0].certificate, undefined);
});

Deno.test("parseConfig() refuses two guests that share one identity unless both allow it", () => {
  const shared = (extra: Record<string, unknown>[]) =>
    parseConfig({
      guests: [
        { name: "a", agent: "10.0.0.5:7047", ...extra[0] },
        { name: "b", agent: "10.0.0.6:7047", ...extra[1] },
        { name: "c", agent: "10.0.0.7:7047", pin: OTHER_PIN },
      ],
    }, "/etc");
  const samePin = assertThrows(
    () => shared([{ pin: PIN }, { pin: PIN.toLowerCase().replace("sha256:", "") }]),
    ConfigError,
    `guests[1].pin: guest "b" has the pin ${PIN} of guest "a"`,
  );
  assert(samePin.message.includes('"sharedPin": true on both'), samePin.message);
  assertThrows(
    () => shared([{ certificate: "x.pem" }, { certificate: "/etc/x.pem" }]),
    ConfigError,
    'guests[1].certificate: guest "b" has the certificate "/etc/x.pem" of guest "a"',
  );
  assertThrows(
    () => shared([{ pin: PIN, sharedPin: true }, { pin: PIN }]),
    ConfigError,
    "guests[1].pin",
  );
  const allowed = shared([{ pin: PIN, sharedPin: true }, { pin: PIN, sharedPin: true }]);
  assertEquals(allowed.guests.map((g) => g.pin), [PIN, PIN, OTHER_PIN]);
  assertThrows(
    () =>
      parseConfig({ guests: [{ name: "a", agent: "h:1", pin: PIN, certificate: "a.pem" }] }, "/"),
    ConfigError,
    "guests[0].certificate: expected either a pin or a certificate, not both",
  );
});

Deno.test("ensureToken() refuses a token file that its group or others may read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/api.token`;
    const token = await ensureToken(path);
    await Deno.chmod(path, 0o640);
    await assertRejects(() => ensureToken(path), Error, `chmod 600 ${path}`);
    await Deno.chmod(path, 0o600);
    assertEquals(await ensureToken(path), token);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseConfig() takes an agent's addresses as one HOST:PORT or a list of them", () => {
  const one = parseConfig({ guests: [{ name: "a", agent: "10.0.0.5:7047" }] }, "/");
  assertEquals(agentAddresses(one.guests[0]), ["10.0.0.5:7047"]);
  const two = parseConfig(
    { guests: [{ name: "a", agent: ["10.0.0.5:7047", "[fd00::5]:7047"] }] },
    "/",
  );
  assertEquals(agentAddresses(two.guests[0]), ["10.0.0.5:7047", "[fd00::5]:7047"]);
  for (
    const agent of [[], ["10.0.0.5:7047", "nope"], Array(9).fill("10.0.0.5:7047"), 7047]
  ) {
    assertThrows(
      () => parseConfig({ guests: [{ name: "a", agent }] }, "/"),
      ConfigError,
      "guests[0].agent",
    );
  }
});
