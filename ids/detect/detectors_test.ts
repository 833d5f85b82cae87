import { assertEquals } from "../../tests/support/mod.ts";
import type { Process, ProcessViews, Socket } from "../linux/mod.ts";
import { hiddenProcess } from "./hidden_process.ts";
import { newListener } from "./new_listener.ts";
import { privilegeEscalation } from "./privilege_escalation.ts";
import { sharedCred } from "./shared_cred.ts";
import type { RuleSettings, Scan } from "./types.ts";

function proc(pid: number, fields: Partial<Process> = {}): Process {
  return {
    pid,
    tgid: pid,
    ppid: 1,
    comm: `p${pid}`,
    state: "S",
    uid: 1000,
    euid: 1000,
    suid: 1000,
    fsuid: 1000,
    gid: 1000,
    egid: 1000,
    sgid: 1000,
    fsgid: 1000,
    capEffective: "0x0000000000000000",
    kthread: false,
    task: `0xffff8880000${pid.toString(16).padStart(5, "0")}`,
    cred: `0xffff8881000${pid.toString(16).padStart(5, "0")}`,
    startTime: pid * 1000,
    execId: 1,
    seenIn: ["tasks", "pid_idr", "children"],
    ...fields,
  };
}

function scan(processes: Process[], extra: Partial<ProcessViews> = {}, sockets?: Socket[]): Scan {
  const value: ProcessViews = {
    processes,
    hidden: [],
    views: {
      tasks: { count: processes.length, truncated: false },
      pid_idr: { count: processes.length, truncated: false },
      children: { count: processes.length, truncated: false },
    },
    cleared: 0,
    unconfirmed: 0,
    confirmed: 0,
    sharedCreds: [],
    credsCleared: 0,
    pidNamespace: "0xffffffff82a00000",
    ...extra,
  };
  return {
    takenAt: 0,
    sections: {
      processes: { supported: true, value, truncated: false },
      ...(sockets ? { sockets: { supported: true, value: sockets, truncated: false } } : {}),
    },
  };
}

const settings = (allow: string[] = [], severity: RuleSettings["severity"] = "high") => ({
  severity,
  allow: new Set(allow),
});

Deno.test("hidden_process raises each confirmed hidden process, with its views, unless allowed", () => {
  const hidden = {
    pid: 4242,
    comm: "evil",
    uid: 65534,
    euid: 65534,
    task: "0xffff888012340000",
    seenIn: ["pid_idr", "children"] as const,
    missingFrom: ["tasks"] as const,
  };
  const s = scan([proc(1)], {
    hidden: [{ ...hidden, seenIn: [...hidden.seenIn], missingFrom: [...hidden.missingFrom] }],
  });
  const findings = hiddenProcess.detect(s, undefined, settings([], "critical"));
  assertEquals(findings.map((f) => [f.rule, f.severity, f.subject, f.evidence.missingFrom]), [
    ["hidden_process", "critical", "pid 4242", ["tasks"]],
  ]);
  assertEquals(hiddenProcess.detect(s, undefined, settings(["evil"])), []);
  assertEquals(hiddenProcess.detect(scan([proc(1)]), undefined, settings()), []);
});

Deno.test("shared_cred raises processes of different thread groups on one cred, not distinct creds", () => {
  const init = proc(1, { uid: 0, euid: 0, cred: "0xffff888100000100" });
  const thief = proc(300, { comm: "sleep", uid: 0, euid: 0, cred: init.cred });
  const confirmed = { sharedCreds: [init.cred] };
  const findings = sharedCred.detect(
    scan([init, proc(2), thief], confirmed),
    undefined,
    settings(),
  );
  assertEquals(findings.map((f) => [f.subject, f.evidence.pids]), [
    [`cred ${init.cred}`, [1, 300]],
  ]);
  assertEquals(sharedCred.detect(scan([init, proc(2), proc(300)]), undefined, settings()), []);
  // Not confirmed live (one of them exited and its cred was reused): nothing.
  assertEquals(sharedCred.detect(scan([init, proc(2), thief]), undefined, settings()), []);
});

Deno.test("privilege_escalation raises a uid that became 0 without an exec, and nothing else", () => {
  const before = scan([proc(500), proc(600, { suid: 0 }), proc(700), proc(800)]);
  const after = scan([
    proc(500, { uid: 0, euid: 0 }), // no exec, no way back: escalation
    proc(600, { euid: 0, suid: 0 }), // saved uid 0: may return to root
    proc(700, { uid: 0, euid: 0, execId: 2 }), // a set-uid exec
    proc(800, { uid: 0, euid: 0, startTime: 9 }), // another process in the same task memory
  ]);
  const findings = privilegeEscalation.detect(after, before, settings());
  assertEquals(findings.map((f) => f.subject), ["pid 500"]);
  assertEquals(privilegeEscalation.detect(after, undefined, settings()), [], "needs history");
  const withCap = scan([proc(500, { capEffective: "0x0000000000000080" })]);
  assertEquals(privilegeEscalation.detect(after, withCap, settings()), [], "CAP_SETUID");
});

function sock(protocol: "tcp" | "udp", port: number, state: string, owner?: number): Socket {
  return {
    protocol,
    family: "inet",
    state,
    localAddress: "0.0.0.0",
    localPort: port,
    remoteAddress: "0.0.0.0",
    remotePort: 0,
    inode: port,
    sock: "0xffff888200000000",
    owners: owner ? [{ pid: owner, fd: 3 }] : [],
  };
}

Deno.test("new_listener raises listeners absent from the first scan, not clients or allowed ones", () => {
  const procs = [proc(1), proc(900, { comm: "nc" }), proc(901, { comm: "sshd" })];
  const first = scan(procs, {}, [sock("tcp", 22, "LISTEN", 901)]);
  const now = scan(procs, {}, [
    sock("tcp", 22, "LISTEN", 901),
    sock("tcp", 4444, "LISTEN", 900),
    sock("tcp", 40000, "ESTABLISHED", 900),
    sock("udp", 53, "UNCONN", 900),
    sock("udp", 51234, "UNCONN", 900), // a client's ephemeral port (a DNS lookup)
  ]);
  const subjects = (allow: string[]) =>
    newListener.detect(now, first, settings(allow), first).map((f) => f.subject);
  assertEquals(subjects([]), ["tcp 0.0.0.0:4444", "udp 0.0.0.0:53"]);
  assertEquals(subjects(["4444", "udp/53"]), []);
  assertEquals(subjects(["nc"]), []);
  assertEquals(newListener.detect(first, undefined, settings(), first), [], "the first scan");
});
