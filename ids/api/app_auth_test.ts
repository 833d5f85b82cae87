/**
 * Who may call the API: `/healthz` and, unless `metricsAuth` says otherwise, nothing else
 * without the bearer token; a wrong token of any form is refused before it reaches the monitor.
 *
 * @module
 */

import { assert, assertEquals } from "../../tests/support/mod.ts";
import { assertError, AUTH, FakeMonitor, fakeProcess, TOKEN } from "./testing/mod.ts";
import { type ApiOptions, createApi } from "./mod.ts";

function setup(options: Partial<ApiOptions> = {}) {
  const monitor = new FakeMonitor().addVm("web-1", [fakeProcess(1, 0, 0, "systemd")]);
  const app = createApi({ monitor, token: TOKEN, clock: monitor.clock, ...options });
  const get = (path: string, init: RequestInit = {}) =>
    app.request(path, { ...init, headers: { ...AUTH, ...init.headers } });
  return { monitor, app, get };
}

Deno.test("GET /healthz answers without a token", async () => {
  const { app } = setup();
  const response = await app.request("/healthz");
  assertEquals(response.status, 200);
  assertEquals(await response.json(), { status: "ok" });
});

Deno.test("GET /metrics serves Prometheus text without a token when metricsAuth is false", async () => {
  const { app, monitor } = setup({ metricsAuth: false });
  const response = await app.request("/metrics");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  assertEquals(await response.text(), monitor.metricsText);
});

Deno.test("GET /metrics needs the token by default and when metricsAuth is set", async () => {
  for (const options of [{}, { metricsAuth: true }]) {
    const { app, get } = setup(options);
    await assertError(await app.request("/metrics"), 401, { code: "unauthorized" });
    await assertError(
      await app.request("/metrics", { headers: { Authorization: "Bearer wrong" } }),
      401,
      { code: "unauthorized" },
    );
    assertEquals((await get("/metrics")).status, 200);
  }
});

Deno.test("every /v1 route refuses a request without a bearer token", async () => {
  const { app } = setup();
  for (
    const [method, path] of [
      ["GET", "/v1/vms"],
      ["GET", "/v1/vms/web-1"],
      ["GET", "/v1/vms/web-1/processes"],
      ["GET", "/v1/vms/web-1/processes/1"],
      ["GET", "/v1/vms/web-1/processes/1/files"],
      ["GET", "/v1/vms/web-1/modules"],
      ["GET", "/v1/vms/web-1/sockets"],
      ["POST", "/v1/vms/web-1/refresh"],
      ["GET", "/v1/vms/web-1/stats"],
      ["GET", "/v1/no-such-route"],
    ]
  ) {
    const response = await app.request(path, { method });
    await assertError(response, 401, { code: "unauthorized" });
    assertEquals(response.headers.get("WWW-Authenticate"), "Bearer");
  }
});

Deno.test("a wrong token, of any length or scheme, is refused", async () => {
  const { app, monitor } = setup();
  const sameLength = TOKEN.slice(0, -1) + "X";
  for (
    const authorization of [
      `Bearer ${sameLength}`,
      `Bearer ${TOKEN}X`,
      "Bearer short",
      `Basic ${btoa(`user:${TOKEN}`)}`,
      `Bearer`,
      TOKEN,
    ]
  ) {
    const response = await app.request("/v1/vms/web-1/refresh", {
      method: "POST",
      headers: { Authorization: authorization },
    });
    await assertError(response, 401, { code: "unauthorized" });
    assertEquals(response.headers.get("WWW-Authenticate"), "Bearer");
  }
  assertEquals(monitor.fetchCount("web-1"), 0, "no refused request reached the monitor");
});

Deno.test("createApi() refuses an empty token", () => {
  let error: unknown;
  try {
    createApi({ monitor: new FakeMonitor(), token: "" });
  } catch (caught) {
    error = caught;
  }
  assert(error instanceof TypeError);
});
