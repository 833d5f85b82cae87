/**
 * The test command (`deno task test`): format, lint and type checks, then every test, then one
 * summary line `N passed, N failed` (each check counts as one test). Exits non-zero on failure.
 *
 * Arguments are passed to `deno test` (e.g. a file to run only that file).
 *
 * @module
 */

import { DEFAULT_WORK_DIR, fetchKernel } from "../guest/mod.ts";

const root = new URL("..", import.meta.url);
const deno = Deno.execPath();

async function step(name: string, args: string[]): Promise<boolean> {
  console.error(`\n== ${name}: deno ${args.join(" ")}`);
  const { code } = await new Deno.Command(deno, {
    args,
    cwd: root,
    stdout: "inherit",
    stderr: "inherit",
  })
    .output();
  console.error(`== ${name}: ${code === 0 ? "ok" : `failed (exit ${code})`}`);
  return code === 0;
}

function count(xml: string, pattern: RegExp): number {
  return (xml.match(pattern) ?? []).length;
}

const results = { passed: 0, failed: 0, skipped: 0 };
for (
  const [name, args] of [
    ["format", ["fmt", "--check"]],
    ["lint", ["lint"]],
    ["type check", ["check", "."]],
  ] as const
) {
  if (await step(name, [...args])) results.passed++;
  else results.failed++;
}

// Unit tests of the views this machine's kernel lacks (modules, kernel pointers, ftrace) read
// the Debian test guest's kernel BTF: fetch its package (pinned, once) before they run.
try {
  await fetchKernel(`${DEFAULT_WORK_DIR}/cache`);
  console.error("\n== guest kernel: ok");
  results.passed++;
} catch (error) {
  console.error(`\n== guest kernel: failed (${(error as Error).message})`);
  results.failed++;
}

const junit = await Deno.makeTempFile({ suffix: ".xml" });
try {
  const ok = await step("tests", ["test", "-A", `--junit-path=${junit}`, ...Deno.args]);
  const xml = await Deno.readTextFile(junit).catch(() => "");
  const cases = count(xml, /<testcase\b/g);
  const failures = count(xml, /<failure\b/g);
  const skipped = count(xml, /<skipped\b/g);
  results.passed += cases - failures - skipped;
  results.failed += failures;
  results.skipped += skipped;
  if (!ok && failures === 0) results.failed++; // the run itself failed (e.g. a module did not load)
} finally {
  await Deno.remove(junit).catch(() => {});
}

if (results.skipped) console.log(`${results.skipped} skipped`);
console.log(`${results.passed} passed, ${results.failed} failed`);
Deno.exit(results.failed ? 1 : 0);
