/**
 * The OpenAPI document the API serves: every route it serves and nothing else, what each needs
 * and answers, and the parameters of the views.
 *
 * @module
 */

import { assert, assertEquals } from "../../tests/support/mod.ts";
import { FakeMonitor, TOKEN } from "./testing/mod.ts";
import { type ApiOptions, createApi } from "./mod.ts";

function setup(options: Partial<ApiOptions> = {}) {
  const app = createApi({ monitor: new FakeMonitor(), token: TOKEN, ...options });
  return { app };
}

Deno.test("GET /openapi.json documents every route the app serves, without a token", async () => {
  const { app } = setup({ metricsAuth: true });
  const response = await app.request("/openapi.json");
  assertEquals(response.status, 200);
  const document = JSON.parse(await response.text());
  assert(/^3\.1\.\d+$/.test(document.openapi), `openapi is ${document.openapi}`);
  assertEquals(document.components.securitySchemes.bearer, { type: "http", scheme: "bearer" });

  const served = new Set(
    app.routes
      .filter((route) => route.method !== "ALL")
      .map((route) => `${route.method} ${route.path.replaceAll(/:(\w+)/g, "{$1}")}`),
  );
  const documented = new Set(
    Object.entries(document.paths).flatMap(([path, item]) =>
      Object.keys(item as object).map((method) => `${method.toUpperCase()} ${path}`)
    ),
  );
  assertEquals([...documented].sort(), [...served].sort());
  assertEquals(served.size, 15);

  for (const [path, item] of Object.entries(document.paths)) {
    for (const operation of Object.values(item as Record<string, Operation>)) {
      assert("200" in operation.responses, `${path} documents its answer`);
      const secured = path.startsWith("/v1/") || path === "/metrics";
      assertEquals(operation.security ?? [], secured ? [{ bearer: [] }] : [], path);
      if (secured) assert("401" in operation.responses, `${path} documents 401`);
    }
  }
  const processes = document.paths["/v1/vms/{vm}/processes"].get as Operation;
  assertEquals(
    processes.parameters.map((parameter) => `${parameter.in} ${parameter.name}`).sort(),
    [
      "path vm",
      "query allow_stale",
      "query cgroup",
      "query comm",
      "query max_age_ms",
      "query pid",
      "query pidns",
      "query ppid",
      "query threads",
      "query uid",
    ],
  );
  assert("422" in processes.responses && "503" in processes.responses);
  const parameters = (path: string) =>
    (document.paths[path].get as Operation).parameters
      .map((parameter) => `${parameter.in} ${parameter.name}`).sort();
  assertEquals(parameters("/v1/vms/{vm}/sockets"), [
    "path vm",
    "query allow_stale",
    "query max_age_ms",
    "query netns",
    "query pid",
    "query port",
    "query protocol",
    "query state",
  ]);
  assertEquals(parameters("/v1/vms/{vm}/modules"), [
    "path vm",
    "query allow_stale",
    "query max_age_ms",
  ]);
  assertEquals(parameters("/v1/vms/{vm}/processes/{pid}/files"), [
    "path pid",
    "path vm",
    "query allow_stale",
    "query max_age_ms",
  ]);
  for (const path of ["/v1/vms/{vm}/sockets", "/v1/vms/{vm}/modules"]) {
    const { responses } = document.paths[path].get as Operation;
    assertEquals(Object.keys(responses).sort(), ["200", "401", "404", "422", "500", "503"], path);
  }
  for (const name of ["Module", "Socket", "OpenFile", "Modules", "Sockets", "Files"]) {
    assert(name in document.components.schemas, `${name} is a component`);
  }
  const process = document.components.schemas.Process.properties;
  for (const field of ["capEffective", "capPermitted", "capInheritable", "initCred"]) {
    assert(field in process, `Process documents ${field}`);
  }
});

Deno.test("GET /openapi.json leaves /metrics unsecured when metricsAuth is false", async () => {
  const { app } = setup({ metricsAuth: false });
  const document = await (await app.request("/openapi.json")).json();
  assertEquals(document.paths["/metrics"].get.security, []);
  assertEquals("401" in document.paths["/metrics"].get.responses, false);
});

interface Operation {
  security?: unknown[];
  parameters: { in: string; name: string }[];
  responses: Record<string, unknown>;
}
