import { assertEquals, assertThrows } from "../tests/support/mod.ts";
import {
  parseAnswerMarker,
  parseEvent,
  parseFdsAnswer,
  parseModuleLine,
  parseNamespaceAnswer,
  parseNetAnswer,
  parseProcessLine,
  parseRunAnswer,
  parseStatusAnswer,
  unifiedCgroup,
} from "./console.ts";
import { median } from "./measure.ts";

Deno.test("parseProcessLine() reads a process line, a name with spaces and a kernel thread", () => {
  assertEquals(parseProcessLine("@@p 113 1 65534 65534 65534 0 ebpfmon-g2"), {
    pid: 113,
    ppid: 1,
    comm: "ebpfmon-g2",
    uid: 65534,
    euid: 65534,
    gid: 65534,
    kthread: false,
  });
  assertEquals(parseProcessLine("@@p 7 2 0 0 0 1 kworker/0:0-events").kthread, true);
  assertEquals(parseProcessLine("@@p 9 1 0 0 0 0 a b  c").comm, "a b  c");
  assertThrows(() => parseProcessLine("@@p 9 x"), SyntaxError, '"@@p 9 x"');
});

Deno.test("parseModuleLine() reads /proc/modules lines with users, none, and taints", () => {
  assertEquals(
    parseModuleLine("@@m virtio_ring 45056 2 virtio_net,virtio_pci, Live 0xffffffffc02da000"),
    {
      name: "virtio_ring",
      size: 45056,
      refcount: 2,
      usedBy: ["virtio_net", "virtio_pci"],
      state: "Live",
      base: "0xffffffffc02da000",
      taints: "",
    },
  );
  const tainted = parseModuleLine("@@m out 16384 - - Loading 0x0000000000000000 (OE)");
  assertEquals([tainted.refcount, tainted.usedBy, tainted.state, tainted.taints], [
    null,
    [],
    "Loading",
    "OE",
  ]);
  assertThrows(() => parseModuleLine("@@m dummy 16384"), SyntaxError, "module line");
});

Deno.test("parseAnswerMarker() and parseEvent() tell markers and events from other lines", () => {
  assertEquals(parseAnswerMarker("@@ebpfmon proc 3 begin"), {
    kind: "proc",
    id: "3",
    edge: "begin",
  });
  assertEquals(parseAnswerMarker("@@ebpfmon modules 12 end")?.edge, "end");
  assertEquals(parseAnswerMarker("proc 3"), null);
  assertEquals(parseEvent("@@ebpfmon agent pid=115", "agent"), { pid: "115" });
  assertEquals(parseEvent("@@ebpfmon agent-start uptime=7.32", "agent"), null);
  assertEquals(parseEvent("@@ebpfmon error modprobe loop failed", "error"), {});
  assertEquals(parseEvent("[    1.0] agent pid=1", "agent"), null);
});

Deno.test("parseRunAnswer() reads output lines, empty ones included, and the exit status", () => {
  assertEquals(parseRunAnswer(["@@o hi", "@@o ", "@@o  two  spaces", "@@x 1"]), {
    status: 1,
    output: ["hi", "", " two  spaces"],
  });
  assertEquals(parseRunAnswer(["@@x 0"]), { status: 0, output: [] });
  assertThrows(() => parseRunAnswer(["@@o hi"]), SyntaxError, 'ends with "@@o hi"');
  assertThrows(() => parseRunAnswer([]), SyntaxError, "run answer");
  assertThrows(() => parseRunAnswer(["@@p 1", "@@x 0"]), SyntaxError, '"@@p 1"');
});

Deno.test("parseNamespaceAnswer() reads NSpid levels and cgroup lines of each process", () => {
  const placements = parseNamespaceAnswer([
    "@@n 1 1",
    "@@g 1 0::/",
    "@@n 121 121 8",
    "@@g 121 0::/workload",
    "@@n 130 130 4 2",
    "@@g 130 12:cpu,cpuacct:/a b/c",
    "@@g 130 0::/workload/inner",
    "@@n 140 140",
  ]);
  assertEquals([...placements.keys()], [1, 121, 130, 140]);
  assertEquals(placements.get(121), {
    pid: 121,
    nspid: [121, 8],
    cgroups: [{ hierarchy: 0, controllers: [], path: "/workload" }],
  });
  assertEquals(placements.get(130)?.nspid, [130, 4, 2]);
  assertEquals(placements.get(130)?.cgroups[0], {
    hierarchy: 12,
    controllers: ["cpu", "cpuacct"],
    path: "/a b/c",
  });
  assertEquals(unifiedCgroup(placements.get(130)!), "/workload/inner");
  assertEquals(unifiedCgroup(placements.get(140)!), undefined, "it exited before its cgroup");
  assertEquals(parseNamespaceAnswer([]).size, 0);
  assertThrows(() => parseNamespaceAnswer(["@@n 5 6"]), SyntaxError, '"@@n 5 6"');
  assertThrows(() => parseNamespaceAnswer(["@@n 5"]), SyntaxError, '"@@n 5"');
  assertThrows(() => parseNamespaceAnswer(["@@g 5 0::/"]), SyntaxError, '"@@g 5 0::/"');
  assertThrows(
    () => parseNamespaceAnswer(["@@n 5 5", "@@g 6 0::/"]),
    SyntaxError,
    "another process's cgroup",
  );
  assertThrows(() => parseNamespaceAnswer(["@@n 5 5", "@@g 5 0:/"]), SyntaxError, '"@@g 5 0:/"');
  assertThrows(() => parseNamespaceAnswer(["@@n 5 5", "@@n 5 5"]), SyntaxError, "twice");
});

Deno.test("median() takes the middle value, or the mean of the middle two", () => {
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assertThrows(() => median([]), RangeError, "no values");
});

Deno.test("parseStatusAnswer() groups grep -H lines by process and leaves out a partial one", () => {
  const stat = (pid: number) =>
    `${pid} (sh) S 1 ${pid} 1 0 -1 4194560 90 0 0 0 0 0 0 0 20 0 1 0 ${pid * 10} 2486272`;
  const status = (pid: number) =>
    [
      `Tgid:\t${pid}`,
      "PPid:\t1",
      "Uid:\t0\t0\t0\t0",
      "Gid:\t0\t0\t0\t0",
      "CapInh:\t0000000000000000",
      "CapPrm:\t000001ffffffffff",
      "CapEff:\t000001ffffffffff",
    ].map((line) => `@@s /proc/${pid}/status:${line}`);
  const processes = parseStatusAnswer([
    ...status(12),
    ...status(9),
    ...status(30),
    `@@s /proc/12/stat:${stat(12)}`,
    `@@s /proc/9/stat:${stat(9)}`,
    "@@s /proc/12/comm:a:b",
    "@@s /proc/9/comm:sh",
  ]);
  assertEquals([...processes.keys()], [9, 12], "30 exited before its stat was read");
  assertEquals([processes.get(12)?.comm, processes.get(12)?.start], ["a:b", 120]);
  assertThrows(() => parseStatusAnswer(["@@s /proc/1/environ:x"]), SyntaxError, "environ");
  assertThrows(
    () => parseStatusAnswer(["@@s /proc/1/status:x", "@@s /proc/1/stat:y", "@@s /proc/1/comm:z"]),
    SyntaxError,
    "/proc/1",
  );
});

Deno.test("parseNetAnswer() reads each namespace's sockets from its own /proc/PID/net", () => {
  const heading = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when";
  const namespaces = parseNetAnswer([
    "@@k 1 net:[4026531840]",
    `@@N /proc/1/net/tcp:${heading}`,
    "@@N /proc/1/net/tcp:   0: 00000000:1B87 00000000:0000 0A 00000000:00000000 00:00000000 " +
    "00000000     0        0 500 1 0000000000000000 100 0 0 10 0",
    `@@N /proc/1/net/udp:${heading}`,
    "@@N /proc/1/net/udp: 1359: 0100007F:C218 0100007F:1BBF 01 00000000:00000000 00:00000000 " +
    "00000000     0        0 465 2 0000000000000000 0",
    "@@k 117 net:[4026532147]",
    `@@N /proc/117/net/tcp:${heading}`,
  ]);
  assertEquals(namespaces.map((ns) => [ns.inode, ns.pid, [...ns.sockets.keys()]]), [
    [4026531840, 1, [500, 465]],
    [4026532147, 117, []],
  ]);
  assertEquals(namespaces[0].sockets.get(465)?.remotePort, 0x1bbf);
  assertThrows(() => parseNetAnswer([`@@N /proc/1/net/tcp:${heading}`]), SyntaxError, "socket");
  assertThrows(
    () => parseNetAnswer(["@@k 1 net:[5]", `@@N /proc/2/net/tcp:${heading}`]),
    SyntaxError,
    "/proc/2",
  );
});

Deno.test("parseFdsAnswer() reads ls -ln of the fd directories and mount namespaces", () => {
  const ls = "@@f lrwxrwxrwx    1 0        0                0 Dec  1 21:06";
  const fd = "@@f lrwx------    1 0        0               64 Dec  1 21:04";
  const fds = parseFdsAnswer([
    `${ls} /proc/1/ns/mnt -> mnt:[4026531841]`,
    `${ls} /proc/108/ns/mnt -> mnt:[4026532150]`,
    "@@f /proc/1/fd:",
    "@@f total 0",
    `${fd} 0 -> /dev/console`,
    `${fd} 10 -> /init`,
    "@@f ",
    "@@f /proc/108/fd:",
    "@@f total 0",
    `${fd} 16 -> /tmp/a -> b (deleted)`,
    `${fd} 17 -> pipe:[468]`,
    fd.replace("Dec  1 21:04", "Jan  5  2025") + " 3",
    "@@f ",
    "@@f /proc/2/fd:",
    "@@f total 0",
  ]);
  assertEquals([...fds.keys()], [1, 108, 2]);
  assertEquals(fds.get(1), {
    mntNs: 4026531841,
    fds: new Map([[0, "/dev/console"], [10, "/init"]]),
  });
  assertEquals(
    [...fds.get(108)!.fds],
    [[16, "/tmp/a -> b (deleted)"], [17, "pipe:[468]"], [3, null]],
  );
  assertEquals(fds.get(2), { fds: new Map() });
  assertThrows(() => parseFdsAnswer(["@@f ls: oops"]), SyntaxError, "ls: oops");
});
