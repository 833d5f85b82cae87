/**
 * TCP and UDP sockets (IPv4 and IPv6) of every network namespace, rebuilt from the kernel's own
 * hash tables, as `ss -tuan` shows them in each, with the processes that own them and each
 * socket's namespace.
 *
 * The namespaces are those on net_namespace_list, from init_task's (`nsproxy->net_ns`), each
 * table they use scanned once (_netns.ts). TCP: `net->ipv4.tcp_death_row.hashinfo`,
 * whose `lhash2` (listeners) and `ehash` (everything else, TIME_WAIT and NEW_SYN_RECV included)
 * are arrays of hlist_nulls chains through `skc_nulls_node`. UDP: `net->ipv4.udp_table` (Linux
 * 6.2+; on 6.1 the table is the global `udp_table`, whose address callers pass as `udpTable`),
 * an array of `udp_hslot` whose hlists run through `skc_node` (the scan: _socket_tables.ts).
 * Owners come from every task's fd table: a socket file's inode is the `vfs_inode` of a `struct
 * socket_alloc`, whose socket's `sk` is the sock (_socket_fds.ts, which the held sockets' view,
 * {@linkcode listHeldSockets}, reads alone).
 *
 * Guest memory is hostile: bucket counts, chains and tables are bounded, chains are checked for
 * loops, a socket whose fields cannot be read is listed with an error, and every walk that
 * could not finish makes the list truncated, with the reasons.
 *
 * @module
 */

import { follow, type GuestMemory, type KAddr } from "../memory/mod.ts";
import { type PlanBuilder, readStruct } from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import { listProcesses, type ProcessList, type TaskNodes } from "./processes.ts";
import type { SocketTypes } from "./socket_types.ts";
import {
  AF_INET,
  AF_INET6,
  FULL_MASK,
  FULL_STATES,
  ipv4Text,
  ipv6Text,
  stateName,
  TCP_STATES,
} from "./_inet.ts";

import { listNetNamespaces, NetLabels, planNetNamespaces, tablesOf } from "./_netns.ts";
import { type Entry, scan, type Visit } from "./_socket_tables.ts";
import { planFdSockets, socketFds } from "./_socket_fds.ts";

/** A process holding a socket open. */
export interface SocketOwner {
  pid: number;
  fd: number;
}

/** One socket. */
export interface Socket {
  protocol: "tcp" | "udp";
  /** `inet` or `inet6`; "" (with an error) for another family. */
  family: string;
  /** TCP: ESTABLISHED, LISTEN, TIME_WAIT...; UDP as ss shows it: UNCONN or ESTAB. */
  state: string;
  /** Dotted IPv4 or compressed IPv6 text. */
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** Its socket's inode number, as /proc/net/tcp shows; 0 for TIME_WAIT, NEW_SYN_RECV, orphans. */
  inode: number;
  /** Address of the sock (or time-wait or request sock). */
  sock: string;
  /** Processes with the socket in their fd table; [] when none. */
  owners: SocketOwner[];
  /** Its network namespace's inode number (its own `skc_net`), as /proc/PID/ns/net shows it. */
  netNs?: number;
  error?: string;
}

/** The result of the walks. */
export interface SocketList {
  sockets: Socket[];
  /** The network namespaces whose tables were scanned (inode numbers), the initial one first. */
  namespaces?: number[];
  /** A table, a chain or the owners' walk could not be finished. */
  truncated: boolean;
  /** Why, for each walk that did not finish. */
  reason?: string;
}

/** Options of {@linkcode listSockets} and {@linkcode planSockets}. */
export interface SocketOptions {
  /** The global `udp_table` (Linux 6.1, whose netns_ipv4 has no udp_table). */
  udpTable?: KAddr;
  /** Most buckets scanned per table. @default 1 << 22 */
  maxBuckets?: number;
  /** Most entries followed per chain. @default 65536 */
  maxChain?: number;
  /** Most sockets listed. @default 1 << 20 */
  maxSockets?: number;
  /** Most tasks and fd slots per task scanned for owners. @default 1_000_000 and 65536 */
  maxTasks?: number;
  maxFds?: number;
  /** listHeldSockets: the task list of this snapshot, when another view already read it. */
  list?: ProcessList;
}

const DEFAULTS = {
  maxBuckets: 1 << 22,
  maxChain: 65536,
  maxSockets: 1 << 20,
  maxTasks: 1_000_000,
  maxFds: 65536,
};

/**
 * Lists the TCP and UDP sockets of init_task's network namespace, with their owners.
 * Never throws: what cannot be read is reported in the list.
 */
export async function listSockets(
  mem: GuestMemory,
  core: KernelTypes,
  types: SocketTypes,
  initTask: KAddr,
  options: SocketOptions = {},
): Promise<SocketList> {
  const limits = { ...DEFAULTS, ...options };
  const problems: string[] = [];
  const sockets: Socket[] = [];
  const bySock = new Map<KAddr, Socket>();
  const namespaces = await listNetNamespaces(mem, core, types, initTask, problems);
  const labels = new NetLabels(mem, types, namespaces);

  const visit: Visit = async (at, entry, protocol) => {
    // A sock is on one chain only: meeting one again means the chains were made to merge.
    if (bySock.has(at)) throw new Error(`it reaches ${mem.space.hex(at)}, already listed`);
    if (sockets.length >= limits.maxSockets) {
      problems.push(`more than ${limits.maxSockets} sockets`);
      return false;
    }
    const socket = await describe(mem, types, at, entry, protocol, labels);
    sockets.push(socket);
    bySock.set(at, socket);
    return true;
  };

  for (const table of await tablesOf(mem, types, namespaces, limits.udpTable, problems)) {
    if (!await scan(mem, types, table, limits, problems, visit)) break;
  }
  await findOwners(mem, core, types, initTask, limits, problems, bySock);
  return {
    sockets,
    namespaces: namespaces.map((ns) => ns.inum),
    truncated: problems.length > 0,
    reason: problems.length ? summary(problems) : undefined,
  };
}

function summary(problems: string[]): string {
  const shown = problems.slice(0, 5).join("; ");
  return problems.length > 5 ? `${shown}; and ${problems.length - 5} more` : shown;
}

async function describe(
  mem: GuestMemory,
  types: SocketTypes,
  at: KAddr,
  e: Entry,
  protocol: "tcp" | "udp",
  labels: NetLabels,
): Promise<Socket> {
  const inet6 = e.family === AF_INET6;
  const s: Socket = {
    protocol,
    family: inet6 ? "inet6" : e.family === AF_INET ? "inet" : "",
    state: stateName(protocol, e.state),
    localAddress: inet6 ? ipv6Text(e.v6RcvSaddr) : ipv4Text(e.rcvSaddr),
    localPort: e.num,
    remoteAddress: inet6 ? ipv6Text(e.v6Daddr) : ipv4Text(e.daddr),
    remotePort: ((e.dport & 0xff) << 8) | (e.dport >> 8),
    inode: 0,
    sock: mem.space.hex(at),
    owners: [],
  };
  const errors: string[] = [];
  if (!s.family) errors.push(`family ${e.family} is neither AF_INET nor AF_INET6`);
  try {
    const netNs = await labels.of(e.net);
    if (netNs !== undefined) s.netNs = netNs;
  } catch (error) {
    errors.push(`its network namespace: ${(error as Error).message}`);
  }
  if (!TCP_STATES[e.state]) {
    errors.push(`state ${e.state} is no TCP state`);
  } else if (FULL_STATES.has(e.state) && e.socket !== null) {
    try {
      const socket = follow(e.socket, "sk_socket") - types.socketOffset;
      s.inode = (await readStruct(mem, socket, types.socketAlloc)).ino;
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  if (errors.length) s.error = errors.join("; ");
  return s;
}

/** Adds every task's socket files to the sockets' owners. */
async function findOwners(
  mem: GuestMemory,
  core: KernelTypes,
  types: SocketTypes,
  initTask: KAddr,
  limits: typeof DEFAULTS,
  problems: string[],
  bySock: Map<KAddr, Socket>,
): Promise<void> {
  let list;
  try {
    list = await listProcesses(mem, core, initTask, { maxTasks: limits.maxTasks });
  } catch (error) {
    problems.push(`owners: ${(error as Error).message}`);
    return;
  }
  if (list.truncated) problems.push(`owners: ${list.reason}`);
  await socketFds(mem, core, types, list.processes, limits.maxFds, problems, (pid, fd, sk) => {
    bySock.get(sk)?.owners.push({ pid, fd });
    return Promise.resolve(true);
  });
}

/**
 * Adds to `b` what {@linkcode listSockets} reads, going on from the task walk `tasks` of
 * `planTasks`: from init_task, nsproxy → net → the TCP and UDP tables, their buckets and
 * chains; from each entry in a full-socket state (an IN_SET condition on `skc_state`), its
 * socket; from each task, its fd table, each file's socket_alloc, and for socket inodes (an EQ
 * condition on `i_mode`) the sock.
 */
export function planSockets(
  b: PlanBuilder,
  types: SocketTypes,
  tasks: TaskNodes,
  options: SocketOptions = {},
): void {
  const limits = { ...DEFAULTS, ...options };
  const nsproxy = b.node(types.nsproxy);
  const initNet = b.node(types.net);
  const net = b.node(types.net);
  const hashinfo = b.node(types.hashinfo);
  const udp = b.node(types.udpTable);
  const sock = b.node(types.sock);
  const socket = b.node(types.socketAlloc);
  b.ptr(tasks.root, "nsproxy", nsproxy);
  b.ptr(nsproxy, "netNs", initNet);
  planNetNamespaces(b, types, initNet, net);
  for (const ns of [initNet, net]) {
    b.ptr(ns, "hashinfo", hashinfo);
    if (types.net.fields.some((f) => f.name === "udpTable")) b.ptr(ns, "udpTable", udp);
  }
  if (options.udpTable !== undefined) b.root(options.udpTable, udp);
  const chains = { countIsMask: true, max: Math.max(limits.maxBuckets, limits.maxChain) };
  const tcp = { ...chains, elem: "hnulls" as const, delta: types.nullsNodeOffset };
  b.array(hashinfo, "lhash2", "lhash2Mask", sock, {
    ...tcp,
    stride: types.lhash2.stride,
    elemOffset: types.lhash2.head,
  });
  b.array(hashinfo, "ehash", "ehashMask", sock, {
    ...tcp,
    stride: types.ehash.stride,
    elemOffset: types.ehash.head,
  });
  b.array(udp, "hash", "mask", sock, {
    ...chains,
    elem: "hlist",
    delta: types.nodeOffset,
    stride: types.udpSlot.stride,
    elemOffset: types.udpSlot.head,
  });
  b.ptr(sock, "socket", socket, types.socketOffset, {
    when: { field: "state", inSet: FULL_MASK },
  });
  b.ptr(sock, "net", net);
  planFdSockets(b, types, tasks, socket, sock, limits.maxFds);
}

/**
 * Adds to `b` what {@linkcode listHeldSockets} reads: each task's fd table, each file's
 * socket_alloc and, for socket inodes, the sock. No hash table is read.
 */
export function planHeldSockets(
  b: PlanBuilder,
  types: SocketTypes,
  tasks: TaskNodes,
  options: SocketOptions = {},
): void {
  // Every open file's inode is read for its type: copy only that, and the socket's sk.
  const socket = b.node(types.socketAlloc, { fieldsOnly: true });
  const sock = b.node(types.sock);
  // A held socket's namespace is read for its inode number only.
  b.ptr(sock, "net", b.node(types.net, { fieldsOnly: true }));
  planFdSockets(b, types, tasks, socket, sock, options.maxFds ?? DEFAULTS.maxFds, true);
}

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

/**
 * The TCP and UDP sockets the processes on the task list hold open, found through their fd
 * tables rather than the kernel's socket hash tables (which a rootkit can unlink a socket from
 * without closing it). A socket no process holds (a kernel socket, an orphan) is not listed.
 * Never throws: what cannot be read is reported in the list.
 */
export async function listHeldSockets(
  mem: GuestMemory,
  core: KernelTypes,
  types: SocketTypes,
  initTask: KAddr,
  options: SocketOptions = {},
): Promise<SocketList> {
  const limits = { ...DEFAULTS, ...options };
  const problems: string[] = [];
  const bySock = new Map<KAddr, Socket>();
  const labels = new NetLabels(mem, types, []);
  let list = options.list;
  try {
    list ??= await listProcesses(mem, core, initTask, { maxTasks: limits.maxTasks });
  } catch (error) {
    return { sockets: [], truncated: true, reason: `processes: ${(error as Error).message}` };
  }
  if (list.truncated) problems.push(`processes: ${list.reason}`);
  await socketFds(
    mem,
    core,
    types,
    list.processes,
    limits.maxFds,
    problems,
    async (pid, fd, sk) => {
      let socket = bySock.get(sk);
      if (!socket) {
        const entry = await readStruct(mem, sk, types.sock);
        if (entry.family !== AF_INET && entry.family !== AF_INET6) return true;
        if (entry.protocol !== IPPROTO_TCP && entry.protocol !== IPPROTO_UDP) return true;
        if (bySock.size >= limits.maxSockets) {
          problems.push(`more than ${limits.maxSockets} sockets`);
          return false;
        }
        const protocol = entry.protocol === IPPROTO_TCP ? "tcp" : "udp";
        socket = await describe(mem, types, sk, entry, protocol, labels);
        bySock.set(sk, socket);
      }
      socket.owners.push({ pid, fd });
      return true;
    },
  );
  return {
    sockets: [...bySock.values()],
    truncated: problems.length > 0,
    reason: problems.length ? summary(problems) : undefined,
  };
}
