// In process, a response carrying a 110 KB string body and a custom header costs Deno an eager
// copy into a native response that app.request() never sends; served over HTTP (wrk against
// Deno.serve, as bench/api_load.ts does), the same route answers far more requests per second.
import { FakeMonitor, fakeProcess } from "./testing/mod.ts";
import { createApi } from "./mod.ts";

const TOKEN = "bench-token";
const processes = Array.from(
  { length: 500 },
  (_, i) => fakeProcess(i + 1, i === 0 ? 0 : 1, i % 3 === 0 ? 0 : 1000, `worker-${i}`),
);
const monitor = new FakeMonitor().addVm("web-1", processes);
const app = createApi({ monitor, token: TOKEN, clock: monitor.clock });
const init = { headers: { Authorization: `Bearer ${TOKEN}` } };
await monitor.refresh("web-1");

Deno.bench("GET /v1/vms/{vm}/processes of 500 processes, unfiltered, from cache", {
  baseline: true,
}, async () => {
  await app.request("/v1/vms/web-1/processes", init);
});

Deno.bench("GET /v1/vms/{vm}/processes of 500 processes, unfiltered, body read", async () => {
  await (await app.request("/v1/vms/web-1/processes", init)).text();
});

Deno.bench("GET /v1/vms/{vm}/processes of 500 processes, filtered by uid", async () => {
  await app.request("/v1/vms/web-1/processes?uid=1000", init);
});

Deno.bench("GET /healthz, for the cost of routing alone", async () => {
  await (await app.request("/healthz")).arrayBuffer();
});
