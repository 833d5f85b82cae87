/**
 * Threads, namespaces and cgroups in the views, against /proc on the real kernel: a process
 * with named threads in a cgroup of its own (`ps --threads`, THR, the cgroup path), one in a
 * new pid namespace (`unshare --pid --fork`: its pid there and its namespace), and a listener
 * in a new network namespace (`unshare --net`: `ss` lists it with that namespace, as
 * /proc/PID/net/tcp inside it shows it). In every mode; the prefetch modes in one round trip.
 */

import {
  assert,
  assertEquals,
  freezerHierarchies,
  missingPrivilege,
  requiringTest,
  runIds,
  TestCgroup,
} from "./support/mod.ts";
import { spawnAgent } from "../agent/mod.ts";
import { MODES, openSession } from "../ids/client/mod.ts";
import { runCheck, scanSections } from "../ids/detect/mod.ts";
import type { Process } from "../ids/linux/mod.ts";

const NAME = "ebpfmon-nsfix";
const root = new URL("..", import.meta.url);

function commandExists(name: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      return Deno.statSync(`${dir}/${name}`).isFile;
    } catch {
      return false;
    }
  });
}

const v2 = freezerHierarchies().find((h) => h.version === 2);
const reason = missingPrivilege() ??
  (["cc", "unshare", "ip"].find((c) => !commandExists(c)) !== undefined
    ? "needs cc, unshare and ip (iproute2)"
    : null);

/** Builds tests/ns_fixture.c as DIR/ebpfmon-nsfix (comm is the executable's name). */
async function buildFixture(dir: string): Promise<string> {
  const out = `${dir}/${NAME}`;
  const { code, stderr } = await new Deno.Command("cc", {
    args: ["-O2", "-pthread", "-o", out, new URL("tests/ns_fixture.c", root).pathname],
  }).output();
  if (code !== 0) throw new Error(`cc failed: ${new TextDecoder().decode(stderr)}`);
  return out;
}

/** A started fixture: ready once it printed so; ends when its stdin closes. */
class Fixture implements AsyncDisposable {
  private constructor(readonly child: Deno.ChildProcess, readonly tag: string) {}

  static async start(child: Deno.ChildProcess, tag: string): Promise<Fixture> {
    const fixture = new Fixture(child, tag);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the fixture ${tag} ended before it was ready: ${text}`);
      text += value;
    }
    reader.releaseLock();
    return fixture;
  }

  /** The fixture's own process (by its tag and name), as a global pid. */
  pid(): number {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
        const comm = Deno.readTextFileSync(`/proc/${entry.name}/comm`).trim();
        if (comm === NAME && cmdline.includes(this.tag)) return Number(entry.name);
      } catch {
        // gone meanwhile
      }
    }
    throw new Error(`no process of fixture ${this.tag}`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.child.stdin.close().catch(() => {});
    await this.child.stdout.cancel().catch(() => {});
    await this.child.status;
  }
}

let tags = 0;
function spawn(command: string, args: string[]): { child: Deno.ChildProcess; tag: string } {
  const tag = `tag-${Deno.pid}-${tags++}`;
  const child = new Deno.Command(command, {
    args: args.map((a) => a.replaceAll("TAG", tag)),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  return { child, tag };
}

const status = (pid: number, field: string) =>
  new RegExp(`^${field}:\\s*(.*)$`, "m").exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1];

/** The `0::` line of /proc/PID/cgroup, or undefined when there is none. */
function cgroupV2(pid: number): string | undefined {
  return /^0::(.*)$/m.exec(Deno.readTextFileSync(`/proc/${pid}/cgroup`))?.[1];
}

/** The inode number `readlink /proc/PID/ns/KIND` shows. */
function nsId(pid: number, kind: "pid" | "net"): number {
  return Number(/\[(\d+)\]/.exec(Deno.readLinkSync(`/proc/${pid}/ns/${kind}`))![1]);
}

requiringTest(
  "ps --threads lists a process's named threads as /proc/PID/task does; THR and its cgroup",
  reason ?? (v2 ? null : "needs a cgroup v2 hierarchy to put the test process in"),
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ebpfmon-ns-" });
    const bin = await buildFixture(dir);
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-ns-state-" });
    await using agent = await spawnAgent({ stateDir: state });
    await using cgroup = await TestCgroup.create(v2!, "threads");
    const tag = `tag-${Deno.pid}-threads`;
    const child = cgroup.spawn(`exec ${bin} ${tag} threads 4`, cgroup.dir, {
      stdin: "piped",
      stdout: "piped",
    });
    await using fixture = await Fixture.start(child, tag);
    const pid = fixture.pid();
    const truth = [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name)).sort()
      .map((tid) => [tid, Deno.readTextFileSync(`/proc/${pid}/task/${tid}/comm`).trim()]);
    assertEquals(truth.length, 5);
    assertEquals(truth.filter(([, comm]) => String(comm).startsWith("ebpfmon-t")).length, 4);
    assertEquals(cgroupV2(pid), cgroup.path);

    using session = await openSession({ agent: agent.address, state });
    const check = (p: Process | undefined, where: string) => {
      assert(p, `${where}: the fixture ${pid} is listed`);
      assertEquals(p.threads, Number(status(pid, "Threads")), `${where}: THR`);
      assertEquals(p.cgroup, cgroup.path, `${where}: cgroup`);
      const threads = (p.threadList ?? []).map((t) => [t.tid, t.comm]).sort((a, b) =>
        Number(a[0]) - Number(b[0])
      );
      assertEquals(threads, truth, `${where}: threads`);
      assert(p.threadList!.every((t) => t.tgid === pid && !t.error), where);
    };
    for (const mode of MODES) {
      const { processes, stats, cgroups } = await session.processes(mode, undefined, {
        threads: true,
      });
      assertEquals(cgroups, { supported: true });
      check(processes.find((p) => p.pid === pid), `${mode} processes`);
      if (mode !== "on-demand" && stats.prefetch?.stop === "complete") {
        assertEquals([stats.roundTrips, stats.misses], [1, 0], `${mode}: one round trip`);
      }
      // Every process's cgroup is its 0:: line (those that did not move or exit meanwhile).
      const wrong = processes.filter((p) => {
        try {
          const line = cgroupV2(p.pid);
          return line !== undefined && p.cgroup !== line && cgroupV2(p.pid) === line;
        } catch {
          return false;
        }
      });
      assertEquals(wrong.map((p) => [p.pid, p.cgroup]), [], `${mode}: cgroups as /proc`);

      const { scan, stats: psStats } = await scanSections(session, mode, ["processes"]);
      const section = scan.sections.processes;
      assert(section?.supported, `${mode} ps`);
      check(section.value.processes.find((p) => p.pid === pid), `${mode} ps`);
      if (mode !== "on-demand") assertEquals(psStats.misses, 0, `${mode} ps read past its plan`);
    }
    // A full check still reads everything in its one prefetch.
    const full = await runCheck(session, "prefetch");
    assertEquals(full.stats.misses, 0, "a check reads nothing beyond its plan");
    const section = full.scan.sections.processes;
    if (section?.supported && section.value.confirmed === 0) {
      assertEquals(full.stats.roundTrips, 1, "a quiet check is one round trip");
    }

    const ps = await runIds([
      "ps",
      "--agent",
      agent.address,
      "--state",
      state,
      "--threads",
      "--cgroup",
      cgroup.path,
      "--json",
    ]);
    assertEquals(ps.code, 0, ps.stderr);
    const listed = JSON.parse(ps.stdout).processes as Process[];
    assertEquals(listed.map((p) => p.pid), [pid], "--cgroup keeps the fixture only");
    assertEquals(listed[0].threadList?.length, 5);
    const table = await runIds(["ps", "--agent", agent.address, "--state", state, "--threads"]);
    for (const [tid, comm] of truth) {
      assert(
        table.stdout.split("\n").some((line) =>
          new RegExp(`^ *${pid} +${tid} +\\d+ +\\S +${comm}$`).test(line)
        ),
        `the table has thread ${tid} ${comm}`,
      );
    }
    await Deno.remove(dir, { recursive: true });
  },
);

requiringTest(
  "a process in a new pid namespace shows its pid there and the namespace, as /proc does",
  reason,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ebpfmon-ns-" });
    const bin = await buildFixture(dir);
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-ns-state-" });
    await using agent = await spawnAgent({ stateDir: state });
    const { child, tag } = spawn("unshare", ["--pid", "--fork", bin, "TAG", "threads", "0"]);
    await using fixture = await Fixture.start(child, tag);
    const pid = fixture.pid();
    const nsPid = Number(status(pid, "NSpid").split(/\s+/).at(-1));
    const pidNs = nsId(pid, "pid");
    assertEquals(nsPid, 1, "the first process of its namespace");
    assert(pidNs !== nsId(Deno.pid, "pid"), "a namespace of its own");

    using session = await openSession({ agent: agent.address, state });
    for (const mode of MODES) {
      const { processes } = await session.processes(mode);
      const p = processes.find((p) => p.pid === pid);
      assert(p, `${mode}: listed`);
      assertEquals([p.nsPid, p.pidNs], [nsPid, pidNs], mode);
      const self = processes.find((p) => p.pid === Deno.pid)!;
      assertEquals([self.nsPid, self.pidNs], [Deno.pid, nsId(Deno.pid, "pid")], mode);
    }
    const out = await runIds([
      "ps",
      "--agent",
      agent.address,
      "--state",
      state,
      "--pidns",
      `pid:[${pidNs}]`,
      "--json",
    ]);
    assertEquals(out.code, 0, out.stderr);
    const listed = JSON.parse(out.stdout).processes as Process[];
    assertEquals(listed.map((p) => [p.pid, p.nsPid]), [[pid, 1]]);
    const bad = await runIds(["ps", "--agent", agent.address, "--state", state, "--pidns", "abc"]);
    assertEquals(bad.code, 1);
    assert(bad.stderr.includes('Invalid --pidns "abc"'), bad.stderr);
    await Deno.remove(dir, { recursive: true });
  },
);

/** The sockets /proc/PID/net/tcp shows (the namespace of PID), by inode. */
function procNetTcp(pid: number): Map<number, { local: string; port: number; state: number }> {
  const out = new Map<number, { local: string; port: number; state: number }>();
  for (const line of Deno.readTextFileSync(`/proc/${pid}/net/tcp`).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !Number(f[9])) continue;
    const [address, port] = f[1].split(":");
    const local = address.match(/../g)!.map((b) => parseInt(b, 16)).reverse().join(".");
    out.set(Number(f[9]), { local, port: parseInt(port, 16), state: parseInt(f[3], 16) });
  }
  return out;
}

requiringTest(
  "ss lists a socket of a new network namespace with that namespace, as /proc/PID/net/tcp",
  reason,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ebpfmon-ns-" });
    const bin = await buildFixture(dir);
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-ns-state-" });
    await using agent = await spawnAgent({ stateDir: state });
    const { child, tag } = spawn("unshare", [
      "--net",
      "sh",
      "-c",
      `ip link set lo up && exec ${bin} TAG listen`,
    ]);
    await using fixture = await Fixture.start(child, tag);
    const pid = fixture.pid();
    const netNs = nsId(pid, "net");
    assert(netNs !== nsId(Deno.pid, "net"), "a namespace of its own");
    const truth = procNetTcp(pid);
    assertEquals(truth.size, 1, "/proc shows the one listener in its namespace");
    const [[inode, listener]] = [...truth];
    assertEquals(listener.state, 10);

    using session = await openSession({ agent: agent.address, state });
    for (const mode of MODES) {
      const { sockets, namespaces, stats } = await session.sockets(mode);
      assert(namespaces.includes(netNs), `${mode}: its namespace walked`);
      assert(namespaces.includes(nsId(Deno.pid, "net")), `${mode}: ours walked`);
      const s = sockets.find((s) => s.inode === inode);
      assert(s, `${mode}: socket ${inode} listed`);
      assertEquals(
        [s.netNs, s.protocol, s.state, s.localAddress, s.localPort],
        [netNs, "tcp", "LISTEN", listener.local, listener.port],
        mode,
      );
      assert(s.owners.some((o) => o.pid === pid), `${mode}: owned by ${pid}`);
      // The namespace holds exactly what /proc shows in it.
      const inNs = sockets.filter((s) => s.netNs === netNs && s.protocol === "tcp" && s.inode);
      assertEquals(inNs.map((s) => s.inode), [inode], `${mode}: the namespace's TCP sockets`);
      if (mode !== "on-demand" && stats.prefetch?.stop === "complete") {
        assertEquals([stats.roundTrips, stats.misses], [1, 0], `${mode}: one round trip`);
      }
    }
    const out = await runIds([
      "ss",
      "--agent",
      agent.address,
      "--state",
      state,
      "--netns",
      String(netNs),
      "--json",
    ]);
    assertEquals(out.code, 0, out.stderr);
    const listed = JSON.parse(out.stdout).sockets as { inode: number; netNs: number }[];
    assertEquals(listed.map((s) => [s.inode, s.netNs]), [[inode, netNs]]);
    const bad = await runIds(["ss", "--agent", agent.address, "--state", state, "--netns", "0"]);
    assertEquals(bad.code, 1);
    assert(bad.stderr.includes('Invalid --netns "0"'), bad.stderr);
    await Deno.remove(dir, { recursive: true });
  },
);
