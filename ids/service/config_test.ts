import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { ConfigError, loadConfig, parseConfig, ruleSettings } from "./config.ts";
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

Deno.test("ruleSettings() applies a rule's entry over the detector's severity", () => {
  const { rules } = parseConfig({
    guests: [{ name: "web-1", agent: "10.0.0.5:7047" }],
    rules: { new_listener: { allow: ["22", "443"] }, bpf_program: { enabled: false } },
  }, "/");
  assertEquals(ruleSettings(rules, "new_listener", "medium"), {
    enabled: true,
    settings: { severity: "medium", allow: new Set(["22", "443"]) },
  });
  assertEquals(ruleSettings(rules, "bpf_program", "high").enabled, false);
  assertEquals(ruleSettings(rules, "hidden_module", "critical"), {
    enabled: true,
    settings: { severity: "critical", allow: new Set<string>() },
  });
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
