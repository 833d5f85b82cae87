/**
 * Scanning one of the kernel's socket hash tables (_netns.ts finds them): its buckets, read in
 * batches, and the chain of each, an hlist or an hlist_nulls (whose end is an odd "nulls" value
 * rather than NULL). Each entry is handed to the caller, which lists it.
 *
 * Guest memory is hostile: the buckets scanned and each chain are bounded, a chain is checked for
 * loops, and a bucket array or chain that cannot be read is a problem reported, the scan going on
 * with the next.
 *
 * @module
 */

import { BadPointer, follow, type GuestMemory, type KAddr, type Pointer } from "../memory/mod.ts";
import { type Fields, readStruct } from "../kernel/mod.ts";
import type { SocketTypes } from "./socket_types.ts";
import type { Table } from "./_netns.ts";

/** The bounds of {@linkcode scan}, as `SocketOptions` (sockets.ts) sets them. */
interface ScanLimits {
  maxBuckets: number;
  maxChain: number;
}

/** What the views read of a chain entry (a sock, a time-wait or a request sock). */
export type Entry = Fields<SocketTypes["sock"]>;
/** Lists a chain entry; false when no more may be listed; throws when the chain is bad. */
export type Visit = (at: KAddr, entry: Entry, protocol: "tcp" | "udp") => Promise<boolean>;

function chainEnd(p: Pointer, nulls: boolean): boolean {
  if (p === null) return true;
  if (!nulls) return false;
  return p instanceof BadPointer ? (BigInt(p.value) & 1n) === 1n : p % 2 === 1;
}

/** Buckets read per guest read. */
const BUCKETS_PER_READ = 4096;

/** Scans a table's buckets and chains; false when the socket limit stopped it. */
export async function scan(
  mem: GuestMemory,
  types: SocketTypes,
  table: Table,
  limits: ScanLimits,
  problems: string[],
  visit: Visit,
): Promise<boolean> {
  const buckets = table.mask + 1;
  let count = buckets;
  if (buckets > limits.maxBuckets) {
    problems.push(`${table.name}: ${buckets} buckets, more than ${limits.maxBuckets}`);
    count = limits.maxBuckets;
  }
  let array: KAddr;
  try {
    array = follow(table.array, `the buckets of ${table.name}`);
  } catch (error) {
    problems.push((error as Error).message);
    return true;
  }
  for (let first = 0; first < count; first += BUCKETS_PER_READ) {
    const n = Math.min(BUCKETS_PER_READ, count - first);
    let view: DataView;
    try {
      const bytes = await mem.read(array + first * table.stride, n * table.stride);
      view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (error) {
      problems.push(`${table.name}: ${(error as Error).message}`);
      return true;
    }
    for (let i = 0; i < n; i++) {
      const where = `bucket ${first + i} of ${table.name}`;
      const seen = new Set<KAddr>();
      let p = mem.space.pointerAt(view, i * table.stride + table.head);
      for (let length = 0; !chainEnd(p, table.nulls); length++) {
        try {
          if (length >= limits.maxChain) throw new Error(`more than ${limits.maxChain} entries`);
          const at = follow(p, "the chain") - table.delta;
          if (seen.has(at)) throw new Error(`the chain loops back to ${mem.space.hex(at)}`);
          seen.add(at);
          const entry = await readStruct(mem, at, types.sock);
          if (!await visit(at, entry, table.protocol)) return false;
          p = entry.next;
        } catch (error) {
          problems.push(`${where}: ${(error as Error).message}`);
          break;
        }
      }
    }
  }
  return true;
}
