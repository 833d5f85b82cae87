import { assert, assertEquals } from "../../tests/support/mod.ts";
import { createApi } from "../api/mod.ts";
import { assertError, AUTH, FakeMonitor, fakeProcess, TOKEN } from "../api/testing/mod.ts";
import { APP_PATH, MODULES, PUBLIC_PATHS } from "./mod.ts";

function setup() {
  const monitor = new FakeMonitor().addVm("web-1", [fakeProcess(1, 0, 0, "init")]);
  return createApi({ monitor, token: TOKEN, clock: monitor.clock });
}

Deno.test("GET / serves the login form without a token, under a nonce policy", async () => {
  const app = setup();
  const first = await app.request("/");
  assertEquals(first.status, 200);
  assertEquals(first.headers.get("Content-Type"), "text/html; charset=UTF-8");
  const html = await first.text();
  assert(html.includes('<form id="login"'), html);
  const policy = first.headers.get("Content-Security-Policy")!;
  const nonce = /'nonce-([A-Za-z0-9+/=]+)'/.exec(policy)![1];
  assert(html.includes(`<script src="console/login.js" nonce="${nonce}" defer>`), html);
  assert(policy.includes("default-src 'none'") && policy.includes("frame-ancestors 'none'"));
  assertEquals(first.headers.get("X-Content-Type-Options"), "nosniff");
  // A nonce is good for one answer only.
  const second = await app.request("/");
  assert(second.headers.get("Content-Security-Policy") !== policy);
  await second.body?.cancel();
});

Deno.test("the login form's script and style are served without a token", async () => {
  const app = setup();
  const script = await app.request("/console/login.js");
  assertEquals(script.status, 200);
  assertEquals(script.headers.get("Content-Type"), "text/javascript; charset=utf-8");
  assert((await script.text()).includes("sessionStorage"));
  const style = await app.request("/console/login.css");
  assertEquals(style.headers.get("Content-Type"), "text/css; charset=utf-8");
  await style.body?.cancel();
});

Deno.test("the page's modules are served only with the token", async () => {
  const app = setup();
  await assertError(await app.request(APP_PATH), 401, { code: "unauthorized" });
  await assertError(
    await app.request(APP_PATH, { headers: { Authorization: "Bearer wrong" } }),
    401,
    { code: "unauthorized" },
  );
  const response = await app.request(APP_PATH, { headers: AUTH });
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("Cache-Control"), "no-store");
  const bundle = await response.json();
  assertEquals(Object.keys(bundle.modules).sort(), Object.keys(MODULES).sort());
  assert(bundle.style.includes(".process-tree"));
});

Deno.test("every page module but the login script is in the bundle, and nothing else", () => {
  const files = [...Deno.readDirSync(new URL("./page/", import.meta.url))]
    .map((entry) => entry.name)
    .filter((name) => name.endsWith(".js") && name !== "login.js")
    .sort();
  assertEquals(Object.keys(MODULES).sort(), files);
  for (const [name, source] of Object.entries(MODULES)) {
    const text = Deno.readTextFileSync(new URL(`./page/${name}`, import.meta.url));
    assertEquals(source, text, name);
  }
});

Deno.test("nothing else under /console/ is served, with or without the token", async () => {
  const app = setup();
  for (const path of ["/console/app.js", "/console/page/app.js", "/console/", "/index.html"]) {
    await assertError(await app.request(path), 404, { code: "not_found" });
    await assertError(await app.request(path, { headers: AUTH }), 404, { code: "not_found" });
  }
  for (const path of PUBLIC_PATHS) {
    await assertError(await app.request(path, { method: "POST" }), 404, { code: "not_found" });
  }
});
