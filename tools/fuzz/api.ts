/**
 * Fuzz target of the REST API: requests with random methods, paths, queries, tokens and bodies
 * against the real Hono app over a fake monitor. Never a 500, never an exception.
 *
 * @module
 */

import fc from "fast-check";
import { createApi } from "../../ids/api/mod.ts";
import { FakeMonitor, fakeProcess } from "../../ids/api/testing/mod.ts";
import { lazy } from "./_inputs.ts";
import { FuzzPropertyError, type FuzzTarget } from "./types.ts";

const TOKEN = "fuzz-token-fuzz-token";
const PATHS = [
  "/healthz",
  "/metrics",
  "/openapi.json",
  "/v1/vms",
  "/v1/vms/{vm}",
  "/v1/vms/{vm}/processes",
  "/v1/vms/{vm}/processes/{pid}",
  "/v1/vms/{vm}/processes/{pid}/files",
  "/v1/vms/{vm}/modules",
  "/v1/vms/{vm}/sockets",
  "/v1/vms/{vm}/refresh",
  "/v1/vms/{vm}/stats",
  "/v1/vms/{vm}/alerts",
  "/v1/alerts",
];
const QUERY_KEYS = [
  "pid",
  "ppid",
  "uid",
  "comm",
  "max_age_ms",
  "allow_stale",
  "protocol",
  "state",
  "port",
  "since",
  "rule",
  "severity",
  "limit",
  "vm",
  "last_event_id",
  "x",
];

const segment = fc.oneof(
  fc.constantFrom(
    "web-1",
    "db-1",
    "nope",
    "1",
    "0",
    "-1",
    "400",
    "4294967296",
    "1e309",
    "%00",
    "..",
    "%ff",
    "",
  ),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
  fc.integer().map(String),
);
const value = fc.oneof(
  fc.constantFrom(
    "",
    "0",
    "-1",
    "1",
    "true",
    "false",
    "NaN",
    "1e309",
    "9007199254740993",
    "tcp",
    "listen",
    "high",
    "open",
    "%",
  ),
  fc.integer().map(String),
  fc.double().map(String),
  fc.string({ maxLength: 16 }),
);

interface ApiRequest {
  method: string;
  path: string;
  query: [string, string][];
  auth: "good" | "none" | "bad";
  body?: string;
  lastEventId?: string;
}

const apiRequest: fc.Arbitrary<ApiRequest> = fc.record({
  method: fc.constantFrom("GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"),
  path: fc.oneof(
    {
      weight: 6,
      arbitrary: fc.tuple(fc.constantFrom(...PATHS), segment, segment).map(
        ([p, vm, pid]) => p.replace("{vm}", vm).replace("{pid}", pid),
      ),
    },
    { weight: 1, arbitrary: fc.array(segment, { maxLength: 5 }).map((s) => "/" + s.join("/")) },
  ),
  query: fc.array(fc.tuple(fc.constantFrom(...QUERY_KEYS), value), { maxLength: 4 }),
  auth: fc.constantFrom("good" as const, "good" as const, "none" as const, "bad" as const),
  body: fc.option(fc.oneof(fc.string({ maxLength: 64 }), fc.json({ maxDepth: 2 }))),
}).map((r) => ({ ...r, body: r.body ?? undefined }));

const apiApp = lazy(() => {
  const monitor = new FakeMonitor()
    .addVm("web-1", [fakeProcess(1, 0, 0, "systemd"), fakeProcess(400, 1, 0, "sshd")])
    .addVm("db-1", [fakeProcess(1, 0, 0, "init")]);
  monitor.setDown("db-1", true);
  const errors: unknown[] = [];
  const app = createApi({
    monitor,
    token: TOKEN,
    clock: monitor.clock,
    onError: (error) => errors.push(error),
    alertStream: { heartbeatMs: 60_000 },
  });
  return { app, errors };
});

/** Random requests; a 5xx but the 503 of a guest whose agent is down counts as a crash. */
export const api: FuzzTarget<ApiRequest> = {
  name: "api",
  description: "requests with random paths, queries and bodies against the Hono app",
  arbitrary: apiRequest,
  async run(r) {
    const { app, errors } = apiApp();
    const query = new URLSearchParams(r.query).toString();
    const headers: Record<string, string> = {};
    if (r.auth !== "none") headers.Authorization = `Bearer ${r.auth === "good" ? TOKEN : "x"}`;
    const canHaveBody = r.method !== "GET" && r.method !== "HEAD";
    if (r.body !== undefined && canHaveBody) headers["Content-Type"] = "application/json";
    const url = `http://localhost${r.path}${query ? `?${query}` : ""}`;
    let response: Response;
    try {
      response = await app.request(url, {
        method: r.method,
        headers,
        body: canHaveBody ? r.body : undefined,
      });
    } catch (error) {
      if (error instanceof TypeError && String(error.message).includes("Invalid URL")) return;
      throw error;
    }
    if (response.headers.get("Content-Type")?.startsWith("text/event-stream")) {
      await response.body?.cancel();
    } else {
      await response.arrayBuffer();
    }
    const cause = errors.splice(0);
    // 503 is the documented answer for a guest whose agent is down (db-1); any other 5xx is not.
    if (response.status >= 500 && response.status !== 503) {
      throw new FuzzPropertyError(
        `${r.method} ${url} answered ${response.status}${cause.length ? `: ${cause[0]}` : ""}`,
      );
    }
  },
  expected: () => false,
};
