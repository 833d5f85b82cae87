/**
 * `check`: every rule once over one scan of a guest, for scripts and cron. Exits 1 when a
 * finding is medium or worse, 0 otherwise.
 *
 * @module
 */

import { Command, Option } from "@commander-js/extra-typings";
import { DEFAULT_AGENT_ADDRESS, DEFAULT_STATE } from "../../protocol/mod.ts";
import { type AgentTarget, type Mode, MODES, openSession } from "../client/mod.ts";
import { formatStats, formatTable } from "./commands.ts";
import { printable, terminalJson } from "./terminal.ts";
import { loadConfig } from "../service/mod.ts";
import { type CheckResult, type RulesConfig, runCheck, severityRank } from "../detect/mod.ts";

/** The findings as a table, then one line per section that could not be read whole. */
export function formatCheck(result: CheckResult): string {
  const rows = result.findings.map((f) => [
    f.severity,
    f.rule,
    printable(f.subject),
    printable(f.message),
  ]);
  const lines = [
    rows.length
      ? formatTable(["SEVERITY", "RULE", "SUBJECT", "MESSAGE"], rows, new Set())
      : `no findings (rules: ${result.stats.rules.join(", ")})`,
  ];
  for (const [name, s] of Object.entries(result.stats.sections)) {
    if (!s.supported) lines.push(`section ${name}: not checked: ${printable(s.reason ?? "")}`);
    else if (s.truncated) lines.push(`section ${name}: truncated: ${printable(s.reason ?? "")}`);
  }
  return lines.join("\n");
}

/** Whether a check should fail a script: a finding of medium or worse. */
export function failsCheck(result: CheckResult): boolean {
  return result.findings.some((f) => severityRank(f.severity) >= severityRank("medium"));
}

/** Builds the `check` command. */
export function checkCommand() {
  return new Command("check")
    .description(
      "Run every detection rule once over one scan of the guest; exit 1 on a finding of " +
        "medium or worse",
    )
    .option("--agent <host:port>", "the agent to ask", DEFAULT_AGENT_ADDRESS)
    .option("--state <dir>", "directory of the credentials and BTF store", DEFAULT_STATE)
    .option("--pin <fingerprint>", "the agent certificate's SHA-256 (default: DIR/agent.pem)")
    .option("--config <file>", "take the rules (enabled, severity, allow) of this ids.json")
    .addOption(
      new Option("--mode <mode>", "how memory is fetched").choices(MODES).default(
        "prefetch" as Mode,
      ),
    )
    .option("--json", 'print { "findings": [...], "stats": {...} }')
    .action(async (options) => {
      const rules: RulesConfig = options.config ? (await loadConfig(options.config)).rules : {};
      using session = await openSession(options as AgentTarget);
      const result = await runCheck(session, options.mode, { rules });
      if (options.json) {
        console.log(terminalJson({ findings: result.findings, stats: result.stats }));
      } else {
        console.log(formatCheck(result));
        console.log(formatStats(result.stats));
      }
      if (failsCheck(result)) Deno.exitCode = 1;
    });
}
