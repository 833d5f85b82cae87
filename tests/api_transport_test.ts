/**
 * The API's transport: off loopback the service serves HTTPS (or refuses to start), and its
 * `/metrics` needs the token unless it listens on loopback or `metricsAuth` is `false`.
 *
 * "Off loopback" is an address of one of this machine's interfaces other than `lo`: the service
 * counts all of 127.0.0.0/8 as loopback, so 127.0.0.2 would not do.
 */

import { assert, assertEquals, assertRejects, eventually, privilegedTest } from "./support/mod.ts";
import { type AgentProcess, spawnAgent, spawnReady } from "../agent/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import { ensureAgentCredentials } from "../protocol/mod.ts";
import { ConfigError, parseConfig } from "../ids/service/mod.ts";
import { startService } from "../ids/mod.ts";

const IDS_MAIN = new URL("../ids/main.ts", import.meta.url);
const READY = /API on (\S+) \(token in (\S+)\)/;

/** An address of this machine that is not loopback, as `listen` writes it; IPv4 first. */
function networkAddress(): { host: string; ip: string } | undefined {
  const candidates = Deno.networkInterfaces().filter((i) =>
    i.name !== "lo" && !i.address.startsWith("127.") && i.address !== "::1" &&
    !i.address.toLowerCase().startsWith("fe80:")
  );
  const chosen = candidates.find((i) => i.family === "IPv4") ?? candidates[0];
  if (!chosen) return undefined;
  const host = chosen.family === "IPv6" ? `[${chosen.address}]` : chosen.address;
  return { host, ip: chosen.address };
}

const NETWORK = networkAddress();

/** A privileged test that also needs {@linkcode NETWORK}: skipped with the reason without one. */
function networkTest(
  name: string,
  fn: (network: { host: string; ip: string }) => Promise<void>,
): void {
  if (NETWORK) return privilegedTest(name, () => fn(NETWORK));
  console.error(`skipping "${name}": this machine has no address but loopback`);
  Deno.test({ name, ignore: true, fn() {} });
}

/** Runs `fn` with a temporary directory and an agent whose state is in it; stops and removes both. */
async function withAgent(
  fn: (dir: string, agent: AgentProcess) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ebpfmon-api-tls-" });
  try {
    await using agent = await spawnAgent({ stateDir: `${dir}/state` });
    await fn(dir, agent);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function status(response: Promise<Response>): Promise<number> {
  const res = await response;
  await res.body?.cancel();
  return res.status;
}

Deno.test("serve refuses plain HTTP on a non-loopback address, naming the fix", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ebpfmon-api-plain-" });
  try {
    const listen = `${NETWORK?.host ?? "0.0.0.0"}:0`;
    const configPath = `${dir}/ids.json`;
    await Deno.writeTextFile(
      configPath,
      JSON.stringify({
        listen,
        stateDir: "state",
        guests: [{ name: "vm1", agent: "127.0.0.1:1" }],
      }),
    );
    const refused = await assertRejects(
      async () => {
        // A service that started after all is stopped before the assertion fails.
        await using _served = await spawnReady({
          main: IDS_MAIN,
          permissions: IDS_PERMISSIONS,
          args: ["serve", "--config", configPath],
          ready: READY,
        });
      },
      Error,
      "exited with status 1 before it was ready",
    );
    for (
      const part of [
        `listen: "${listen}" is not a loopback address`,
        '"tls": { "cert"',
        '"insecureHttp": true',
      ]
    ) {
      assert(refused.message.includes(part), `"${part}" missing from: ${refused.message}`);
    }

    // A configuration built past the file's validation is refused too, before anything starts.
    const config = {
      ...parseConfig({ stateDir: "state", guests: [{ name: "vm1", agent: "127.0.0.1:1" }] }, dir),
      listen,
    };
    await assertRejects(() => startService(config), ConfigError, "is not a loopback address");
    for (const made of [config.tokenFile, `${config.stateDir}/alerts.db`]) {
      assertEquals(await Deno.stat(made).then(() => true, () => false), false, made);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

networkTest(
  "serve over TLS off loopback: HTTPS with the token, 401 without, no plain HTTP",
  (network) =>
    withAgent(async (dir, agent) => {
      const tls = await ensureAgentCredentials(`${dir}/tls`, { names: [network.ip] });
      await Deno.writeTextFile(`${dir}/tls/api.pem`, tls.cert);
      await Deno.writeTextFile(`${dir}/tls/api.key`, tls.key);
      const configPath = `${dir}/ids.json`;
      await Deno.writeTextFile(
        configPath,
        JSON.stringify({
          listen: `${network.host}:0`,
          tls: { cert: "tls/api.pem", key: "tls/api.key" },
          stateDir: "state",
          guests: [{ name: "vm1", agent: agent.address, refreshMs: 500 }],
        }),
      );
      await using serve = await spawnReady({
        main: IDS_MAIN,
        permissions: IDS_PERMISSIONS,
        args: ["serve", "--config", configPath],
        ready: READY,
      });
      const [, url, tokenFile] = serve.ready;
      const port = Number(new URL(url).port);
      assertEquals(url, `https://${network.host}:${port}`);
      const token = (await Deno.readTextFile(tokenFile)).trim();
      using client = Deno.createHttpClient({ caCerts: [tls.ca] });
      const get = (path: string, headers: HeadersInit = {}) =>
        fetch(`${url}${path}`, { client, headers });
      const bearer = (value: string) => ({ Authorization: `Bearer ${value}` });

      const listed = await eventually("this test's own process over HTTPS", async () => {
        const res = await get(`/v1/vms/vm1/processes?pid=${Deno.pid}`, bearer(token));
        const body = await res.json();
        return res.status === 200 && body.processes.length ? body : undefined;
      });
      assertEquals(listed.processes.map((p: { pid: number }) => p.pid), [Deno.pid]);

      const refused = await get("/v1/vms");
      assertEquals(refused.status, 401);
      assertEquals((await refused.json()).error.code, "unauthorized");
      assertEquals(await status(get("/v1/vms", bearer(`${token}x`))), 401);
      assertEquals(await status(get("/metrics")), 401);
      const metrics = await get("/metrics", bearer(token));
      assertEquals(metrics.status, 200);
      assert((await metrics.text()).includes('ebpfmon_agent_up{vm="vm1"}'));

      const plain = `http://${network.host}:${port}/healthz`;
      await assertRejects(() => fetch(plain), TypeError);
      // Without the CA the certificate is not trusted: this is TLS with the configured identity.
      await assertRejects(() => fetch(`${url}/healthz`), TypeError);
      assertEquals(await status(get("/healthz")), 200, "the service outlives a plain request");
    }),
);

networkTest(
  "/metrics needs the token off loopback unless metricsAuth is false, and not on loopback",
  (network) =>
    withAgent(async (dir, agent) => {
      const cases: { config: Record<string, unknown>; scheme: string; metrics: number }[] = [
        { config: { listen: "127.0.0.1:0" }, scheme: "http", metrics: 200 },
        { config: { listen: "127.0.0.1:0", metricsAuth: true }, scheme: "http", metrics: 401 },
        {
          config: { listen: `${network.host}:0`, insecureHttp: true },
          scheme: "http",
          metrics: 401,
        },
        {
          config: { listen: `${network.host}:0`, insecureHttp: true, metricsAuth: false },
          scheme: "http",
          metrics: 200,
        },
      ];
      for (const { config, scheme, metrics } of cases) {
        const what = JSON.stringify(config);
        await using service = await startService(
          parseConfig({
            ...config,
            stateDir: "state",
            guests: [{ name: "vm1", agent: agent.address, refreshMs: 60_000 }],
          }, dir),
          { log: () => {} },
        );
        const host = new URL(service.url).hostname;
        assertEquals(new URL(service.url).protocol, `${scheme}:`, what);
        assertEquals(host, String(config.listen).replace(/:0$/, ""), what);
        const auth = { Authorization: `Bearer ${service.token}` };
        assertEquals(await status(fetch(`${service.url}/metrics`)), metrics, what);
        assertEquals(await status(fetch(`${service.url}/metrics`, { headers: auth })), 200, what);
        assertEquals(await status(fetch(`${service.url}/v1/vms`)), 401, what);
        assertEquals(await status(fetch(`${service.url}/v1/vms`, { headers: auth })), 200, what);
      }
    }),
);

networkTest(
  "serve warns that insecureHttp sends the token in clear",
  (network) =>
    withAgent(async (dir, agent) => {
      const listen = `${network.host}:0`;
      const configPath = `${dir}/ids.json`;
      await Deno.writeTextFile(
        configPath,
        JSON.stringify({
          listen,
          insecureHttp: true,
          stateDir: "state",
          guests: [{ name: "vm1", agent: agent.address, refreshMs: 60_000 }],
        }),
      );
      await using serve = await spawnReady({
        main: IDS_MAIN,
        permissions: IDS_PERMISSIONS,
        args: ["serve", "--config", configPath],
        ready: /ebpfmon-ids: (warning: .*)/,
      });
      assertEquals(
        serve.ready[1],
        `warning: the API serves plain HTTP on "${listen}" ("insecureHttp"): its bearer token ` +
          `crosses the network in clear`,
      );
    }),
);
