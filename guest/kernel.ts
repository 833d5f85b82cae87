/**
 * The guest's kernel: Debian's stock `linux-image-amd64` for bookworm, downloaded as a package
 * from Debian's registry (never installed on the host), unpacked once into the work dir, and the
 * stock modules the guest loads, with everything they depend on.
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
  await Deno.mkdir(cacheDir, { recursive: true });
  const deb = `${cacheDir}/${name}_${version.replace(/:/g, "%3a")}_amd64.deb`;
  if (!await exists(deb)) {
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
    await Deno.rename(`${partial}/${file.name}`, deb);
    await Deno.remove(partial, { recursive: true });
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  await run("dpkg-deb", ["--extract", deb, dir]);
  // The package ships no modules.dep (its postinst makes one); busybox's depmod writes it.
  await run("busybox", ["depmod", "-b", dir, release]);
  await Deno.writeTextFile(done, `${name}=${version}\n`);
  return files;
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
