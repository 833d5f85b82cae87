import { assertEquals, assertThrows } from "../tests/assert.ts";
import {
  parseAnswerMarker,
  parseEvent,
  parseModuleLine,
  parseNamespaceAnswer,
  parseProcessLine,
  parseRunAnswer,
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
