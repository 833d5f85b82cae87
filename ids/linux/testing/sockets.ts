/**
 * Synthetic socket tables for unit tests: init_task's network namespace with its TCP (lhash2,
 * ehash) and UDP hash tables, socks chained in them, and socket inodes, laid out with a real
 * kernel's offsets in a {@linkcode SyntheticKernel}.
 *
 * @module
 */

import type { KAddr } from "../../memory/mod.ts";
import type { SocketTypes } from "../mod.ts";
import type { SyntheticKernel } from "./synthetic.ts";
import { INIT_NET_NS } from "./namespaces.ts";

/** A sock to lay out. */
export interface SockSpec {
  family: "inet" | "inet6";
  /** skc_state: a TCP state number (UDP: 7 unconnected, 1 connected). */
  state: number;
  local: string;
  localPort: number;
  remote?: string;
  remotePort?: number;
  /** The inode of its socket; none for TIME_WAIT and NEW_SYN_RECV, or an orphan. */
  inode?: number;
  /** Its network namespace's address. @default the initial one */
  net?: KAddr;
}

/** Bytes of an address in text form: dotted IPv4, or IPv6 with at most one "::". */
export function addressBytes(text: string): Uint8Array {
  if (!text.includes(":")) return new Uint8Array(text.split(".").map(Number));
  const [head, tail] = text.split("::");
  const groups = (s?: string) => (s ? s.split(":").map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  const all = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  return new Uint8Array(all.flatMap((g) => [g >> 8, g & 0xff]));
}

type Table = "lhash2" | "ehash" | "udp";

/** The namespace, its tables, and helpers to add socks and socket inodes. */
export class SyntheticNet {
  readonly hashinfo: KAddr;
  readonly udpTable: KAddr;
  readonly net: KAddr;
  /** net_namespace_list: its head, then each namespace's `list`. */
  readonly listHead: KAddr;
  readonly #ring: KAddr[];
  readonly #arrays: Record<Table, { at: KAddr; bytes: Uint8Array; stride: number; head: number }>;
  readonly #last = new Map<string, KAddr>();
  /** The socket_alloc of each full sock. */
  readonly #allocs = new Map<KAddr, KAddr>();

  constructor(
    readonly kernel: SyntheticKernel,
    readonly types: SocketTypes,
    masks: Record<Table, number> = { lhash2: 7, ehash: 15, udp: 7 },
  ) {
    this.listHead = kernel.place(types.listHead, {});
    this.#ring = [this.listHead];
    const array = (table: Table, stride: number, head: number, nulls: boolean) => {
      const bytes = new Uint8Array((masks[table] + 1) * stride);
      const view = new DataView(bytes.buffer);
      // Empty nulls chains end at a marker holding the bucket's index.
      if (nulls) {
        for (let i = 0; i <= masks[table]; i++) {
          view.setBigUint64(i * stride + head, BigInt(i * 2 + 1), true);
        }
      }
      return { at: kernel.placeBytes(bytes), bytes, stride, head };
    };
    this.#arrays = {
      lhash2: array("lhash2", types.lhash2.stride, types.lhash2.head, true),
      ehash: array("ehash", types.ehash.stride, types.ehash.head, true),
      udp: array("udp", types.udpSlot.stride, types.udpSlot.head, false),
    };
    this.hashinfo = kernel.place(types.hashinfo, {
      ehash: this.#arrays.ehash.at,
      ehashMask: masks.ehash,
      lhash2: this.#arrays.lhash2.at,
      lhash2Mask: masks.lhash2,
    });
    this.udpTable = kernel.place(types.udpTable, { hash: this.#arrays.udp.at, mask: masks.udp });
    this.net = this.namespace(INIT_NET_NS);
  }

  /**
   * The network namespace `inum` (the kernel's, of its tasks), with the tables of the initial
   * one (or `tables`), appended to net_namespace_list. Returns its address.
   */
  namespace(inum: number, tables: { hashinfo?: KAddr; udpTable?: KAddr } = {}): KAddr {
    const t = this.types;
    const at = this.kernel.place(t.net, {
      hashinfo: tables.hashinfo ?? this.hashinfo,
      udpTable: tables.udpTable ?? this.udpTable,
      inum,
    }, { at: this.kernel.ns.net(inum) });
    this.#ring.push(at + t.netListOffset);
    const ring = this.#ring;
    ring.forEach((entry, i) => {
      const links = {
        next: ring[(i + 1) % ring.length],
        prev: ring[(i + ring.length - 1) % ring.length],
      };
      if (i === 0) this.kernel.mutate(this.listHead, links);
      else {this.kernel.mutate(entry - t.netListOffset, {
          listNext: links.next,
          listPrev: links.prev,
        });}
    });
    return at;
  }

  /** Adds a sock at the end of bucket `bucket` of `table`; returns its address. */
  sock(table: Table, bucket: number, spec: SockSpec): KAddr {
    const t = this.types;
    const inet6 = spec.family === "inet6";
    const local = addressBytes(spec.local);
    const remote = addressBytes(spec.remote ?? (inet6 ? "::" : "0.0.0.0"));
    const port = spec.remotePort ?? 0;
    const nulls = table !== "udp";
    const at = this.kernel.place(t.sock, {
      family: inet6 ? 10 : 2,
      state: spec.state,
      rcvSaddr: inet6 ? new Uint8Array(4) : local,
      daddr: inet6 ? new Uint8Array(4) : remote,
      v6RcvSaddr: inet6 ? local : new Uint8Array(16),
      v6Daddr: inet6 ? remote : new Uint8Array(16),
      num: spec.localPort,
      dport: ((port & 0xff) << 8) | (port >> 8),
      next: nulls ? { raw: BigInt(bucket * 2 + 1) } : null,
      net: spec.net ?? this.net,
      // Not a full sock: what lies at sk_socket's offset is not a pointer to follow.
      socket: spec.inode === undefined ? { raw: 0x4141_4141_4141_4141n } : null,
    });
    if (spec.inode !== undefined) {
      const alloc = this.kernel.place(t.socketAlloc, { sk: at, mode: 0o140777, ino: spec.inode });
      this.kernel.mutate(at, { socket: alloc + t.socketOffset });
      this.#allocs.set(at, alloc);
    }
    const delta = nulls ? t.nullsNodeOffset : t.nodeOffset;
    const key = `${table}:${bucket}`;
    const previous = this.#last.get(key);
    if (previous === undefined) {
      const a = this.#arrays[table];
      new DataView(a.bytes.buffer).setBigUint64(
        bucket * a.stride + a.head,
        this.kernel.space.fromKAddr(at + delta),
        true,
      );
    } else {
      this.kernel.mutate(previous, { next: at + delta });
    }
    this.#last.set(key, at);
    return at;
  }

  /**
   * A file of the socket of the sock at `sock`, as sock_alloc_file makes it: its f_inode is the
   * socket's inode, its private_data the socket; `privateData` puts something else there.
   */
  file(sock: KAddr, privateData?: KAddr | null): KAddr {
    const alloc = this.#allocs.get(sock);
    if (alloc === undefined) throw new TypeError(`The sock at ${sock} has no socket`);
    return this.kernel.place(this.types.fd.file, {
      inode: alloc + this.types.vfsInodeOffset,
      privateData: privateData === undefined ? alloc + this.types.socketOffset : privateData,
    });
  }

  /** An inode that is not a socket's, inside memory laid out like a socket_alloc. */
  regularInode(ino: number): KAddr {
    const alloc = this.kernel.place(this.types.socketAlloc, { sk: null, mode: 0o100644, ino });
    return alloc + this.types.vfsInodeOffset;
  }
}
