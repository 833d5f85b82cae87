/**
 * Boots the test guest in QEMU (software emulation: no KVM needed) and talks to its console.
 *
 * The guest gets the IDS's pairing credentials in its initramfs, and a port of 127.0.0.1 is
 * forwarded to the agent's port in the guest (`_launch.ts`: what each of its QEMUs starts with).
 * The serial console carries the guest's own view of itself (guest/init.sh), asked for by writing
 * a command line to it.
 *
 * @module
 */

import { ensureIdsCredentials, freePort } from "../protocol/mod.ts";
import { forwarded, NETWORK, provision, qemuArgs } from "./_launch.ts";
import { type MigrateOptions, migrateQemu, type Migration } from "./migrate.ts";
import { type Qemu, spawnQemu } from "./_qemu.ts";
import { GUEST_AGENT_PORT, type GuestImage } from "./build.ts";
import {
  type GuestFds,
  type GuestModule,
  type GuestNetNamespace,
  type GuestPlacement,
  type GuestProcess,
  type GuestRun,
  parseFdsAnswer,
  parseModuleLine,
  parseNamespaceAnswer,
  parseNetAnswer,
  parseProcessLine,
  parseRunAnswer,
  parseStatusAnswer,
} from "./console.ts";
import type { ProcStatus } from "./proc_text.ts";

/** Options of {@linkcode GuestVm.boot}. */
export interface BootOptions {
  /** The IDS's state dir: its credentials are created there if missing, then provisioned. */
  stateDir: string;
  /** Guest memory in MiB. @default 2048 */
  memoryMiB?: number;
  /** Virtual CPUs. @default 2 */
  cpus?: number;
  /** Port of 127.0.0.1 forwarded to the agent; 0 picks a free one. @default 0 */
  hostPort?: number;
  /** Give up when the agent does not listen within this long. @default 300000 */
  timeoutMs?: number;
  /** Every console line, as it arrives. @default dropped */
  log?: (line: string) => void;
  /**
   * Give the guest 5-level paging (LA57: QEMU's `-cpu max` as it is): its kernel then maps the
   * direct map, vmalloc and vmemmap below the 4-level kernel half. @default false (4-level)
   */
  la57?: boolean;
}

/** A known process the guest started, in its container. */
export interface KnownProcess {
  name: string;
  /** Its pid in the guest's root pid namespace (the one the IDS's views give). */
  pid: number;
  /** Its pid in the container's pid namespace. */
  nspid: number;
  uid: number;
}

/** The container the known processes run in (guest/container.sh). */
export interface GuestContainer {
  /** The pid of its init in the guest's root pid namespace (1 in its own). */
  pid: number;
  hostname: string;
  /** Its cgroup's path in the guest's cgroup v2 hierarchy. */
  cgroup: string;
  /** Seconds of guest uptime from /init starting it to all the known processes started. */
  setupSeconds: number;
}

/**
 * A running guest. Stop it with {@linkcode GuestVm.stop} (or `await using`): it powers off, and
 * QEMU is killed if it does not.
 */
export class GuestVm implements AsyncDisposable {
  /** `127.0.0.1:PORT`, for `--agent`. */
  readonly address: string;
  /** Milliseconds from starting QEMU to the agent's "listening" line on the console. */
  readonly bootMs: number;
  /** Seconds of guest uptime when /init started the agent (kernel boot, modprobe, network). */
  readonly uptimeAtAgentStart: number;
  /** SHA-256 of the walker object the guest's agent loads, as the guest computed it. */
  readonly objectSha256: string;
  /** The program variant the agent announced on its console. */
  readonly programs: string;
  readonly knownProcesses: KnownProcess[];
  readonly container: GuestContainer;
  /** The agent's pid; it runs outside the container (root namespaces, root cgroup). */
  readonly agentPid: number;
  /**
   * The pid of the sockets' holder (guest/sockets.c, `GUEST_SOCKETS`), outside the container,
   * and its first port.
   */
  readonly socketHolder: { pid: number; port: number };
  /** The guest's kernel release. */
  readonly release: string;

  /** The QEMU that runs the guest now (another one after each migration). */
  #qemu: Qemu;
  /** QEMU's arguments, but for the network and the QMP socket. */
  #args: string[];
  #port: number;
  #runDir: string;
  #log?: (line: string) => void;
  #nextId = 1;
  #stopped: Promise<void> | undefined;

  private constructor(
    qemu: Qemu,
    args: string[],
    port: number,
    runDir: string,
    log: ((line: string) => void) | undefined,
    facts: {
      address: string;
      bootMs: number;
      uptimeAtAgentStart: number;
      objectSha256: string;
      programs: string;
      knownProcesses: KnownProcess[];
      container: GuestContainer;
      agentPid: number;
      socketHolder: { pid: number; port: number };
      release: string;
    },
  ) {
    this.#qemu = qemu;
    this.#args = args;
    this.#port = port;
    this.#runDir = runDir;
    this.#log = log;
    this.address = facts.address;
    this.bootMs = facts.bootMs;
    this.uptimeAtAgentStart = facts.uptimeAtAgentStart;
    this.objectSha256 = facts.objectSha256;
    this.programs = facts.programs;
    this.knownProcesses = facts.knownProcesses;
    this.container = facts.container;
    this.agentPid = facts.agentPid;
    this.socketHolder = facts.socketHolder;
    this.release = facts.release;
  }

  /**
   * Provisions the credentials, starts QEMU and resolves once the agent in the guest listens.
   * @throws {Error} with the console's last lines when QEMU exits or the agent is not up in time.
   */
  static async boot(image: GuestImage, options: BootOptions): Promise<GuestVm> {
    await ensureIdsCredentials(options.stateDir);
    const runDir = await Deno.makeTempDir({
      dir: image.initrd.slice(0, image.initrd.lastIndexOf("/")),
      prefix: "run-",
    });
    try {
      const initrd = await provision(image.initrd, options.stateDir, runDir);
      const port = options.hostPort || freePort();
      const started = performance.now();
      const args = qemuArgs(image.kernel, initrd, options);
      const qemu = spawnQemu(args, forwarded(port), `${runDir}/qmp-0.sock`, options.log);
      const console = qemu.console;
      try {
        const timeoutMs = options.timeoutMs ?? 300_000;
        const listening = await console.waitFor(
          (line) => /^ebpfmon-agent: listening on \S+ \(pid \d+, (.*)\)$/.exec(line),
          timeoutMs,
          "the agent to listen",
        );
        const bootMs = performance.now() - started;
        const event = (key: string) => console.events(key);
        const vm = new GuestVm(qemu, args, port, runDir, options.log, {
          address: `127.0.0.1:${port}`,
          bootMs,
          uptimeAtAgentStart: Number(event("agent-start")[0]?.uptime),
          objectSha256: event("object")[0]?.sha256 ?? "",
          programs: listening[1],
          knownProcesses: event("process").map((p) => ({
            name: p.name,
            pid: Number(p.pid),
            nspid: Number(p.nspid),
            uid: Number(p.uid),
          })),
          container: {
            pid: Number(event("container")[0]?.pid),
            hostname: event("container")[0]?.hostname ?? "",
            cgroup: event("container")[0]?.cgroup ?? "",
            setupSeconds: Number(event("container-ready")[0]?.uptime) -
              Number(event("container-start")[0]?.uptime),
          },
          agentPid: Number(event("agent")[0]?.pid),
          socketHolder: {
            pid: Number(event("sockets")[0]?.pid),
            port: Number(event("sockets")[0]?.port),
          },
          release: event("init")[0]?.kernel ?? "",
        });
        const errors = console.events("error");
        const placed = vm.container.pid > 0 && vm.socketHolder.pid > 0 &&
          vm.knownProcesses.every((p) => p.pid > 0 && p.nspid > 0);
        if (errors.length || !placed) {
          await vm.stop();
          throw new Error(`The guest failed to boot cleanly:\n${console.tail()}`);
        }
        return vm;
      } catch (error) {
        await qemu.kill();
        throw error;
      }
    } catch (error) {
      await Deno.remove(runDir, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  /** The guest's processes, as its /proc lists them now. */
  async processes(): Promise<Map<number, GuestProcess>> {
    const lines = await this.#ask("proc");
    return new Map(lines.map(parseProcessLine).map((p) => [p.pid, p]));
  }

  /**
   * Every process as the guest's /proc/PID/status, stat and comm show it now (all of its fields,
   * parsed as this machine's are: guest/proc_text.ts).
   */
  async statuses(): Promise<Map<number, ProcStatus>> {
    return parseStatusAnswer(await this.#ask("status"));
  }

  /**
   * The TCP and UDP sockets of /proc/net/{tcp,tcp6,udp,udp6} now, in the guest's network
   * namespace (the first) and the container's.
   */
  async sockets(): Promise<GuestNetNamespace[]> {
    return parseNetAnswer(await this.#ask("net"));
  }

  /** Every process's fds (readlink of each) and mount namespace, as its /proc shows them now. */
  async fds(): Promise<Map<number, GuestFds>> {
    return parseFdsAnswer(await this.#ask("fds"));
  }

  /**
   * Where each process is (or each of `pids`): its NSpid line and /proc/PID/cgroup, as the
   * guest's root namespaces show them. A pid with no process is left out.
   * @throws {TypeError} when a pid is not a positive integer.
   */
  async namespaces(pids: readonly number[] = []): Promise<Map<number, GuestPlacement>> {
    for (const pid of pids) {
      if (!Number.isSafeInteger(pid) || pid < 1) {
        throw new TypeError(`Cannot ask the guest about pid ${pid}: not a positive integer`);
      }
    }
    return parseNamespaceAnswer(await this.#ask("ns", pids.join(" ")));
  }

  /** The guest's /proc/modules now. */
  async modules(): Promise<GuestModule[]> {
    return (await this.#ask("modules")).map(parseModuleLine);
  }

  /**
   * Runs `command` with the guest's shell, as root, and waits for it: e.g.
   * `insmod /opt/rootkit/ebpfmon_rk.ko hide_pid=120` or `cat /proc/120/status`. A failing command
   * is an answer (its status), not an error.
   * @throws {TypeError} when `command` is empty or spans lines (the console reads one line).
   * @throws {Error} when the guest does not answer within `timeoutMs` (default 60000).
   */
  run(command: string, options: { timeoutMs?: number } = {}): Promise<GuestRun> {
    return this.#run("run", command, options.timeoutMs);
  }

  /**
   * Runs `command` as {@linkcode GuestVm.run} does, but inside the container: in its pid, mount,
   * UTS, network and IPC namespaces (nsenter to its init) and in its cgroup.
   */
  runInContainer(command: string, options: { timeoutMs?: number } = {}): Promise<GuestRun> {
    return this.#run("runin", command, options.timeoutMs);
  }

  async #run(kind: string, command: string, timeoutMs?: number): Promise<GuestRun> {
    if (!command.trim() || /[\r\n]/.test(command)) {
      throw new TypeError(`Cannot run "${command}" in the guest: it must be one non-empty line`);
    }
    return parseRunAnswer(await this.#ask(kind, command, timeoutMs));
  }

  /** The console's last lines, for diagnostics. */
  consoleTail(lines = 60): string {
    return this.#qemu.console.tail(lines);
  }

  async #ask(kind: string, args = "", timeoutMs = 60_000): Promise<string[]> {
    const id = String(this.#nextId++);
    const answer = this.#qemu.console.answer(kind, id, timeoutMs);
    await this.#qemu.stdin.write(new TextEncoder().encode(`${kind} ${id}${args && ` ${args}`}\n`));
    return await answer;
  }

  /**
   * Live-migrates the running guest to a new QEMU on this machine (see guest/migrate.ts), then,
   * once the old one has quit, forwards the same host port to the agent from the new one. When
   * the migration does not complete, the guest goes on running where it was.
   */
  async migrate(options: MigrateOptions = {}): Promise<Migration> {
    const n = ++this.#migrations;
    const target = spawnQemu(
      [...this.#args, "-incoming", "defer"],
      NETWORK,
      `${this.#runDir}/qmp-${n}.sock`,
      this.#log,
    );
    const source = this.#qemu;
    try {
      const migration = await migrateQemu(await source.qmp(), await target.qmp(), {
        ...options,
        uri: `unix:${this.#runDir}/migrate-${n}.sock`,
      });
      if (!migration.completed) {
        await target.kill();
        return migration;
      }
      await source.quit();
      const started = performance.now();
      const forward = `hostfwd_add net0 tcp:127.0.0.1:${this.#port}-:${GUEST_AGENT_PORT}`;
      const said = (await (await target.qmp()).human(forward)).trim();
      if (said) throw new Error(`QEMU refused to forward the agent's port: ${said}`);
      this.#qemu = target;
      return { ...migration, forwardMs: performance.now() - started };
    } catch (error) {
      await target.kill();
      throw error;
    }
  }

  #migrations = 0;

  /** Powers the guest off (QEMU is killed after 20 s) and removes its run dir. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      const qemu = this.#qemu;
      await qemu.stdin.write(new TextEncoder().encode("poweroff\n")).catch(() => {});
      const timer = setTimeout(() => qemu.kill(), 20_000);
      await qemu.process.status;
      clearTimeout(timer);
      await qemu.kill();
      await Deno.remove(this.#runDir, { recursive: true }).catch(() => {});
    })();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
