/**
 * Every network namespace of the guest and the socket tables they use, for the socket view
 * (sockets.ts).
 *
 * The namespaces are on `net_namespace_list`, linked through `net->list`. Its head is a global
 * that a kernel without data symbols in kallsyms (this machine's) does not name, so it is found
 * from the initial namespace: `setup_net` appends every namespace at the list's tail, and the
 * initial one is the first ever set up and never leaves, so `init_net.list.prev` is the head;
 * it is used only when its `next` leads back to `init_net`. The walk is bounded and checked for
 * loops.
 *
 * Namespaces share tables: `net->ipv4.tcp_death_row.hashinfo` is the global `tcp_hashinfo`
 * unless the namespace was made with `net.ipv4.tcp_child_ehash_entries` set, and
 * `net->ipv4.udp_table` the global `udp_table` unless `udp_child_hash_entries` was (Linux 6.1
 * keeps only the global one). Each table is scanned once, and each socket is labelled with its
 * own namespace (`sk->__sk_common.skc_net`), not with the namespace its table was reached from.
 *
 * @module
 */

import { BadPointer, follow, type GuestMemory, type KAddr, type Pointer } from "../memory/mod.ts";
import { type NodeRef, peekStruct, type PlanBuilder, readStruct } from "../kernel/mod.ts";
import type { KernelTypes } from "./kernel_types.ts";
import type { NetFields, SocketTypes } from "./socket_types.ts";

/** Most network namespaces walked. */
export const MAX_NAMESPACES = 1 << 16;

/** A table to scan. */
export interface Table {
  name: string;
  protocol: "tcp" | "udp";
  array: Pointer;
  mask: number;
  stride: number;
  head: number;
  nulls: boolean;
  delta: number;
}

/** A network namespace. */
export interface NetNamespace {
  at: KAddr;
  /** Its inode number, as /proc/PID/ns/net shows it. */
  inum: number;
  net: NetFields;
}

/**
 * The network namespaces on net_namespace_list, the initial one first; what cannot be walked
 * goes to `problems` (the initial one alone, or none, is then returned).
 */
export async function listNetNamespaces(
  mem: GuestMemory,
  core: KernelTypes,
  types: SocketTypes,
  initTask: KAddr,
  problems: string[],
  max = MAX_NAMESPACES,
): Promise<NetNamespace[]> {
  let init: NetNamespace;
  try {
    const task = await readStruct(mem, initTask, core.task);
    const nsproxy = mem.space.follow(task.nsproxy, "nsproxy of init_task", initTask);
    const ns = await readStruct(mem, nsproxy, types.nsproxy);
    const at = mem.space.follow(ns.netNs, "net_ns of nsproxy", nsproxy);
    init = { at, ...await netAt(mem, types, at) };
  } catch (error) {
    problems.push(`network namespace: ${(error as Error).message}`);
    return [];
  }
  const found = [init];
  const fail = (why: string) => {
    problems.push(`net_namespace_list: ${why}`);
    return found;
  };
  const entry = init.at + types.netListOffset;
  let head: KAddr;
  try {
    head = mem.space.follow(init.net.listPrev, "list.prev of the initial net", init.at);
    const links = await readStruct(mem, head, types.listHead);
    if (links.next !== entry) {
      return fail(
        `the initial net ${mem.space.hex(init.at)} is not first on the list its list.prev ${
          mem.space.hex(head)
        } ` +
          "heads",
      );
    }
  } catch (error) {
    return fail((error as Error).message);
  }
  const seen = new Set<KAddr>([init.at]);
  try {
    for (let e = mem.space.follow(init.net.listNext, "list.next of net", init.at); e !== head;) {
      const at = e - types.netListOffset;
      if (seen.has(at)) return fail(`it loops back to net ${mem.space.hex(at)}`);
      if (found.length >= max) return fail(`more than ${max} network namespaces`);
      seen.add(at);
      const ns = { at, ...await netAt(mem, types, at) };
      found.push(ns);
      e = mem.space.follow(ns.net.listNext, "list.next of net", at);
    }
  } catch (error) {
    return fail((error as Error).message);
  }
  return found;
}

async function netAt(mem: GuestMemory, types: SocketTypes, at: KAddr) {
  const net = peekStruct(mem, at, types.net) ?? await readStruct(mem, at, types.net);
  return { inum: net.inum, net };
}

/**
 * The distinct TCP and UDP tables of `namespaces` (`udpTable`: Linux 6.1's global one); what
 * cannot be found goes to `problems`, once per table.
 */
export async function tablesOf(
  mem: GuestMemory,
  types: SocketTypes,
  namespaces: NetNamespace[],
  udpTable: KAddr | undefined,
  problems: string[],
): Promise<Table[]> {
  const found: Table[] = [];
  const seen = new Set<string>();
  const once = (key: string) => !seen.has(key) && !!seen.add(key);
  const chains = { nulls: true, delta: types.nullsNodeOffset, protocol: "tcp" as const };
  for (const { at: netAt, inum, net } of namespaces) {
    const where = `net ${inum} (${mem.space.hex(netAt)})`;
    try {
      const at = follow(net.hashinfo, "ipv4.tcp_death_row.hashinfo");
      if (once(`tcp ${at}`)) {
        const h = await readStruct(mem, at, types.hashinfo);
        const name = `inet_hashinfo ${mem.space.hex(at)}`;
        found.push(
          {
            ...chains,
            ...types.lhash2,
            name: `lhash2 of ${name}`,
            array: h.lhash2,
            mask: h.lhash2Mask,
          },
          {
            ...chains,
            ...types.ehash,
            name: `ehash of ${name}`,
            array: h.ehash,
            mask: h.ehashMask,
          },
        );
      }
    } catch (error) {
      if (once(`tcp: ${(error as Error).message}`)) {
        problems.push(`tcp of ${where}: ${(error as Error).message}`);
      }
    }
    try {
      const at = udpTable ??
        (net.udpTable === undefined ? undefined : follow(net.udpTable, "ipv4.udp_table"));
      if (at === undefined) {
        throw new Error("this kernel keeps it in the global udp_table: pass it");
      }
      if (once(`udp ${at}`)) {
        const t = await readStruct(mem, at, types.udpTable);
        found.push({
          ...types.udpSlot,
          name: `udp_table ${mem.space.hex(at)}`,
          protocol: "udp",
          array: t.hash,
          mask: t.mask,
          nulls: false,
          delta: types.nodeOffset,
        });
      }
    } catch (error) {
      if (once(`udp: ${(error as Error).message}`)) {
        problems.push(`udp of ${where}: ${(error as Error).message}`);
      }
    }
  }
  return found;
}

/**
 * The inum of a socket's namespace (`skc_net`), from the namespaces walked or else read; an
 * error when it cannot be read.
 */
export class NetLabels {
  readonly #inum = new Map<KAddr, number>();
  constructor(readonly mem: GuestMemory, readonly types: SocketTypes, known: NetNamespace[]) {
    for (const ns of known) this.#inum.set(ns.at, ns.inum);
  }

  /** The inum of the net `net` points to; undefined for NULL (no namespace). */
  async of(net: Pointer): Promise<number | undefined> {
    if (net === null) return undefined;
    if (net instanceof BadPointer) follow(net, "skc_net of sock");
    const at = net as KAddr;
    let inum = this.#inum.get(at);
    if (inum === undefined) {
      inum = (await netAt(this.mem, this.types, at)).inum;
      this.#inum.set(at, inum);
    }
    return inum;
  }
}

/**
 * Adds to `b`, from the initial net's node `init`, the walk of net_namespace_list (through the
 * list's head, its `list.prev`), each namespace on it a `net`. Only the initial net's
 * `list.prev` is the head: another's is the namespace before it.
 */
export function planNetNamespaces(
  b: PlanBuilder,
  types: SocketTypes,
  init: NodeRef,
  net: NodeRef,
): void {
  const head = b.node(types.listHead, { fieldsOnly: true });
  b.ptr(init, "listPrev", head);
  b.list(head, 0, net, types.netListOffset, { max: MAX_NAMESPACES });
}
