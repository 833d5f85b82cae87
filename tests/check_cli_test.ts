/**
 * `check` as scripts and cron run it (`ids/main.ts check`, with the compiled binary's
 * permissions): JSON on stdout, exit status 1 when a finding is medium or worse, 0 when the
 * configuration's allow-lists cover everything found.
 */

import { assert, assertEquals, privilegedTest, runIds } from "./support/mod.ts";
import { loadTestProgram, unloadTestProgram } from "./bpf_fixture.ts";
import { spawnAgent } from "../agent/mod.ts";
import type { Finding } from "../ids/detect/mod.ts";

async function check(args: string[]): Promise<{ code: number; findings: Finding[] }> {
  const { code, stdout: text, stderr } = await runIds(["check", "--json", ...args]);
  assert(text.trim().startsWith("{"), `check printed: ${text}${stderr}`);
  const out = JSON.parse(text);
  assert(Array.isArray(out.findings) && typeof out.stats.roundTrips === "number", text);
  return { code, findings: out.findings };
}

privilegedTest(
  "check exits 1 on a BPF program the test loaded, 0 once ids.json allows it",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-check-" });
    const pin = `/sys/fs/bpf/ebpfmon-check-${Deno.pid}`;
    await using agent = await spawnAgent({ stateDir: state });
    const target = ["--agent", agent.address, "--state", state];
    let loaded: number | undefined;
    try {
      // What this machine has loaded before the test (its own boot-time programs), allowed by tag.
      const before = await check(target);
      const known = before.findings.filter((f) => f.rule === "bpf_program").map((f) =>
        String(f.evidence.tag)
      );
      const truth = await loadTestProgram(state, pin);
      loaded = truth.id;
      const config = (allow: string[]) => {
        const path = `${state}/ids-${allow.length}.json`;
        Deno.writeTextFileSync(
          path,
          JSON.stringify({
            stateDir: state,
            rules: { bpf_program: { allow } },
            guests: [{ name: "local", agent: agent.address }],
          }),
        );
        return path;
      };
      const found = await check([...target, "--config", config(known)]);
      assertEquals(found.code, 1, "a medium finding fails the check");
      assertEquals(
        found.findings.map((f) => [f.rule, f.severity, f.evidence.tag]),
        [["bpf_program", "medium", truth.tag]],
      );
      const allowed = await check([...target, "--config", config([...known, truth.name])]);
      assertEquals([allowed.code, allowed.findings], [0, []], "allowed by name: a clean check");
    } finally {
      if (loaded !== undefined) await unloadTestProgram(pin, loaded);
    }
  },
);
