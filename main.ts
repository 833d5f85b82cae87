/**
 * ebpfmon: watch a confidential VM from outside it.
 *
 * `main.ts` carries every command: `agent` (inside the guest), `serve`, `ps`, `lsmod`, `ss` and
 * `lsof` (the IDS), `enroll` (issue one guest's identity), and
 * `local` (agent and IDS service on this machine, with a built-in configuration). The compiled
 * `ebpfmon-agent` (agent/main.ts) and `ebpfmon-ids` (ids/main.ts) carry their own halves.
 *
 * @module
 */

import {
  bpfCommand,
  checkCommand,
  formatProcesses,
  formatStats,
  formatTable,
  lsmodCommand,
  lsofCommand,
  printable,
  psCommand,
  ssCommand,
} from "./ids/cli/mod.ts";
import { Command } from "@commander-js/extra-typings";
import { agentCommand, spawnAgent } from "./agent/mod.ts";
import { parseConfig } from "./ids/service/mod.ts";
import { serveCommand, startService } from "./ids/mod.ts";
import {
  DEFAULT_AGENT_ADDRESS,
  DEFAULT_STATE,
  enrollGuest,
  parseHostPort,
  runProgram,
} from "./protocol/mod.ts";

function enrollCommand() {
  return new Command("enroll")
    .description(
      "Issue guest NAME its own agent identity: write ca.pem, agent.key and agent.pem (mode 0600, " +
        "in a 0700 directory) into --out, to copy into the guest; print its pin and its ids.json " +
        "entry. Never replaces an identity; the CA key stays in --state",
    )
    .argument("<name>", "the guest's name, as ids.json and the API call it")
    .requiredOption("--out <dir>", "the guest directory to create (its agent's --state)")
    .option("--state <dir>", "the IDS's state directory, which holds the pairing CA", DEFAULT_STATE)
    .option(
      "--agent <host:port>",
      "the agent's address, for the printed entry",
      DEFAULT_AGENT_ADDRESS,
    )
    .option(
      "--host <name...>",
      "host names or addresses the certificate names too (informative: the pin authenticates)",
    )
    .action(async (name, options) => {
      parseHostPort(options.agent, "--agent");
      const enrolled = await enrollGuest(options.state, name, options.out, { names: options.host });
      console.log(`enrolled "${name}": ${enrolled.files.join(", ")}`);
      console.log(`its certificate, for the IDS to pin: ${enrolled.certificate}`);
      console.log(`pin: ${enrolled.pin}`);
      console.log();
      console.log(
        `Copy ${enrolled.dir} into the guest over a channel you trust (keep it 0700, its files ` +
          "0600) and start the agent there with --state pointing at it. Add to ids.json's guests:",
      );
      console.log(JSON.stringify({ name, agent: options.agent, pin: enrolled.pin }));
    });
}

function localCommand() {
  return new Command("local")
    .description(
      "Start an agent and the IDS service on this machine, print the API's address, a ready curl " +
        "line and this machine's process table, then serve until interrupted",
    )
    .option("--state <dir>", "directory of the credentials, token and BTF store", DEFAULT_STATE)
    .option("--listen <host:port>", "address of the REST API", "127.0.0.1:8047")
    .option("--once", "exit after printing, instead of serving")
    .action(async (options) => {
      const agent = await spawnAgent({
        stateDir: options.state,
        log: (line) => console.error(line),
      });
      try {
        const config = parseConfig(
          {
            listen: options.listen,
            stateDir: options.state,
            guests: [{ name: "local", agent: agent.address }],
          },
          Deno.cwd(),
          "built-in configuration",
        );
        const service = await startService(config);
        const { snapshot } = await service.monitor.processes("local");
        console.log(`agent (pid ${agent.pid}) listening on ${agent.address}`);
        console.log(`API on ${service.url}; its token is in ${service.tokenFile}`);
        console.log(
          `curl -H "Authorization: Bearer $(cat ${service.tokenFile})" ${service.url}/v1/vms/local/processes`,
        );
        console.log();
        console.log(formatProcesses(snapshot.value));
        console.log(formatStats(snapshot.stats));
        // The refresh that took the list also ran every detection rule.
        const open = service.monitor.alerts({ vm: "local", state: "open" });
        console.log();
        console.log(`${open.length} open alerts; all of them with:`);
        console.log(
          `curl -H "Authorization: Bearer $(cat ${service.tokenFile})" ${service.url}/v1/alerts?state=open`,
        );
        if (open.length) {
          const shown = open.slice(0, 10).map((a) => [a.severity, a.rule, printable(a.subject)]);
          console.log(formatTable(["SEVERITY", "RULE", "SUBJECT"], shown, new Set()));
          if (open.length > shown.length) console.log(`... and ${open.length - shown.length} more`);
        }
        if (options.once) {
          await service.close();
          return;
        }
        const { promise, resolve } = Promise.withResolvers<void>();
        Deno.addSignalListener("SIGINT", resolve);
        Deno.addSignalListener("SIGTERM", resolve);
        await promise;
        await service.close();
      } finally {
        await agent.stop();
      }
    });
}

if (import.meta.main) {
  const program = new Command("ebpfmon")
    .description("Monitor a confidential VM from outside it, through an eBPF agent inside it")
    .addCommand(agentCommand())
    .addCommand(serveCommand())
    .addCommand(psCommand())
    .addCommand(checkCommand())
    .addCommand(lsmodCommand())
    .addCommand(bpfCommand())
    .addCommand(ssCommand())
    .addCommand(lsofCommand())
    .addCommand(enrollCommand())
    .addCommand(localCommand())
    .showHelpAfterError();
  await runProgram(program, "ebpfmon");
}
