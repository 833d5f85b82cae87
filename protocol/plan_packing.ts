/**
 * A plan as a PREFETCH carries it to an agent that lists {@linkcode FEATURE_PACKED_PLANS}: the
 * bytes of `struct ebpfmon_plan` ({@linkcode encodePlan}) with their runs of zeros left out.
 * Most of a plan's fixed layout is unused slots (a check's plan of 31.5 KB packs into about
 * 3 KB), and a request that does not fit the connection's socket buffer waits for the agent to
 * read it: a 31.5 KB PREFETCH took 0.26 ms to write on loopback here, a READ 0.04 ms.
 *
 * The packing is runs, each a u16 (little-endian) count of zero bytes, a u16 count of literal
 * bytes, then those bytes, until the plan's {@linkcode PLAN_SIZE} bytes are written. A packing
 * as long as the plan or longer is never sent: the plan goes as it is, so the length tells the
 * two forms apart. Unpacking is of hostile bytes: a run past the plan's end, a packing that ends
 * inside a run or before the plan does, or bytes after it are refused.
 *
 * @module
 */

import { PLAN_SIZE, PlanError } from "./plan.ts";

/** The HELLO feature of an agent that takes packed plans. */
export const FEATURE_PACKED_PLANS = "packed-plans";

const MAX_RUN = 0xffff;
/** Bytes of a run's two counts. */
const RUN_HEADER = 4;

/** The plan's bytes packed, or the bytes themselves when packing would not make them shorter. */
export function packPlan(plan: Uint8Array): Uint8Array {
  if (plan.length !== PLAN_SIZE) {
    throw new PlanError(`Cannot pack a plan of ${plan.length} bytes: expected ${PLAN_SIZE}`);
  }
  const out = new Uint8Array(PLAN_SIZE);
  const v = new DataView(out.buffer);
  let o = 0;
  for (let i = 0; i < plan.length;) {
    let zeros = 0;
    while (i < plan.length && plan[i] === 0 && zeros < MAX_RUN) i++, zeros++;
    // A literal takes in runs of zeros shorter than a run's header: they cost less as bytes.
    let literal = i;
    for (let zerosAhead = 0; literal < plan.length && literal - i < MAX_RUN; literal++) {
      zerosAhead = plan[literal] === 0 ? zerosAhead + 1 : 0;
      if (zerosAhead === RUN_HEADER) {
        literal -= RUN_HEADER - 1;
        break;
      }
    }
    const len = literal - i;
    if (o + RUN_HEADER + len >= PLAN_SIZE) return plan;
    v.setUint16(o, zeros, true);
    v.setUint16(o + 2, len, true);
    out.set(plan.subarray(i, literal), o + RUN_HEADER);
    o += RUN_HEADER + len;
    i = literal;
  }
  return out.slice(0, o);
}

/**
 * The plan's bytes from what a PREFETCH carried: a plan of {@linkcode PLAN_SIZE} bytes as it
 * is, else its packing.
 * @throws {PlanError} naming what is wrong with a packing.
 */
export function unpackPlan(wire: Uint8Array): Uint8Array {
  if (wire.length === PLAN_SIZE) return wire;
  const out = new Uint8Array(PLAN_SIZE);
  const v = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
  let o = 0;
  let i = 0;
  while (o < PLAN_SIZE) {
    if (i + 4 > wire.length) {
      throw new PlanError(
        `Invalid packed plan: it ends at byte ${wire.length} with ${
          PLAN_SIZE - o
        } bytes of the plan unwritten`,
      );
    }
    const zeros = v.getUint16(i, true);
    const len = v.getUint16(i + 2, true);
    if (o + zeros + len > PLAN_SIZE) {
      throw new PlanError(
        `Invalid packed plan: the run at byte ${i} writes past the plan's ${PLAN_SIZE} bytes`,
      );
    }
    if (i + 4 + len > wire.length) {
      throw new PlanError(
        `Invalid packed plan: the run at byte ${i} has ${len} bytes, ${wire.length - i - 4} left`,
      );
    }
    o += zeros;
    out.set(wire.subarray(i + 4, i + 4 + len), o);
    o += len;
    i += 4 + len;
  }
  if (i !== wire.length) {
    throw new PlanError(
      `Invalid packed plan: ${wire.length - i} bytes after the plan's end at byte ${i}`,
    );
  }
  return out;
}
