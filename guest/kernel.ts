/**
 * The guest's kernels: Debian's stock kernels, downloaded as packages from Debian's registry
 * (never installed on the host), unpacked once into the cache dir, and the stock modules the
 * guest loads, with everything they depend on; and each kernel's header packages, downloaded and
 * unpacked the same way, to build an out-of-tree module against.
 *
 * Two kernels, keyed by their `major.minor` ({@linkcode GUEST_KERNELS}): Debian 12's 6.1 (the
 * default) and Debian 13's 6.12. Debian 12's packages come through this machine's own apt
 * sources; Debian 13's through a private apt configuration in the cache dir, used for those
 * downloads only (a trixie entry in the machine's sources would upgrade the whole system).
 *
 * @module
 */

import { run } from "./_command.ts";
import { exists } from "../protocol/mod.ts";

/** The Debian suites a guest kernel comes from. */
export type KernelSuite = "bookworm" | "trixie";

/** The compiler of a kernel's out-of-tree modules (the test rootkit), and whether it is here. */
export interface RootkitCompiler {
  /** The compiler the kernel was built with (its headers' CONFIG_CC_VERSION_TEXT). */
  command: string;
  /** Why this machine cannot build with it, when it cannot: the rootkit is left out. */
  unavailable?: string;
}

/** One guest kernel, pinned. */
export interface GuestKernel {
  /** Its key in {@linkcode GUEST_KERNELS} (`--kernel`). */
  key: string;
  /** Who ships it, for messages: e.g. "Debian 12". */
  distribution: string;
  suite: KernelSuite;
  /** The kernel image package. Its kernel has BTF, loadable modules and kallsyms data symbols. */
  package: string;
  version: string;
  /** `uname -r` of the kernel, its `lib/modules` dir and the `vmlinuz-` suffix. */
  release: string;
  /**
   * The packages an out-of-tree module is built against, all at `version`: the configured
   * headers, the headers they include, and Kbuild's tools.
   */
  headers: readonly string[];
  /** The compiler the test rootkit is built with for this kernel. */
  rootkit: RootkitCompiler;
}

/**
 * The guest kernels. Each is what that release's `linux-image-amd64` depended on when pinned:
 *
 * - `6.1`: Debian 12 (bookworm), built with gcc-12, which Debian 12 ships;
 * - `6.12`: Debian 13 (trixie), built with gcc-14, which neither bookworm nor bookworm-backports
 *   ships: the test rootkit is not built for it.
 */
export const GUEST_KERNELS = {
  "6.1": {
    key: "6.1",
    distribution: "Debian 12",
    suite: "bookworm",
    package: "linux-image-6.1.0-50-amd64",
    version: "6.1.176-1",
    release: "6.1.0-50-amd64",
    headers: ["linux-headers-6.1.0-50-amd64", "linux-headers-6.1.0-50-common", "linux-kbuild-6.1"],
    rootkit: { command: "gcc-12" },
  },
  "6.12": {
    key: "6.12",
    distribution: "Debian 13",
    suite: "trixie",
    package: "linux-image-6.12.117+deb13-amd64",
    version: "6.12.117-1",
    release: "6.12.117+deb13-amd64",
    headers: [
      "linux-headers-6.12.117+deb13-amd64",
      "linux-headers-6.12.117+deb13-common",
      "linux-kbuild-6.12.117+deb13",
    ],
    rootkit: {
      command: "gcc-14",
      unavailable: "Debian 13 built 6.12 with gcc-14, which Debian 12 (bookworm, " +
        "bookworm-backports) does not ship",
    },
  },
} as const satisfies Record<string, GuestKernel>;

/** A key of {@linkcode GUEST_KERNELS}. */
export type KernelKey = keyof typeof GUEST_KERNELS;

/** The kernel booted unless told otherwise. */
export const DEFAULT_KERNEL: KernelKey = "6.1";

/** The default kernel, {@linkcode DEFAULT_KERNEL}'s entry. */
export const GUEST_KERNEL: GuestKernel = GUEST_KERNELS[DEFAULT_KERNEL];

/**
 * The kernel of `key` (`--kernel`).
 * @throws {TypeError} naming the known keys when `key` is not one.
 */
export function guestKernel(key: string): GuestKernel {
  if (!Object.hasOwn(GUEST_KERNELS, key)) {
    throw new TypeError(
      `Unknown guest kernel "${key}" (expected ${Object.keys(GUEST_KERNELS).join(" or ")})`,
    );
  }
  return GUEST_KERNELS[key as KernelKey];
}

/**
 * Stock modules the guest loads with modprobe, in order: the network card's driver (QEMU's
 * virtio-net, which pulls in virtio, virtio_ring, failover...) and a few that load anywhere.
 */
export const GUEST_MODULES: readonly string[] = [
  "virtio_pci",
  "virtio_net",
  "dummy",
  "loop",
  "crc32_generic",
];

/** The unpacked kernel package. */
export interface KernelFiles {
  release: string;
  /** The compressed kernel image QEMU boots. */
  vmlinuz: string;
  /** `lib/modules/RELEASE` of the package, with a modules.dep. */
  modulesDir: string;
}

/**
 * Downloads (`apt-get download`) and unpacks the kernel package of `kernel` into `cacheDir`,
 * once: a later call finds it there.
 * @throws {Error} when the package cannot be downloaded (even after `apt-get update`) or unpacked.
 */
export async function fetchKernel(
  cacheDir: string,
  kernel: GuestKernel = GUEST_KERNEL,
): Promise<KernelFiles> {
  const { package: name, version, release } = kernel;
  const dir = `${cacheDir}/${name}_${version}`;
  const done = `${dir}/.unpacked`;
  if (!await exists(done)) {
    const deb = await downloadPackage(cacheDir, kernel.suite, name, version);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    await run("dpkg-deb", ["--extract", deb, dir]);
    // The package ships no modules.dep (its postinst makes one); busybox's depmod writes it.
    await run("busybox", ["depmod", "-b", await modulesBase(dir, release), release]);
    await Deno.writeTextFile(done, `${name}=${version}\n`);
  }
  return {
    release,
    vmlinuz: `${dir}/boot/vmlinuz-${release}`,
    modulesDir: `${await modulesBase(dir, release)}/lib/modules/${release}`,
  };
}

/**
 * Where `lib/modules/RELEASE` is in the unpacked package `dir`: under `usr/` in Debian 13's
 * (merged /usr), at the top in Debian 12's.
 * @throws {Error} when the package has neither.
 */
async function modulesBase(dir: string, release: string): Promise<string> {
  for (const base of [dir, `${dir}/usr`]) {
    if (await exists(`${base}/lib/modules/${release}`)) return base;
  }
  throw new Error(`Cannot find lib/modules/${release} in the kernel package unpacked in "${dir}"`);
}

/**
 * Downloads the header packages of `kernel` and unpacks them together into one tree in
 * `cacheDir`, once. Debian's configured headers include the common ones by absolute path
 * (`/usr/src/linux-headers-...-common/Makefile`); the unpacked copy is pointed at its own tree,
 * so nothing is installed on this machine.
 * @returns the directory to build against (`make -C DIR M=...`).
 * @throws {Error} when a package cannot be downloaded or its layout is not as expected.
 */
export async function fetchHeaders(
  cacheDir: string,
  kernel: GuestKernel = GUEST_KERNEL,
): Promise<string> {
  const dir = `${cacheDir}/linux-headers_${kernel.version}`;
  const build = `${dir}/usr/src/linux-headers-${kernel.release}`;
  const done = `${dir}/.unpacked`;
  if (await exists(done)) return build;
  const debs = [];
  for (const name of kernel.headers) {
    debs.push(await downloadPackage(cacheDir, kernel.suite, name, kernel.version));
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  for (const deb of debs) await run("dpkg-deb", ["--extract", deb, dir]);
  const makefile = `${build}/Makefile`;
  const text = await Deno.readTextFile(makefile);
  const include = /^include (\/usr\/src\/\S+\/Makefile)$/m.exec(text);
  if (!include || !await exists(`${dir}${include[1]}`)) {
    throw new Error(`Cannot build against "${build}": its Makefile includes no unpacked headers`);
  }
  await Deno.writeTextFile(makefile, text.replace(include[0], `include ${dir}${include[1]}`));
  await Deno.writeTextFile(done, debs.map((d) => d.split("/").pop()).join("\n") + "\n");
  return build;
}

/** The suite whose packages this machine's own apt sources list (Debian 12). */
const HOST_SUITE: KernelSuite = "bookworm";

/**
 * The `.deb` of `name=version` from `suite` in `cacheDir`, downloaded there (`apt-get download`,
 * never installed) unless it already is.
 */
async function downloadPackage(
  cacheDir: string,
  suite: KernelSuite,
  name: string,
  version: string,
): Promise<string> {
  await Deno.mkdir(cacheDir, { recursive: true });
  const prefix = `${name}_${version.replace(/:/g, "%3a")}_`;
  const cached = [...Deno.readDirSync(cacheDir)].find((e) =>
    e.name.startsWith(prefix) && e.name.endsWith(".deb")
  );
  if (cached) return `${cacheDir}/${cached.name}`;
  const apt = suite === HOST_SUITE ? [] : await privateApt(cacheDir, suite);
  const partial = `${cacheDir}/download`;
  await Deno.remove(partial, { recursive: true }).catch(() => {});
  await Deno.mkdir(partial);
  try {
    await run("apt-get", [...apt, "download", `${name}=${version}`], { cwd: partial });
  } catch {
    // Package lists never fetched on this machine, or older than the pin: as ./dev does.
    await run("apt-get", [...apt, "update"]);
    await run("apt-get", [...apt, "download", `${name}=${version}`], { cwd: partial });
  }
  const [file] = [...Deno.readDirSync(partial)].filter((e) => e.name.endsWith(".deb"));
  if (!file) throw new Error(`Cannot find the downloaded package "${name}" in "${partial}"`);
  await Deno.rename(`${partial}/${file.name}`, `${cacheDir}/${file.name}`);
  await Deno.remove(partial, { recursive: true });
  return `${cacheDir}/${file.name}`;
}

/**
 * apt-get options that make it read `suite` alone, from a private configuration in
 * `CACHE/apt-SUITE` (its sources list, package lists and cache), and nothing of the machine's
 * own sources: for downloads only. The suite is fetched from the archive, and checked with the
 * keyring, of this machine's own {@linkcode HOST_SUITE} entry.
 * @throws {Error} when the machine's sources have no such entry.
 */
async function privateApt(cacheDir: string, suite: KernelSuite): Promise<string[]> {
  const dir = `${cacheDir}/apt-${suite}`;
  const host = await hostArchive();
  await Deno.mkdir(`${dir}/lists/partial`, { recursive: true });
  await Deno.mkdir(`${dir}/cache/archives/partial`, { recursive: true });
  const signed = host.signedBy ? ` [signed-by=${host.signedBy}]` : "";
  await Deno.writeTextFile(`${dir}/sources.list`, `deb${signed} ${host.uri} ${suite} main\n`);
  return [
    "-o",
    `Dir::Etc::sourcelist=${dir}/sources.list`,
    "-o",
    "Dir::Etc::sourceparts=-",
    "-o",
    `Dir::State::Lists=${dir}/lists`,
    "-o",
    `Dir::Cache=${dir}/cache`,
    "-o",
    "APT::Get::List-Cleanup=0",
  ];
}

/** The archive of this machine's {@linkcode HOST_SUITE} entry, and the keyring it is signed by. */
async function hostArchive(): Promise<{ uri: string; signedBy?: string }> {
  const files = ["/etc/apt/sources.list"];
  for (const e of await Array.fromAsync(Deno.readDir("/etc/apt/sources.list.d"))) {
    if (e.name.endsWith(".list") || e.name.endsWith(".sources")) {
      files.push(`/etc/apt/sources.list.d/${e.name}`);
    }
  }
  for (const file of files.sort()) {
    const found = archiveIn(file, await Deno.readTextFile(file).catch(() => ""));
    if (found) return found;
  }
  throw new Error(`Cannot find Debian's ${HOST_SUITE} suite in this machine's apt sources`);
}

/**
 * The archive and keyring of the first entry for {@linkcode HOST_SUITE} in the apt sources
 * file `file` (deb822 when it ends in `.sources`, one-line style otherwise) whose text is `text`.
 */
export function archiveIn(
  file: string,
  text: string,
): { uri: string; signedBy?: string } | undefined {
  return file.endsWith(".sources") ? fromDeb822(text) : fromOneLine(text);
}

/** The first `Types: deb` stanza of a deb822 sources file that lists the host suite. */
function fromDeb822(text: string): { uri: string; signedBy?: string } | undefined {
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (key: string) =>
      new RegExp(`^${key}:[ \\t]*(.*)$`, "mi").exec(stanza)?.[1].trim().split(/\s+/) ?? [];
    const [uri] = field("URIs");
    if (field("Types").includes("deb") && field("Suites").includes(HOST_SUITE) && uri) {
      return { uri, signedBy: field("Signed-By")[0] };
    }
  }
  return undefined;
}

/** The first `deb [options] URI SUITE ...` line of a one-line-style sources file for the host suite. */
function fromOneLine(text: string): { uri: string; signedBy?: string } | undefined {
  for (const line of text.split("\n")) {
    const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s/.exec(line.trim() + " ");
    if (m && m[3] === HOST_SUITE) {
      return { uri: m[2], signedBy: /signed-by=(\S+)/.exec(m[1] ?? "")?.[1] };
    }
  }
  return undefined;
}

/** What {@linkcode moduleClosure} found of a list of modules. */
export interface ModuleClosure {
  /** The module files of the loadable ones and of all they depend on, relative to the dir. */
  paths: string[];
  /** The names asked for that this kernel has loadable (to modprobe), in their order. */
  loadable: string[];
  /** The names asked for that are built into this kernel (modules.builtin): nothing to load. */
  builtin: string[];
}

/**
 * The module files (paths relative to `modulesDir`) of `names` and of everything they depend
 * on, from the modules.dep of {@linkcode fetchKernel}; a name built into the kernel (Debian 13
 * builds virtio_pci in) is set apart.
 * @throws {Error} naming a module the package has neither loadable nor built in.
 */
export async function moduleClosure(
  modulesDir: string,
  names: readonly string[],
): Promise<ModuleClosure> {
  const deps = new Map<string, { path: string; needs: string[] }>();
  const text = await Deno.readTextFile(`${modulesDir}/modules.dep`);
  for (const line of text.split("\n")) {
    const [path, rest] = line.split(":");
    if (!rest && rest !== "") continue;
    deps.set(moduleName(path), { path, needs: rest.trim().split(/\s+/).filter((s) => s) });
  }
  const builtIn = new Set(
    (await Deno.readTextFile(`${modulesDir}/modules.builtin`)).split("\n").filter((l) => l)
      .map(moduleName),
  );
  const paths = new Set<string>();
  const visit = (name: string) => {
    const entry = deps.get(name.replaceAll("-", "_"));
    if (!entry) throw new Error(`Cannot find module "${name}" in the guest kernel's modules.dep`);
    if (paths.has(entry.path)) return;
    paths.add(entry.path);
    for (const need of entry.needs) visit(moduleName(need));
  };
  const builtin = names.filter((name) => builtIn.has(moduleName(name)));
  const loadable = names.filter((name) => !builtIn.has(moduleName(name)));
  loadable.forEach(visit);
  return { paths: [...paths].sort(), loadable, builtin };
}

function moduleName(path: string): string {
  return path.split("/").pop()!.replace(/\.ko(\.\w+)?$/, "").replaceAll("-", "_");
}
