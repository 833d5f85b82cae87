/**
 * The agent checked from outside: a real agent traced by a real tracer (PTRACE_SEIZE on each of
 * its threads, which does not stop them) is found by `agent_integrity`, naming the tracer; once
 * the tracer exits, and on an agent nothing traces, the rule raises nothing.
 */

import { assert, assertEquals, privilegedTest } from "./support/mod.ts";
import { spawnAgent } from "../agent/mod.ts";
import { openSession } from "../ids/client/mod.ts";
import { runCheck } from "../ids/detect/mod.ts";

const TRACER = new URL("./native/tracer.c", import.meta.url).pathname;

async function buildTracer(dir: string): Promise<string> {
  const out = `${dir}/ebpfmon-tracer`;
  const { success, stderr } = await new Deno.Command("clang", {
    args: ["-O2", "-Wall", "-Werror", "-o", out, TRACER],
    stderr: "piped",
  }).output();
  assert(success, `clang: ${new TextDecoder().decode(stderr)}`);
  return out;
}

privilegedTest(
  "agent_integrity names the tracer of a traced agent, and nothing once it is gone",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-trace-" });
    const tracerPath = await buildTracer(state);
    await using agent = await spawnAgent({ stateDir: state });
    using session = await openSession({ agent: agent.address, state });
    const check = async () =>
      (await runCheck(session, "prefetch")).findings.filter((f) => f.rule === "agent_integrity");
    assertEquals(await check(), [], "an agent nothing traces");

    const tracer = new Deno.Command(tracerPath, {
      args: [String(agent.pid)],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const line = (await tracer.stdout.getReader().read()).value;
    assert(/^traced \d+/.test(new TextDecoder().decode(line)), "the tracer attached");
    const traced = await check();
    assertEquals(traced.map((f) => f.subject), [`agent pid ${agent.pid}`]);
    assertEquals(traced[0].evidence.tracer, {
      pid: tracer.pid,
      comm: "ebpfmon-tracer",
      task: (traced[0].evidence.tracer as { task: string }).task,
    });

    await tracer.stdin.close();
    await tracer.status;
    assertEquals(await check(), [], "the tracer is gone");
  },
);
