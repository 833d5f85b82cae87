/**
 * `deno task compile`: builds `dist/ebpfmon-agent` and `dist/ebpfmon-ids` with `deno compile`,
 * each embedding `bpf/out/walk.bpf.o` (the agent's default walker; the object the IDS loads) and
 * with the same permissions it has under `deno run`.
 *
 * `deno compile` needs Deno's `denort` runtime of the same version. It is taken from
 * `DENORT_BIN` when set; otherwise Deno downloads it, which needs access to Deno's download
 * host. When the runtime is unavailable this says so in one line and exits with status 1.
 *
 * @module
 */

import { AGENT_PERMISSIONS } from "../agent/mod.ts";
import { IDS_PERMISSIONS } from "../ids/cli/mod.ts";
import { buildBpf } from "../bpf/mod.ts";

const root = new URL("..", import.meta.url);

const TARGETS = [
  {
    output: "dist/ebpfmon-agent",
    main: "agent/main.ts",
    permissions: AGENT_PERMISSIONS,
    include: ["bpf/out/walk.bpf.o"],
  },
  // The IDS sends its own walker object to every agent (LOAD).
  {
    output: "dist/ebpfmon-ids",
    main: "ids/main.ts",
    permissions: IDS_PERMISSIONS,
    include: ["bpf/out/walk.bpf.o"],
  },
] as const;

function fail(message: string): never {
  console.error(`compile: ${message}`);
  Deno.exit(1);
}

async function compile(target: typeof TARGETS[number]): Promise<void> {
  const args = [
    "compile",
    ...target.permissions,
    ...target.include.flatMap((path) => ["--include", path]),
    "--output",
    target.output,
    target.main,
  ];
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (code === 0) return;
  const text = new TextDecoder().decode(stderr);
  if (/denort|dl\.deno\.land|dns error|failed to lookup address/i.test(text)) {
    const from = Deno.env.get("DENORT_BIN");
    fail(
      from
        ? `Cannot compile "${target.output}": DENORT_BIN="${from}" is not a usable denort ${Deno.version.deno} runtime`
        : `Cannot compile "${target.output}": the denort ${Deno.version.deno} runtime is unavailable (Deno's download host is unreachable); set DENORT_BIN to a denort binary of that version`,
    );
  }
  console.error(text.trimEnd());
  fail(`Cannot compile "${target.output}": deno compile exited with status ${code}`);
}

if (import.meta.main) {
  const denort = Deno.env.get("DENORT_BIN");
  if (denort) {
    const info = await Deno.stat(denort).catch(() => undefined);
    if (!info?.isFile) fail(`Cannot compile: DENORT_BIN="${denort}" is not a file`);
  }
  await buildBpf();
  await Deno.mkdir(new URL("dist/", root), { recursive: true });
  for (const target of TARGETS) {
    await compile(target);
    console.error(`built ${target.output}`);
  }
}
