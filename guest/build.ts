/**
 * Builds the test guest's initramfs for one of the guest kernels ({@linkcode GUEST_KERNELS}: `6.1`,
 * the default, or `6.12`) from Debian packages and the project, into a git-ignored work dir
 * (`.guest/` by default): the downloads in `WORK/cache`, shared, and each kernel's build in
 * `WORK/KERNEL` (`.guest/6.1`, `.guest/6.12`), side by side, so switching kernels rebuilds
 * neither:
 *
 * - busybox (busybox-static) as the shell and tools (`unshare` and `nsenter` among them),
 *   `guest/init.sh` as `/init`, `guest/container.sh` as the init of the container the known
 *   processes run in ({@linkcode GUEST_CONTAINER});
 * - the agent: the Deno binary of `.tools/deno`, the agent's own modules (as `deno info` lists
 *   them), `deno.json`, `deno.lock`, its npm packages (a DENO_DIR filled by `deno cache`) and
 *   the very same `bpf/out/walk.bpf.o` this machine runs (copied, not rebuilt);
 * - the shared libraries `ldd` names for Deno, libbpf.so.1 (libbpf1) and the test processes'
 *   coreutils `sleep` and util-linux `setpriv`, all as installed from Debian's packages;
 * - the stock modules of {@linkcode GUEST_MODULES} with their dependencies, from the kernel's
 *   package (those it builds in left out, xz-compressed ones unpacked), and a modules.dep for
 *   modprobe;
 * - the test rootkit `guest/rootkit/ebpfmon_rk.ko` ({@linkcode GUEST_ROOTKIT}, not loaded at
 *   boot: a test loads it), built here with the compiler the kernel was built with (gcc-12 for
 *   6.1) against the kernel's own header packages (downloaded and unpacked into the cache, never
 *   installed), rebuilt only when its sources change; left out for a kernel whose compiler this
 *   machine does not have (6.12: gcc-14), with the reason in {@linkcode GuestImage.rootkitMissing};
 * - the memory-dirtying workload of migration runs, `guest/dirty.c` as {@linkcode GUEST_DIRTY}
 *   (not started at boot), and the sockets' holder `guest/sockets.c` as
 *   {@linkcode GUEST_SOCKETS} (started at boot), built here with gcc-12 as static binaries.
 *
 * Nothing secret is in it: the pairing credentials are added at boot, as a second archive
 * (guest/boot.ts). The build is skipped when none of its inputs changed.
 *
 * Usage: `deno run -A guest/build.ts [--kernel 6.1|6.12] [--work-dir DIR] [--force]`
 *
 * @module
 */

import { exists, sha256Hex as sha256 } from "../protocol/mod.ts";
import { run, runBytes } from "./_command.ts";
import {
  DEFAULT_KERNEL,
  fetchHeaders,
  fetchKernel,
  GUEST_MODULES,
  type GuestKernel,
  guestKernel,
  moduleClosure,
} from "./kernel.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Where the work dir is unless told otherwise. */
export const DEFAULT_WORK_DIR = `${ROOT}/.guest`;

/** The port the agent listens on inside the guest. */
export const GUEST_AGENT_PORT = 7047;

/** Uids of the known processes the guest starts (`ebpfmon-g0`, `ebpfmon-g1`, ...). */
export const GUEST_PROCESSES = { prefix: "ebpfmon-g", uids: [0, 65534, 65534] } as const;

/** The guest's host name (UTS namespace of the agent and of the guest's own init). */
export const GUEST_HOSTNAME = "ebpfmon-guest";

/**
 * The container of the known processes (guest/container.sh): its host name, and its cgroup, a
 * path of the guest's cgroup v2 hierarchy (mounted at /sys/fs/cgroup).
 */
export const GUEST_CONTAINER = { hostname: "ebpfmon-box", cgroup: "/workload" } as const;

/** Where the test rootkit is in the guest, and the name the kernel knows it by. */
export const GUEST_ROOTKIT = { path: "/opt/rootkit/ebpfmon_rk.ko", name: "ebpfmon_rk" } as const;

/** Where the memory-dirtying workload (guest/dirty.c) is in the guest. */
export const GUEST_DIRTY = "/opt/dirty/ebpfmon-dirty";

/**
 * The holder of TCP and UDP sockets of both families, listening, bound and connected, and of an
 * unlinked file and a pipe (guest/sockets.c): where it is in the guest, and its first port
 * (it uses `port` to `port + 4` of the loopback addresses). /init starts it, outside the
 * container.
 */
export const GUEST_SOCKETS = { path: "/opt/sockets/ebpfmon-sockets", port: 7100 } as const;

/** What {@linkcode buildGuest} produced. */
export interface GuestImage {
  /** The kernel image to boot. */
  kernel: string;
  /** The initramfs (uncompressed newc cpio), without credentials. */
  initrd: string;
  release: string;
  /** The pinned kernel it boots. */
  guestKernel: GuestKernel;
  /** Why the test rootkit is not in the image ({@linkcode GUEST_ROOTKIT}), when it is not. */
  rootkitMissing?: string;
  /** Seconds the build took (0 when it was already up to date). */
  seconds: number;
  /** Seconds building the test rootkit took (0 when it was already up to date). */
  rootkitSeconds: number;
}

/** Options of {@linkcode buildGuest}. */
export interface BuildOptions {
  /** A key of {@linkcode GUEST_KERNELS}. @default {DEFAULT_KERNEL} */
  kernel?: string;
  /** @default {DEFAULT_WORK_DIR} */
  workDir?: string;
  /** Rebuild even when nothing changed. @default false */
  force?: boolean;
  /** Progress lines. @default dropped */
  log?: (line: string) => void;
}

/**
 * Builds (or finds up to date) the guest's kernel and initramfs.
 * @throws {TypeError} when `options.kernel` is not a known kernel.
 * @throws {Error} when a tool or package is missing (./dev setup installs them) or a step fails.
 */
export async function buildGuest(options: BuildOptions = {}): Promise<GuestImage> {
  const started = performance.now();
  const pinned = guestKernel(options.kernel ?? DEFAULT_KERNEL);
  const root = options.workDir ?? DEFAULT_WORK_DIR;
  const work = `${root}/${pinned.key}`;
  const log = options.log ?? (() => {});
  const kernel = await fetchKernel(`${root}/cache`, pinned);
  const rootkit = await buildRootkit(pinned, root, log);
  const inputs = await collectInputs(pinned, kernel.modulesDir);
  if (rootkit.ko) inputs.files.set(GUEST_ROOTKIT.path, rootkit.ko);
  inputs.files.set(GUEST_DIRTY, await buildStatic(root, "dirty", "ebpfmon-dirty", log));
  inputs.files.set(GUEST_SOCKETS.path, await buildStatic(root, "sockets", "ebpfmon-sockets", log));
  const initrd = `${work}/initrd.cpio`;
  const stampFile = `${work}/initrd.stamp`;
  const stamp = JSON.stringify(await fingerprint(pinned, inputs), null, 1);
  const image = {
    kernel: kernel.vmlinuz,
    initrd,
    release: kernel.release,
    guestKernel: pinned,
    rootkitMissing: rootkit.missing,
    rootkitSeconds: rootkit.seconds,
  };
  if (
    !options.force && await exists(initrd) &&
    await Deno.readTextFile(stampFile).catch(() => "") === stamp
  ) {
    return { ...image, seconds: 0 };
  }
  log(`building the guest initramfs (kernel ${kernel.release}) in ${work}`);
  const tree = `${work}/root`;
  await Deno.remove(tree, { recursive: true }).catch(() => {});
  await stage(tree, inputs, `${root}/cache/deno-dir`);
  await run("busybox", ["depmod", "-b", tree, kernel.release]);
  const list = await run("find", [".", "-mindepth", "1"], { cwd: tree });
  const sorted = list.split("\n").filter((s) => s).sort().join("\n") + "\n";
  const partial = `${initrd}.tmp`;
  await run("cpio", ["--quiet", "-o", "-H", "newc", "-R", "0:0", "--reproducible", "-O", partial], {
    cwd: tree,
    stdin: new TextEncoder().encode(sorted),
  });
  await Deno.rename(partial, initrd);
  await Deno.writeTextFile(stampFile, stamp);
  const seconds = (performance.now() - started) / 1000;
  log(`built ${initrd} (${((await Deno.stat(initrd)).size / 2 ** 20).toFixed(0)} MiB)`);
  return { ...image, seconds };
}

const ROOTKIT_SOURCES = ["ebpfmon_rk.c", "Kbuild", "Makefile"];
/** The compiler of the static user-space binaries (guest/*.c), for any kernel. */
const STATIC_CC = "gcc-12";

/**
 * Builds `ebpfmon_rk.ko` for `kernel` in `ROOT/KERNEL/rootkit` from a copy of `guest/rootkit/`,
 * unless the sources, the header packages and the compiler are those of the last build (its
 * stamp); or says why it cannot (no compiler for that kernel here).
 */
async function buildRootkit(
  kernel: GuestKernel,
  root: string,
  log: (line: string) => void,
): Promise<{ ko?: string; missing?: string; seconds: number }> {
  const started = performance.now();
  const { command: cc, unavailable } = kernel.rootkit;
  if (unavailable) return { missing: unavailable, seconds: 0 };
  const headers = await fetchHeaders(`${root}/cache`, kernel);
  const dir = `${root}/${kernel.key}/rootkit`;
  const ko = `${dir}/ebpfmon_rk.ko`;
  const sources: Record<string, string> = {};
  for (const name of ROOTKIT_SOURCES) {
    sources[name] = await sha256(await Deno.readFile(`${ROOT}/guest/rootkit/${name}`));
  }
  const compiler = (await run(cc, ["--version"])).split("\n")[0];
  const stamp = JSON.stringify({ kernel, compiler, sources });
  if (await exists(ko) && await Deno.readTextFile(`${dir}.stamp`).catch(() => "") === stamp) {
    return { ko, seconds: 0 };
  }
  log(`building the test rootkit with ${compiler}`);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  for (const name of ROOTKIT_SOURCES) {
    await Deno.copyFile(`${ROOT}/guest/rootkit/${name}`, `${dir}/${name}`);
  }
  await run("make", ["-C", dir, `KDIR=${headers}`, `CC=${cc}`], {
    env: { LC_ALL: "C" },
  });
  if (!await exists(ko)) throw new Error(`Cannot find "${ko}" after building the test rootkit`);
  await Deno.writeTextFile(`${dir}.stamp`, stamp);
  return { ko, seconds: (performance.now() - started) / 1000 };
}

/**
 * Builds `guest/SOURCE.c` with {@linkcode STATIC_CC} as the static binary `WORK/SOURCE/NAME`,
 * unless it is up to date: the dirtying workload, the sockets' holder.
 */
async function buildStatic(
  work: string,
  source: string,
  name: string,
  log: (line: string) => void,
): Promise<string> {
  const input = `${ROOT}/guest/${source}.c`;
  const out = `${work}/${source}/${name}`;
  const compiler = (await run(STATIC_CC, ["--version"])).split("\n")[0];
  const stamp = JSON.stringify({ compiler, source: await sha256(await Deno.readFile(input)) });
  if (await exists(out) && await Deno.readTextFile(`${out}.stamp`).catch(() => "") === stamp) {
    return out;
  }
  log(`building ${name} with ${compiler}`);
  await Deno.mkdir(`${work}/${source}`, { recursive: true });
  await run(STATIC_CC, ["-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o", out, input]);
  await Deno.writeTextFile(`${out}.stamp`, stamp);
  return out;
}

/** Every file the initramfs is made of: guest path -> host path. */
interface Inputs {
  files: Map<string, string>;
  /** The guest's /etc/ebpfmon-guest.conf. */
  config: string;
}

const LIB_DIR = "/usr/lib/x86_64-linux-gnu";

async function collectInputs(kernel: GuestKernel, modulesDir: string): Promise<Inputs> {
  const files = new Map<string, string>();
  const deno = await Deno.realPath(Deno.execPath());
  files.set("/init", `${ROOT}/guest/init.sh`);
  files.set("/opt/container/init.sh", `${ROOT}/guest/container.sh`);
  files.set("/bin/busybox", await Deno.realPath(await which("busybox")));
  files.set("/opt/deno/deno", deno);
  files.set("/usr/bin/sleep", await Deno.realPath(await which("sleep")));
  files.set("/usr/bin/setpriv", await Deno.realPath(await which("setpriv")));
  const libbpf = await Deno.realPath(`${LIB_DIR}/libbpf.so.1`).catch(() => {
    throw new Error(`Cannot find "${LIB_DIR}/libbpf.so.1" (./dev setup installs libbpf1)`);
  });
  files.set(`${LIB_DIR}/libbpf.so.1`, libbpf);
  for (
    const binary of [deno, files.get("/usr/bin/sleep")!, files.get("/usr/bin/setpriv")!, libbpf]
  ) {
    for (const [name, path] of await sharedLibraries(binary)) {
      const at = name.startsWith("ld-linux") ? `/usr/lib64/${name}` : `${LIB_DIR}/${name}`;
      files.set(at, await Deno.realPath(path));
    }
  }
  for (const path of [...await agentModules(), "deno.json", "deno.lock", "bpf/out/walk.bpf.o"]) {
    files.set(`/opt/ebpfmon/${path}`, `${ROOT}/${path}`);
  }
  const modules = await moduleClosure(modulesDir, GUEST_MODULES);
  for (const path of modules.paths) {
    // Unpacked here (Debian 13 compresses its modules): busybox's modprobe needs no xz then.
    const at = path.replace(/\.ko\.xz$/, ".ko");
    files.set(`/lib/modules/${kernel.release}/${at}`, `${modulesDir}/${path}`);
  }
  for (const extra of ["modules.order", "modules.builtin", "modules.builtin.modinfo"]) {
    files.set(`/lib/modules/${kernel.release}/${extra}`, `${modulesDir}/${extra}`);
  }
  const config = [
    `GUEST_MODULES="${modules.loadable.join(" ")}"`,
    `GUEST_AGENT_PORT=${GUEST_AGENT_PORT}`,
    `GUEST_RING_MB=64`,
    `GUEST_PROCESS_PREFIX=${GUEST_PROCESSES.prefix}`,
    `GUEST_PROCESS_UIDS="${GUEST_PROCESSES.uids.join(" ")}"`,
    `GUEST_HOSTNAME=${GUEST_HOSTNAME}`,
    `GUEST_CONTAINER_HOSTNAME=${GUEST_CONTAINER.hostname}`,
    `GUEST_CONTAINER_CGROUP=${GUEST_CONTAINER.cgroup}`,
    `GUEST_SOCKETS=${GUEST_SOCKETS.path}`,
    `GUEST_SOCKETS_PORT=${GUEST_SOCKETS.port}`,
    "",
  ].join("\n");
  return { files, config };
}

async function which(name: string): Promise<string> {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (await exists(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  throw new Error(`Cannot find "${name}" on PATH (./dev setup installs it)`);
}

/** The libraries `ldd` resolves for `binary`: soname (or loader name) -> path. */
async function sharedLibraries(binary: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const line of (await run("ldd", [binary])).split("\n")) {
    const resolved = /^\s*(\S+) => (\/\S+)/.exec(line);
    const loader = /^\s*(\/\S*ld-linux\S*)/.exec(line);
    if (resolved) out.set(resolved[1], resolved[2]);
    else if (loader) out.set(loader[1].split("/").pop()!, loader[1]);
  }
  return out;
}

/** The project's files the agent imports, relative to the project's root. */
async function agentModules(): Promise<string[]> {
  const info = JSON.parse(
    await run(Deno.execPath(), ["info", "--json", `${ROOT}/agent/main.ts`], { cwd: ROOT }),
  ) as { modules: { specifier: string }[] };
  const prefix = `file://${ROOT}/`;
  return info.modules.map((m) => m.specifier).filter((s) => s.startsWith(prefix))
    .map((s) => decodeURIComponent(s.slice(prefix.length))).sort();
}

async function fingerprint(kernel: GuestKernel, inputs: Inputs): Promise<unknown> {
  const files: Record<string, string> = {};
  for (const [at, path] of [...inputs.files].sort(([a], [b]) => a < b ? -1 : 1)) {
    const info = await Deno.stat(path);
    files[at] = `${path} ${info.size} ${info.mtime?.getTime()}`;
  }
  return { kernel, config: inputs.config, files };
}

async function stage(root: string, inputs: Inputs, denoDir: string): Promise<void> {
  for (const dir of ["proc", "sys", "dev", "tmp", "run", "root", "opt/procs", "usr/bin", "etc"]) {
    await Deno.mkdir(`${root}/${dir}`, { recursive: true });
  }
  await Deno.mkdir(`${root}/usr/lib64`, { recursive: true });
  await Deno.symlink("usr/lib", `${root}/lib`);
  await Deno.symlink("usr/lib64", `${root}/lib64`);
  await Deno.mkdir(`${root}/var/lib/ebpfmon`, { recursive: true, mode: 0o700 });
  // The kernel opens /dev/console for /init before anything is mounted.
  await run("mknod", ["-m", "600", `${root}/dev/console`, "c", "5", "1"]);
  for (const [at, path] of inputs.files) {
    const target = `${root}${at.replace(/^\/lib\//, "/usr/lib/")}`;
    await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
    if (path.endsWith(".xz") && !at.endsWith(".xz")) {
      await Deno.writeFile(target, await runBytes("busybox", ["xz", "-dc", path]));
    } else {
      await Deno.copyFile(path, target);
    }
  }
  await Deno.chmod(`${root}/init`, 0o755);
  await Deno.chmod(`${root}/opt/container/init.sh`, 0o755);
  await Deno.writeTextFile(`${root}/etc/ebpfmon-guest.conf`, inputs.config);
  await Deno.writeTextFile(`${root}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  // The agent's npm packages, fetched once into the work dir's DENO_DIR, then copied.
  await run(Deno.execPath(), ["cache", "--frozen", `${root}/opt/ebpfmon/agent/main.ts`], {
    cwd: `${root}/opt/ebpfmon`,
    env: { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: "1" },
  });
  await Deno.mkdir(`${root}/opt/deno-dir`);
  await run("cp", ["-a", `${denoDir}/npm`, `${root}/opt/deno-dir/npm`]);
}

if (import.meta.main) {
  const args = Deno.args;
  const value = (flag: string) => args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined;
  const image = await buildGuest({
    kernel: value("--kernel"),
    workDir: value("--work-dir"),
    force: args.includes("--force"),
    log: (line) => console.error(line),
  });
  console.error(`kernel ${image.kernel}\ninitrd ${image.initrd}`);
}
