/**
 * The kernel structures of the socket view (sockets.ts), resolved once per guest kernel.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { Pointer } from "../memory/mod.ts";
import {
  LayoutError,
  offsetOf,
  ptr,
  raw,
  resolveLayout,
  type StructLayout,
  uint,
} from "../kernel/mod.ts";
import { resolveFdTypes } from "./fd_table.ts";

const common = (field: string) => `__sk_common.${field}`;

/** A hash bucket: its size and where its chain head is. */
function bucket(btf: Btf, struct: string, head: string) {
  let stride: number;
  try {
    stride = btf.sizeof(btf.struct(struct).id);
  } catch (error) {
    throw new LayoutError(`Cannot resolve struct "${struct}": ${(error as Error).message}`);
  }
  return { stride, head: offsetOf(btf, struct, head) };
}

/** What the socket view reads of a network namespace. */
export interface NetFields {
  hashinfo: Pointer;
  udpTable?: Pointer;
  /** Its inode number, as /proc/PID/ns/net shows it. */
  inum: number;
  /** Its links on `net_namespace_list`. */
  listNext: Pointer;
  listPrev: Pointer;
}

function resolveNet(btf: Btf): StructLayout<NetFields> {
  const common = {
    hashinfo: ptr("ipv4.tcp_death_row.hashinfo"),
    inum: uint("ns.inum"),
    listNext: ptr("list.next"),
    listPrev: ptr("list.prev"),
  };
  try {
    return resolveLayout(btf, "net", { ...common, udpTable: ptr("ipv4.udp_table") });
  } catch (error) {
    if (!(error instanceof LayoutError)) throw error;
    return resolveLayout(btf, "net", common);
  }
}

/**
 * Resolves the structures of the socket tables. The fields are the same in Linux 6.1 and 6.18
 * but for `net->ipv4.udp_table`, which 6.1 lacks (pass `udpTable` to the view and plan there).
 * @throws {LayoutError} naming the struct and field the kernel lacks.
 */
export function resolveSocketTypes(btf: Btf) {
  return {
    nsproxy: resolveLayout(btf, "nsproxy", { netNs: ptr("net_ns") }),
    net: resolveNet(btf),
    /** Offset of `list` in struct net: an entry of net_namespace_list minus this is its net. */
    netListOffset: offsetOf(btf, "net", "list"),
    listHead: resolveLayout(btf, "list_head", { next: ptr("next"), prev: ptr("prev") }),
    hashinfo: resolveLayout(btf, "inet_hashinfo", {
      ehash: ptr("ehash"),
      ehashMask: uint("ehash_mask"),
      lhash2: ptr("lhash2"),
      lhash2Mask: uint("lhash2_mask"),
    }),
    ehash: bucket(btf, "inet_ehash_bucket", "chain.first"),
    lhash2: bucket(btf, "inet_listen_hashbucket", "nulls_head.first"),
    udpTable: resolveLayout(btf, "udp_table", { hash: ptr("hash"), mask: uint("mask") }),
    udpSlot: bucket(btf, "udp_hslot", "head.first"),
    /** A chain entry: sock_common's fields, and the full sock's `sk_socket`. */
    sock: resolveLayout(btf, "sock", {
      daddr: raw(common("skc_daddr")),
      rcvSaddr: raw(common("skc_rcv_saddr")),
      dport: uint(common("skc_dport")),
      num: uint(common("skc_num")),
      family: uint(common("skc_family")),
      state: uint(common("skc_state")),
      v6Daddr: raw(common("skc_v6_daddr")),
      v6RcvSaddr: raw(common("skc_v6_rcv_saddr")),
      next: ptr(common("skc_node.next")),
      socket: ptr("sk_socket"),
      /** IPPROTO_TCP or IPPROTO_UDP for the inet sockets the views list. */
      protocol: uint("sk_protocol"),
      /** Its network namespace (possible_net_t). */
      net: ptr(common("skc_net.net")),
    }),
    /** Offsets of skc_nulls_node (TCP chains) and skc_node (UDP chains) in struct sock. */
    nullsNodeOffset: offsetOf(btf, "sock", common("skc_nulls_node")),
    nodeOffset: offsetOf(btf, "sock", common("skc_node")),
    socketAlloc: resolveLayout(btf, "socket_alloc", {
      sk: ptr("socket.sk"),
      mode: uint("vfs_inode.i_mode"),
      ino: uint("vfs_inode.i_ino"),
    }),
    /** Offsets of the socket and the inode in struct socket_alloc. */
    socketOffset: offsetOf(btf, "socket_alloc", "socket"),
    vfsInodeOffset: offsetOf(btf, "socket_alloc", "vfs_inode"),
    fd: {
      ...resolveFdTypes(btf),
      /** A file's inode and private_data: a socket file's is its socket (_socket_fds.ts). */
      file: resolveLayout(btf, "file", { inode: ptr("f_inode"), privateData: ptr("private_data") }),
    },
  };
}

/** The resolved socket structures of one guest kernel. */
export type SocketTypes = ReturnType<typeof resolveSocketTypes>;
