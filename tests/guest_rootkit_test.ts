/**
 * The IDS against a real rootkit: the Debian guest (guest/) with the test module of
 * guest/rootkit/ loaded after a clean check. One load turns on every technique: a task unlinked
 * from the task list, the module unlinked from the module list, a sys_call_table slot pointed at
 * the module, an ftrace hook with a callback in the module, and a task given pid 1's cred. Each
 * is found by its rule, in prefetch and in on-demand mode; what the guest itself shows (lsmod,
 * /proc/modules, /sys/module, /proc/PID) is asserted beside it. The guest boots once per guest
 * kernel whose compiler this machine has (about a minute or more under emulation): 6.1. The
 * module must be built with the compiler its kernel was built with; Debian 13's 6.12 was built
 * with gcc-14, which Debian 12 does not ship, so these checks do not apply to 6.12: a test of
 * their own says so, and checks that the compiler is indeed missing here.
 */

import { assert, assertEquals, privilegedTest } from "./support/mod.ts";
import { openSession } from "../ids/client/mod.ts";
import { type Finding, runCheck, type Scan, severityRank } from "../ids/detect/mod.ts";
import {
  buildGuest,
  GUEST_KERNELS,
  GUEST_PROCESSES,
  GUEST_ROOTKIT,
  type GuestKernel,
  GuestVm,
} from "../guest/mod.ts";

/** The system call slot the rootkit overwrites: getdents64 on x86-64 (a literal, not ours). */
const SLOT = 217;
/** The function its ftrace hook filters on. */
const TRACED = "__x64_sys_getdents64";
const MODES = ["prefetch", "on-demand"] as const;

/** Whether `needle` is somewhere in `value`: a number equal to it, or a string holding it. */
function holds(value: unknown, needle: string | number): boolean {
  if (typeof value === "number" || typeof value === "bigint") {
    return typeof needle === "number" && Number(value) === needle;
  }
  if (typeof value === "string") {
    return typeof needle === "string"
      ? value.includes(needle)
      : new RegExp(`(^|\\D)${needle}(\\D|$)`).test(value);
  }
  if (Array.isArray(value)) return value.some((v) => holds(v, needle));
  if (value && typeof value === "object") return Object.values(value).some((v) => holds(v, needle));
  return false;
}

function serious(findings: Finding[]): Finding[] {
  return findings.filter((f) => severityRank(f.severity) >= severityRank("medium"));
}

function show(findings: Finding[]): string {
  return findings.map((f) => `${f.rule} ${f.severity} ${f.subject}: ${f.message}`).join("\n");
}

for (const kernel of Object.values(GUEST_KERNELS) as GuestKernel[]) {
  const { command, unavailable } = kernel.rootkit;
  if (unavailable) {
    Deno.test(
      `${kernel.distribution} guest (${kernel.key}): the rootkit checks do not apply, ` +
        `no ${command} for its modules: ${unavailable}`,
      async () => {
        let found = true;
        try {
          await new Deno.Command(command, { args: ["--version"], stdout: "null" }).output();
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
          found = false;
        }
        assert(!found, `${command} is on this machine now: build the rootkit for ${kernel.key}`);
      },
    );
  } else rootkitTest(kernel);
}

/** The rootkit checks on a guest of `kernel`, one boot. */
function rootkitTest(kernel: GuestKernel): void {
  privilegedTest(
    `${kernel.distribution} guest (${kernel.key}) with a test rootkit: every technique is found ` +
      "by its rule in both modes",
    async (t) => {
      const image = await buildGuest({ kernel: kernel.key });
      const state = await Deno.makeTempDir({ prefix: "ebpfmon-rootkit-" });
      await using _state = { [Symbol.asyncDispose]: () => Deno.remove(state, { recursive: true }) };
      await using vm = await GuestVm.boot(image, { stateDir: state });
      using session = await openSession({ agent: vm.address, state });
      assertEquals(vm.knownProcesses.map((p) => p.uid), [...GUEST_PROCESSES.uids]);
      const [, hidden, thief] = vm.knownProcesses;

      /** The clean scans, for the rules over history (privilege_escalation). */
      const clean = new Map<string, Scan>();
      await t.step("a clean guest gives no finding medium or worse, in both modes", async () => {
        for (const mode of MODES) {
          const { findings, scan } = await runCheck(session, mode);
          clean.set(mode, scan);
          assertEquals(show(serious(findings)), "", `${mode}: findings on a clean guest`);
        }
        assertEquals((await vm.modules()).filter((m) => m.name === GUEST_ROOTKIT.name), []);
      });

      /** What the guest itself says of the loaded module and the traced function. */
      const truth = { text: 0n, size: 0n, traced: 0n };

      await t.step("the module loads and the guest's own tools are fooled", async () => {
        const insmod = await vm.run(
          [
            `insmod ${GUEST_ROOTKIT.path}`,
            `hide_pid=${hidden.pid}`,
            "hide_self=1",
            `syscall_slot=${SLOT}`,
            `ftrace_fn=${TRACED}`,
            "steal_cred_from=1",
            `steal_cred_to=${thief.pid}`,
          ].join(" "),
        );
        assertEquals(insmod, { status: 0, output: [] }, "insmod");

        const lsmod = await vm.run("lsmod");
        assertEquals(lsmod.status, 0);
        assert(lsmod.output.some((l) => l.startsWith("virtio_net ")), lsmod.output.join("\n"));
        assertEquals(lsmod.output.filter((l) => l.includes(GUEST_ROOTKIT.name)), [], "lsmod");
        const modules = await vm.modules();
        assert(modules.some((m) => m.name === "virtio_net"), "the guest's /proc/modules");
        assertEquals(modules.filter((m) => m.name === GUEST_ROOTKIT.name), [], "/proc/modules");

        const sysfs = await vm.run(`cat /sys/module/${GUEST_ROOTKIT.name}/parameters/hide_pid`);
        assertEquals(sysfs, { status: 0, output: [String(hidden.pid)] }, "/sys/module remains");

        const status = await vm.run(`grep -E '^(Name|Pid|Uid):' /proc/${hidden.pid}/status`);
        assertEquals(status.output, [
          `Name:\t${hidden.name}`,
          `Pid:\t${hidden.pid}`,
          `Uid:\t${hidden.uid}\t${hidden.uid}\t${hidden.uid}\t${hidden.uid}`,
        ], "the hidden process still runs, in /proc");
        assert((await vm.processes()).has(hidden.pid), "the hidden pid is listed in /proc");

        const cred = await vm.run(`grep -E '^(Uid|Gid):' /proc/${thief.pid}/status`);
        assertEquals(cred.output, ["Uid:\t0\t0\t0\t0", "Gid:\t0\t0\t0\t0"], "the stolen cred");

        const traced = await vm.run(
          "mount -t tracefs tracefs /sys/kernel/tracing && cat /sys/kernel/tracing/enabled_functions",
        );
        assert(
          traced.output.some((l) => l.startsWith(`${TRACED} `) && l.includes(GUEST_ROOTKIT.name)),
          `the guest's own ftrace view:\n${traced.output.join("\n")}`,
        );

        const sys = `/sys/module/${GUEST_ROOTKIT.name}`;
        const facts = await vm.run(
          `cat ${sys}/sections/.text ${sys}/coresize; grep ' ${TRACED}$' /proc/kallsyms`,
        );
        assertEquals([facts.status, facts.output.length], [0, 3], facts.output.join("\n"));
        truth.text = BigInt(facts.output[0]);
        truth.size = BigInt(facts.output[1]);
        truth.traced = BigInt(`0x${facts.output[2].split(" ")[0]}`);
        assert(truth.text > 0n && truth.traced > 0n, `the guest hides addresses: ${facts.output}`);
      });

      for (const mode of MODES) {
        await t.step(`${mode}: each technique is found by its rule`, async () => {
          const { findings } = await runCheck(session, mode, { previous: clean.get(mode) });
          const found = new Set<Finding>();
          const of = (rule: string, match: (f: Finding) => boolean) => {
            const hits = findings.filter((f) => f.rule === rule && match(f));
            assertEquals(hits.length, 1, `${mode}: one ${rule} finding of\n${show(findings)}`);
            assert(severityRank(hits[0].severity) >= severityRank("medium"), show(hits));
            found.add(hits[0]);
            return hits[0];
          };

          const process = of("hidden_process", (f) => f.subject === `pid ${hidden.pid}`);
          assertEquals(
            [process.evidence.comm, process.evidence.seenIn, process.evidence.missingFrom],
            [hidden.name, ["pid_idr", "children"], ["tasks"]],
            `${mode}: unlinked from the task list only`,
          );

          const module = of("hidden_module", (f) => f.subject === `module ${GUEST_ROOTKIT.name}`);
          assertEquals(
            [module.severity, module.evidence.seenIn, module.evidence.missingFrom],
            ["critical", ["kset", "mod_tree"], ["list"]],
            `${mode}: unlinked from the module list only`,
          );
          const inModule = (value: unknown) =>
            BigInt(value as string) >= truth.text &&
            BigInt(value as string) < truth.text + truth.size;
          const owner = { kind: "hidden-module", name: GUEST_ROOTKIT.name };

          const hook = of("hooked_pointer", (f) => f.subject === `sys_call_table[${SLOT}]`);
          assertEquals(hook.evidence.owner, owner, `${mode}: ${JSON.stringify(hook.evidence)}`);
          assert(inModule(hook.evidence.value), `${mode}: ${hook.evidence.value} in the module`);

          const ftrace = of("ftrace_hook", (f) => holds(f.evidence.owner, GUEST_ROOTKIT.name));
          assertEquals(ftrace.evidence.owner, owner, `${mode}: ${JSON.stringify(ftrace.evidence)}`);
          assert(inModule(ftrace.evidence.callback), `${mode}: ${ftrace.evidence.callback}`);
          assertEquals(
            (ftrace.evidence.filter as string[]).map(BigInt),
            [truth.traced],
            `${mode}: the filter holds ${TRACED} alone`,
          );
          const filter = (ftrace.evidence.filter as string[])[0];
          assertEquals(
            (ftrace.evidence.symbols as Record<string, string>)[filter],
            TRACED,
            `${mode}: the filter named as the guest's kallsyms names it`,
          );

          const cred = of("shared_cred", (f) => holds(f.evidence.pids, thief.pid));
          assertEquals(
            [...cred.evidence.pids as number[]].sort((a, b) => a - b),
            [1, thief.pid],
            `${mode}: ${thief.name} holds the cred of pid 1`,
          );

          const rise = of("privilege_escalation", (f) => f.subject === `pid ${thief.pid}`);
          assertEquals(
            [rise.evidence.before, rise.evidence.after].map((ids) => (ids as { uid: number }).uid),
            [thief.uid, 0],
            `${mode}: ${thief.name} became root without an exec`,
          );

          assertEquals(
            show(serious(findings).filter((f) => !found.has(f))),
            "",
            `${mode}: nothing else medium or worse is found`,
          );
        });
      }
    },
  );
}
