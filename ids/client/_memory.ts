/**
 * The requests for guest memory, READ and PREFETCH, and the checks of their answers: every
 * record is held against what was asked (the range of a READ; the counts, the kernel half and
 * the delta base of a PREFETCH) before its bytes are kept, since the agent that sends them may
 * lie.
 *
 * @module
 */

import {
  CARRIED_RUN,
  dataRecords,
  type EndStats,
  forEachRecord,
  FrameType,
  LIMITS,
  type PrefetchTarget,
} from "../../protocol/mod.ts";
import type { Meter } from "./client.ts";
import type { Connection } from "./_connection.ts";
import { AgentMisbehaviorError, misbehaving } from "./errors.ts";

/** Limits of a {@linkcode AgentClient.prefetch}, as asked of the agent. */
export interface PrefetchRequestLimits {
  maxObjects: number;
  maxBytes: number;
}

/**
 * A PREFETCH that asks for a delta: the generation of the answer the IDS holds (0: none), and
 * what to do with each carried run of the answer (records of that base, unchanged), which returns
 * their bytes or throws when the run does not fit the base.
 */
export interface PrefetchDelta {
  base: number;
  onCarried(first: number, count: number): number;
}

/**
 * Where a PREFETCH answer's records go: each record's address, in two 32-bit halves, and where
 * its `len` bytes are in a received frame's payload (from `start`); false, when it cannot keep
 * the record, cuts the answer off.
 */
export type OnRecord = (
  high: number,
  low: number,
  payload: Uint8Array,
  start: number,
  len: number,
) => unknown;

/** {@linkcode AgentClient.read} over `connection`. */
export async function readMemory(
  connection: Connection,
  addr: bigint,
  len: number,
  meter?: Meter,
): Promise<Uint8Array> {
  if (len <= 0 || len > LIMITS.maxRead) {
    throw new RangeError(`Cannot read ${len} bytes: the length must be 1..${LIMITS.maxRead}`);
  }
  const out = new Uint8Array(len);
  let filled = 0;
  await connection.stream({ type: FrameType.READ, id: 0, addr, len }, meter, (frame) => {
    if (frame.type !== FrameType.DATA) return false;
    if (frame.payload.length === 0) throw emptyData(frame.id);
    for (const record of dataRecords(frame.payload, frame.id)) {
      const at = record.addr - addr;
      if (at < 0n || at + BigInt(record.bytes.length) > BigInt(len)) {
        throw new AgentMisbehaviorError(
          "readRange",
          `Agent answered READ of ${len} bytes at 0x${
            addr.toString(16)
          } with ${record.bytes.length} bytes at 0x${
            record.addr.toString(16)
          }, outside what was asked`,
          { value: `0x${record.addr.toString(16)}`, allowed: `0x${addr.toString(16)}+${len}` },
        );
      }
      if (filled + record.bytes.length > len) {
        throw misbehaving(
          "readBytes",
          `Agent answered READ of ${len} bytes with more than ${len}`,
          filled + record.bytes.length,
          len,
        );
      }
      out.set(record.bytes, Number(at));
      filled += record.bytes.length;
    }
    return true;
  });
  if (filled !== len) {
    throw misbehaving(
      "readBytes",
      `Agent answered READ of ${len} bytes with ${filled}`,
      filled,
      len,
    );
  }
  return out;
}

/**
 * {@linkcode AgentClient.prefetch} over `connection`, for a guest whose kernel half starts at
 * `halfHigh` (the high 32 bits of its first address).
 */
export function prefetchMemory(
  connection: Connection,
  halfHigh: number,
  target: PrefetchTarget,
  limits: PrefetchRequestLimits,
  onRecord: OnRecord,
  plan: Uint8Array = new Uint8Array(),
  meter?: Meter,
  delta?: PrefetchDelta,
): Promise<EndStats> {
  const { maxObjects, maxBytes } = limits;
  if (
    !(Number.isSafeInteger(maxObjects) && maxObjects >= 0 && maxObjects <= LIMITS.maxRecords) ||
    !(Number.isSafeInteger(maxBytes) && maxBytes >= 0 && maxBytes <= LIMITS.maxPrefetchBytes)
  ) {
    throw new RangeError(
      `Cannot prefetch ${maxObjects} objects / ${maxBytes} bytes: limits are ${LIMITS.maxRecords} / ${LIMITS.maxPrefetchBytes}`,
    );
  }
  let records = 0;
  let bytes = 0;
  const countRecords = (n: number) => {
    records += n;
    if (records > maxObjects) {
      throw misbehaving(
        "maxObjects",
        `Agent sent more records than the ${maxObjects} asked for`,
        records,
        maxObjects,
      );
    }
  };
  const countBytes = (n: number) => {
    bytes += n;
    if (bytes > maxBytes) {
      throw misbehaving(
        "maxBytes",
        `Agent sent more bytes than the ${maxBytes} asked for`,
        bytes,
        maxBytes,
      );
    }
  };
  const check = (high: number, low: number, payload: Uint8Array, start: number, len: number) => {
    if (high === 0 && low === 0) return carried(payload, start, len);
    countRecords(1);
    countBytes(len);
    if (high < halfHigh) {
      throw new AgentMisbehaviorError(
        "kernelHalf",
        `Agent sent a record at 0x${hex32(high)}${hex32(low)}, outside the kernel half`,
        { value: `0x${hex32(high)}${hex32(low)}`, allowed: `0x${hex32(halfHigh)}00000000..` },
      );
    }
    if (onRecord(high, low, payload, start, len) === false) {
      throw misbehaving(
        "cache",
        `Cannot keep the prefetch: the memory cache refused a record after ${bytes} bytes`,
        bytes,
      );
    }
  };
  // A carried run: records of the base the IDS holds, unchanged (protocol/data_records.ts).
  const carried = (payload: Uint8Array, start: number, len: number) => {
    if (!delta) {
      throw misbehaving(
        "carried",
        "Agent sent a carried run to a PREFETCH that asked for no delta",
      );
    }
    if (len !== CARRIED_RUN) {
      throw misbehaving(
        "carried",
        `Agent sent a carried run of ${len} bytes, not ${CARRIED_RUN}`,
        len,
        CARRIED_RUN,
      );
    }
    const view = new DataView(payload.buffer, payload.byteOffset + start, CARRIED_RUN);
    const first = view.getUint32(0, true);
    const count = view.getUint32(4, true);
    if (delta.base === 0) {
      throw misbehaving("carried", "Agent sent a carried run to a PREFETCH that held no base");
    }
    countRecords(count);
    let carriedBytes: number;
    try {
      carriedBytes = delta.onCarried(first, count);
    } catch (error) {
      throw misbehaving("carried", `Agent sent a bad carried run: ${(error as Error).message}`);
    }
    countBytes(carriedBytes);
  };
  return connection.stream(
    {
      type: FrameType.PREFETCH,
      id: 0,
      target,
      maxObjects,
      maxBytes,
      plan,
      ...(delta ? { delta: { base: delta.base } } : {}),
    },
    meter,
    (frame) => {
      if (frame.type !== FrameType.DATA) return false;
      if (frame.payload.length === 0) throw emptyData(frame.id);
      forEachRecord(frame.payload, check, frame.id);
      return true;
    },
  );
}

function emptyData(id: number): AgentMisbehaviorError {
  return misbehaving("emptyData", `Agent sent a DATA frame without records for request ${id}`);
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}
