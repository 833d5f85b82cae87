/**
 * The command lines as users run them: `deno run` of each entry point with the permissions its
 * compiled binary has.
 */

import { assert, assertEquals, privilegedTest, runEntry } from "./support/mod.ts";
import { AGENT_PERMISSIONS, spawnAgent } from "../agent/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";

Deno.test("every entry point documents its commands in --help", async () => {
  const cases: [string, readonly string[], string[], string[]][] = [
    ["main.ts", ["-A"], ["--help"], ["agent", "serve", "ps", "local"]],
    ["main.ts", ["-A"], ["ps", "--help"], ["--agent", "--state", "--mode", "--json", "--pin"]],
    ["agent/main.ts", AGENT_PERMISSIONS, ["--help"], ["--listen", "--state", "--ring-mb"]],
    ["ids/main.ts", IDS_PERMISSIONS, ["--help"], ["serve", "ps"]],
    ["ids/main.ts", IDS_PERMISSIONS, ["serve", "--help"], ["--config"]],
  ];
  for (const [main, permissions, args, words] of cases) {
    const { code, stdout } = await runEntry(main, permissions, args);
    assertEquals(code, 0, `${main} ${args.join(" ")}`);
    for (const word of words) {
      assert(stdout.includes(word), `${main} ${args.join(" ")} lacks ${word}`);
    }
  }
});

Deno.test("a bad argument fails with one line that names it", async () => {
  const { code, stderr } = await runEntry("ids/main.ts", IDS_PERMISSIONS, [
    "ps",
    "--agent",
    "nowhere",
  ]);
  assertEquals(code, 1);
  assert(stderr.includes('Invalid --agent "nowhere"'), stderr);
  const config = await runEntry("ids/main.ts", IDS_PERMISSIONS, [
    "serve",
    "--config",
    "/nonexistent.json",
  ]);
  assertEquals(config.code, 1);
  assert(config.stderr.includes('Cannot read configuration "/nonexistent.json"'), config.stderr);
});

Deno.test("deno task compile says in one line when the denort runtime is unavailable", async () => {
  const { code, stderr } = await runEntry(
    "tools/compile.ts",
    ["--allow-read", "--allow-write", "--allow-run", "--allow-env"],
    [],
    { DENORT_BIN: "/nonexistent/denort" },
  );
  assertEquals(code, 1);
  assertEquals(stderr.trim().split("\n").length, 1, stderr);
  assert(stderr.includes('DENORT_BIN="/nonexistent/denort"'), stderr);
});

privilegedTest("ebpfmon-ids ps --json prints processes and stats in both modes", async () => {
  const state = await Deno.makeTempDir({ prefix: "ebpfmon-cli-" });
  await using agent = await spawnAgent({ stateDir: state });
  for (const mode of ["prefetch", "on-demand"]) {
    const { code, stdout, stderr } = await runEntry("ids/main.ts", IDS_PERMISSIONS, [
      "ps",
      "--agent",
      agent.address,
      "--state",
      state,
      "--mode",
      mode,
      "--json",
    ]);
    assertEquals(code, 0, stderr);
    assertEquals(stderr, "", "quiet when not on a terminal");
    const { processes, stats } = JSON.parse(stdout);
    assert(processes.some((p: { pid: number }) => p.pid === agent.pid), "lists the agent");
    for (const key of ["pid", "tgid", "ppid", "comm", "state", "uid", "euid", "gid", "kthread"]) {
      assert(key in processes[0], `process lacks ${key}`);
    }
    assertEquals(stats.mode, mode);
    for (const key of ["roundTrips", "bytes", "ms", "truncated", "programs"]) {
      assert(key in stats, `stats lack ${key}`);
    }
  }
});
