import { assertEquals, assertThrows } from "../tests/support/mod.ts";
import { parseProcNet, parseProcStatus } from "./proc_text.ts";

const STATUS = [
  "Name:\tebpfmon-g1",
  "State:\tS (sleeping)",
  "Tgid:\t113",
  "Pid:\t113",
  "PPid:\t105",
  "Uid:\t65534\t65534\t65534\t65534",
  "Gid:\t65534\t65534\t65533\t65534",
  "CapInh:\t0000000000000000",
  "CapPrm:\t0000000000000000",
  "CapEff:\t000001ffffffffff",
].join("\n");

/** stat with a name holding ") (" and spaces: the fields follow the last parenthesis. */
const STAT = "113 (a) (b c) S 105 113 105 0 -1 4194560 90 0 0 0 0 0 0 0 20 0 1 0 2874 2486272";

Deno.test("parseProcStatus() reads every field, a name with parentheses in stat", () => {
  assertEquals(parseProcStatus(113, STATUS, STAT, "a) (b c\n"), {
    pid: 113,
    tgid: 113,
    ppid: 105,
    comm: "a) (b c",
    state: "S",
    uids: [65534, 65534, 65534, 65534],
    gids: [65534, 65534, 65533, 65534],
    caps: { CapEff: 0x1ffffffffffn, CapPrm: 0n, CapInh: 0n },
    kthread: false,
    start: 2874,
  });
  const kthread = STAT.replace(" 4194560 ", ` ${0x0020_8040} `);
  assertEquals(parseProcStatus(113, STATUS, kthread, "kworker/0:1-events").kthread, true);
});

Deno.test("parseProcStatus() names what is missing or malformed", () => {
  assertThrows(() => parseProcStatus(7, "", STAT, "x"), SyntaxError, "/proc/7: no Tgid: line");
  assertThrows(
    () => parseProcStatus(7, STATUS.replace("\t65533", ""), STAT, "x"),
    SyntaxError,
    "its Gid: line",
  );
  assertThrows(
    () => parseProcStatus(7, STATUS.replace("000001ffffffffff", "zz"), STAT, "x"),
    SyntaxError,
    "its CapEff: line",
  );
  assertThrows(() => parseProcStatus(7, STATUS, "7 (x) S 1 2", "x"), SyntaxError, "its stat");
  assertThrows(() => parseProcStatus(7, STATUS, "7 x S", "x"), SyntaxError, "its stat");
});

const TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout " +
  "inode",
  "   0: 0100007F:1BBC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 " +
  "10831 1 00000000ada7c692 100 0 0 10 0",
  "   1: 0F02000A:1B87 0202000A:C490 06 00000000:00000000 03:000AECBE 00000000     0        0 0 " +
  "3 00000000c03d4944",
  "",
].join("\n");

const TCP6 = [
  "  sl  local_address                         remote_address                        st " +
  "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 00000000000000000000000001000000:1BBD 00000000000000000000000000000000:0000 0A " +
  "00000000:00000000 00:00000000 00000000     0        0 460 1 0000000000000000 100 0 0 10 0",
  "   1: 0000000000000000FFFF00000100007F:1BBE 0000000000000000FFFF00000100007F:CCC6 01 " +
  "00000000:00000000 00:00000000 00000000     0        0 463 1 0000000000000000 20 4 30 10 -1",
  // 2001:db8:0:0:1:0:0:1 (two runs of two zero groups: the first is "::") and
  // fe80:0:0:1:0:0:0:2 (the longer, later run is).
  "   2: B80D0120000000000000010001000000:0050 000080FE010000000000000002000000:0051 01 " +
  "00000000:00000000 00:00000000 00000000     0        0 470 1 0000000000000000 20 4 30 10 -1",
].join("\n");

Deno.test("parseProcNet() reads IPv4 and IPv6 sockets as ss writes them, inode 0 left out", () => {
  assertEquals(parseProcNet("tcp", TCP), [{
    protocol: "tcp",
    family: "inet",
    localAddress: "127.0.0.1",
    localPort: 7100,
    remoteAddress: "0.0.0.0",
    remotePort: 0,
    state: 10,
    inode: 10831,
  }]);
  const v6 = parseProcNet("tcp6", TCP6);
  assertEquals(
    v6.map((s) => [s.family, s.localAddress, s.localPort, s.remoteAddress, s.remotePort]),
    [
      ["inet6", "::1", 7101, "::", 0],
      ["inet6", "::ffff:127.0.0.1", 7102, "::ffff:127.0.0.1", 52422],
      ["inet6", "2001:db8::1:0:0:1", 80, "fe80:0:0:1::2", 81],
    ],
  );
  assertEquals(parseProcNet("udp6", TCP6)[0].protocol, "udp");
  assertThrows(() => parseProcNet("tcp", TCP6), SyntaxError, "/proc/net/tcp line");
  assertThrows(() => parseProcNet("udp", "heading\n 0: 0100007F:1BBC"), SyntaxError, "udp");
});
