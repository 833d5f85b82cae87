import { assert, assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { BtfBuilder, parseBtf } from "../btf/mod.ts";
import { LayoutError, PlanBuilder } from "../kernel/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { checkPlan, interpretPlan } from "../kernel/testing/mod.ts";
import { decodePlan, encodePlan } from "../../protocol/mod.ts";
import { AddressSpace, CachedMemory } from "../memory/mod.ts";
import { planTasks } from "./processes.ts";
import { listSockets, planSockets, type SocketList } from "./sockets.ts";
import { resolveSocketTypes } from "./socket_types.ts";
import { ipv4Text, ipv6Text } from "./_inet.ts";
import {
  addressBytes,
  INIT_NET_NS,
  SyntheticFds,
  SyntheticKernel,
  SyntheticNet,
} from "./testing/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from this machine's real kernel BTF; the memory image is synthetic.
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const core = resolveKernelTypes(btf);
const types = resolveSocketTypes(btf);

const ESTABLISHED = 1;
const TIME_WAIT = 6;
const CLOSE = 7;
const LISTEN = 10;
const NEW_SYN_RECV = 12;

/**
 * sshd (pid 100) listens on 0.0.0.0:22 (fd 3) and has an IPv6 connection (fd 4), chained in
 * one ehash bucket with an unowned TIME_WAIT; a connection request waits in another; curl
 * (pid 200) has a regular file (fd 0) and an unconnected UDP socket (fd 5); a kernel UDP socket
 * has no owner.
 */
function image() {
  const kernel = new SyntheticKernel(core, [
    { pid: 1, comm: "init" },
    { pid: 100, comm: "sshd", parent: 0 },
    { pid: 200, comm: "curl", parent: 0 },
  ]);
  const net = new SyntheticNet(kernel, types);
  const socks = {
    listen: net.sock("lhash2", 3, {
      family: "inet",
      state: LISTEN,
      local: "0.0.0.0",
      localPort: 22,
      inode: 1001,
    }),
    ssh6: net.sock("ehash", 5, {
      family: "inet6",
      state: ESTABLISHED,
      local: "2001:db8::1",
      localPort: 22,
      remote: "2001:db8::2",
      remotePort: 51000,
      inode: 1002,
    }),
    timeWait: net.sock("ehash", 5, {
      family: "inet",
      state: TIME_WAIT,
      local: "10.0.0.1",
      localPort: 443,
      remote: "10.0.0.2",
      remotePort: 40000,
    }),
    synRecv: net.sock("ehash", 9, {
      family: "inet",
      state: NEW_SYN_RECV,
      local: "10.0.0.1",
      localPort: 443,
      remote: "10.0.0.3",
      remotePort: 41000,
    }),
    dhcp: net.sock("udp", 2, {
      family: "inet",
      state: CLOSE,
      local: "0.0.0.0",
      localPort: 68,
      inode: 1003,
    }),
    dns: net.sock("udp", 6, {
      family: "inet",
      state: ESTABLISHED,
      local: "10.0.0.1",
      localPort: 5353,
      remote: "10.0.0.9",
      remotePort: 53,
      inode: 9000,
    }),
  };
  const fds = new SyntheticFds(kernel, types.fd);
  const sshd = [null, null, null, net.file(socks.listen)];
  fds.table(kernel.tasks[1], [...sshd, net.file(socks.ssh6)]);
  const regular = fds.file(net.regularInode(55));
  fds.table(kernel.tasks[2], [regular, null, null, null, null, net.file(socks.dhcp)]);
  return { kernel, net, socks };
}

const EXPECTED = [
  ["tcp", "inet", "LISTEN", "0.0.0.0", 22, "0.0.0.0", 0, 1001, [{ pid: 100, fd: 3 }]],
  ["tcp", "inet6", "ESTABLISHED", "2001:db8::1", 22, "2001:db8::2", 51000, 1002, [{
    pid: 100,
    fd: 4,
  }]],
  ["tcp", "inet", "TIME_WAIT", "10.0.0.1", 443, "10.0.0.2", 40000, 0, []],
  ["tcp", "inet", "NEW_SYN_RECV", "10.0.0.1", 443, "10.0.0.3", 41000, 0, []],
  ["udp", "inet", "UNCONN", "0.0.0.0", 68, "0.0.0.0", 0, 1003, [{ pid: 200, fd: 5 }]],
  ["udp", "inet", "ESTABLISHED", "10.0.0.1", 5353, "10.0.0.9", 53, 9000, []],
];

const rows = (list: SocketList) =>
  list.sockets.map((s) => [
    s.protocol,
    s.family,
    s.state,
    s.localAddress,
    s.localPort,
    s.remoteAddress,
    s.remotePort,
    s.inode,
    s.owners,
  ]);

Deno.test("listSockets() rebuilds TCP and UDP sockets of both families, with their owners", async () => {
  const { kernel, socks } = image();
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  assertEquals(list.reason, undefined);
  assertEquals(list.truncated, false);
  assertEquals(rows(list), EXPECTED);
  assertEquals(list.sockets[2].sock, space.hex(socks.timeWait));
  assertEquals(list.sockets.filter((s) => s.error), []);
});

Deno.test("listSockets() reports a chain that loops and lists each socket once", async () => {
  const { kernel, socks } = image();
  kernel.mutate(socks.timeWait, { next: socks.ssh6 + types.nullsNodeOffset });
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  assert(list.truncated);
  assert(list.reason!.includes("bucket 5 of ehash") && list.reason!.includes("loops"));
  assertEquals(rows(list), EXPECTED);
});

Deno.test("listSockets() stops chains that merge into one already walked", async () => {
  const { kernel, net, socks } = image();
  kernel.mutate(socks.synRecv, { next: socks.ssh6 + types.nullsNodeOffset });
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  assert(list.truncated);
  assert(list.reason!.includes(`bucket 9 of ehash of inet_hashinfo ${space.hex(net.hashinfo)}`));
  assert(list.reason!.includes(`reaches ${space.hex(socks.ssh6)}, already listed`), list.reason);
  assertEquals(rows(list), EXPECTED);
});

Deno.test("listSockets() bounds a huge bucket mask", async () => {
  const { kernel, net } = image();
  kernel.mutate(net.hashinfo, { ehashMask: 0xffff_ffff });
  const mem = new CachedMemory(kernel.build());
  const list = await listSockets(mem, core, types, kernel.initTask, { maxBuckets: 16 });
  assert(list.truncated);
  assert(list.reason!.includes("4294967296 buckets, more than 16"), list.reason);
  assertEquals(rows(list), EXPECTED);
  const unbounded = await listSockets(mem, core, types, kernel.initTask);
  assert(unbounded.reason!.includes("Cannot read"), unbounded.reason);
  assertEquals(unbounded.sockets.length, 3);
});

Deno.test("listSockets() stops a chain at a non-kernel pointer or a missing sock, and goes on", async () => {
  const { kernel, socks } = image();
  kernel.mutate(socks.ssh6, { next: { raw: 0x7fff_0000_2000n } });
  kernel.remove(socks.dhcp);
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  assert(list.truncated);
  assert(list.reason!.includes("0x7fff00002000"), list.reason);
  assert(list.reason!.includes("bucket 2 of udp_table"), list.reason);
  assertEquals(rows(list), [EXPECTED[0], EXPECTED[1], EXPECTED[3], EXPECTED[5]]);
});

Deno.test("listSockets() lists a socket whose sk_socket is bad with an error", async () => {
  const { kernel, socks } = image();
  kernel.mutate(socks.dns, { socket: { raw: 0x1000n } });
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  const dns = list.sockets[5];
  assertEquals([dns.inode, dns.localPort], [0, 5353]);
  assert(dns.error?.includes("sk_socket"), dns.error);
});

Deno.test("listSockets() takes Linux 6.1's global udp_table when the namespace has none", async () => {
  const { kernel, net } = image();
  kernel.mutate(net.net, { udpTable: null });
  const mem = new CachedMemory(kernel.build());
  const without = await listSockets(mem, core, types, kernel.initTask);
  assert(without.reason!.includes("): Cannot follow ipv4.udp_table"), without.reason);
  assertEquals(rows(without), EXPECTED.slice(0, 4));
  const given = await listSockets(mem, core, types, kernel.initTask, { udpTable: net.udpTable });
  assertEquals([given.truncated, rows(given)], [false, EXPECTED]);
});

Deno.test("listSockets() bounds the number of sockets", async () => {
  const { kernel } = image();
  const mem = new CachedMemory(kernel.build());
  const list = await listSockets(mem, core, types, kernel.initTask, { maxSockets: 2 });
  assert(list.truncated);
  assert(list.reason!.includes("more than 2 sockets"), list.reason);
  assertEquals(list.sockets.length, 2);
});

Deno.test("listSockets() reports a namespace it cannot reach", async () => {
  const { kernel } = image();
  kernel.mutate(kernel.initTask, { nsproxy: null });
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  assert(list.truncated);
  assert(list.reason!.startsWith("network namespace: Cannot follow nsproxy"), list.reason);
  assertEquals(list.sockets, []);
});

Deno.test("ipv4Text() and ipv6Text() write addresses as ss does", () => {
  assertEquals(ipv4Text(new Uint8Array([192, 168, 1, 20])), "192.168.1.20");
  for (
    const text of [
      "::",
      "::1",
      "2001:db8::1",
      "fe80::1:2:3:4",
      "2001:db8:0:1:1:1:1:1",
      "2001:0:0:1::1",
      "1::",
    ]
  ) {
    assertEquals(ipv6Text(addressBytes(text)), text);
  }
  assertEquals(ipv6Text(addressBytes("2001:db8:0:0:1:0:0:1")), "2001:db8::1:0:0:1");
  const mapped = addressBytes("::ffff:a00:1");
  assertEquals(ipv6Text(mapped), "::ffff:10.0.0.1");
});

Deno.test("resolveSocketTypes() names the struct a kernel lacks", () => {
  const b = new BtfBuilder();
  b.addStruct("nsproxy", { size: 8, members: [] });
  assertThrows(() => resolveSocketTypes(parseBtf(b.build())), LayoutError, "net_ns");
});

Deno.test("planSockets() covers listSockets() in both modes; selective copies far less", async () => {
  const { kernel, net } = image();
  const img = kernel.build();
  for (const udpTable of [undefined, net.udpTable]) {
    const expected = await listSockets(new CachedMemory(img), core, types, kernel.initTask);
    const checks = await checkPlan(
      img,
      (b) => planSockets(b, types, planTasks(b, core, kernel.initTask), { udpTable }),
      (mem) => listSockets(mem, core, types, kernel.initTask, { udpTable }),
    );
    for (const check of Object.values(checks)) {
      assertEquals(check.misses, []);
      assertEquals(check.result, expected);
    }
    assert(checks.selective.bytes * 3 < checks.whole.bytes);
  }
});

Deno.test("a file is a socket's only when its private_data is its inode's socket, in both modes", async () => {
  const { kernel, net, socks } = image();
  const fds = new SyntheticFds(kernel, types.fd);
  // init holds the listener through a file whose private_data is another socket (the kernel
  // would not take that file for the listener's: sock_from_file reads private_data), and a
  // regular file whose inode is laid out like a socket_alloc.
  const other = kernel.place(types.socketAlloc, { sk: null }) + types.socketOffset;
  const regular = net.regularInode(56);
  fds.table(kernel.tasks[0], [net.file(socks.listen, other), fds.file(regular)]);
  const img = kernel.build();
  const expected = await listSockets(new CachedMemory(img), core, types, kernel.initTask);
  assertEquals(rows(expected), EXPECTED);
  const checks = await checkPlan(
    img,
    (b) => planSockets(b, types, planTasks(b, core, kernel.initTask)),
    (mem) => listSockets(mem, core, types, kernel.initTask),
  );
  for (const check of Object.values(checks)) {
    assertEquals(check.misses, []);
    assertEquals(check.result, expected);
  }
  // The regular file's inode is never copied: the plan tests private_data first.
  const b = new PlanBuilder("selective");
  planSockets(b, types, planTasks(b, core, kernel.initTask));
  const walked = interpretPlan(decodePlan(encodePlan(b.build())), img);
  const mode = regular + types.socketAlloc.fields.find((f) => f.name === "mode")!.offset -
    types.vfsInodeOffset;
  const raw = space.fromKAddr(mode);
  assert(!walked.records.some((r) => r.addr <= raw && raw < r.addr + BigInt(r.bytes.length)));
});

const CHILD_NET_NS = 4026532400;

/** The image, and a second namespace sharing its tables (the default), with a listener. */
function twoNamespaces() {
  const { kernel, net, socks } = image();
  const child = net.namespace(CHILD_NET_NS);
  const inChild = net.sock("lhash2", 4, {
    family: "inet",
    state: LISTEN,
    local: "127.0.0.1",
    localPort: 8080,
    inode: 2001,
    net: child,
  });
  return { kernel, net, socks, child, inChild };
}

Deno.test("listSockets() walks every network namespace, each table once, each socket labelled", async () => {
  const { kernel, inChild } = twoNamespaces();
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  assertEquals([list.truncated, list.reason], [false, undefined]);
  assertEquals(list.namespaces, [INIT_NET_NS, CHILD_NET_NS]);
  assertEquals(list.sockets.length, EXPECTED.length + 1, "the shared tables are scanned once");
  const child = list.sockets.find((s) => s.sock === space.hex(inChild))!;
  assertEquals([child.localAddress, child.localPort, child.netNs], [
    "127.0.0.1",
    8080,
    CHILD_NET_NS,
  ]);
  assertEquals(
    list.sockets.filter((s) => s !== child).map((s) => s.netNs),
    EXPECTED.map(() => INIT_NET_NS),
  );
});

Deno.test("planSockets() covers every namespace's walk in both modes", async () => {
  const { kernel } = twoNamespaces();
  const img = kernel.build();
  const expected = await listSockets(new CachedMemory(img), core, types, kernel.initTask);
  const checks = await checkPlan(
    img,
    (b) => planSockets(b, types, planTasks(b, core, kernel.initTask)),
    (mem) => listSockets(mem, core, types, kernel.initTask),
  );
  for (const [mode, check] of Object.entries(checks)) {
    assertEquals(check.misses, [], mode);
    assertEquals(check.result, expected, mode);
  }
});

Deno.test("listSockets() stops a namespace list that loops, and keeps what it walked", async () => {
  const { kernel, child } = twoNamespaces();
  kernel.mutate(child, { listNext: child + types.netListOffset });
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  assert(list.reason?.includes("net_namespace_list: it loops back to net"), list.reason);
  assertEquals(list.namespaces, [INIT_NET_NS, CHILD_NET_NS]);
  assertEquals(list.sockets.length, EXPECTED.length + 1);
});

Deno.test("listSockets() refuses a list head the initial namespace is not first on", async () => {
  const { kernel, net, child, inChild } = twoNamespaces();
  // init_net's list.prev leads to the child, whose next is not init_net.
  kernel.mutate(net.net, { listPrev: child + types.netListOffset });
  kernel.mutate(child, { listNext: net.listHead });
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  assert(list.reason?.includes("is not first on the list"), list.reason);
  assertEquals(list.namespaces, [INIT_NET_NS]);
  // Its socket is still in the shared tables, labelled by its own namespace (read anew).
  assertEquals(list.sockets.find((s) => s.sock === space.hex(inChild))?.netNs, CHILD_NET_NS);
});

Deno.test("a socket whose namespace pointer is bad is listed with an error", async () => {
  const { kernel, socks } = image();
  kernel.mutate(socks.listen, { net: { raw: 0x1234n } });
  const list = await listSockets(new CachedMemory(kernel.build()), core, types, kernel.initTask);
  const listen = list.sockets[0];
  assertEquals([listen.localPort, listen.netNs], [22, undefined]);
  assert(listen.error?.includes("its network namespace"), listen.error);
});
