/**
 * Compiles every `bpf/*.bpf.c` into `bpf/out/*.bpf.o` with clang's BPF target, then strips
 * DWARF (the BTF that CO-RE needs stays). An object newer than its sources is left alone.
 *
 * Usage: `deno task build:bpf [--force]`
 *
 * @module
 */

const here = new URL(".", import.meta.url);
const out = new URL("out/", here);

const CFLAGS = ["-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wall", "-Werror"];

async function mtime(url: URL): Promise<number> {
  try {
    return (await Deno.stat(url)).mtime?.getTime() ?? 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
}

async function run(cmd: string, args: string[]): Promise<void> {
  let result;
  try {
    result = await new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot run "${cmd}": not installed (./dev setup installs it)`);
    }
    throw error;
  }
  if (!result.success) {
    throw new Error(`"${cmd} ${args.join(" ")}" failed with code ${result.code}`);
  }
}

/** Builds the objects that are missing or older than their sources; returns the paths built. */
export async function buildBpf(options: { force?: boolean } = {}): Promise<string[]> {
  await Deno.mkdir(out, { recursive: true });
  const headers: URL[] = [];
  const sources: URL[] = [];
  for await (const entry of Deno.readDir(here)) {
    if (entry.name.endsWith(".bpf.c")) sources.push(new URL(entry.name, here));
    else if (entry.name.endsWith(".h")) headers.push(new URL(entry.name, here));
  }
  const newestHeader = Math.max(0, ...await Promise.all(headers.map(mtime)));
  const built: string[] = [];
  for (const source of sources.sort()) {
    const name = source.pathname.split("/").pop()!.replace(/\.c$/, ".o");
    const object = new URL(name, out);
    const newest = Math.max(newestHeader, await mtime(source));
    if (!options.force && await mtime(object) > newest) continue;
    const tmp = new URL(`${name}.tmp`, out);
    await run("clang", [...CFLAGS, "-I", here.pathname, "-c", source.pathname, "-o", tmp.pathname]);
    await run("llvm-strip", ["-g", tmp.pathname]);
    await Deno.rename(tmp, object);
    built.push(object.pathname);
  }
  return built;
}

if (import.meta.main) {
  const built = await buildBpf({ force: Deno.args.includes("--force") });
  for (const path of built) console.error(`built ${path}`);
}
