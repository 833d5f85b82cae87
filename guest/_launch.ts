/**
 * What the test guest's QEMU is started with: its arguments, its network (user-mode, isolated,
 * with the agent's port forwarded to 127.0.0.1), and the initramfs with the pairing credentials
 * (`ca.pem`, `agent.key`, `agent.pem`, never `ca.key` or `ids.key`) appended as a second cpio
 * archive. A QEMU the guest migrates to starts with the same arguments, on the network without
 * the forward (added once the one before has quit).
 *
 * @module
 */

import { run } from "./_command.ts";
import type { BootOptions } from "./boot.ts";
import { GUEST_AGENT_PORT } from "./build.ts";

/** The guest's network: user-mode, isolated; {@linkcode forwarded} adds the agent's port. */
export const NETWORK = "user,id=net0,restrict=on";

export function forwarded(port: number): string {
  return `${NETWORK},hostfwd=tcp:127.0.0.1:${port}-:${GUEST_AGENT_PORT}`;
}

/** QEMU's arguments but for the network backend and the QMP socket (see spawnQemu). */
export function qemuArgs(kernel: string, initrd: string, options: BootOptions): string[] {
  return [
    "-accel",
    "tcg",
    // `-cpu max` offers 5-level paging, which Debian's kernels then use.
    "-cpu",
    options.la57 ? "max" : "max,la57=off",
    "-m",
    String(options.memoryMiB ?? 2048),
    "-smp",
    String(options.cpus ?? 2),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
    "-kernel",
    kernel,
    "-initrd",
    initrd,
    "-append",
    "console=ttyS0 quiet panic=-1",
    "-device",
    "virtio-net-pci,netdev=net0",
  ];
}

/**
 * The initramfs with the agent's credentials appended as a second archive (the kernel unpacks
 * both): `var/lib/ebpfmon/{ca.pem,agent.key,agent.pem}`, mode 0600 in a 0700 directory.
 */
export async function provision(initrd: string, stateDir: string, runDir: string): Promise<string> {
  const stage = `${runDir}/credentials`;
  await Deno.mkdir(`${stage}/var/lib/ebpfmon`, { recursive: true });
  await Deno.chmod(`${stage}/var/lib/ebpfmon`, 0o700);
  for (const name of ["ca.pem", "agent.key", "agent.pem"]) {
    await Deno.copyFile(`${stateDir}/${name}`, `${stage}/var/lib/ebpfmon/${name}`);
    await Deno.chmod(`${stage}/var/lib/ebpfmon/${name}`, 0o600);
  }
  const archive = `${runDir}/credentials.cpio`;
  await run("cpio", ["--quiet", "-o", "-H", "newc", "-R", "0:0", "-O", archive], {
    cwd: stage,
    stdin: new TextEncoder().encode(
      ["var", "var/lib", "var/lib/ebpfmon", "ca.pem", "agent.key", "agent.pem"]
        .map((p, i) => (i < 3 ? p : `var/lib/ebpfmon/${p}`)).join("\n") + "\n",
    ),
  });
  const out = `${runDir}/initrd.cpio`;
  using file = await Deno.open(out, { write: true, createNew: true });
  for (const part of [initrd, archive]) {
    using input = await Deno.open(part);
    await input.readable.pipeTo(file.writable, { preventClose: true });
  }
  return out;
}
