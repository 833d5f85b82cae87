/**
 * The guest's kernel: Debian's stock `linux-image-amd64` for bookworm, downloaded as a package
 * from Debian's registry (never installed on the host), unpacked once into the work dir, and the
 * stock modules the guest loads, with everything they depend on; and the kernel's header
 * packages, downloaded and unpacked the same way, to build an out-of-tree module against.
 *
 * @module
 */

import { exists, run } from "./_command.ts";

/**
 * The package `linux-image-amd64` depends on, pinned. Its kernel has BTF
 * (CONFIG_DEBUG_INFO_BTF), loadable modules and data symbols in kallsyms (CONFIG_KALLSYMS_ALL).
 */
export const GUEST_KERNEL = {
  package: "linux-image-6.1.0-50-amd64",
  version: "6.1.176-1",
  release: "6.1.0-50-amd64",
} as const;

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
 * Downloads (`apt-get download`) and unpacks the pinned kernel package into `cacheDir`, once:
 * a later call finds it there.
 * @throws {Error} when the package cannot be downloaded (even after `apt-get update`) or unpacked.
 */
export async function fetchKernel(cacheDir: string): Promise<KernelFiles> {
  const { package: name, version, release } = GUEST_KERNEL;
  const dir = `${cacheDir}/${name}_${version}`;
  const files = {
    release,
    vmlinuz: `${dir}/boot/vmlinuz-${release}`,
    modulesDir: `${dir}/lib/modules/${release}`,
  };
  const done = `${dir}/.unpacked`;
  if (await exists(done)) return files;
  const deb = await downloadPackage(cacheDir, name, version);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  await run("dpkg-deb", ["--extract", deb, dir]);
  // The package ships no modules.dep (its postinst makes one); busybox's depmod writes it.
  await run("busybox", ["depmod", "-b", dir, release]);
  await Deno.writeTextFile(done, `${name}=${version}\n`);
  return files;
}

/**
 * The packages an out-of-tree module for {@linkcode GUEST_KERNEL} is built against, pinned to
 * the kernel's own version: the configured headers, the headers they include, and Kbuild's tools.
 */
export const GUEST_HEADERS: readonly string[] = [
  `linux-headers-${GUEST_KERNEL.release}`,
  `linux-headers-${GUEST_KERNEL.release.replace(/-amd64$/, "-common")}`,
  `linux-kbuild-${GUEST_KERNEL.release.replace(/^(\d+\.\d+).*$/, "$1")}`,
];

/**
 * Downloads the packages of {@linkcode GUEST_HEADERS} and unpacks them together into one tree in
 * `cacheDir`, once. Debian's configured headers include the common ones by absolute path
 * (`/usr/src/linux-headers-...-common/Makefile`); the unpacked copy is pointed at its own tree,
 * so nothing is installed on this machine.
 * @returns the directory to build against (`make -C DIR M=...`).
 * @throws {Error} when a package cannot be downloaded or its layout is not as expected.
 */
export async function fetchHeaders(cacheDir: string): Promise<string> {
  const dir = `${cacheDir}/linux-headers_${GUEST_KERNEL.version}`;
  const build = `${dir}/usr/src/linux-headers-${GUEST_KERNEL.release}`;
  const done = `${dir}/.unpacked`;
  if (await exists(done)) return build;
  const debs = [];
  for (const name of GUEST_HEADERS) {
    debs.push(await downloadPackage(cacheDir, name, GUEST_KERNEL.version));
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

/**
 * The `.deb` of `name=version` in `cacheDir`, downloaded there (`apt-get download`, never
 * installed) unless it already is.
 */
async function downloadPackage(cacheDir: string, name: string, version: string): Promise<string> {
  await Deno.mkdir(cacheDir, { recursive: true });
  const prefix = `${name}_${version.replace(/:/g, "%3a")}_`;
  const cached = [...Deno.readDirSync(cacheDir)].find((e) =>
    e.name.startsWith(prefix) && e.name.endsWith(".deb")
  );
  if (cached) return `${cacheDir}/${cached.name}`;
  const partial = `${cacheDir}/download`;
  await Deno.remove(partial, { recursive: true }).catch(() => {});
  await Deno.mkdir(partial);
  try {
    await run("apt-get", ["download", `${name}=${version}`], { cwd: partial });
  } catch {
    // Package lists never fetched on this machine, or older than the pin: as ./dev does.
    await run("apt-get", ["update"]);
    await run("apt-get", ["download", `${name}=${version}`], { cwd: partial });
  }
  const [file] = [...Deno.readDirSync(partial)].filter((e) => e.name.endsWith(".deb"));
  if (!file) throw new Error(`Cannot find the downloaded package "${name}" in "${partial}"`);
  await Deno.rename(`${partial}/${file.name}`, `${cacheDir}/${file.name}`);
  await Deno.remove(partial, { recursive: true });
  return `${cacheDir}/${file.name}`;
}

/**
 * The module files (paths relative to `modulesDir`) of `names` and of everything they depend
 * on, from the modules.dep of {@linkcode fetchKernel}.
 * @throws {Error} naming a module the package does not have.
 */
export async function moduleClosure(modulesDir: string, names: readonly string[]) {
  const deps = new Map<string, { path: string; needs: string[] }>();
  const text = await Deno.readTextFile(`${modulesDir}/modules.dep`);
  for (const line of text.split("\n")) {
    const [path, rest] = line.split(":");
    if (!rest && rest !== "") continue;
    deps.set(moduleName(path), { path, needs: rest.trim().split(/\s+/).filter((s) => s) });
  }
  const paths = new Set<string>();
  const visit = (name: string) => {
    const entry = deps.get(name.replaceAll("-", "_"));
    if (!entry) throw new Error(`Cannot find module "${name}" in the guest kernel's modules.dep`);
    if (paths.has(entry.path)) return;
    paths.add(entry.path);
    for (const need of entry.needs) visit(moduleName(need));
  };
  names.forEach(visit);
  return [...paths].sort();
}

function moduleName(path: string): string {
  return path.split("/").pop()!.replace(/\.ko(\.\w+)?$/, "").replaceAll("-", "_");
}
