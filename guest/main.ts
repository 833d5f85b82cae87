/**
 * `deno task guest [--kernel 6.1|6.12] [--la57]`: builds the test guest for one of the guest
 * kernels (guest/kernel.ts: Debian 12's 6.1, the default, or Debian 13's 6.12), boots it (with
 * 5-level paging with `--la57`), shows how to reach its agent, prints its process table and
 * module list as the IDS rebuilds them from outside, through the forwarded port, measures the
 * link, and stops the guest (or keeps it up with `--keep`).
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { runProgram, sha256Hex } from "../protocol/mod.ts";
import { formatModules, formatProcesses, formatStats } from "../ids/cli/mod.ts";
import { openSession } from "../ids/client/mod.ts";
import { buildGuest, DEFAULT_WORK_DIR } from "./build.ts";
import { DEFAULT_KERNEL, GUEST_KERNELS } from "./kernel.ts";
import { GuestVm } from "./boot.ts";
import { measureModules, measureRtt } from "./measure.ts";

async function sha256(path: string): Promise<string> {
  return sha256Hex(await Deno.readFile(path));
}

function positiveInt(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new TypeError(`Invalid ${name} "${value}"`);
  return n;
}

const command = new Command("guest")
  .description(
    "Boot Debian's stock kernel in QEMU with the agent inside, and monitor it from outside",
  )
  .option(
    "--kernel <key>",
    `the guest kernel: ${
      Object.values(GUEST_KERNELS).map((k) => `${k.key} (${k.distribution}'s ${k.release})`)
        .join(", ")
    }`,
    DEFAULT_KERNEL,
  )
  .option("--work-dir <dir>", "where the guest is built", DEFAULT_WORK_DIR)
  .option("--state <dir>", "the IDS's state dir (credentials, BTF store)")
  .option("--memory <mib>", "guest memory in MiB", "2048")
  .option("--runs <n>", "measured runs of the module list per mode", "10")
  .option("--la57", "give the guest 5-level paging (QEMU's -cpu max as it is)")
  .option("--keep", "keep the guest running until interrupted")
  .option("--console", "print the guest's console")
  .action(async (options) => {
    const say = (line: string) => console.log(line);
    const state = options.state ?? `${options.workDir}/state`;
    const image = await buildGuest({
      kernel: options.kernel,
      workDir: options.workDir,
      log: (l) => say(`guest: ${l}`),
    });
    say(
      `guest: booting ${image.guestKernel.distribution}'s ${image.release} in QEMU ` +
        `(software emulation)...`,
    );
    if (image.rootkitMissing) {
      say(`guest: no test rootkit for this kernel: ${image.rootkitMissing}`);
    }
    await using vm = await GuestVm.boot(image, {
      stateDir: state,
      memoryMiB: positiveInt(options.memory, "--memory"),
      log: options.console ? (line) => console.error(`console: ${line}`) : undefined,
      la57: options.la57 ?? false,
    });
    const local = await sha256(new URL("../bpf/out/walk.bpf.o", import.meta.url).pathname);
    say(
      `guest: kernel ${vm.release}; agent listening ${(vm.bootMs / 1000).toFixed(1)} s after ` +
        `QEMU started (guest uptime ${vm.uptimeAtAgentStart.toFixed(1)} s at agent start)`,
    );
    say(`guest: programs ${vm.programs}`);
    say(
      `guest: the known processes in container "${vm.container.hostname}" (cgroup ` +
        `${vm.container.cgroup}, init pid ${vm.container.pid}, up in ` +
        `${vm.container.setupSeconds.toFixed(2)} s), the agent outside it (pid ${vm.agentPid})`,
    );
    say(
      `guest: walk.bpf.o sha256 ${vm.objectSha256.slice(0, 16)}... ` +
        (vm.objectSha256 === local ? "(the same object as this machine's)" : "(DIFFERS from ours)"),
    );
    const ids = `.tools/deno/bin/deno run -A ids/main.ts`;
    say(`\nconnect from this machine (while it runs: --keep):`);
    say(`  ${ids} ps --agent ${vm.address} --state ${state}`);
    say(`  ${ids} lsmod --agent ${vm.address} --state ${state} --mode on-demand\n`);

    using session = await openSession({ agent: vm.address, state });
    say(
      `guest: ${session.space.paging} paging; windows ` +
        session.space.windows.map((w) => `${w.name} ${w.start}..${w.end}`).join(", "),
    );
    const ps = await session.processes("prefetch");
    say(formatProcesses(ps.processes));
    say(formatStats(ps.stats) + "\n");
    const lsmod = await session.modules("prefetch");
    say(lsmod.answer.supported ? formatModules(lsmod.answer.modules) : lsmod.answer.reason!);
    say(formatStats(lsmod.stats) + "\n");

    const runs = positiveInt(options.runs, "--runs");
    const rtt = await measureRtt(session, { runs });
    const modules = await measureModules(session, { runs });
    say(`boot (QEMU start -> agent listening): ${(vm.bootMs / 1000).toFixed(1)} s`);
    say(
      `RTT of the forwarded link (median of ${rtt.runs} 64-byte READs): ` +
        `${rtt.medianMs.toFixed(2)} ms`,
    );
    const byMode = [["prefetch", modules.prefetch], ["on-demand", modules.onDemand]] as const;
    for (const [name, m] of byMode) {
      say(
        `module list ${name}: median ${m.medianMs.toFixed(2)} ms of ${modules.runs}, ` +
          `${m.roundTrips} round trips, ${m.bytes} bytes, ${m.modules} modules`,
      );
    }
    say(`module list on-demand / prefetch: ${modules.ratio.toFixed(2)}x (the paper: 2.6x)`);

    if (options.keep) {
      say(`\nguest: up at ${vm.address}; Ctrl-C stops it`);
      await new Promise<void>((resolve) => {
        Deno.addSignalListener("SIGINT", () => resolve());
        Deno.addSignalListener("SIGTERM", () => resolve());
      });
    }
    session.close();
  });

if (import.meta.main) await runProgram(command, "guest");
