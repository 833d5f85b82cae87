import { spawnAgent } from "../ids/agent_process.ts";
import { AgentClient } from "../ids/client.ts";
import { ensureIdsCredentials } from "../protocol/credentials.ts";
await using agent = await spawnAgent({ stateDir: "/tmp/st1" });
const credentials = await ensureIdsCredentials("/tmp/st1");
using client = await AgentClient.connect({
  hostname: agent.hostname,
  port: agent.port,
  credentials,
});
const a = client.info.anchor & ~0xfffn;
for (let k = 0; k < 3; k++) {
  const t = performance.now();
  for (let i = 0; i < 200; i++) await client.read(a, 4096);
  console.log("read avg ms", (performance.now() - t) / 200);
}
for (let k = 0; k < 3; k++) {
  const t = performance.now();
  let n = 0;
  await client.prefetch(1, { maxObjects: 1 << 20, maxBytes: 256 << 20 }, () => n++);
  console.log("prefetch ms", performance.now() - t, n);
}
