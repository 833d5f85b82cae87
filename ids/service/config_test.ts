import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { ConfigError, loadConfig, parseConfig } from "./config.ts";
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
